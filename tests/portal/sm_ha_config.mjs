// The System Manager's HA windows on one node, in a real browser (tests/portal/sm_ha.rs starts
// the node and checks through the CLI that what the pages did is what it holds): the login page
// refuses a wrong password; the Overview; HA Configuration shows the fields of the chosen Mode
// and replication (with and without the page's script), saves only the fields changed since
// loading (another operator changes Run Every meanwhile), shows refused values next to their
// fields with nothing saved, then saves them fixed; Cluster; Notification Settings with Test
// (when TANDEM_SMTP_RELAY names a real SMTP server); logout. Prints one JSON line of what it saw.
import { run, context, login, logout, inspect, expect, env } from './lib.mjs';

const base = env('TANDEM_PORTAL_URL');
const password = env('TANDEM_PORTAL_PASSWORD');
const relay = process.env.TANDEM_SMTP_RELAY;
const basic = `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`;

/// The HA configuration as the API holds it (HTTP Basic, as a script would read it).
async function stored(page) {
  const answer = await page.request.get(`${base}/api/v1/ha/config`, { headers: { Authorization: basic } });
  expect(answer.ok(), `GET /api/v1/ha/config answered ${answer.status()}`);
  return answer.json();
}

async function visible(page, name) {
  return page.locator(`#f-${name}`).isVisible();
}

async function flash(page) {
  return (await page.locator('#flash').innerText()).trim();
}

async function wrongPassword(browser, seen) {
  const page = await (await context(browser)).newPage();
  await page.goto(`${base}/ha/config`);
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  seen.wrongPassword = (await page.locator('#flash').innerText()).trim();
  expect(seen.wrongPassword.startsWith('Wrong user name or password'), 'a wrong password is shown as such');
  expect(new URL(page.url()).pathname === '/login', 'a wrong password stays on the login page');
}

async function modeFields(page, seen) {
  // A new node: a scheduled Primary. No Secondary-only fields, the schedule's fields shown.
  seen.primaryFields = {
    primary: await visible(page, 'primary'),
    nodeStatus: await visible(page, 'nodeStatus'),
    onFailure: await visible(page, 'onFailure'),
    runEvery: await visible(page, 'runEvery'),
    lagBound: await visible(page, 'lagBound'),
  };
  expect(!seen.primaryFields.primary && !seen.primaryFields.nodeStatus && !seen.primaryFields.onFailure,
    'a Primary shows no Node Status, Primary or If Failure Detected');
  expect(seen.primaryFields.runEvery && !seen.primaryFields.lagBound, 'scheduled: Run Every, no Lag Bound');
  expect(!(await page.getByRole('button', { name: 'Show fields for this mode' }).isVisible()),
    'with the script the fields change at once, without the button');
  await page.locator('#f-mode').selectOption('Secondary');
  await page.locator('#f-replication').selectOption('synchronous');
  seen.secondarySynchronousFields = {
    primary: await visible(page, 'primary'),
    onFailure: await visible(page, 'onFailure'),
    onStandbyLost: await visible(page, 'onStandbyLost'),
    onBehind: await visible(page, 'onBehind'),
    runEvery: await visible(page, 'runEvery'),
  };
  const fields = seen.secondarySynchronousFields;
  expect(fields.primary && fields.onFailure && fields.onStandbyLost && fields.onBehind && !fields.runEvery,
    'a synchronous Secondary shows Primary, If Failure Detected, If Standby Lost, If Behind at Failure, no Run Every');
  // A fresh load (not a reload, which may restore what was chosen): nothing was saved.
  await page.goto(`${base}/ha/config`);
}

async function withoutScript(browser, seen) {
  const page = await (await context(browser, { javaScriptEnabled: false })).newPage();
  await login(page, base, 'admin', password, '/ha/config');
  expect(!(await visible(page, 'primary')), 'without the script a Primary shows no Primary field');
  await page.locator('#f-mode').selectOption('Secondary');
  await page.getByRole('button', { name: 'Show fields for this mode' }).click();
  await page.locator('#f-primary').waitFor({ state: 'visible' });
  seen.withoutScript = {
    primary: await visible(page, 'primary'),
    mode: await page.locator('#f-mode').inputValue(),
  };
  expect(seen.withoutScript.primary && seen.withoutScript.mode === 'Secondary',
    'without the script, "Show fields for this mode" shows the Secondary fields');
  expect((await stored(page)).mode === 'Primary', '"Show fields for this mode" saves nothing');
}

async function saveOnlyChanged(page, seen) {
  // Meanwhile another operator changes Run Every: this page, loaded before, must not put the
  // old value back when it saves its own changes.
  const other = await page.request.put(`${base}/api/v1/ha/config`, {
    headers: { Authorization: basic, 'content-type': 'application/json' },
    data: { runEvery: '2h' },
  });
  expect(other.ok(), `the other operator saved (${other.status()})`);
  await page.locator('#f-replication').selectOption('continuous');
  await page.locator('#f-lagBound').fill('2s');
  await page.getByRole('button', { name: 'Save and Apply' }).click();
  await page.waitForURL(`${base}/ha/config`);
  seen.saved = await flash(page);
  expect(seen.saved.startsWith('Saved and applied: Replication, Lag Bound.'),
    'Save and Apply names only the changed fields');
  seen.reloaded = {
    replication: await page.locator('#f-replication').inputValue(),
    lagBound: await page.locator('#f-lagBound').inputValue(),
    runEvery: await page.locator('#f-runEvery').inputValue(),
  };
  expect(seen.reloaded.replication === 'continuous' && seen.reloaded.lagBound === '2s'
    && seen.reloaded.runEvery === '2h', "the page shows the saved values and the other operator's");
}

