//! The device endpoints (`/device/v1`) over real HTTPS with real client certificates: enrollment,
//! check-in, commands and policies; and what devices and load balancers see when the node is
//! Standby or its device gate is closed.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    ADMIN_PASSWORD, ADMIN_USER, Enrolled, TestNode, VALID_IMEI, assert_error, assert_invalid, id,
    text,
};
use reqwest::header::CACHE_CONTROL;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tandem_ha::State;

/// `(command, status)` of each command in a check-in answer.
fn commands(check_in: &Value) -> Vec<(String, String)> {
    check_in["commands"]
        .as_array()
        .unwrap_or_else(|| panic!("no commands in {check_in}"))
        .iter()
        .map(|command| {
            (
                text(command, "command").to_owned(),
                text(command, "status").to_owned(),
            )
        })
        .collect()
}

/// The ids of the policies or configurations in a check-in answer.
fn assigned_ids(check_in: &Value, kind: &str) -> Vec<i64> {
    check_in[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} in {check_in}"))
        .iter()
        .map(id)
        .collect()
}

#[tokio::test]
async fn enrollment_issues_an_identity_once() {
    let node = TestNode::start().await;
    let api = node.admin();
    api.create_user("jdoe@example.com").await;
    let registered = api.register_ios("jdoe@example.com", "SERIAL-1").await;
    let pin = text(&registered, "enrollmentPin");
    let anonymous = node.device_anonymous();

    let (status, enrolled) = anonymous
        .post(
            "/enroll",
            json!({
                "pin": pin,
                "udid": "00008110-000A1C2E3E08801E",
                "imei": VALID_IMEI,
                "osVersion": "17.5",
                "model": "iPhone 15",
                "manufacturer": "Apple",
                "clientVersion": "tandem-agent 1.0",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let device = &enrolled["device"];
    assert_eq!(device["uuid"], registered["uuid"]);
    assert_eq!(device["status"], "ACTIVE");
    assert_eq!(device["imei"], VALID_IMEI);
    assert_eq!(device["model"], "iPhone 15");
    assert_eq!(device["clientVersion"], "tandem-agent 1.0");
    assert_eq!(device["ipAddress"], "127.0.0.1");
    assert!(device["enrolledAt"].is_string(), "{device}");
    let identity = &enrolled["identity"];
    assert!(text(identity, "certificatePem").contains("BEGIN CERTIFICATE"));
    assert!(text(identity, "privateKeyPem").contains("PRIVATE KEY"));
    assert!(text(identity, "caCertificatePem").contains("BEGIN CERTIFICATE"));
    assert_ne!(identity["certificatePem"], identity["caCertificatePem"]);
    assert!(!text(identity, "notAfter").is_empty());
    let uuid = text(device, "uuid");
    assert_eq!(api.fetch(&format!("/devices/{uuid}")).await, *device);

    // The PIN is spent, and a made-up one never worked.
    let reused = anonymous.post("/enroll", json!({ "pin": pin })).await;
    assert_error(&reused, StatusCode::FORBIDDEN, "forbidden");
    let made_up = anonymous
        .post("/enroll", json!({ "pin": "AAAAAAAAAAAAAAAA" }))
        .await;
    assert_error(&made_up, StatusCode::FORBIDDEN, "forbidden");
    let events = api.fetch("/events?query=DEVICE_ENROLLED").await;
    assert_eq!(events["totalCount"], 1);
    assert_eq!(events["results"][0]["actor"], format!("device:{uuid}"));

    // Bad enrollments are refused before the PIN is looked at.
    let other = api.register_ios("jdoe@example.com", "SERIAL-2").await;
    let other_pin = text(&other, "enrollmentPin");
    for (body, field) in [
        (json!({ "pin": "" }), "pin"),
        (json!({ "pin": 1234 }), "pin"),
        (
            json!({ "pin": other_pin, "imei": "123456789012345" }),
            "imei",
        ),
        (json!({ "pin": other_pin, "udid": "not a udid" }), "udid"),
        (json!({ "pin": other_pin, "token": "x" }), "token"),
    ] {
        let answer = anonymous.post("/enroll", body.clone()).await;
        assert_eq!(
            answer.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.1
        );
        assert_invalid(&answer, field);
    }
    let malformed = anonymous
        .send_raw(Method::POST, "/enroll", "application/json", "{\"pin\":")
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "bad_request");
    let taken_imei = anonymous
        .post("/enroll", json!({ "pin": other_pin, "imei": VALID_IMEI }))
        .await;
    assert_error(&taken_imei, StatusCode::CONFLICT, "conflict");
    // None of that spent the second PIN.
    let second = node.enroll(other_pin).await;
    assert_eq!(second.uuid, text(&other, "uuid"));
    assert_ne!(second.certificate_pem, text(identity, "certificatePem"));
}

#[tokio::test]
async fn check_in_requires_the_identity_certificate() {
    let node = TestNode::start().await;
    let enrolled = node.enrolled_device("jdoe@example.com", "SERIAL-1").await;

    let anonymous = node.device_anonymous();
    assert_error(
        &anonymous.post("/checkin", json!({})).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &anonymous
            .post("/commands/1/result", json!({ "status": "ACKNOWLEDGED" }))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &anonymous.get("/policies/1").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    let device = node.device(&enrolled);
    let (status, reply) = device.post("/checkin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["deviceUuid"], enrolled.uuid.as_str());
    assert_eq!(reply["status"], "ACTIVE");
    assert_eq!(reply["commands"], json!([]));
    assert_eq!(reply["policies"], json!([]));
    assert_eq!(reply["configurations"], json!([]));

    // An identity from another CA, for the same UUID, fails the TLS handshake.
    let now = time::OffsetDateTime::now_utc();
    let stranger = tandem_crypto::CertificateAuthority::generate("Stranger CA", now)
        .expect("generate a CA")
        .issue_device_identity(&enrolled.uuid, now)
        .expect("issue an identity");
    let impostor = node.device(&Enrolled {
        certificate_pem: stranger.issued.certificate_pem,
        private_key_pem: stranger.issued.private_key_pem,
        ..enrolled.clone()
    });
    let refused = impostor
        .try_send(impostor.request(Method::POST, "/checkin").json(&json!({})))
        .await;
    assert!(
        refused.is_err(),
        "a foreign identity was served: {refused:?}"
    );

    // The check-in is validated and recorded.
    let bad = device
        .post(
            "/checkin",
            json!({ "apps": [{ "bundleId": "", "name": "A", "version": "1" }] }),
        )
        .await;
    assert_invalid(&bad, "apps[0].bundleId");
    assert_invalid(
        &device.post("/checkin", json!({ "battery": 5 })).await,
        "battery",
    );
    let (status, _) = device
        .post(
            "/checkin",
            json!({
                "osVersion": "17.6",
                "compliant": false,
                "apps": [{ "bundleId": "com.example.a", "name": "A", "version": "1.0" }],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let recorded = node
        .admin()
        .fetch(&format!("/devices/{}", enrolled.uuid))
        .await;
    assert_eq!(recorded["osVersion"], "17.6");
    assert_eq!(recorded["compliant"], false);
    assert!(recorded["lastCheckinAt"].is_string(), "{recorded}");
}

#[tokio::test]
async fn check_in_delivers_commands_and_what_labels_assign() {
    let node = TestNode::start().await;
    let api = node.admin();
    let enrolled = node.enrolled_device("jdoe@example.com", "SERIAL-1").await;
    let other = node.enrolled_device("jdoe@example.com", "SERIAL-2").await;
    let device = node.device(&enrolled);

    let label = api.create_label("Sales").await;
    api.apply_label(&label, &[&enrolled.uuid]).await;
    let policy = api
        .create(
            "/policies",
            json!({ "name": "Passcode", "type": "PASSCODE", "priority": 5, "payload": { "minLength": 6 } }),
        )
        .await;
    let configuration = api
        .create(
            "/configurations",
            json!({ "name": "Office Wi-Fi", "type": "WIFI", "payload": { "ssid": "office" } }),
        )
        .await;
    let unassigned = api
        .create(
            "/policies",
            json!({ "name": "Unassigned", "type": "PASSCODE" }),
        )
        .await;
    for path in [
        format!("/policies/{}/labels", id(&policy)),
        format!("/configurations/{}/labels", id(&configuration)),
    ] {
        let (status, body) = api.post(&path, json!({ "labelIds": [id(&label)] })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, lock) = api
        .post(
            &format!("/devices/{}/actions/lock", enrolled.uuid),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{lock}");

    let (status, reply) = device.post("/checkin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(commands(&reply), [("LOCK".to_owned(), "SENT".to_owned())]);
    assert_eq!(reply["commands"][0]["id"], lock["id"]);
    assert_eq!(assigned_ids(&reply, "policies"), [id(&policy)]);
    assert_eq!(reply["policies"][0]["version"], 1);
    assert_eq!(reply["policies"][0]["type"], "PASSCODE");
    assert_eq!(assigned_ids(&reply, "configurations"), [id(&configuration)]);
    let listed = api
        .fetch(&format!("/devices/{}/commands", enrolled.uuid))
        .await;
    assert_eq!(listed[0]["status"], "SENT");
    assert!(listed[0]["sentAt"].is_string(), "{listed}");

    // The device fetches what it was given, and nothing else.
    let (status, fetched) = device.get(&format!("/policies/{}", id(&policy))).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["payload"], json!({ "minLength": 6 }));
    let (status, fetched) = device
        .get(&format!("/policies/{}", id(&configuration)))
        .await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["payload"], json!({ "ssid": "office" }));
    for path in [
        format!("/policies/{}", id(&unassigned)),
        "/policies/9999".to_owned(),
        "/policies/abc".to_owned(),
    ] {
        assert_error(&device.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    }
    let other_device = node.device(&other);
    let (status, reply) = other_device.post("/checkin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["policies"], json!([]));
    assert_error(
        &other_device
            .get(&format!("/policies/{}", id(&policy)))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Another device cannot answer this device's command; a bad answer changes nothing.
    let result_path = format!("/commands/{}/result", id(&lock));
    let foreign = other_device
        .post(&result_path, json!({ "status": "ACKNOWLEDGED" }))
        .await;
    assert_error(&foreign, StatusCode::NOT_FOUND, "not_found");
    assert_invalid(
        &device.post(&result_path, json!({ "status": "SENT" })).await,
        "status",
    );
    assert_invalid(
        &device.post(&result_path, json!({ "status": "DONE" })).await,
        "status",
    );
    let (status, acknowledged) = device
        .post(
            &result_path,
            json!({ "status": "ACKNOWLEDGED", "result": "locked" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{acknowledged}");
    assert_eq!(acknowledged["status"], "ACKNOWLEDGED");
    assert_eq!(acknowledged["result"], "locked");
    assert!(acknowledged["completedAt"].is_string(), "{acknowledged}");
    let again = device
        .post(&result_path, json!({ "status": "ACKNOWLEDGED" }))
        .await;
    assert_error(&again, StatusCode::CONFLICT, "refused");

    // An updated policy shows its new version; answered commands are not sent again.
    let (status, _) = api
        .put(
            &format!("/policies/{}", id(&policy)),
            json!({ "name": "Passcode", "type": "PASSCODE", "payload": { "minLength": 8 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, reply) = device.post("/checkin", json!({})).await;
    assert_eq!(reply["commands"], json!([]));
    assert_eq!(reply["policies"][0]["version"], 2);
    let (_, fetched) = device.get(&format!("/policies/{}", id(&policy))).await;
    assert_eq!(fetched["payload"], json!({ "minLength": 8 }));

    // Taking the label away takes the policy away.
    let (status, _) = api
        .delete(&format!("/labels/{}/devices/{}", id(&label), enrolled.uuid))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, reply) = device.post("/checkin", json!({})).await;
    assert_eq!(reply["policies"], json!([]));
    assert_eq!(reply["configurations"], json!([]));
    assert_error(
        &device.get(&format!("/policies/{}", id(&policy))).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn an_acknowledged_retire_ends_management() {
    let node = TestNode::start().await;
    let api = node.admin();
    let enrolled = node.enrolled_device("jdoe@example.com", "SERIAL-1").await;
    let device = node.device(&enrolled);
    let path = format!("/devices/{}", enrolled.uuid);

    let (status, retire) = api.post(&format!("{path}/actions/retire"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retire}");
    let (status, reply) = device.post("/checkin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"], "RETIRE_PENDING");
    assert_eq!(commands(&reply), [("RETIRE".to_owned(), "SENT".to_owned())]);

    let (status, answered) = device
        .post(
            &format!("/commands/{}/result", id(&retire)),
            json!({ "status": "ACKNOWLEDGED" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(api.fetch(&path).await["status"], "RETIRED");
    let events = api.fetch("/events?query=DEVICE_RETIRE_ACKNOWLEDGED").await;
    assert_eq!(events["totalCount"], 1);

    // The identity is revoked: the same certificate gets nothing more.
    assert_error(
        &device.post("/checkin", json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &device.get("/policies/1").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, _) = api.post(&format!("{path}/actions/lock"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A retired device keeps its serial for history, but no longer claims it.
    let successor = api.register_ios("jdoe@example.com", "SERIAL-1").await;
    assert_eq!(successor["status"], "PENDING");
    assert_eq!(api.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_error(
        &device.post("/checkin", json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
}

#[tokio::test]
async fn a_wipe_answered_with_an_error_can_be_retried() {
    let node = TestNode::start().await;
    let api = node.admin();
    let enrolled = node.enrolled_device("jdoe@example.com", "SERIAL-1").await;
    let device = node.device(&enrolled);
    let path = format!("/devices/{}", enrolled.uuid);

    let (_, wipe) = api.post(&format!("{path}/actions/wipe"), json!({})).await;
    let (status, answered) = device
        .post(
            &format!("/commands/{}/result", id(&wipe)),
            json!({ "status": "ERROR", "result": "user declined" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered["status"], "ERROR");
    assert_eq!(api.fetch(&path).await["status"], "WIPE_PENDING");
    let (status, reply) = device.post("/checkin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["commands"], json!([]));

    // The device stays WIPE_PENDING after the ERROR answer, but no wipe is open any more, so the
    // administrator can try again.
    let (status, retry) = api.post(&format!("{path}/actions/wipe"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    let (status, answered) = device
        .post(
            &format!("/commands/{}/result", id(&retry)),
            json!({ "status": "ACKNOWLEDGED" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(api.fetch(&path).await["status"], "WIPED");
    assert_error(
        &device.post("/checkin", json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
}

#[tokio::test]
async fn probes_report_an_active_node() {
    let node = TestNode::start().await;
    let root = node.service_root();
    let status = root
        .send(root.request(Method::GET, "/status/status.html"))
        .await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.text(), "MOBILEIRON-STATUS: OK\n");
    assert_eq!(status.header(CACHE_CONTROL.as_str()), Some("no-store"));
    let ha = root.send(root.request(Method::GET, "/hastatus.html")).await;
    assert_eq!(ha.status, StatusCode::OK);
    assert_eq!(ha.text(), "MOBILEIRON-STATUS: OK (Mode: Primary)\n");
}

#[tokio::test]
async fn a_standby_node_serves_admin_reads_only_and_no_devices() {
    let node = TestNode::start().await;
    let api = node.admin();
    let enrolled = node.enrolled_device("jdoe@example.com", "SERIAL-1").await;
    let pending = api.register_ios("jdoe@example.com", "SERIAL-2").await;
    let device = node.device(&enrolled);
    let root = node.service_root();

    node.set_state(State::Standby);

    let probe = root
        .send(root.request(Method::GET, "/status/status.html"))
        .await;
    assert_eq!(probe.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !probe.text().contains("MOBILEIRON-STATUS: OK"),
        "{}",
        probe.text()
    );
    let ha = root.send(root.request(Method::GET, "/hastatus.html")).await;
    assert_eq!(ha.status, StatusCode::OK);
    assert_eq!(ha.text(), "MOBILEIRON-STATUS: OK (Mode: Standby)\n");

    // Reads work, on the admin client's existing connection and on new ones.
    assert_eq!(api.device_count().await, 2);
    let ping = api.fetch("/ping").await;
    assert_eq!(ping["state"], "Standby");
    let fresh = node.api_as(Some((ADMIN_USER, ADMIN_PASSWORD)));
    assert_eq!(fresh.total_count("/users").await, 1);

    let uuid = &enrolled.uuid;
    let writes = [
        api.post("/users", json!({ "principal": "new@example.com" }))
            .await,
        api.put("/settings/k", json!({ "value": 1 })).await,
        api.put(&format!("/devices/{uuid}"), json!({ "compliant": false }))
            .await,
        api.post(&format!("/devices/{uuid}/actions/lock"), json!({}))
            .await,
        api.delete(&format!("/devices/{}", text(&pending, "uuid")))
            .await,
        api.send_raw(Method::PUT, "/apps/1/file", "application/octet-stream", "x")
            .await,
    ];
    for answer in &writes {
        assert_error(answer, StatusCode::SERVICE_UNAVAILABLE, "read_only");
    }
    assert_eq!(fresh.total_count("/users").await, 1);
    assert_eq!(api.device_count().await, 2);
    assert_eq!(
        fresh.fetch(&format!("/devices/{uuid}")).await["compliant"],
        true
    );

    // Devices are turned away, enrolled or not.
    assert_error(
        &device.post("/checkin", json!({})).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_active",
    );
    let enroll = node
        .device_anonymous()
        .post("/enroll", json!({ "pin": text(&pending, "enrollmentPin") }))
        .await;
    assert_error(&enroll, StatusCode::SERVICE_UNAVAILABLE, "not_active");

    // Not Available: neither probe passes.
    node.set_state(State::NotAvailable);
    for path in ["/status/status.html", "/hastatus.html"] {
        let probe = root.send(root.request(Method::GET, path)).await;
        assert_eq!(probe.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(!probe.text().contains("MOBILEIRON-STATUS: OK"), "{path}");
    }

    // Active again: everything is served, and the refused enrollment did not spend the PIN.
    node.set_state(State::Active);
    let probe = root
        .send(root.request(Method::GET, "/status/status.html"))
        .await;
    assert_eq!(probe.text(), "MOBILEIRON-STATUS: OK\n");
    api.create_user("new@example.com").await;
    assert_eq!(device.post("/checkin", json!({})).await.0, StatusCode::OK);
    node.enroll(text(&pending, "enrollmentPin")).await;
}

#[tokio::test]
async fn a_closed_device_gate_refuses_new_connections_only() {
    let node = TestNode::start().await;
    let enrolled = node.enrolled_device("jdoe@example.com", "SERIAL-1").await;
    let pending = node
        .admin()
        .register_ios("jdoe@example.com", "SERIAL-2")
        .await;

    // A device client that keeps its one connection, and counts the connections it opens.
    let connections_opened = Arc::new(AtomicUsize::new(0));
    let counter = connections_opened.clone();
    let keep_alive = node.device_with(
        node.client_builder()
            .identity(enrolled.identity())
            .pool_max_idle_per_host(1)
            .connector_layer(tower::util::MapRequestLayer::new(move |request| {
                counter.fetch_add(1, Ordering::SeqCst);
                request
            })),
    );
    let (status, reply) = keep_alive.post("/checkin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(connections_opened.load(Ordering::SeqCst), 1);

    node.device_gate().set_open(false);

    // The connection opened before the gate closed finishes its work.
    let (status, reply) = keep_alive.post("/checkin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        connections_opened.load(Ordering::SeqCst),
        1,
        "the second check-in did not reuse the open connection"
    );

    // A new connection is refused, for check-in and enrollment alike.
    let refused = node.device(&enrolled).post("/checkin", json!({})).await;
    assert_error(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "client_connections_disabled",
    );
    let enroll = node
        .device_anonymous()
        .post("/enroll", json!({ "pin": text(&pending, "enrollmentPin") }))
        .await;
    assert_error(
        &enroll,
        StatusCode::SERVICE_UNAVAILABLE,
        "client_connections_disabled",
    );
    // The gate is for devices: administrators and probes still get in on new connections.
    let fresh_admin = node.api_as(Some((ADMIN_USER, ADMIN_PASSWORD)));
    assert_eq!(fresh_admin.device_count().await, 2);
    let probe = node.service_root().get("/status/status.html").await;
    assert_eq!(probe.0, StatusCode::OK);

    node.device_gate().set_open(true);
    let (status, reply) = node.device(&enrolled).post("/checkin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    node.enroll(text(&pending, "enrollmentPin")).await;
}

// A required field that serde itself enforces is named by its own name, not as `body`.
#[tokio::test]
async fn a_missing_required_device_field_is_named() {
    let node = TestNode::start().await;
    let enrolled = node.enrolled_device("jdoe@example.com", "SERIAL-1").await;
    let (_, lock) = node
        .admin()
        .post(
            &format!("/devices/{}/actions/lock", enrolled.uuid),
            json!({}),
        )
        .await;
    let answer = node.device_anonymous().post("/enroll", json!({})).await;
    assert_invalid(&answer, "pin");
    let path = format!("/commands/{}/result", id(&lock));
    let answer = node.device(&enrolled).post(&path, json!({})).await;
    assert_invalid(&answer, "status");
}
