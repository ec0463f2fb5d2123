//! The System Manager portal in a real browser: `tests/portal/ha_config.mjs` drives Debian's
//! Chromium (headless, through npm's `playwright-core`) against a running `tandem serve`, and
//! this test checks from the CLI that what the page saved is what the node stored, and that the
//! refused inputs left it unchanged.
//!
//! Needs `node`, Debian's `chromium` and `tests/portal/node_modules` (`npm ci` there). Without
//! them the test prints why it is skipped, or fails when `TANDEM_REQUIRE_ALL=1` (as under
//! `scripts/test`, which installs them).

mod support;

use std::path::Path;
use std::process::Command;
use support::node::{Node, PASSWORD, describe};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/portal");
const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether the browser, Node.js and playwright-core are here; prints why not otherwise.
fn browser_available() -> bool {
    let node = Command::new("node").arg("--version").output();
    let missing = if !Path::new(CHROMIUM).exists() {
        Some((
            "chromium",
            format!("{CHROMIUM} is missing"),
            "apt-get install chromium",
        ))
    } else if !node.is_ok_and(|output| output.status.success()) {
        Some((
            "node",
            "node does not run".to_owned(),
            "apt-get install nodejs npm",
        ))
    } else if !Path::new(SCRIPTS)
        .join("node_modules/playwright-core")
        .exists()
    {
        Some((
            "playwright-core",
            "tests/portal/node_modules has no playwright-core".to_owned(),
            "npm ci --prefix tests/portal",
        ))
    } else {
        None
    };
    match missing {
        Some((tool, why, install)) => {
            support::skip_without(tool, &why, install);
            false
        }
        None => true,
    }
}

#[test]
fn the_ha_configuration_page_saves_replication_settings_and_refuses_bad_input_by_name() {
    if !browser_available() {
        return;
    }
    let mut node = Node::init("portal-node");
    node.serve();
    let output = Command::new("node")
        .arg(Path::new(SCRIPTS).join("ha_config.mjs"))
        .env(
            "TANDEM_PORTAL_URL",
            format!("https://127.0.0.1:{}", node.sysmgr_port),
        )
        .env("TANDEM_PORTAL_PASSWORD", PASSWORD)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the browser test failed: {}",
        describe(&output)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("the browser saw: {seen:#}");

    // What the page saved is what the node holds, beside the other operator's Run Every; the
    // refused saves changed nothing (the heartbeat count is the default, and replication
    // continuous, not the synchronous the refused forms also asked for).
    let config = &node.status()["config"];
    assert_eq!(config["replication"], "continuous", "{config:#}");
    assert_eq!(config["lagBound"], "2s", "{config:#}");
    assert_eq!(config["onBehind"], "promote", "{config:#}");
    assert_eq!(config["runEvery"], "2h", "{config:#}");
    assert_eq!(config["heartbeatFailures"], 3, "{config:#}");
    let refusal = seen["refused_runEvery"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("must be") || refusal.contains("not a duration"),
        "{refusal}"
    );
}
