//! Manage Trusted Hosts, Run Sync Now / Sync History and Local Users in a browser (guide:
//! Table 3 tasks 1 and 2), against real nodes; what the pages did is checked through the CLI.

use super::{browser_available, run_script};
use crate::support::node::{Node, PASSWORD, configure_secondary, wait_until};
use serde_json::Value;

fn portal(node: &Node) -> String {
    format!("https://127.0.0.1:{}", node.sysmgr_port)
}

/// `(endpoint, fingerprint)` of every trusted host of `node` (`tandem ha trusted-hosts list`).
fn trusted_hosts(node: &Node) -> Vec<(String, String)> {
    let listed: Value =
        serde_json::from_str(&node.ok(&["ha", "trusted-hosts", "list", "--json"])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|host| {
            (
                format!("{}:{}", host["host"].as_str().unwrap(), host["port"]),
                host["fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn keys_exchanged_in_the_browser_connect_both_ways_and_run_sync_now_fills_sync_history() {
    if !browser_available() {
        return;
    }
    let (mut a, mut b) = (Node::init("portal-a"), Node::init("portal-b"));
    a.serve();
    b.serve();
    let pair = [
        ("TANDEM_A_URL", portal(&a)),
        ("TANDEM_B_URL", portal(&b)),
        ("TANDEM_A_SSH", a.endpoint()),
        ("TANDEM_B_SSH", b.endpoint()),
        ("TANDEM_PORTAL_PASSWORD", PASSWORD.to_owned()),
    ];
    let seen = run_script("sm_sync_trust.mjs", &pair);

    // Each node trusts exactly the other, with the key its page showed; the refused input and
    // the removed hosts left nothing behind.
    let a_fingerprint = seen["aFingerprint"].as_str().unwrap();
    let b_fingerprint = seen["bFingerprint"].as_str().unwrap();
    assert_eq!(
        trusted_hosts(&b),
        [(a.endpoint(), a_fingerprint.to_owned())]
    );
    assert_eq!(
        trusted_hosts(&a),
        [(b.endpoint(), b_fingerprint.to_owned())]
    );
    assert!(
        a.ok(&["ha", "local-key"])
            .contains(&a.status()["node"].as_str().unwrap().to_owned()),
        "the CLI's local key names the node"
    );

    // B becomes A's Secondary (the HA Configuration window is another test's), then Run Sync
    // Now on B's page.
    a.ok(&["ha", "configure", "--enable", "--mode", "primary"]);
    configure_secondary(&b, &a.endpoint(), &[]);
    a.wait_for_state("Active");
    b.wait_for_state("Standby");
    let seen = run_script("sm_sync_run.mjs", &pair);

    // Last Sync Status is what `tandem ha history` holds newest, and the manual sync is there.
    let history = b.history();
    let newest = &history[0];
    let last = &seen["last"];
    assert_eq!(last["result"], newest["result"], "{newest:#}");
    assert_eq!(last["kind"], newest["kind"].as_str().unwrap_or("-"));
    assert_eq!(last["entries"], newest["entries"].to_string());
    assert_eq!(last["bytes"], newest["bytes"].to_string());
    assert_eq!(last["started"], newest["startedAt"]);
    assert!(
        history
            .iter()
            .any(|row| row["trigger"] == "manual" && row["result"] == "succeeded"),
        "{history:#?}"
    );
    // Sync History pages: 20 newest on the first, the rest after Older, as the CLI lists them.
    for _ in 0..20 {
        b.ok(&["failover", "sync", &a.endpoint()]);
    }
    let seen = run_script("sm_sync_pages.mjs", &pair);
    let history: Vec<Value> =
        serde_json::from_str(&b.ok(&["ha", "history", "--json", "--limit", "100"])).unwrap();
    assert!(history.len() > 20, "{history:#?}");
    let started: Vec<Value> = history.iter().map(|row| row["startedAt"].clone()).collect();
    let shown = [seen["first"].clone(), seen["second"].clone()];
    assert_eq!(shown[0].as_array().unwrap(), &started[..20]);
    assert_eq!(shown[1].as_array().unwrap(), &started[20..]);
    assert_eq!(seen["back"], seen["first"]);

    // The sync brought A's data: B's position caught up with A's.
    wait_until(
        || format!("A {:#}\nB {:#}", a.status(), b.status()),
        || b.status()["position"]["headSeq"] == a.status()["position"]["headSeq"],
    );
}

#[test]
fn local_users_are_added_changed_and_removed_in_the_browser_with_weak_passwords_refused() {
    if !browser_available() {
        return;
    }
    let mut node = Node::init("portal-users");
    node.serve();
    let seen = run_script(
        "sm_sync_users.mjs",
        &[
            ("TANDEM_PORTAL_URL", portal(&node)),
            ("TANDEM_PORTAL_PASSWORD", PASSWORD.to_owned()),
        ],
    );
    assert!(
        seen["weak"].as_str().unwrap().contains("common"),
        "{seen:#}"
    );
    // The node holds what the page did: operator2 came and went, admin stayed; each change
    // left its audit event.
    let listed: Value =
        serde_json::from_str(&node.ok(&["users", "list", "--system-manager", "--json"])).unwrap();
    let names: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin"]);
    let (code, events) = node.get("/api/v2/events?limit=50");
    assert_eq!(code, 200, "{events}");
    for kind in [
        "ACCOUNT_ADDED",
        "ACCOUNT_PASSWORD_CHANGED",
        "ACCOUNT_REMOVED",
    ] {
        assert!(events.contains(kind), "{kind} missing: {events}");
    }
}
