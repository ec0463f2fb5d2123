// The HA Configuration portal page in a real browser (Debian's Chromium, headless), driven by
// tests/portal.rs against a running node: Save and Apply changes the replication settings, the
// page shows them after a reload, and bad input is refused with the field named and nothing
// saved. Prints one JSON line of what it saw; exits 1 with the reason on the first failure.
import { chromium } from 'playwright-core';

const base = process.env.TANDEM_PORTAL_URL;
const password = process.env.TANDEM_PORTAL_PASSWORD;
if (!base || !password) {
  console.error('set TANDEM_PORTAL_URL and TANDEM_PORTAL_PASSWORD');
  process.exit(2);
}

// Without the background-networking flags Chromium keeps trying to reach the web.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const seen = {};
function expect(condition, what) {
  if (!condition) {
    throw new Error(`${what}; saw so far: ${JSON.stringify(seen)}`);
  }
}

try {
  const context = await browser.newContext({
    httpCredentials: { username: 'admin', password },
    // The node's certificate is its own, self-signed (tandem init prints its fingerprint).
    ignoreHTTPSErrors: true,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);

  // The System Manager home page links to the window.
  await page.goto(`${base}/`);
  await page.getByRole('link', { name: 'HA Configuration' }).click();
  await page.waitForURL(`${base}/ha/config`);
  seen.title = await page.title();
  expect(seen.title.startsWith('HA Configuration'), 'the page is the HA Configuration window');
  seen.initialReplication = await page.locator('select[name=replication]').inputValue();
  expect(seen.initialReplication === 'scheduled', 'a new node replicates on the schedule');

  // Meanwhile another operator changes Run Every: this page, loaded before, must not put the
  // old value back when it saves its own changes.
  const other = await page.evaluate(async () => {
    const answer = await fetch('/api/v1/ha/config', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ runEvery: '2h' }),
    });
    return answer.status;
  });
  expect(other === 200, 'the other operator saved');

  // Save and Apply: continuous replication, its lag bound and If Behind at Failure.
  await page.locator('select[name=replication]').selectOption('continuous');
  await page.locator('input[name=lagBound]').fill('2s');
  await page.locator('select[name=onBehind]').selectOption('promote');
  await page.getByRole('button', { name: 'Save and Apply' }).click();
  await page.locator('#result.saved').waitFor();
  seen.saved = await page.locator('#result').innerText();
  expect(
    seen.saved === 'Saved and applied: replication, lagBound, onBehind.',
    'Save and Apply reports success and sends only the changed fields',
  );

  // What the page shows after a reload is what the node stored.
  await page.reload();
  seen.reloaded = {
    replication: await page.locator('select[name=replication]').inputValue(),
    lagBound: await page.locator('input[name=lagBound]').inputValue(),
    onBehind: await page.locator('select[name=onBehind]').inputValue(),
    runEvery: await page.locator('input[name=runEvery]').inputValue(),
  };
  expect(
    seen.reloaded.replication === 'continuous' && seen.reloaded.lagBound === '2s'
      && seen.reloaded.onBehind === 'promote' && seen.reloaded.runEvery === '2h',
    "the reloaded page shows the saved values and the other operator's",
  );

  // Bad input: refused by name, with the value and the fix; nothing saved.
  for (const [field, bad, name] of [
    ['input[name=runEvery]', '10 parsecs', 'runEvery'],
    ['input[name=heartbeatFailures]', 'three', 'heartbeatFailures'],
  ]) {
    await page.reload();
    await page.locator('select[name=replication]').selectOption('synchronous');
    await page.locator(field).fill(bad);
    await page.getByRole('button', { name: 'Save and Apply' }).click();
    await page.locator('#result.error').waitFor();
    const refusal = await page.locator('#result').innerText();
    seen[`refused_${name}`] = refusal;
    expect(
      refusal.startsWith('Not saved:') && refusal.includes(name) && refusal.includes(bad),
      `a bad ${name} is refused naming the field and the value`,
    );
  }
  console.log(JSON.stringify(seen));
} catch (error) {
  console.error(String(error && error.stack || error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
