// Run Sync Now in a real browser (guide: Step 5, Table 3 task 2): on the Secondary B, Run Sync
// Now, then Refresh until Sync History shows the manual sync finished; Last Sync Status is read
// for tests/portal/sm_sync.rs to compare with `tandem ha history --json`. On the Primary A the
// button is disabled and the page says where to run it.
import { run, context, login, inspect, expect, env } from './lib.mjs';

const primaryUrl = env('TANDEM_A_URL');
const secondaryUrl = env('TANDEM_B_URL');
const password = env('TANDEM_PORTAL_PASSWORD');
/// Refresh clicks before giving up: far more than a first sync of an empty node needs (each
/// click waits for the page, so this bounds the attempts, not the time).
const REFRESHES_MAX = 300;

await run(async (browser, seen) => {
  const primary = await (await context(browser)).newPage();
  primary.setDefaultTimeout(20_000);
  await login(primary, primaryUrl, 'admin', password, '/ha/sync');
  expect(await primary.getByRole('button', { name: 'Run Sync Now' }).isDisabled(),
    'a Primary offers no Run Sync Now');
  seen.primaryReason = await primary.locator('#run-unavailable').innerText();
  expect(seen.primaryReason.includes('Secondary'), 'the Primary says where to run it');
  await inspect(primary, 'sm-sync-primary');

  const page = await (await context(browser)).newPage();
  page.setDefaultTimeout(20_000);
  await login(page, secondaryUrl, 'admin', password, '/');
  await page.getByRole('navigation').getByRole('link', { name: 'Sync', exact: true }).click();
  await page.waitForURL(`${secondaryUrl}/ha/sync`);
  seen.before = await page.locator('#sync-history tbody tr').count();
  await inspect(page, 'sm-sync');

  seen.firstSyncNotice = await page.locator('#first-sync').innerText();
  await page.getByLabel(/Full \(force full\)/).check();
  await page.getByRole('button', { name: 'Run Sync Now' }).click();
  // The first sync brings the Primary's local users (their password hashes are new here), so
  // this session ends as the page said it would: log in again, with the Primary's password.
  await page.waitForURL((url) => url.pathname === '/ha/sync' || url.pathname === '/login');
  seen.loggedInAgain = new URL(page.url()).pathname === '/login';
  if (seen.loggedInAgain) {
    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${secondaryUrl}/ha/sync`);
  } else {
    seen.flash = await page.locator('#flash').innerText();
    expect(await page.locator('#flash.success').count() === 1, `Run Sync Now was accepted: ${seen.flash}`);
  }

  // Refresh (the link reloads the page's main part in place) until the sync has finished.
  let finished = null;
  for (let attempt = 0; attempt < REFRESHES_MAX && !finished; attempt += 1) {
    await page.locator('#refresh').click();
    await page.locator('#refresh:not([aria-busy])').waitFor();
    const rows = await page.locator('#sync-history tbody tr').allInnerTexts();
    finished = rows.find((row) => row.includes('manual') && !row.includes('running'));
    seen.refreshes = attempt + 1;
  }
  expect(finished, 'Sync History shows the manual sync finished');
  seen.row = finished;
  seen.last = {
    result: await page.locator('#last-result').innerText(),
    kind: await page.locator('#last-kind').innerText(),
    entries: await page.locator('#last-entries').innerText(),
    bytes: await page.locator('#last-bytes').innerText(),
    started: await page.locator('#last-started').getAttribute('datetime'),
  };
  await inspect(page, 'sm-sync-history');
});
