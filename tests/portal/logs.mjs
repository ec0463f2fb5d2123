// Troubleshooting → Logs on a Secondary (tests/portal/logs.rs starts the pair): the
// HighAvailability log shows heartbeats (guide Table 3, task 5), the level filter hides them,
// Older/Newer page by line id, a bad filter is refused next to its field, and a wrong password
// at the login form appears in the Security log with the user and the source address.
import { env, run, context, login, inspect, expect } from './lib.mjs';

const base = env('TANDEM_PORTAL_URL');
const password = env('TANDEM_PORTAL_PASSWORD');
const primary = env('TANDEM_PRIMARY_NAME');

/// The table's rows as { time, level, message }.
async function rows(page) {
  return page.locator('table.log-lines tbody tr').evaluateAll((trs) => trs.map((tr) => ({
    time: tr.querySelector('.log-time .mono').textContent.trim(),
    level: tr.querySelector('.level').textContent.trim(),
    message: tr.querySelector('.log-message').textContent.trim(),
  })));
}

/// The line id in a pager link's `before=` or `after=`.
function cursorOf(href, name) {
  return Number(new URL(href, base).searchParams.get(name));
}

await run(async (browser, seen) => {
  // A wrong password first, from a context of its own: the login page says so.
  const stranger = await context(browser);
  const wrong = await stranger.newPage();
  await wrong.goto(`${base}/login`);
  await wrong.getByLabel('User name').fill('admin');
  await wrong.getByLabel('Password').fill('not-the-password');
  await wrong.getByRole('button', { name: 'Log in' }).click();
  seen.wrongPassword = (await wrong.locator('#flash').innerText()).trim();
  expect(seen.wrongPassword.startsWith('Wrong user name or password'), 'a wrong password is refused');
  await stranger.close();

  const page = await (await context(browser)).newPage();
  page.setDefaultTimeout(15_000);
  await login(page, base, 'admin', password);
  await page.getByRole('navigation').getByRole('link', { name: 'Logs' }).click();
  await page.waitForURL(/\/troubleshooting\/logs/);
  seen.title = await page.title();
  seen.defaults = {
    module: await page.locator('#log-module').inputValue(),
    level: await page.locator('#log-level').inputValue(),
  };
  expect(seen.defaults.module === 'HighAvailability' && seen.defaults.level === 'INFO',
    'the window opens on HighAvailability at Info');
  const first = await rows(page);
  seen.heartbeats = first.filter((row) => row.message.startsWith(`heartbeat to ${primary}:`)).length;
  expect(seen.heartbeats > 0, 'heartbeats to the Primary are in the HighAvailability log');
  expect(first.every((row) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/.test(row.time)), 'times read as UTC seconds');
  await inspect(page, 'sm-logs');

  // The level filter: Warning and above hides every heartbeat (they are Info).
  await page.locator('#log-level').selectOption('WARN');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/level=WARN/);
  const warnings = await rows(page);
  seen.warnRows = warnings.length;
  expect(warnings.every((row) => row.level === 'Warning' || row.level === 'Error'),
    'the level filter shows Warning and Error only');
  expect(!warnings.some((row) => row.message.startsWith('heartbeat to ')), 'no heartbeat at Warning');

  // Paging, five lines a page: Older shows the five before, Newer brings the first page back.
  await page.goto(`${base}/troubleshooting/logs?module=HighAvailability&level=INFO&limit=5`);
  const newest = await rows(page);
  expect(newest.length === 5, 'five lines a page');
  const older = page.getByRole('link', { name: 'Older →' });
  seen.olderHref = await older.getAttribute('href');
  seen.before = cursorOf(seen.olderHref, 'before');
  await older.click();
  await page.waitForURL(/before=/);
  seen.page2 = await rows(page);
  expect(seen.page2.length === 5, 'the older page has five lines');
  expect(seen.page2.every((row) => !newest.some((n) => n.message === row.message && n.time === row.time)),
    'the older page shows other lines');
  const newer = page.getByRole('link', { name: '← Newer' });
  seen.after = cursorOf(await newer.getAttribute('href'), 'after');
  await newer.click();
  await page.waitForURL(/after=/);
  const back = await rows(page);
  expect(JSON.stringify(back) === JSON.stringify(newest), 'Newer brings back the page before');

  // Refresh (the script reloads the page's main part in place).
  await page.goto(`${base}/troubleshooting/logs`);
  await page.getByRole('link', { name: 'Refresh' }).click();
  await page.locator('table.log-lines').waitFor();

  // A module that does not exist: refused, the problem next to the field, nothing shown.
  const refused = await page.goto(`${base}/troubleshooting/logs?module=Nope`);
  seen.refusedStatus = refused.status();
  expect(seen.refusedStatus === 422, 'an unknown module is refused');
  seen.refusedProblem = (await page.locator('#log-module-problem').innerText()).trim();
  expect(seen.refusedProblem.includes('HighAvailability, Notifications, Security'),
    'the refusal lists the modules');
  expect(await page.locator('#log-module').getAttribute('aria-describedby') === 'log-module-problem',
    'the refusal is tied to its field');

  // The Security log: the wrong password, with the user and where it came from.
  await page.goto(`${base}/troubleshooting/logs?module=Security`);
  const security = await rows(page);
  seen.failedLogin = security.find((row) => row.message.startsWith('login failed'))?.message;
  expect(seen.failedLogin && seen.failedLogin.includes('"admin"') && seen.failedLogin.includes('from 127.0.0.1:'),
    'the failed login is in the Security log with the user and the source');
  seen.login = security.find((row) => row.message.startsWith('console login'))?.message;
  expect(seen.login && seen.login.includes('"admin"'), 'the login is in the Security log');
  await inspect(page, 'sm-logs-security');
});
