//! The consoles in a real browser: scripts in `tests/portal/*.mjs` drive Debian's Chromium
//! (headless, through npm's `playwright-core`) against running nodes, check every window's
//! accessibility with axe-core, and save screenshots of every window in
//! `target/portal-screenshots/` (a test artifact). The Rust side starts the nodes, then checks
//! from the CLI and the API that what the pages did is what the nodes hold.
//!
//! Needs `node`, Debian's `chromium` and `tests/portal/node_modules` (`npm ci` there). Without
//! them each test prints why it is skipped, or fails when `TANDEM_REQUIRE_ALL=1` (as under
//! `scripts/test`, which installs them).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "portal/admin.rs"]
mod admin;
#[path = "portal/logs.rs"]
mod logs;
#[path = "portal/sm_ha.rs"]
mod sm_ha;
#[path = "portal/sm_sync.rs"]
mod sm_sync;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::node::describe;

pub const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/portal");
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where the browser scripts save their screenshots.
pub fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/portal-screenshots")
}

/// Whether the browser, Node.js, playwright-core and axe-core are here; prints why not
/// otherwise.
pub fn browser_available() -> bool {
    let node = Command::new("node").arg("--version").output();
    let modules = Path::new(SCRIPTS).join("node_modules");
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
    } else if !modules.join("playwright-core").exists() || !modules.join("axe-core").exists() {
        Some((
            "playwright-core",
            "tests/portal/node_modules lacks playwright-core or axe-core".to_owned(),
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

/// Runs `tests/portal/<script>` with `env` (and CHROMIUM, TANDEM_SCREENSHOTS) and returns the
/// JSON line it printed of what it saw; panics with its output when it fails.
pub fn run_script(script: &str, env: &[(&str, String)]) -> serde_json::Value {
    let output = Command::new("node")
        .arg(Path::new(SCRIPTS).join(script))
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .env("CHROMIUM", CHROMIUM)
        .env("TANDEM_SCREENSHOTS", screenshots())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the browser script {script} failed: {}",
        describe(&output)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("{script} printed no JSON ({error}): {}", describe(&output))
    });
    eprintln!("{script} saw: {seen:#}");
    seen
}
