// What every console browser script shares: Debian's Chromium through playwright-core, the
// login form, screenshots kept as test artifacts, and the accessibility check (axe-core).
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);

/// The environment variable `name`, or exit 2 naming it.
export function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`set ${name}`);
    process.exit(2);
  }
  return value;
}

/// Chromium, headless. Without the background-networking flags it keeps trying to reach the web.
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/// A browser context for a node's self-signed certificate (`tandem init` prints its
/// fingerprint). `bypassCSP` lets the accessibility checker's script in; the pages' own policy
/// is checked by the Rust tests on the wire.
export async function context(browser, options = {}) {
  return browser.newContext({
    ignoreHTTPSErrors: true,
    bypassCSP: true,
    viewport: { width: 1280, height: 860 },
    ...options,
  });
}

/// Logs in through the login form of the console at `base`; the page ends on `next` (or the
/// console's first page).
export async function login(page, base, user, password, next) {
  await page.goto(`${base}${next || '/'}`);
  await page.waitForURL(/\/login/);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL((url) => !url.pathname.startsWith('/login'));
}

export async function logout(page) {
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(/\/login\?out=1/);
}

/// Saves a screenshot of the whole page as `<name>.png` in TANDEM_SCREENSHOTS (a test
/// artifact directory), when set.
export async function shot(page, name) {
  const dir = process.env.TANDEM_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
}

/// Runs axe-core on the page; throws on any serious or critical violation, naming each with
/// the elements it was found on. Returns the number of lesser findings.
export async function accessible(page, name) {
  await page.addScriptTag({ path: require.resolve('axe-core/axe.min.js') });
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ['violations'] }));
  const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (serious.length > 0) {
    const described = serious.map((v) =>
      `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    throw new Error(`${name}: accessibility violations:\n${described.join('\n')}`);
  }
  return result.violations.length;
}

/// Both checks of a window: its screenshot and its accessibility, at desktop width and at a
/// tablet's (768 px).
export async function inspect(page, name) {
  await shot(page, name);
  await accessible(page, name);
  const size = page.viewportSize();
  await page.setViewportSize({ width: 768, height: 1024 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  if (overflow) throw new Error(`${name}: the page scrolls sideways at a tablet's width (768 px)`);
  await shot(page, `${name}-tablet`);
  await page.setViewportSize(size);
}

/// Runs `body(seen)` and prints what it saw as one JSON line; exits 1 with the reason on the
/// first failure.
export async function run(body) {
  const seen = {};
  const browser = await launch();
  try {
    await body(browser, seen);
    console.log(JSON.stringify(seen));
  } catch (error) {
    console.error(`${error.stack || error}\nsaw so far: ${JSON.stringify(seen)}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

export function expect(condition, what) {
  if (!condition) throw new Error(what);
}
