// Manage Trusted Hosts in a real browser, on two running nodes (guide: Step 4, Table 3 task 1):
// refused input is shown next to its field, each node's Local Server SSH Key is copied from its
// page and added on the other's, Test Connection succeeds both ways with a clock offset, and a
// trusted host is removed after a confirmation (the dialog, and the page without script).
// Prints one JSON line of what it saw; tests/portal/sm_sync.rs checks the nodes hold it.
import { run, context, login, inspect, expect, env } from './lib.mjs';

const nodes = {
  a: { url: env('TANDEM_A_URL'), ssh: env('TANDEM_A_SSH') },
  b: { url: env('TANDEM_B_URL'), ssh: env('TANDEM_B_SSH') },
};
const password = env('TANDEM_PORTAL_PASSWORD');

/// This node's Local Server SSH Key, as the Copy button puts it on the clipboard.
async function copyLocalKey(page) {
  await page.getByRole('button', { name: 'Copy', exact: true }).click();
  await page.getByRole('button', { name: 'Copied', exact: true }).waitFor();
  return page.evaluate(() => navigator.clipboard.readText());
}

async function addTrustedHost(page, host, key) {
  await page.locator('#add-host').fill(host);
  await page.getByLabel('SSH Key', { exact: true }).fill(key);
  await page.getByRole('button', { name: 'Add SSH Key' }).click();
}

async function testConnection(page, host) {
  await page.getByRole('button', { name: `Test Connection to ${host}` }).click();
  await page.locator('#test-result').waitFor();
  return {
    heading: await page.locator('#test-result-title').innerText(),
    offset: await page.locator('#clock-offset').innerText().catch(() => null),
    failure: await page.locator('#test-failure').innerText().catch(() => null),
  };
}

await run(async (browser, seen) => {
  const pages = {};
  for (const name of ['a', 'b']) {
    const ctx = await context(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
    const page = await ctx.newPage();
    page.setDefaultTimeout(20_000);
    await login(page, nodes[name].url, 'admin', password, '/ha/trusted-hosts');
    expect((await page.title()).startsWith('Manage Trusted Hosts'), `${name}: the window opened`);
    pages[name] = page;
  }
  const { a, b } = pages;
  await expect(await b.locator('#no-hosts').isVisible(), 'a new node says how to add a host');
  await inspect(b, 'sm-trusted-hosts-empty');

  // Bad input: both problems next to their fields, with the fix; nothing stored (the Rust side
  // checks the node's list).
  await addTrustedHost(b, '127.0.0.1:99999', 'ssh-ed25519 notbase64');
  seen.refusedHost = await b.locator('#add-host-problem').innerText();
  seen.refusedKey = await b.locator('#add-key-problem').innerText();
  expect(seen.refusedHost.includes('127.0.0.1:99999'), 'the refused address is named with its value');
  expect(seen.refusedKey.includes('Local Server SSH Key'), 'the refused key says where to copy it from');
  expect(await b.locator('#add-host').getAttribute('aria-invalid') === 'true', 'the field is marked invalid');
  expect(await b.locator('#add-host').inputValue() === '127.0.0.1:99999', 'the typed value is kept');
  await inspect(b, 'sm-trusted-hosts-refused');

  // Exchange the keys through the pages: copy on one, add on the other, compare fingerprints.
  for (const [from, to] of [['a', 'b'], ['b', 'a']]) {
    await pages[from].goto(`${nodes[from].url}/ha/trusted-hosts`);
    const key = await copyLocalKey(pages[from]);
    const fingerprint = await pages[from].locator('#local-fingerprint').innerText();
    expect(key.startsWith('ssh-ed25519 '), `${from}'s key was copied: ${key}`);
    seen[`${from}Fingerprint`] = fingerprint;
    await pages[to].goto(`${nodes[to].url}/ha/trusted-hosts`);
    await addTrustedHost(pages[to], nodes[from].ssh, key);
    const added = await pages[to].locator('#flash.success').innerText();
    seen[`addedOn_${to}`] = added;
    expect(added.includes(fingerprint), `${to}'s message shows the fingerprint of ${from}'s key`);
    expect(await pages[to].locator('#trusted-hosts').innerText().then((t) => t.includes(fingerprint)),
      `${to} lists ${from} with its fingerprint`);
  }

  // Test Connection both ways: success and a clock offset.
  for (const [from, to] of [['a', 'b'], ['b', 'a']]) {
    const result = await testConnection(pages[from], nodes[to].ssh);
    seen[`test_${from}_to_${to}`] = result;
    expect(result.heading.includes('Test was successful'), `Test Connection ${from} → ${to}: ${JSON.stringify(result)}`);
    expect(/^[+-]?\d+ ms/.test(result.offset || ''), `${from} → ${to} shows a clock offset`);
  }
  await inspect(a, 'sm-trusted-hosts');

  // A typed address nobody trusts: the failure with its fix; a bad one: refused at its field.
  await a.locator('#test-endpoint').fill('127.0.0.1:1');
  await a.getByRole('button', { name: 'Test Connection', exact: true }).click();
  seen.untrusted = await a.locator('#test-failure').innerText();
  expect(seen.untrusted.length > 0, 'an untrusted address fails with a reason');
  await inspect(a, 'sm-trusted-hosts-test-failed');

  // Remove with the dialog (script), after adding a host to remove.
  const keyOfB = await b.locator('#local-key').inputValue();
  await addTrustedHost(a, '127.0.0.1:2', keyOfB);
  await a.locator('#flash.success').waitFor();
  a.once('dialog', (dialog) => {
    seen.dialog = dialog.message();
    dialog.accept();
  });
  await a.getByRole('button', { name: 'Remove 127.0.0.1:2', exact: true }).click();
  seen.removed = await a.locator('#flash.success').innerText();
  expect(seen.dialog.includes('127.0.0.1:2') && seen.removed.includes('Removed'), 'removed after the dialog');

  // Without script: the confirmation page asks; Cancel keeps the host, Remove removes it.
  await addTrustedHost(a, '127.0.0.1:3', keyOfB);
  await a.locator('#flash.success').waitFor();
  // The page a browser without script gets (the form posted without the dialog's answer).
  await a.evaluate(() => document.querySelectorAll('form[data-confirm]')
    .forEach((form) => form.removeAttribute('data-confirm')));
  await a.getByRole('button', { name: 'Remove 127.0.0.1:3', exact: true }).click();
  await a.getByRole('heading', { name: 'Remove trusted host 127.0.0.1:3?' }).waitFor();
  await inspect(a, 'sm-trusted-hosts-remove');
  await a.getByRole('link', { name: 'Cancel' }).click();
  // Port 3 alone: the peers' own ports (20000–31999) may start with a 3 too.
  const listsPort3 = (text) => /127\.0\.0\.1:3(?!\d)/.test(text);
  expect(listsPort3(await a.locator('#trusted-hosts').innerText()), 'Cancel keeps the host');
  const plain = await context(browser, { javaScriptEnabled: false });
  const noScript = await plain.newPage();
  await login(noScript, nodes.a.url, 'admin', password, '/ha/trusted-hosts');
  await noScript.getByRole('button', { name: 'Remove 127.0.0.1:3', exact: true }).click();
  await noScript.getByRole('heading', { name: 'Remove trusted host 127.0.0.1:3?' }).waitFor();
  await noScript.getByRole('button', { name: 'Remove 127.0.0.1:3', exact: true }).click();
  seen.removedWithoutScript = await noScript.locator('#flash.success').innerText();
  expect(!listsPort3(await noScript.locator('#trusted-hosts').innerText()), 'gone from the list');
});
