// Security → Local Users in a real browser: a weak password is refused next to its field by
// its rule; a new user logs in in a context of their own; a password change ends that session
// and the new password works; removal (after the dialog) ends it again. Prints one JSON line of
// what it saw; tests/portal/sm_sync.rs checks the node's accounts.
import { run, context, login, inspect, expect, env } from './lib.mjs';

const base = env('TANDEM_PORTAL_URL');
const password = env('TANDEM_PORTAL_PASSWORD');
const user = 'operator2';
const first = 'harbor-lantern-violet-7';
const second = 'quiet-meadow-copper-42';

async function fillPasswords(page, form, username, newPassword, confirm) {
  const fields = page.locator(`#${form}`);
  if (form === 'add-user') await fields.getByLabel('User name').fill(username);
  else await fields.getByLabel('User', { exact: true }).selectOption(username);
  await fields.locator('input[name=password]').fill(newPassword);
  await fields.locator('input[name=confirm]').fill(confirm);
  await fields.getByRole('button').click();
}

/// Whether `page`'s session still lives: a reload stays on the page, or lands on the login form.
async function stillLoggedIn(page) {
  await page.reload();
  return !new URL(page.url()).pathname.startsWith('/login');
}

await run(async (browser, seen) => {
  const admin = await (await context(browser)).newPage();
  admin.setDefaultTimeout(20_000);
  await login(admin, base, 'admin', password, '/');
  await admin.getByRole('navigation').getByRole('link', { name: 'Local Users' }).click();
  await admin.waitForURL(`${base}/security/users`);
  seen.adminKept = await admin.locator('#users').innerText();
  expect(seen.adminKept.includes('Kept'), 'the only user cannot be removed, and says why');
  await inspect(admin, 'sm-users');

  // A weak password, refused by its rule at its field; the two passwords differing, at the
  // confirmation.
  await fillPasswords(admin, 'add-user', user, 'password', 'password');
  seen.weak = await admin.locator('#add-password-problem').innerText();
  expect(seen.weak.includes('common'), `the common-password rule is named: ${seen.weak}`);
  expect(await admin.locator('#add-username').inputValue() === user, 'the user name is kept');
  await inspect(admin, 'sm-users-refused');
  await fillPasswords(admin, 'add-user', user, first, `${first}x`);
  seen.mismatch = await admin.locator('#add-confirm-problem').innerText();

  await fillPasswords(admin, 'add-user', user, first, first);
  seen.added = await admin.locator('#flash.success').innerText();
  expect(seen.added.includes(user), 'the user was added');

  const theirs = await (await context(browser)).newPage();
  theirs.setDefaultTimeout(20_000);
  await login(theirs, base, user, first, '/');
  expect(await stillLoggedIn(theirs), 'the new user is logged in');

  await fillPasswords(admin, 'change-password', user, second, second);
  seen.changed = await admin.locator('#flash.success').innerText();
  expect(!(await stillLoggedIn(theirs)), 'the password change ended their session');
  await login(theirs, base, user, second, '/');
  expect(await stillLoggedIn(theirs), 'the new password works');

  admin.once('dialog', (dialog) => dialog.accept());
  await admin.getByRole('button', { name: `Remove ${user}` }).click();
  seen.removed = await admin.locator('#flash.success').innerText();
  expect(!(await stillLoggedIn(theirs)), 'the removal ended their session');
  expect(!(await admin.locator('#users').innerText()).includes(user), 'gone from the list');
});
