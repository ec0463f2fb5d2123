// The Admin portal on both nodes of a pair (tests/portal/admin.rs starts them and registers the
// devices): on the Primary, every window, search/filter/paging of devices, Lock confirmed in a
// dialog and Retire confirmed on the page a browser without JavaScript gets, a refused field
// shown next to it, an app uploaded; on the Standby, the same device count, the read-only
// banner, disabled forms and a change posted anyway refused. Prints one JSON line of what it
// saw.
import { run, context, login, logout, inspect, expect, env } from './lib.mjs';

const primary = env('TANDEM_PRIMARY_URL');
const standby = env('TANDEM_STANDBY_URL');
const password = env('TANDEM_PASSWORD');
const device = env('TANDEM_DEVICE');
const pending = env('TANDEM_PENDING_DEVICE');

async function text(page, selector) {
  return (await page.locator(selector).innerText()).trim();
}

async function flash(page) {
  return text(page, '#flash');
}

async function wrongPassword(browser, seen) {
  const page = await (await context(browser)).newPage();
  await page.goto(`${primary}/`);
  await page.waitForURL(/\/login/);
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  seen.wrongPassword = (await page.locator('main').innerText()).trim();
  expect(/Wrong user name or password/.test(seen.wrongPassword), 'a wrong password is shown');
  await page.context().close();
}

async function dashboardAndDevices(page, seen) {
  await page.goto(`${primary}/`);
  seen.primaryCount = Number(await text(page, '#device-count'));
  await inspect(page, 'admin-dashboard');

  await page.getByRole('link', { name: 'Devices', exact: true }).click();
  await page.waitForURL(`${primary}/devices`);
  seen.firstPage = await text(page, '.pager span');
  await inspect(page, 'admin-devices');
  await page.getByRole('link', { name: /Next page/ }).click();
  seen.secondPage = await text(page, '.pager span');
  seen.secondPageRows = await page.locator('#devices tbody tr').count();

  await page.getByLabel('Platform').selectOption('iOS');
  await page.getByRole('button', { name: 'Search' }).click();
  seen.iosCount = await text(page, '#match-count');
  await page.getByLabel('Search').fill('SERIAL-IOS-1');
  await page.getByRole('button', { name: 'Search' }).click();
  seen.searched = await page.locator('#devices tbody tr').allInnerTexts();
  await page.goto(`${primary}/devices?label=Sales`);
  seen.labelled = await text(page, '#match-count');
}

async function lockWithDialog(page, seen) {
  await page.goto(`${primary}/devices/${device}`);
  await inspect(page, 'admin-device');
  page.once('dialog', (dialog) => {
    seen.dialog = dialog.message();
    dialog.accept();
  });
  await page.getByRole('button', { name: 'Lock' }).click();
  await page.locator('#flash').waitFor();
  seen.locked = await flash(page);
  seen.commands = await page.locator('#command-list tbody tr').allInnerTexts();
  await page.locator('#apply-label').selectOption({ label: 'Sales' });
  await page.getByRole('button', { name: 'Apply Label' }).click();
  seen.labelApplied = await flash(page);
  seen.deviceLabels = await text(page, '#device-labels');
  await page.goto(`${primary}/devices/${pending}`);
  page.once('dialog', (dialog) => dialog.accept());
  await page.getByRole('button', { name: 'Lock' }).click();
  await page.locator('#flash').waitFor();
  seen.pendingLock = await flash(page);
  await page.goto(`${primary}/devices/${device}/confirm?action=wipe`);
  seen.confirmTitle = await text(page, 'h1');
  await inspect(page, 'admin-device-confirm');
}

// Without JavaScript the device page's Retire goes to the confirmation page first.
async function retireWithoutScript(browser, seen) {
  const page = await (await context(browser, { javaScriptEnabled: false })).newPage();
  await login(page, primary, 'admin', password, `/devices/${device}`);
  await page.getByRole('button', { name: 'Retire' }).click();
  await page.waitForURL(/\/confirm\?action=retire/);
  seen.retireConfirmUrl = new URL(page.url()).pathname + new URL(page.url()).search;
  await page.getByRole('button', { name: 'Retire this device' }).click();
  await page.waitForURL(`${primary}/devices/${device}`);
  seen.retired = await flash(page);
  await page.context().close();
}

