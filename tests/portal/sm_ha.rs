//! The System Manager's HA windows in a browser.

use super::{browser_available, run_script};
use crate::support::node::{Node, PASSWORD};

#[test]
fn the_ha_configuration_page_saves_replication_settings_and_refuses_bad_input_by_name() {
    if !browser_available() {
        return;
    }
    let mut node = Node::init("portal-node");
    node.serve();
    let seen = run_script(
        "sm_ha_config.mjs",
        &[
            (
                "TANDEM_PORTAL_URL",
                format!("https://127.0.0.1:{}", node.sysmgr_port),
            ),
            ("TANDEM_PORTAL_PASSWORD", PASSWORD.to_owned()),
        ],
    );

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
