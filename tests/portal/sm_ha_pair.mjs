// A Primary and its Secondary in a real browser (tests/portal/sm_ha.rs starts the pair): the
// Primary's HA Configuration shows HA Status with the Secondary following it, the Secondary's
// shows Node Status with its Primary and heartbeat, and both Cluster pages list the other node.
// Prints one JSON line of what it saw.
import { run, context, login, inspect, expect, env } from './lib.mjs';

const primary = env('TANDEM_PRIMARY_URL');
const secondary = env('TANDEM_SECONDARY_URL');
const password = env('TANDEM_PORTAL_PASSWORD');
const primaryName = env('TANDEM_PRIMARY_NAME');
const secondaryName = env('TANDEM_SECONDARY_NAME');

async function section(page, heading) {
  const region = page.getByRole('region', { name: heading });
  await region.waitFor();
  return (await region.innerText()).trim();
}

run(async (browser, seen) => {
  const onPrimary = await (await context(browser)).newPage();
  onPrimary.setDefaultTimeout(15_000);
  await login(onPrimary, primary, 'admin', password, '/ha/config');
  seen.haStatus = await section(onPrimary, 'HA Status');
  expect(seen.haStatus.includes(secondaryName) && seen.haStatus.includes('Standby'),
    "the Primary's HA Status shows its Secondary, Standby");
  expect(!(await onPrimary.locator('#f-primary').isVisible()), 'a Primary shows no Primary field');
  await inspect(onPrimary, 'ha-status-primary');

  const onSecondary = await (await context(browser)).newPage();
  onSecondary.setDefaultTimeout(15_000);
  await login(onSecondary, secondary, 'admin', password, '/ha/config');
  seen.nodeStatus = await section(onSecondary, 'Node Status');
  expect(seen.nodeStatus.includes(primaryName) && seen.nodeStatus.includes('Last heartbeat answered'),
    "the Secondary's Node Status shows its Primary and the heartbeat");
  expect(await onSecondary.locator('#f-primary').isVisible(), 'a Secondary shows its Primary field');
  await inspect(onSecondary, 'node-status-secondary');

  // Making the Secondary Active while its Primary is: refused for one Active node, with the
  // reason and the force checkbox explained; nothing saved.
  await onSecondary.locator('#f-nodeStatus').selectOption('Active');
  await onSecondary.getByRole('button', { name: 'Save and Apply' }).click();
  await onSecondary.locator('#refused').waitFor();
  seen.oneActiveRefusal = (await onSecondary.locator('#refused').innerText()).trim();
  expect(seen.oneActiveRefusal.includes('Refused to keep one Active node') && seen.oneActiveRefusal.includes(primaryName),
    'the refusal names the Active node');
  expect(await onSecondary.getByLabel('Force this role change').isVisible(), 'the force checkbox is offered');
  await inspect(onSecondary, 'ha-config-one-active-refused');

  for (const [page, other, name] of [[onPrimary, secondaryName, 'primary'], [onSecondary, primaryName, 'secondary']]) {
    await page.getByRole('link', { name: 'Cluster' }).first().click();
    await page.waitForURL(/\/ha\/cluster$/);
    const nodes = (await section(page, 'Nodes'));
    seen[`cluster_${name}`] = nodes;
    expect(nodes.includes(other) && nodes.includes('(this node)'), `the ${name}'s Cluster lists both nodes`);
    await inspect(page, `cluster-${name}`);
  }
  await onPrimary.goto(`${primary}/`);
  seen.overviewPrimary = (await onPrimary.locator('main').innerText()).includes(secondaryName);
  expect(seen.overviewPrimary, "the Primary's Overview names its Secondary");
});
