//! Strict input, cross-site requests, and log and file hygiene (issue 16, items 4, 6 and 7),
//! tried against a real node as a careless client and a hostile page would.

use crate::support::node::{Call, Node};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

/// `(status, body)` of one request as admin with exactly the given headers and body.
fn send(
    port: u16,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut call = Call::new(port, method, path).headers(headers);
    if let Some(body) = body {
        call = call.raw(body);
    }
    let reply = call.send().unwrap();
    let text = reply.text();
    (
        reply.status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// A body labelled with a near-miss content type, or none, is refused with 415 naming what was
/// sent (`application/jsonx` was taken as JSON); parameters on the real type are fine.
#[test]
fn only_application_json_is_read_as_json() {
    let mut node = Node::init("strict-json");
    node.serve();
    node.wait_for_state("Active");
    let label = r#"{"name":"typed"}"#;
    for (content_type, expected) in [
        (Some("application/jsonx"), 415),
        (Some("text/json"), 415),
        (None, 415),
        (Some("Application/JSON; charset=utf-8"), 201),
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|value| vec![("content-type", value), ("x-tandem-client", "tests")])
            .unwrap_or_else(|| vec![("x-tandem-client", "tests")]);
        let (status, body) = send(
            node.service_port,
            reqwest::Method::POST,
            "/api/v2/labels",
            &headers,
            Some(label),
        );
        assert_eq!(status, expected, "{content_type:?}: {body}");
        if expected == 415 {
            assert_eq!(code(&body), "unsupported_media_type", "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("application/json"), "{message}");
            if let Some(sent) = content_type {
                assert!(message.contains(sent), "names what was sent: {message}");
            }
        }
    }
}

/// The same key twice in one object (at any depth) is a 400 naming the key: before, the last one
/// silently won, so a proxy, a log reader and the node could each see a different request.
#[test]
fn a_duplicate_json_key_is_refused_and_named() {
    let mut node = Node::init("duplicate-keys");
    node.serve();
    node.wait_for_state("Active");
    let json = [("content-type", "application/json")];
    let (status, body) = send(
        node.service_port,
        reqwest::Method::POST,
        "/api/v2/labels",
        &json,
        Some(r#"{"name":"first","name":"second"}"#),
    );
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"name\" appears twice"), "{message}");
    assert!(
        !node.labels().contains("second") && !node.labels().contains("first"),
        "nothing was stored"
    );

    // HA configuration on System Manager: a duplicate could have switched the mode unseen.
    let (status, body) = send(
        node.sysmgr_port,
        reqwest::Method::PUT,
        "/api/v1/ha/config",
        &json,
        Some(r#"{"notifyEmail":["a@example.com"],"mode":"secondary","mode":"primary"}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"mode\" appears twice"),
        "{body}"
    );
}

/// A refused HA configuration answers like the admin API: 422 with every problem in `fields`
/// (field, value, problem), all at once; it was a 422 with only a message.
#[test]
fn ha_configuration_refusals_list_every_field() {
    let mut node = Node::init("ha-fields");
    node.serve();
    node.wait_for_state("Active");
    let (status, body) = send(
        node.sysmgr_port,
        reqwest::Method::PUT,
        "/api/v1/ha/config",
        &[("content-type", "application/json")],
        Some(r#"{"runEvery":"1s","heartbeatFailures":0}"#),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(code(&body), "invalid_input");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields array: {body}"))
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["runEvery", "heartbeatFailures"], "{body}");
    for field in body["error"]["fields"].as_array().unwrap() {
        assert!(field["value"].is_string() && field["problem"].is_string());
    }
    // Values of the wrong type are listed together too (serde stopped at the first).
    let (status, body) = send(
        node.sysmgr_port,
        reqwest::Method::PUT,
        "/api/v1/ha/config",
        &[("content-type", "application/json")],
        Some(r#"{"runEvery":"10 parsecs","heartbeatFailures":"three","notifyEmail":"x"}"#),
    );
    assert_eq!(status, 422, "{body}");
    let fields: Vec<(&str, &str)> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| {
            (
                field["field"].as_str().unwrap(),
                field["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("heartbeatFailures", "three"),
            ("notifyEmail", "x"),
            ("runEvery", "10 parsecs")
        ],
        "{body}"
    );
    // Nothing was saved.
    assert_ne!(node.status()["config"]["heartbeatFailures"], 0);
}

/// A page on another site cannot make an administrator's browser change anything: a POST
/// without a JSON body (a device wipe, the notification test) used to be served on remembered
/// Basic credentials. Scripts mark their writes with `X-Tandem-Client`; a request whose Origin
/// is another site is refused even with JSON.
#[test]
fn cross_site_writes_are_refused_and_scripts_and_the_portal_still_work() {
    let mut node = Node::init("cross-site");
    node.serve();
    node.wait_for_state("Active");
    let wipe = "/api/v2/devices/00000000-0000-4000-8000-000000000000/actions/wipe";
    let service = node.service_port;
    for headers in [
        vec![],
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![("content-type", "text/plain")],
        vec![
            ("origin", "https://attacker.example"),
            ("content-type", "application/json"),
        ],
    ] {
        let (status, body) = send(service, reqwest::Method::POST, wipe, &headers, Some(""));
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert_eq!(code(&body), "cross_site_refused", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("X-Tandem-Client"),
            "says how a script gets through: {body}"
        );
    }
    // The guard passes a marked script's request on: the device does not exist.
    let (status, body) = send(
        service,
        reqwest::Method::POST,
        wipe,
        &[("x-tandem-client", "curl")],
        None,
    );
    assert_eq!(status, 404, "{body}");
    // A page of this very listener (its own Origin) gets through too.
    let own = format!("https://127.0.0.1:{service}");
    let (status, body) = send(
        service,
        reqwest::Method::POST,
        wipe,
        &[("origin", own.as_str())],
        None,
    );
    assert_eq!(status, 404, "{body}");

    // System Manager: the notification test, the same way.
    let (status, body) = send(
        node.sysmgr_port,
        reqwest::Method::POST,
        "/api/v1/ha/notifications/test",
        &[],
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "cross_site_refused");
}

/// The text log on a file: no colour codes, no way for a client's input to start a line of its
/// own, and who changed the HA configuration from where. The database, its WAL and the keys are
/// readable by the node's user only.
#[test]
fn logs_are_plain_one_event_per_line_and_files_are_private() {
    let mut node = Node::init("hygiene");
    node.serve_env.push(("TANDEM_LOG".into(), "info".into()));
    node.serve();
    node.wait_for_state("Active");
    let json = [("content-type", "application/json")];
    // A value with a newline and a terminal escape reaches the log inside a refusal.
    let (status, body) = send(
        node.sysmgr_port,
        reqwest::Method::PUT,
        "/api/v1/ha/config",
        &json,
        Some(r#"{"smtpFrom":"x\nINFO forged line \u001b[2J"}"#),
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = send(
        node.sysmgr_port,
        reqwest::Method::PUT,
        "/api/v1/ha/config",
        &json,
        Some(r#"{"notifyOnFailure":false}"#),
    );
    assert_eq!(status, 200, "{body}");

    let log_path = node.dir.with_extension("stderr.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "no escape codes in a log file:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.starts_with("INFO forged"),
            "a client's input started a line:\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|line| line.contains("HA configuration change refused")
                && line.contains("forged")
                && line.contains("\\n")),
        "the refusal is logged on one line:\n{log}"
    );
    assert!(
        log.lines().any(
            |line| line.contains("HA configuration changed through System Manager")
                && line.contains("user=\"admin\"")
                && line.contains("source=127.0.0.1:")
                && line.contains("notifyOnFailure")
        ),
        "who changed the HA configuration, from where:\n{log}"
    );

    for file in [
        "replicated.db",
        "replicated.db-wal",
        "node.db",
        "node.db-wal",
    ] {
        let path = node.dir.join(file);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is {:o}", mode & 0o777);
    }
}
