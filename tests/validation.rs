//! The guide's test and validation plan (Table 3), automated on a real Primary, a real Secondary
//! and a real traffic controller (`tandem lb`) in front of them:
//! - task 1: the two nodes reach each other (Test Connection both ways);
//! - task 2: a manual sync (Run Sync Now) succeeds and Sync History is clean;
//! - task 3: the Standby's device count equals the Primary's, the devices having enrolled through
//!   the traffic controller;
//! - task 4: the Secondary's Notification Settings Test sends an e-mail, through a real SMTP
//!   server (aiosmtpd); beyond the guide, the failover's own notifications arrive the same way;
//! - task 5: the Secondary's heartbeats are in its HighAvailability log.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::lb::Lb;
use support::node::{FAST, Links, Node, start_pair, try_https, wait_until};
use support::smtp::SmtpServer;

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

#[test]
fn table_3_task_4_the_secondary_e_mails_a_test_and_its_failover() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let relay = smtp.relay();
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    let mut secondary = FAST.to_vec();
    secondary.extend([
        "--notify-email",
        "ops@example.com",
        "--notify-email",
        "oncall@example.com",
        "--smtp-relay",
        &relay,
        "--smtp-security",
        "none",
        "--smtp-from",
        "tandem-ha@example.com",
    ]);
    start_pair(&mut a, &mut b, &links, &[], &secondary);

    // Task 4: on the Secondary, Notification Settings, Test.
    let answer = b.ok(&["ha", "test-notification"]);
    assert!(
        answer.contains("Test e-mail sent to ops@example.com, oncall@example.com"),
        "{answer}"
    );
    let test = smtp.wait_for(&["Subject: [Tandem HA] node-b: test notification"]);
    for header in [
        "From: tandem-ha@example.com",
        "X-RcptTo: ops@example.com, oncall@example.com",
        "State:  Standby",
    ] {
        assert!(test.contains(header), "{header} missing in:\n{test}");
    }

    // The same through the System Manager API.
    let (code, body) = support::node::https(
        b.sysmgr_port,
        reqwest::Method::POST,
        "/api/v1/ha/notifications/test",
        None,
    );
    assert_eq!(code, 200, "{body}");
    let tests = || {
        smtp.messages()
            .iter()
            .filter(|message| message.contains("node-b: test notification"))
            .count()
    };
    wait_until(|| format!("{} test e-mails", tests()), || tests() == 2);

    // A relay that does not answer: the Test says so, with the relay, and exits 1.
    let closed = format!("127.0.0.1:{}", support::free_port());
    b.ok(&["ha", "configure", "--smtp-relay", &closed]);
    let output = b.cli(&["ha", "test-notification"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the SMTP relay {closed}")),
        "{stderr}"
    );
    b.ok(&["ha", "configure", "--smtp-relay", &relay]);

    // Failure / this server becomes primary: the Primary dies, the Secondary takes over and
    // says so by e-mail, with what it detected.
    let primary_at = a.endpoint();
    a.kill_9();
    b.wait_for_state("Active");
    smtp.wait_for(&[
        "Subject: [Tandem HA] node-b: the node it replicates from stopped answering",
        &format!("{primary_at} missed 3 consecutive heartbeats"),
    ]);
    let promoted =
        smtp.wait_for(&["Subject: [Tandem HA] node-b: this server became the Active node"]);
    assert!(promoted.contains("State:  Active"), "{promoted}");
    // Each delivery is recorded beside the notification itself.
    let log = b.log("Notifications");
    assert!(
        log.iter()
            .any(|(_, _, message)| message.starts_with("e-mailed to ops@example.com")),
        "{log:?}"
    );
}
