// Sync History's pages in a real browser: newest first, HISTORY_PAGE_ROWS (20) a page, Older
// and Newer links. tests/portal/sm_sync.rs fills the history through the CLI first and checks
// the rows seen against `tandem ha history --json`.
import { run, context, login, expect, env } from './lib.mjs';

const base = env('TANDEM_B_URL');
const password = env('TANDEM_PORTAL_PASSWORD');

async function startTimes(page) {
  return page.locator('#sync-history tbody tr td:first-child time').evaluateAll(
    (times) => times.map((time) => time.getAttribute('datetime')));
}

await run(async (browser, seen) => {
  const page = await (await context(browser)).newPage();
  page.setDefaultTimeout(20_000);
  await login(page, base, 'admin', password, '/ha/sync');
  seen.first = await startTimes(page);
  expect(await page.getByRole('link', { name: /Newer/ }).count() === 0, 'the first page has no newer one');
  await page.getByRole('link', { name: /Older/ }).click();
  await page.waitForURL(`${base}/ha/sync?page=2`);
  seen.second = await startTimes(page);
  await page.getByRole('link', { name: /Newer/ }).click();
  await page.waitForURL(`${base}/ha/sync`);
  seen.back = await startTimes(page);
});