async function refusedThenFixed(page, seen) {
  await page.locator('#f-heartbeatInterval').fill('soon');
  await page.locator('#f-lagBound').fill('10 parsecs');
  await page.getByRole('button', { name: 'Save and Apply' }).click();
  await page.locator('#refused').waitFor();
  seen.refused = (await page.locator('#refused').innerText()).trim();
  expect(seen.refused.startsWith('Not saved: 2 problems'), 'both problems are counted');
  for (const [name, bad] of [['heartbeatInterval', 'soon'], ['lagBound', '10 parsecs']]) {
    const field = page.locator(`.field:has(#f-${name})`);
    expect(await field.evaluate((element) => element.classList.contains('invalid')), `${name} is marked invalid`);
    const problem = (await page.locator(`#f-${name}-problem`).innerText()).trim();
    seen[`refused_${name}`] = problem;
    expect(problem.includes(bad) && problem.includes('not a duration'), `${name}'s problem names the value and the fix`);
    expect((await page.locator(`#f-${name}`).inputValue()) === bad, `${name} keeps what the operator typed`);
    expect((await page.locator(`#f-${name}`).getAttribute('aria-describedby')).includes(`f-${name}-problem`),
      `${name}'s problem is tied to its field`);
  }
  const held = await stored(page);
  expect(held.heartbeatInterval === '10s' && held.lagBound === '2s', 'a refused Save and Apply saves nothing');
  await inspect(page, 'ha-config-refused');
  await page.locator('#f-heartbeatInterval').fill('2s');
  await page.locator('#f-lagBound').fill('3s');
  await page.getByRole('button', { name: 'Save and Apply' }).click();
  await page.waitForURL(`${base}/ha/config`);
  seen.fixed = await flash(page);
  expect(seen.fixed.startsWith('Saved and applied: Lag Bound, Heartbeat Interval.'), 'the fixed values are saved');
}

async function notifications(page, seen) {
  await page.getByRole('link', { name: 'Notification Settings' }).click();
  await page.waitForURL(`${base}/ha/notifications`);
  await inspect(page, 'notifications');
  await page.getByLabel('E-mail addresses').fill('ops@example.com\nnot-an-address');
  await page.getByRole('button', { name: 'Save and Apply' }).click();
  await page.locator('#f-notifyEmail-problem').waitFor();
  seen.refusedEmail = (await page.locator('#f-notifyEmail-problem').innerText()).trim();
  expect(seen.refusedEmail.includes('not-an-address'), 'a bad address is refused next to its field');
  if (!relay) return;
  await page.getByLabel('E-mail addresses').fill('ops@example.com');
  await page.getByLabel('SMTP relay').fill(relay);
  await page.getByLabel('SMTP security').selectOption('none');
  await page.getByRole('button', { name: 'Save and Apply' }).click();
  await page.waitForURL(`${base}/ha/notifications`);
  seen.notificationsSaved = await flash(page);
  expect(seen.notificationsSaved.startsWith('Saved and applied: E-mail addresses, SMTP relay, SMTP security.'),
    'the notification settings are saved');
  await page.getByRole('button', { name: 'Test' }).click();
  await page.waitForURL(`${base}/ha/notifications`);
  seen.test = await flash(page);
  expect(seen.test.startsWith(`Test e-mail sent to ops@example.com through ${relay}`),
    'Test says the relay took the e-mail');
}

run(async (browser, seen) => {
  await wrongPassword(browser, seen);
  await withoutScript(browser, seen);
  const page = await (await context(browser)).newPage();
  page.setDefaultTimeout(15_000);
  await login(page, base, 'admin', password);
  seen.overview = (await page.locator('main').innerText()).includes('High Availability');
  expect(seen.overview, 'the Overview sums up the node');
  await inspect(page, 'overview');

  await page.getByRole('link', { name: 'HA Configuration' }).first().click();
  await page.waitForURL(`${base}/ha/config`);
  await inspect(page, 'ha-config');
  await modeFields(page, seen);
  await saveOnlyChanged(page, seen);
  await refusedThenFixed(page, seen);

  await page.getByRole('link', { name: 'Cluster' }).first().click();
  await page.waitForURL(`${base}/ha/cluster`);
  seen.cluster = (await page.locator('main').innerText()).includes('No other node known yet');
  expect(seen.cluster, 'a lone node says how to add a peer');
  await inspect(page, 'cluster');

  await notifications(page, seen);

  await logout(page);
  await page.goto(`${base}/ha/config`);
  seen.afterLogout = new URL(page.url()).pathname;
  expect(seen.afterLogout === '/login', 'after logout the console asks for a login again');
});