async function usersAndLabels(page, seen) {
  await page.goto(`${primary}/users`);
  await inspect(page, 'admin-users');
  await page.getByLabel('Principal').fill('bad principal');
  await page.getByRole('button', { name: 'Add User' }).click();
  seen.refusedPrincipal = await text(page, '#f-principal-problem');
  seen.refusedValueKept = await page.getByLabel('Principal').inputValue();
  seen.refusedDescribedBy = await page.getByLabel('Principal').getAttribute('aria-describedby');
  await inspect(page, 'admin-users-refused');
  await page.getByLabel('Principal').fill('new.user@example.com');
  await page.getByLabel('E-mail').fill('new.user@example.com');
  await page.getByRole('button', { name: 'Add User' }).click();
  seen.userAdded = await flash(page);

  await page.goto(`${primary}/labels`);
  await page.getByLabel('Name').fill('Field-Team');
  await page.getByLabel('Description').fill('Devices in the field');
  await page.getByRole('button', { name: 'Add Label' }).click();
  seen.labelAdded = await flash(page);
  seen.labels = await page.locator('#labels tbody tr').allInnerTexts();
  await inspect(page, 'admin-labels');
}

async function appsPoliciesEvents(page, seen) {
  await page.goto(`${primary}/apps`);
  await page.getByLabel('Platform').selectOption('Android');
  await page.getByLabel('Name').fill('Field Notes');
  await page.getByLabel('Bundle ID').fill('com.example.fieldnotes');
  await page.getByLabel('Version').fill('1.2.3');
  // Without a file: refused next to the file field, the other fields kept.
  await page.getByRole('button', { name: 'Upload and Add' }).click();
  seen.refusedFile = await text(page, '#f-file-problem');
  seen.keptName = await page.getByLabel('Name').inputValue();
  await page.getByLabel('App file').setInputFiles({
    name: 'fieldnotes.apk',
    mimeType: 'application/vnd.android.package-archive',
    buffer: Buffer.alloc(5000, 7),
  });
  await page.getByRole('button', { name: 'Upload and Add' }).click();
  seen.appAdded = await flash(page);
  seen.apps = await page.locator('#apps tbody tr').allInnerTexts();
  await inspect(page, 'admin-apps');

  await page.goto(`${primary}/policies`);
  await page.getByLabel('Name').fill('Passcode');
  await page.getByLabel('Type').fill('PASSCODE');
  await page.getByLabel('Payload (JSON)').fill('{minLength: 6}');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  seen.refusedPayload = await text(page, '#f-payload-problem');
  await page.getByLabel('Payload (JSON)').fill('{"minLength": 6}');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  seen.policyAdded = await flash(page);
  await inspect(page, 'admin-policies');
  await page.getByRole('link', { name: 'Passcode' }).click();
  await page.getByLabel('Priority').fill('10');
  await page.getByRole('button', { name: 'Save' }).click();
  seen.policySaved = await flash(page);
  await inspect(page, 'admin-policy');

  await page.goto(`${primary}/events`);
  await inspect(page, 'admin-events');
  await page.getByLabel('Kind').selectOption('DEVICE_LOCK_QUEUED');
  await page.getByRole('button', { name: 'Show' }).click();
  seen.lockEvents = await page.locator('#events tbody tr').allInnerTexts();
}

async function onTheStandby(browser, seen) {
  const page = await (await context(browser)).newPage();
  await login(page, standby, 'admin', password, '/');
  seen.standbyCount = Number(await text(page, '#device-count'));
  seen.banner = await text(page, '.banner');
  seen.standbyState = await text(page, '#node-state');
  await inspect(page, 'admin-standby-dashboard');
  await page.goto(`${standby}/devices/${device}`);
  seen.standbyLockDisabled = await page.getByRole('button', { name: 'Lock' }).isDisabled();
  await page.goto(`${standby}/labels`);
  seen.standbyLabelFormDisabled = await page.getByRole('button', { name: 'Add Label' }).isDisabled()
    && await page.getByLabel('Name').isDisabled();
  await inspect(page, 'admin-standby-labels');
  // A change posted anyway (as a stale page or a script would): refused, nothing changed.
  seen.postedAnyway = await page.evaluate(async () => {
    const csrf = document.querySelector('input[name=csrf]').value;
    const answer = await fetch('/labels', {
      method: 'POST',
      body: new URLSearchParams({ csrf, name: 'Sneaky' }),
    });
    return { status: answer.status, text: await answer.text() };
  });
  seen.postedAnyway.text = seen.postedAnyway.text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
  await logout(page);
  await page.context().close();
}

await run(async (browser, seen) => {
  await wrongPassword(browser, seen);
  const page = await (await context(browser)).newPage();
  page.setDefaultTimeout(15_000);
  await login(page, primary, 'admin', password, '/');
  await dashboardAndDevices(page, seen);
  await lockWithDialog(page, seen);
  await retireWithoutScript(browser, seen);
  await usersAndLabels(page, seen);
  await appsPoliciesEvents(page, seen);
  await logout(page);
  seen.loggedOut = page.url();
  await onTheStandby(browser, seen);
});
