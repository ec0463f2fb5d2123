//! The guide's test and validation plan (Table 3), automated on a real Primary, a real Secondary
//! and a real traffic controller (`tandem lb`) in front of them:
//! - task 1: the two nodes reach each other (Test Connection both ways);
//! - task 2: a manual sync (Run Sync Now) succeeds and Sync History is clean;
//! - task 3: the Standby's device count equals the Primary's, the devices having enrolled through
//!   the traffic controller;
//! - task 5: the Secondary's heartbeats are in its HighAvailability log.
//!
//! Task 4 (notification delivery) waits for e-mail delivery; notifications are recorded in the
//! node-local `Notifications` log today.

mod support;

use serde_json::Value;
use support::lb::Lb;
use support::node::{FAST, Links, Node, start_pair, try_https, wait_until};

/// A request through the traffic controller's device port, as admin.
fn through(lb: &Lb, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let (code, text) = try_https(lb.device_port, method, path, Some(body))
        .unwrap_or_else(|error| panic!("{path} through the traffic controller: {error}"));
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn device_count(node: &Node) -> i64 {
    let (code, body) = node.get("/api/v2/devices?limit=1");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["totalCount"]
        .as_i64()
        .unwrap_or(-1)
}

#[test]
fn table_3_tasks_1_2_3_and_5_on_a_primary_a_secondary_and_a_traffic_controller() {
    const DEVICES: usize = 5;
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, &[], FAST);
    lb.wait_until_active("main-primary");

    // Task 1: connectivity both ways.
    for (from, to) in [(&b, &a), (&a, &b)] {
        let answer = from.ok(&["ha", "test-connection", &to.endpoint()]);
        assert!(answer.contains("Test was successful"), "{answer}");
    }

    // Devices enroll through the traffic controller (registered by an admin, enrolled with the
    // registration's PIN, as a device does).
    let (code, body) = through(
        &lb,
        reqwest::Method::POST,
        "/api/v2/users",
        serde_json::json!({ "principal": "table-3-user" }),
    );
    assert_eq!(code, 201, "{body}");
    for index in 0..DEVICES {
        let (code, registered) = through(
            &lb,
            reqwest::Method::POST,
            "/api/v2/devices",
            serde_json::json!({
                "platform": "iOS",
                "serial": format!("TABLE3-{index:03}"),
                "userPrincipal": "table-3-user",
                "model": "iPhone16,1",
                "osVersion": "18.0",
            }),
        );
        assert_eq!(code, 201, "{registered}");
        let pin = registered["enrollmentPin"].as_str().unwrap_or_default();
        let (code, enrolled) = through(
            &lb,
            reqwest::Method::POST,
            "/device/v1/enroll",
            serde_json::json!({ "pin": pin, "osVersion": "18.1" }),
        );
        assert!(matches!(code, 200 | 201), "{code} {enrolled}");
    }

    // Task 2: Run Sync Now, and a clean Sync History.
    let summary = b.ok(&["failover", "sync", &a.endpoint()]);
    assert!(summary.contains("sync"), "{summary}");
    let history: Value = serde_json::from_str(&b.ok(&["ha", "history", "--json"])).unwrap();
    let rows = history.as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty(), "{history:#}");
    assert!(
        rows.iter().all(|row| row["result"] == "succeeded"),
        "Sync History is not clean: {history:#}"
    );

    // Task 3: the Standby's device count equals the Primary's.
    assert_eq!(device_count(&a), DEVICES as i64);
    assert_eq!(device_count(&b), device_count(&a));

    // Task 5: the heartbeats are in the Secondary's HighAvailability log.
    wait_until(
        || format!("{:?}", b.ha_log()),
        || {
            b.ha_log()
                .iter()
                .filter(|(_, _, message)| {
                    message.starts_with("heartbeat to node-a: Primary Active")
                })
                .count()
                >= 2
        },
    );
}
