//! The HA controller as an operator meets it: real `tandem` processes heartbeating over real SSH
//! on loopback, `kill -9` of the Primary, the probes load balancers read, the guide's failback
//! procedure and the `failover` CLI set.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::node::{FAST, Links, Node, STATE_DEADLINE, describe, start_pair, wait_until};

fn millis(rfc3339: &str) -> i64 {
    let at = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A Primary and its Secondary, trusted both ways, HA enabled, the Secondary synced once.
fn pair(secondary_options: &[&str]) -> (Node, Node) {
    let mut a = Node::init("node-a");
    let mut b = Node::init("node-b");
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, &[], secondary_options);
    b.ok(&["failover", "sync", &a.endpoint()]);
    (a, b)
}

#[test]
fn the_standby_serves_probes_and_reads_and_refuses_devices_and_writes() {
    let (a, b) = pair(FAST);
    assert_eq!(
        a.get("/status/status.html"),
        (200, "MOBILEIRON-STATUS: OK\n".into())
    );
    assert_eq!(
        b.get("/hastatus.html"),
        (200, "MOBILEIRON-STATUS: OK (Mode: Standby)\n".into())
    );
    let (code, body) = b.get("/status/status.html");
    assert_eq!(code, 503);
    assert!(!body.contains("MOBILEIRON-STATUS: OK"), "{body}");
    // Table 3 task 3: the Standby's counts, read-only, equal the Primary's.
    for name in ["table-3-a", "table-3-b"] {
        let (code, body) = a.request(
            reqwest::Method::POST,
            "/api/v2/labels",
            Some(serde_json::json!({ "name": name })),
        );
        assert_eq!(code, 201, "{body}");
    }
    b.ok(&["failover", "sync", &a.endpoint()]);
    let count = |node: &Node, resource: &str| {
        let (code, body) = node.get(&format!("/api/v2/{resource}?limit=1"));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["totalCount"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(count(&a, "devices"), count(&b, "devices"));
    assert_eq!(count(&b, "labels"), count(&a, "labels"));
    assert!(count(&b, "labels") >= 2);
    let (code, body) = b.request(
        reqwest::Method::POST,
        "/api/v2/labels",
        Some(serde_json::json!({"name": "on-standby"})),
    );
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("Standby") && body.contains(&a.endpoint()),
        "{body}"
    );
    let (code, body) = b.request(
        reqwest::Method::POST,
        "/device/v1/enroll",
        Some(serde_json::json!({"pin": "123456"})),
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("served by the Active node"), "{body}");
    // Every heartbeat is in the HighAvailability log (Table 3 task 5).
    std::thread::sleep(Duration::from_millis(2_500));
    let heartbeats = b
        .ha_log()
        .into_iter()
        .filter(|(_, _, message)| message.starts_with("heartbeat to node-a: Primary Active"))
        .count();
    assert!(heartbeats >= 2, "{:?}", b.ha_log());
}

#[test]
fn kill_9_of_the_primary_promotes_the_secondary_and_the_old_primary_returns_not_available() {
    let (mut a, b) = pair(FAST);
    // A write on the Primary that the Secondary has before the failure.
    let (code, body) = a.request(
        reqwest::Method::POST,
        "/api/v2/labels",
        Some(serde_json::json!({"name": "before-failure"})),
    );
    assert_eq!(code, 201, "{body}");
    b.ok(&["failover", "sync", &a.endpoint()]);
    // The Fail Over Controls were set on the Secondary only: the Primary, which keeps its own
    // (defaults) once a failover makes it a Secondary, says so and gives the command to match.
    wait_until(
        || a.ok(&["ha", "status"]),
        || {
            a.ok(&["ha", "status"])
                .contains("WARNING: Fail Over Controls differ from node-b's")
        },
    );
    let text = a.ok(&["ha", "status"]);
    assert!(
        text.contains("here heartbeat every 10s × 3, re-check every 5s, 0 witness(es)"),
        "{text}"
    );
    a.kill_9();
    b.wait_for_state("Active");
    assert_eq!(
        b.get("/status/status.html"),
        (200, "MOBILEIRON-STATUS: OK\n".into())
    );
    let status = b.status();
    assert_eq!(status["controller"]["epoch"], 2, "{status:#}");
    // Detection after 3 consecutive failures, promotion right after it. From the node's own
    // log: the first failure to the promotion fits in (N − 1) × Re-check + 1 s.
    let log = b.ha_log();
    let first_failure = log
        .iter()
        .find(|(_, _, message)| message.starts_with("heartbeat 1 of 3"))
        .unwrap_or_else(|| panic!("{log:?}"));
    let promoted = log
        .iter()
        .find(|(_, _, message)| message.starts_with("promoted to Active in epoch 2"))
        .unwrap_or_else(|| panic!("{log:?}"));
    let detection_ms = millis(&promoted.0) - millis(&first_failure.0);
    assert!(
        detection_ms <= 2 * 1_000 + 1_000,
        "first failure to promotion took {detection_ms} ms: {log:?}"
    );
    assert!(
        log.iter()
            .any(|(_, level, message)| level == "ERROR" && message.starts_with("failure detected"))
    );

    // The promoted node takes writes in the new epoch.
    let (code, body) = b.request(
        reqwest::Method::POST,
        "/api/v2/labels",
        Some(serde_json::json!({"name": "after-failover"})),
    );
    assert_eq!(code, 201, "{body}");

    // Table 1 row 3: the old Primary comes back Not Available, fenced by epoch 2.
    a.serve();
    let status = a.wait_until_fenced();
    assert_eq!(status["controller"]["status"]["state"], "Not Available");
    let (code, body) = a.get("/status/status.html");
    assert_eq!(code, 503, "{body}");
    assert_eq!(a.get("/hastatus.html").0, 503);
    assert!(
        status["controller"]["fenced"]
            .as_str()
            .is_some_and(|reason| reason.contains("node-b is Active in epoch 2")),
        "{status:#}"
    );
    let (code, body) = a.request(
        reqwest::Method::POST,
        "/api/v2/labels",
        Some(serde_json::json!({"name": "on-fenced"})),
    );
    assert_eq!(code, 503, "{body}");

    // The guide's failback: sync the old Primary from the Active node, then swap roles. Making
    // it Primary while node-b still serves is refused (two Active nodes would take writes one of
    // them then loses to a divergence export); the refusal says what to do instead.
    a.ok(&["failover", "sync", &b.endpoint()]);
    let refused = a.cli(&["failover", "mode", "primary"]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("node-b is Active in epoch 2")
            && stderr.contains("tandem ha switchover")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(a.state(), "Not Available");
    // `failover mode secondary` needs --primary, which an old Primary lacks: the refusal, the
    // fence and `ha status` give the full command, with the Active node's address.
    let follow = format!(
        "`tandem ha configure --mode secondary --primary {}` (node-b, the Active node)",
        b.endpoint()
    );
    let refused = a.cli(&["failover", "mode", "secondary"]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--primary is not set") && stderr.contains(&follow),
        "{stderr}"
    );
    let text = a.ok(&["ha", "status"]);
    assert!(text.contains(&follow), "{text}");
    // As the refusal says: a Standby of node-b first, then a switchover (nothing lost).
    a.ok(&[
        "ha",
        "configure",
        "--mode",
        "secondary",
        "--primary",
        &b.endpoint(),
    ]);
    a.wait_for_state("Standby");
    let switched = a.ok(&["ha", "switchover", "--json"]);
    let switched: Value = serde_json::from_str(&switched).unwrap();
    assert_eq!(switched["epoch"], 3, "{switched:#}");
    b.wait_for_state("Standby");
    a.wait_for_state("Active");
    let (code, body) = a.get("/api/v2/labels?query=after-failover");
    assert_eq!(code, 200);
    assert!(body.contains("after-failover"), "{body}");
    // Repeating `mode primary` changes nothing.
    let again = a.ok(&["failover", "mode", "primary"]);
    assert!(again.contains("epoch 3"), "{again}");
    // No write was lost on the way: the two nodes hold the same data.
    b.ok(&["failover", "sync", &a.endpoint()]);
    b.ok(&["ha", "verify", &a.endpoint()]);
}

#[test]
fn keep_in_standby_detects_the_failure_but_does_not_promote() {
    let mut options = FAST.to_vec();
    options.extend_from_slice(&["--on-failure", "standby"]);
    let (mut a, b) = pair(&options);
    a.kill_9();
    let started = Instant::now();
    while !b
        .ha_log()
        .iter()
        .any(|(_, _, message)| message.starts_with("failure detected"))
    {
        assert!(started.elapsed() < STATE_DEADLINE, "{:?}", b.ha_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give it well past another round of heartbeats: still Standby.
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(b.state(), "Standby");
    assert_eq!(b.get("/status/status.html").0, 503);
    let notifications = {
        let conn = rusqlite::Connection::open(b.dir.join("node.db")).unwrap();
        let count: i64 = conn
            .query_row(
                "SELECT count(*) FROM local_log WHERE module = 'Notifications' \
                 AND message LIKE 'failureDetected:%'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        count
    };
    assert_eq!(notifications, 1);
}

#[test]
fn configuration_is_validated_and_the_failover_commands_need_a_running_node() {
    let a = Node::init("node-a");
    let output = a.cli(&["ha", "configure", "--heartbeat-failures", "0"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("heartbeatFailures = 0") && stderr.contains("between 1 and 100"),
        "{stderr}"
    );
    let output = a.cli(&["ha", "configure", "--run-every", "ten minutes"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a duration"));
    let output = a.cli(&["ha", "configure", "--enable", "--mode", "secondary"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--primary"));
    // Under the advised hour: saved, with a warning.
    let output = a.cli(&["ha", "configure", "--run-every", "15m"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("shorter than the advised 1h"));
    let output = a.cli(&["failover", "mode", "primary"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no node is running"));
    let output = a.cli(&["failover", "client-connection", "disable"]);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn client_connection_disable_refuses_new_device_connections_until_enabled() {
    let mut a = Node::init("node-a");
    a.serve();
    a.wait_for_state("Active");
    a.ok(&["failover", "client-connection", "disable"]);
    let (code, body) = a.request(
        reqwest::Method::POST,
        "/device/v1/enroll",
        Some(serde_json::json!({"pin": "123456"})),
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("client-connection enable"), "{body}");
    assert_eq!(a.status()["clientConnections"], "disabled");
    // Probes and the admin API are unaffected.
    assert_eq!(a.get("/status/status.html").0, 200);
    a.ok(&["failover", "client-connection", "enable"]);
    let (code, _) = a.request(
        reqwest::Method::POST,
        "/device/v1/enroll",
        Some(serde_json::json!({"pin": "123456"})),
    );
    assert_ne!(code, 503);
}

#[test]
fn switchover_under_a_write_load_loses_no_acknowledged_write() {
    let (a, b) = pair(FAST);
    let a = std::sync::Arc::new(a);
    let b = std::sync::Arc::new(b);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A client that writes to whichever node is Active, as a load balancer would route it,
    // and remembers every write acknowledged (201).
    let writer = {
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let mut refused = 0;
            let mut index = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let name = format!("load-{index}");
                let body = serde_json::json!({ "name": name });
                let mut done = false;
                for node in [&a, &b] {
                    let (code, _) =
                        node.request(reqwest::Method::POST, "/api/v2/labels", Some(body.clone()));
                    if code == 201 {
                        acknowledged.push(name.clone());
                        done = true;
                        break;
                    }
                }
                if !done {
                    refused += 1;
                }
                index += 1;
            }
            (acknowledged, refused)
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    let output = b.ok(&["ha", "switchover", "--json"]);
    let result: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(result["oldPrimaryDemoted"], true, "{result:#}");
    assert_eq!(result["epoch"], 2, "{result:#}");
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (acknowledged, _refused) = writer.join().unwrap();
    assert!(
        acknowledged.len() > 10,
        "the load ran: {}",
        acknowledged.len()
    );
    b.wait_for_state("Active");
    a.wait_for_state("Standby");
    assert_eq!(a.status()["config"]["mode"], "Secondary");
    // Every acknowledged write is on the new Active node.
    let mut names = std::collections::HashSet::new();
    loop {
        let (code, body) = b.get(&format!("/api/v2/labels?limit=100&offset={}", names.len()));
        assert_eq!(code, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let items = page["results"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        names.extend(
            items
                .iter()
                .filter_map(|label| label["name"].as_str().map(str::to_owned)),
        );
    }
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|name| !names.contains(*name))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // And the old Primary, now Standby, follows without divergence.
    a.ok(&["failover", "sync", &b.endpoint()]);
    a.ok(&["ha", "verify", &b.endpoint()]);
}

/// Configures `node` as an HA Secondary of `primary_endpoint` (which may be a proxy) with the
/// fast Fail Over Controls, plus `extra` options.
fn make_secondary(node: &Node, primary_endpoint: &str, extra: &[&str]) {
    let mut options = FAST.to_vec();
    options.extend_from_slice(extra);
    support::node::configure_secondary(node, primary_endpoint, &options);
}

#[test]
fn three_servers_the_dr_node_follows_the_main_secondary_and_promotes_only_when_main_is_gone() {
    // Main data center: A (Primary) and B (Secondary of A). DR: C, Secondary of B.
    let (mut a, mut b) = pair(FAST);
    let mut c = Node::init("node-c");
    c.trust(&b);
    b.trust(&c);
    make_secondary(&c, &b.endpoint(), &[]);
    c.serve();
    c.wait_for_state("Standby");
    c.ok(&["failover", "sync", &b.endpoint()]);

    // The main Primary dies: B takes over; C keeps following B and stays Standby.
    a.kill_9();
    b.wait_for_state("Active");
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(c.state(), "Standby", "{:#}", c.status());
    let (code, body) = b.request(
        reqwest::Method::POST,
        "/api/v2/labels",
        Some(serde_json::json!({"name": "written-on-b"})),
    );
    assert_eq!(code, 201, "{body}");
    c.ok(&["failover", "sync", &b.endpoint()]);

    // The whole main data center is gone: C promotes, above B's epoch.
    b.kill_9();
    c.wait_for_state("Active");
    let status = c.status();
    assert_eq!(status["controller"]["epoch"], 3, "{status:#}");
    let (code, body) = c.get("/api/v2/labels?query=written-on-b");
    assert_eq!(code, 200);
    assert!(body.contains("written-on-b"), "{body}");
}
