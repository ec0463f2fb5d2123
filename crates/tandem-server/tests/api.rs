//! The admin REST API (`/api/v2`) and the System Manager listener over real HTTPS, against a
//! real node's SQLite files: every resource's round trip, bad input, authentication and the
//! error shape.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    ADMIN_PASSWORD, ADMIN_USER, NODE_NAME, TestNode, VALID_IMEI, assert_error, assert_invalid, id,
    results, sha256_hex, text,
};
use reqwest::header::{CONTENT_TYPE, ETAG, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn kinds(events: &Value) -> Vec<String> {
    results(events)
        .iter()
        .map(|event| text(event, "kind").to_owned())
        .collect()
}

#[tokio::test]
async fn users_round_trip() {
    let node = TestNode::start().await;
    let api = node.admin();

    let created = api
        .create(
            "/users",
            json!({
                "principal": "jdoe@example.com",
                "email": "jdoe@example.com",
                "firstName": "Jane",
                "lastName": "Doe",
            }),
        )
        .await;
    assert_eq!(created["principal"], "jdoe@example.com");
    assert_eq!(created["firstName"], "Jane");
    assert_eq!(created["deviceCount"], 0);
    let path = format!("/users/{}", id(&created));
    assert_eq!(api.fetch(&path).await, created);

    api.create_user("rroe@example.com").await;
    let page = api.fetch("/users?query=jdoe").await;
    assert_eq!(page["totalCount"], 1);
    assert_eq!(results(&page)[0]["principal"], "jdoe@example.com");
    assert_eq!(api.total_count("/users").await, 2);

    let (status, updated) = api
        .put(
            &path,
            json!({ "email": "jane.doe@example.com", "firstName": "Jane" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["principal"], "jdoe@example.com");
    assert_eq!(updated["email"], "jane.doe@example.com");
    // An update replaces the editable fields: lastName was left out, so it is now empty.
    assert_eq!(updated["lastName"], Value::Null);
    assert_eq!(api.fetch(&path).await, updated);

    let renamed = api
        .put(&path, json!({ "principal": "someone-else@example.com" }))
        .await;
    assert_invalid(&renamed, "principal");
    assert_eq!(api.fetch(&path).await["principal"], "jdoe@example.com");

    let (status, body) = api.delete(&path).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_error(&api.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    assert_error(&api.delete(&path).await, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(api.total_count("/users").await, 1);
}

#[tokio::test]
async fn a_user_with_devices_cannot_be_deleted() {
    let node = TestNode::start().await;
    let api = node.admin();
    let user = api.create_user("owner@example.com").await;
    let device = api.register_ios("owner@example.com", "SERIAL-1").await;
    let path = format!("/users/{}", id(&user));
    assert_eq!(api.fetch(&path).await["deviceCount"], 1);

    assert_error(&api.delete(&path).await, StatusCode::CONFLICT, "refused");

    // A registration that never enrolled may be deleted; then the user may go too.
    let (status, _) = api
        .delete(&format!("/devices/{}", text(&device, "uuid")))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.delete(&path).await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn labels_round_trip_and_apply_to_devices() {
    let node = TestNode::start().await;
    let api = node.admin();
    api.create_user("jdoe@example.com").await;
    let first = api.register_ios("jdoe@example.com", "SERIAL-1").await;
    let second = api.register_ios("jdoe@example.com", "SERIAL-2").await;
    let (first, second) = (text(&first, "uuid"), text(&second, "uuid"));

    let label = api
        .create(
            "/labels",
            json!({ "name": "Sales", "description": "The sales team" }),
        )
        .await;
    assert_eq!(label["name"], "Sales");
    assert_eq!(label["deviceCount"], 0);
    let path = format!("/labels/{}", id(&label));
    assert_eq!(api.fetch(&path).await, label);

    let (status, renamed) = api
        .put(
            &path,
            json!({ "name": "Field Sales", "description": "On the road" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "Field Sales");
    assert_eq!(renamed["description"], "On the road");
    api.create_label("Engineering").await;
    let page = api.fetch("/labels?query=road").await;
    assert_eq!(page["totalCount"], 1);
    assert_eq!(results(&page)[0]["id"], label["id"]);

    let (status, applied) = api
        .post(
            &format!("{path}/devices"),
            json!({ "deviceUuids": [first, second] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["deviceCount"], 2);
    let device = api.fetch(&format!("/devices/{first}")).await;
    assert_eq!(device["labels"], json!(["Field Sales"]));

    // Applying again is harmless; an unknown device fails the whole call.
    api.apply_label(&label, &[first]).await;
    let unknown = api
        .post(
            &format!("{path}/devices"),
            json!({ "deviceUuids": [first, "00000000-0000-0000-0000-000000000000"] }),
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    let empty = api
        .post(&format!("{path}/devices"), json!({ "deviceUuids": [] }))
        .await;
    assert_invalid(&empty, "deviceUuids");
    assert_eq!(api.fetch(&path).await["deviceCount"], 2);

    let (status, removed) = api.delete(&format!("{path}/devices/{second}")).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["deviceCount"], 1);
    assert_eq!(
        api.fetch(&format!("/devices/{second}")).await["labels"],
        json!([])
    );
    let again = api.delete(&format!("{path}/devices/{second}")).await;
    assert_error(&again, StatusCode::NOT_FOUND, "not_found");

    assert_eq!(api.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_error(&api.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        api.fetch(&format!("/devices/{first}")).await["labels"],
        json!([])
    );
    let duplicate = api.post("/labels", json!({ "name": "Engineering" })).await;
    assert_error(&duplicate, StatusCode::CONFLICT, "conflict");
    let sales = api.create_label("Sales").await;
    let renamed_onto = api
        .put(
            &format!("/labels/{}", id(&sales)),
            json!({ "name": "Engineering" }),
        )
        .await;
    assert_error(&renamed_onto, StatusCode::CONFLICT, "conflict");
    assert_eq!(
        api.delete(&format!("/labels/{}", id(&sales))).await.0,
        StatusCode::NO_CONTENT
    );
    assert_invalid(&api.post("/labels", json!({ "name": " " })).await, "name");
    assert_eq!(api.total_count("/labels").await, 1);
}

#[tokio::test]
async fn apps_round_trip_with_file_upload() {
    let node = TestNode::start().await;
    let api = node.admin();
    let app = api
        .create(
            "/apps",
            json!({
                "platform": "Android",
                "bundleId": "com.example.field",
                "name": "Field",
                "version": "1.2.0",
            }),
        )
        .await;
    assert_eq!(app["source"], "IN_HOUSE");
    assert_eq!(app["file"], Value::Null);
    let path = format!("/apps/{}", id(&app));
    assert_eq!(api.fetch(&path).await, app);

    let no_file = api.get(&format!("{path}/file")).await;
    assert_error(&no_file, StatusCode::NOT_FOUND, "not_found");

    // Larger than the 1 MiB JSON limit, and not valid UTF-8: the upload is raw bytes.
    let bytes: Vec<u8> = (0..1_500_007u32)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let (status, uploaded) = api
        .send_raw(
            Method::PUT,
            &format!("{path}/file"),
            "application/octet-stream",
            bytes.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    let sha256 = sha256_hex(&bytes);
    assert_eq!(uploaded["file"]["sha256"], sha256.as_str());
    assert_eq!(uploaded["file"]["sizeBytes"], bytes.len());
    assert_eq!(api.fetch(&path).await["file"], uploaded["file"]);

    let download = api
        .send(api.request(Method::GET, &format!("{path}/file")))
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(
        download.header(CONTENT_TYPE.as_str()),
        Some("application/octet-stream")
    );
    assert_eq!(
        download.header(ETAG.as_str()),
        Some(format!("\"{sha256}\"").as_str())
    );
    assert!(download.bytes == bytes, "the downloaded file differs");

    let empty = api
        .send_raw(
            Method::PUT,
            &format!("{path}/file"),
            "application/octet-stream",
            Vec::new(),
        )
        .await;
    assert_invalid(&empty, "file");
    let missing = api
        .send_raw(
            Method::PUT,
            "/apps/999/file",
            "application/octet-stream",
            b"data".to_vec(),
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");

    let (status, updated) = api
        .put(
            &path,
            json!({
                "platform": "Android",
                "bundleId": "com.example.field",
                "name": "Field Service",
                "version": "1.3.0",
                "source": "PUBLIC",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Field Service");
    assert_eq!(updated["source"], "PUBLIC");
    assert_eq!(updated["file"], uploaded["file"]);
    let page = api.fetch("/apps?query=example.field").await;
    assert_eq!(page["totalCount"], 1);

    assert_eq!(api.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_error(&api.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(api.total_count("/apps").await, 0);
}

/// Policies and configurations share one shape; each is checked the same way.
async fn policy_kind_round_trip(node: &TestNode, base: &str, other_base: &str) {
    let api = node.admin();
    let label = api.create_label(&format!("{base} label")).await;
    let second_label = api.create_label(&format!("{base} second label")).await;
    let created = api
        .create(
            base,
            json!({
                "name": "Passcode",
                "type": "PASSCODE",
                "priority": 10,
                "payload": { "minLength": 6 },
            }),
        )
        .await;
    assert_eq!(created["version"], 1);
    assert_eq!(created["type"], "PASSCODE");
    assert_eq!(created["payload"], json!({ "minLength": 6 }));
    assert_eq!(created["labels"], json!([]));
    let path = format!("{base}/{}", id(&created));
    assert_eq!(api.fetch(&path).await, created);
    // The two kinds do not see each other's records.
    let crossed = api.get(&format!("{other_base}/{}", id(&created))).await;
    assert_error(&crossed, StatusCode::NOT_FOUND, "not_found");

    let (status, updated) = api
        .put(
            &path,
            json!({
                "name": "Passcode",
                "type": "PASSCODE",
                "priority": 10,
                "payload": { "minLength": 8 },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["payload"], json!({ "minLength": 8 }));
    let (_, updated) = api
        .put(&path, json!({ "name": "Passcode", "type": "PASSCODE" }))
        .await;
    assert_eq!(updated["version"], 3);

    let (status, assigned) = api
        .post(
            &format!("{path}/labels"),
            json!({ "labelIds": [id(&label), id(&second_label)] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{assigned}");
    let mut names: Vec<&str> = assigned["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [format!("{base} label"), format!("{base} second label")]
    );
    let unknown = api
        .post(&format!("{path}/labels"), json!({ "labelIds": [9999] }))
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    let none = api
        .post(&format!("{path}/labels"), json!({ "labelIds": [] }))
        .await;
    assert_invalid(&none, "labelIds");

    let unassign = format!("{path}/labels/{}", id(&second_label));
    let (status, unassigned) = api.delete(&unassign).await;
    assert_eq!(status, StatusCode::OK, "{unassigned}");
    assert_eq!(unassigned["labels"], json!([format!("{base} label")]));
    assert_error(
        &api.delete(&unassign).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let second = api
        .create(
            base,
            json!({ "name": "Wi-Fi", "type": "WIFI", "priority": 1 }),
        )
        .await;
    let page = api.fetch(base).await;
    assert_eq!(page["totalCount"], 2);
    // Listed in the order devices apply them: by priority.
    assert_eq!(results(&page)[0]["id"], second["id"]);
    let duplicate = api
        .post(base, json!({ "name": "Wi-Fi", "type": "WIFI" }))
        .await;
    assert_error(&duplicate, StatusCode::CONFLICT, "conflict");
    let bad = api
        .post(
            base,
            json!({ "name": "Bad", "type": "lower case", "priority": 10001, "payload": [1] }),
        )
        .await;
    for field in ["type", "priority", "payload"] {
        assert_invalid(&bad, field);
    }

    assert_eq!(api.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_error(&api.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(api.total_count(base).await, 1);
}

#[tokio::test]
async fn policies_round_trip() {
    let node = TestNode::start().await;
    policy_kind_round_trip(&node, "/policies", "/configurations").await;
}

#[tokio::test]
async fn configurations_round_trip() {
    let node = TestNode::start().await;
    policy_kind_round_trip(&node, "/configurations", "/policies").await;
}

#[tokio::test]
async fn settings_round_trip() {
    let node = TestNode::start().await;
    let api = node.admin();
    let path = "/settings/checkin.interval_seconds";
    assert_error(&api.get(path).await, StatusCode::NOT_FOUND, "not_found");

    let (status, stored) = api.put(path, json!({ "value": 900 })).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["key"], "checkin.interval_seconds");
    assert_eq!(stored["value"], 900);
    assert_eq!(api.fetch(path).await, stored);

    let structured = json!({ "host": "smtp.example.com", "ports": [25, 587] });
    let (status, replaced) = api.put(path, json!({ "value": structured.clone() })).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(api.fetch(path).await["value"], structured);
    api.put("/settings/audit.enabled", json!({ "value": true }))
        .await;
    let all = api.fetch("/settings").await;
    let keys: Vec<&str> = all
        .as_array()
        .expect("settings are a list")
        .iter()
        .map(|setting| text(setting, "key"))
        .collect();
    assert_eq!(keys, ["audit.enabled", "checkin.interval_seconds"]);

    assert_invalid(
        &api.put("/settings/Not%20A%20Key", json!({ "value": 1 }))
            .await,
        "key",
    );
    assert_invalid(
        &api.put(path, json!({ "value": 1, "extra": 2 })).await,
        "extra",
    );

    assert_eq!(api.delete(path).await.0, StatusCode::NO_CONTENT);
    assert_error(&api.get(path).await, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        api.fetch("/settings").await.as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn events_record_every_change() {
    let node = TestNode::start().await;
    let api = node.admin();
    let user = api.create_user("jdoe@example.com").await;
    let device = api.register_ios("jdoe@example.com", "SERIAL-1").await;
    let label = api.create_label("Sales").await;
    api.apply_label(&label, &[text(&device, "uuid")]).await;
    api.create(
        "/apps",
        json!({ "platform": "iOS", "bundleId": "com.example.a", "name": "A", "version": "1" }),
    )
    .await;
    api.create("/policies", json!({ "name": "P", "type": "PASSCODE" }))
        .await;
    api.put("/settings/k", json!({ "value": 1 })).await;
    api.put(&format!("/users/{}", id(&user)), json!({})).await;
    // A refused change leaves no event.
    api.post("/users", json!({ "principal": "jdoe@example.com" }))
        .await;

    let events = api.fetch("/events?limit=200").await;
    assert_eq!(
        kinds(&events),
        [
            "USER_UPDATED",
            "SETTING_CHANGED",
            "POLICY_CREATED",
            "APP_CREATED",
            "LABEL_APPLIED",
            "LABEL_CREATED",
            "DEVICE_REGISTERED",
            "USER_CREATED",
        ],
        "newest first"
    );
    for event in results(&events) {
        assert_eq!(event["actor"], ADMIN_USER, "{event}");
        assert!(!text(event, "at").is_empty());
    }
    assert_eq!(results(&events)[6]["subjectId"], device["uuid"]);
    assert_eq!(results(&events)[6]["subjectType"], "device");

    let filtered = api.fetch("/events?query=LABEL_").await;
    assert_eq!(kinds(&filtered), ["LABEL_APPLIED", "LABEL_CREATED"]);
    let page = api.fetch("/events?limit=3&offset=6").await;
    assert_eq!(page["totalCount"], 8);
    assert_eq!(page["resultCount"], 2);
    assert_eq!(page["hasMore"], false);
    assert_eq!(kinds(&page), ["DEVICE_REGISTERED", "USER_CREATED"]);
}

#[tokio::test]
async fn devices_register_list_count_read_and_update() {
    let node = TestNode::start().await;
    let api = node.admin();
    api.create_user("jdoe@example.com").await;
    api.create_user("rroe@example.com").await;

    let registered = api
        .register_device(json!({
            "platform": "Android",
            "userPrincipal": "jdoe@example.com",
            "imei": VALID_IMEI,
            "owner": "EMPLOYEE",
            "model": "Pixel 9",
            "manufacturer": "Google",
            "osVersion": "15",
        }))
        .await;
    assert_eq!(registered["status"], "PENDING");
    assert_eq!(registered["owner"], "EMPLOYEE");
    assert_eq!(registered["imei"], VALID_IMEI);
    assert_eq!(registered["userPrincipal"], "jdoe@example.com");
    assert_eq!(text(&registered, "enrollmentPin").len(), 16);
    assert!(!text(&registered, "enrollmentPinExpiresAt").is_empty());
    let uuid = text(&registered, "uuid");
    for serial in ["SERIAL-2", "SERIAL-3"] {
        api.register_ios("rroe@example.com", serial).await;
    }

    // The PIN is shown once, at registration.
    let device = api.fetch(&format!("/devices/{uuid}")).await;
    assert_eq!(device["enrollmentPin"], Value::Null);
    assert_eq!(device["uuid"], uuid);
    assert_eq!(device["model"], "Pixel 9");
    assert_eq!(device["compliant"], true);

    let page = api.fetch("/devices").await;
    assert_eq!(
        page.as_object().map(|page| {
            let mut keys: Vec<&str> = page.keys().map(String::as_str).collect();
            keys.sort_unstable();
            keys
        }),
        Some(vec!["hasMore", "resultCount", "results", "totalCount"])
    );
    assert_eq!(page["totalCount"], 3);
    assert_eq!(page["resultCount"], 3);
    assert_eq!(page["hasMore"], false);
    assert_eq!(results(&page)[0]["uuid"], uuid);

    let first = api.fetch("/devices?limit=2").await;
    assert_eq!(
        (
            &first["totalCount"],
            &first["resultCount"],
            &first["hasMore"]
        ),
        (&json!(3), &json!(2), &json!(true))
    );
    let rest = api.fetch("/devices?limit=2&offset=2").await;
    assert_eq!(
        (&rest["totalCount"], &rest["resultCount"], &rest["hasMore"]),
        (&json!(3), &json!(1), &json!(false))
    );
    assert_eq!(results(&rest)[0]["serial"], "SERIAL-3");
    let beyond = api.fetch("/devices?offset=10").await;
    assert_eq!(
        (&beyond["resultCount"], &beyond["hasMore"]),
        (&json!(0), &json!(false))
    );

    let by_user = api.fetch("/devices?query=rroe").await;
    assert_eq!(by_user["totalCount"], 2);
    let by_serial = api.fetch("/devices?query=SERIAL-3&limit=1").await;
    assert_eq!(by_serial["totalCount"], 1);
    assert_eq!(results(&by_serial)[0]["serial"], "SERIAL-3");
    let none = api.fetch("/devices?query=nothing-matches").await;
    assert_eq!(
        (&none["totalCount"], &none["results"]),
        (&json!(0), &json!([]))
    );
    // `%` and `_` match themselves, not any text.
    assert_eq!(api.total_count("/devices?query=%25").await, 0);

    assert_eq!(api.device_count().await, 3);
    assert_eq!(
        api.fetch("/devices/count?query=rroe").await,
        json!({ "count": 2 })
    );

    let (status, updated) = api
        .put(
            &format!("/devices/{uuid}"),
            json!({ "owner": "COMPANY", "compliant": false, "userPrincipal": "rroe@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["owner"], "COMPANY");
    assert_eq!(updated["compliant"], false);
    assert_eq!(updated["userPrincipal"], "rroe@example.com");
    assert_eq!(
        updated["model"], "Pixel 9",
        "absent fields stay as they are"
    );
    assert_eq!(api.fetch(&format!("/devices/{uuid}")).await, updated);

    let unknown_user = api
        .put(
            &format!("/devices/{uuid}"),
            json!({ "userPrincipal": "nobody@example.com" }),
        )
        .await;
    assert_invalid(&unknown_user, "userPrincipal");
    let bad_owner = api
        .put(&format!("/devices/{uuid}"), json!({ "owner": "FRIEND" }))
        .await;
    assert_invalid(&bad_owner, "owner");
    let missing = api
        .put("/devices/no-such-device", json!({ "compliant": true }))
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        api.fetch(&format!("/devices/{uuid}")).await["userPrincipal"],
        "rroe@example.com"
    );
}

#[tokio::test]
async fn device_actions_and_delete_rules() {
    let node = TestNode::start().await;
    let api = node.admin();
    api.create_user("jdoe@example.com").await;

    // A registration that never enrolled takes no commands, and may be deleted.
    let pending = api.register_ios("jdoe@example.com", "PENDING-1").await;
    let pending_path = format!("/devices/{}", text(&pending, "uuid"));
    let refused = api
        .post(&format!("{pending_path}/actions/lock"), json!({}))
        .await;
    assert_error(&refused, StatusCode::CONFLICT, "refused");
    assert_eq!(api.delete(&pending_path).await.0, StatusCode::NO_CONTENT);
    assert_error(
        &api.get(&pending_path).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let enrolled = node.enrolled_device("jdoe@example.com", "LIVE-1").await;
    let path = format!("/devices/{}", enrolled.uuid);
    assert_eq!(api.fetch(&path).await["status"], "ACTIVE");

    let (status, lock) = api.post(&format!("{path}/actions/lock"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{lock}");
    assert_eq!(lock["command"], "LOCK");
    assert_eq!(lock["status"], "PENDING");
    assert_eq!(lock["queuedBy"], ADMIN_USER);
    assert_eq!(lock["deviceUuid"], enrolled.uuid.as_str());
    assert_eq!(
        api.fetch(&path).await["status"],
        "ACTIVE",
        "a lock keeps the device live"
    );

    // A live device cannot be deleted.
    assert_error(&api.delete(&path).await, StatusCode::CONFLICT, "refused");

    let (status, retire) = api.post(&format!("{path}/actions/retire"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retire}");
    assert_eq!(retire["command"], "RETIRE");
    assert_eq!(api.fetch(&path).await["status"], "RETIRE_PENDING");
    let twice = api.post(&format!("{path}/actions/retire"), json!({})).await;
    assert_error(&twice, StatusCode::CONFLICT, "refused");
    assert_error(&api.delete(&path).await, StatusCode::CONFLICT, "refused");

    let (status, wipe) = api.post(&format!("{path}/actions/wipe"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{wipe}");
    assert_eq!(api.fetch(&path).await["status"], "WIPE_PENDING");

    let unknown_action = api
        .post(&format!("{path}/actions/explode"), json!({}))
        .await;
    assert_error(&unknown_action, StatusCode::NOT_FOUND, "not_found");
    let unknown_device = api
        .post("/devices/no-such-device/actions/lock", json!({}))
        .await;
    assert_error(&unknown_device, StatusCode::NOT_FOUND, "not_found");

    let commands = api.fetch(&format!("{path}/commands")).await;
    let listed: Vec<(&str, &str)> = commands
        .as_array()
        .expect("commands are a list")
        .iter()
        .map(|command| (text(command, "command"), text(command, "status")))
        .collect();
    assert_eq!(
        listed,
        [
            ("WIPE", "PENDING"),
            ("RETIRE", "PENDING"),
            ("LOCK", "PENDING")
        ],
        "newest first"
    );

    // The device acknowledges the retire; then the record may be deleted.
    let device = node.device(&enrolled);
    let result = device
        .post(
            &format!("/commands/{}/result", id(&retire)),
            json!({ "status": "ACKNOWLEDGED" }),
        )
        .await;
    assert_eq!(result.0, StatusCode::OK, "{}", result.1);
    assert_eq!(api.fetch(&path).await["status"], "RETIRED");
    let after = api.post(&format!("{path}/actions/lock"), json!({})).await;
    assert_error(&after, StatusCode::CONFLICT, "refused");
    assert_eq!(api.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_error(&api.get(&path).await, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &api.get(&format!("{path}/commands")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(api.device_count().await, 0);
}

#[tokio::test]
async fn bad_device_input_is_refused_and_nothing_is_stored() {
    let node = TestNode::start().await;
    let api = node.admin();
    api.create_user("jdoe@example.com").await;
    api.register_device(json!({
        "platform": "iOS",
        "userPrincipal": "jdoe@example.com",
        "serial": "TAKEN-1",
        "imei": VALID_IMEI,
    }))
    .await;
    let valid =
        json!({ "platform": "iOS", "userPrincipal": "jdoe@example.com", "serial": "NEW-1" });
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().expect("an object").remove(field);
        body
    };

    let cases = [
        ("missing platform", without("platform"), "platform"),
        ("missing user", without("userPrincipal"), "userPrincipal"),
        ("no hardware id", without("serial"), "serial"),
        (
            "unknown platform",
            with("platform", json!("Symbian")),
            "platform",
        ),
        ("unknown owner", with("owner", json!("FRIEND")), "owner"),
        ("unknown field", with("colour", json!("red")), "colour"),
        ("number for text", with("serial", json!(42)), "serial"),
        ("bad IMEI", with("imei", json!("490154203237519")), "imei"),
        ("short IMEI", with("imei", json!("4901542")), "imei"),
        ("bad serial", with("serial", json!("has spaces")), "serial"),
        (
            "unknown user",
            with("userPrincipal", json!("nobody@example.com")),
            "userPrincipal",
        ),
        ("blank model", with("model", json!(" ")), "model"),
    ];
    for (case, body, field) in cases {
        let answer = api.post("/devices", body).await;
        assert_eq!(
            answer.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: {}",
            answer.1
        );
        assert_invalid(&answer, field);
    }
    for not_an_object in [json!("iOS"), json!(null), json!(7)] {
        let answer = api.post("/devices", not_an_object).await;
        assert_invalid(&answer, "body");
    }

    // Every problem is reported at once.
    let many = api
        .post("/devices", json!({ "serial": "has spaces", "imei": "123" }))
        .await;
    for field in ["platform", "userPrincipal", "serial", "imei"] {
        assert_invalid(&many, field);
    }

    let duplicate = api.post("/devices", with("serial", json!("TAKEN-1"))).await;
    let message = assert_error(&duplicate, StatusCode::CONFLICT, "conflict");
    assert!(message.contains("serial"), "{message}");
    let duplicate_imei = api.post("/devices", with("imei", json!(VALID_IMEI))).await;
    let message = assert_error(&duplicate_imei, StatusCode::CONFLICT, "conflict");
    assert!(message.contains("imei"), "{message}");

    let malformed = api
        .send_raw(
            Method::POST,
            "/devices",
            "application/json",
            r#"{"platform": "iOS","#,
        )
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "bad_request");
    let empty = api
        .send_raw(Method::POST, "/devices", "application/json", "")
        .await;
    assert_error(&empty, StatusCode::BAD_REQUEST, "bad_request");
    // JSON bodies are capped at 1 MiB.
    let huge = json!({ "platform": "iOS", "userPrincipal": "jdoe@example.com", "model": "m".repeat(1 << 20) });
    let (status, body) = api.post("/devices", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["status"], 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    let wrong_type = api
        .send_raw(Method::POST, "/devices", "text/plain", valid.to_string())
        .await;
    assert_error(
        &wrong_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let no_type = api
        .send(
            api.request(Method::POST, "/devices")
                .body(valid.to_string()),
        )
        .await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert_eq!(api.device_count().await, 1, "bad input stored a device");
    assert_eq!(api.total_count("/devices").await, 1);
    assert_eq!(api.total_count("/events?query=DEVICE_REGISTERED").await, 1);

    // Bad updates change nothing either.
    let uuid = text(&results(&api.fetch("/devices").await)[0], "uuid").to_owned();
    let before = api.fetch(&format!("/devices/{uuid}")).await;
    let bad_update = api
        .put(&format!("/devices/{uuid}"), json!({ "compliant": "yes" }))
        .await;
    assert_invalid(&bad_update, "compliant");
    let unknown_update = api
        .put(&format!("/devices/{uuid}"), json!({ "serial": "NEW" }))
        .await;
    assert_invalid(&unknown_update, "serial");
    assert_eq!(api.fetch(&format!("/devices/{uuid}")).await, before);
}

#[tokio::test]
async fn bad_user_input_is_refused_and_nothing_is_stored() {
    let node = TestNode::start().await;
    let api = node.admin();
    api.create_user("taken@example.com").await;

    let cases = [
        (
            "missing principal",
            json!({ "email": "a@example.com" }),
            "principal",
        ),
        (
            "principal with spaces",
            json!({ "principal": "j doe" }),
            "principal",
        ),
        ("empty principal", json!({ "principal": "" }), "principal"),
        (
            "bad email",
            json!({ "principal": "a", "email": "not-an-email" }),
            "email",
        ),
        (
            "number for text",
            json!({ "principal": "a", "firstName": 5 }),
            "firstName",
        ),
        (
            "number for principal",
            json!({ "principal": 7 }),
            "principal",
        ),
        (
            "unknown field",
            json!({ "principal": "a", "role": "boss" }),
            "role",
        ),
        (
            "too long",
            json!({ "principal": "a", "lastName": "x".repeat(129) }),
            "lastName",
        ),
    ];
    for (case, body, field) in cases {
        let answer = api.post("/users", body).await;
        assert_eq!(
            answer.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: {}",
            answer.1
        );
        assert_invalid(&answer, field);
    }
    let duplicate = api
        .post("/users", json!({ "principal": "taken@example.com" }))
        .await;
    let message = assert_error(&duplicate, StatusCode::CONFLICT, "conflict");
    assert!(message.contains("principal"), "{message}");
    let malformed = api
        .send_raw(Method::POST, "/users", "application/json", "{principal: x}")
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "bad_request");
    let form = api
        .send_raw(
            Method::POST,
            "/users",
            "application/x-www-form-urlencoded",
            "principal=x",
        )
        .await;
    assert_error(
        &form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    assert_eq!(
        api.total_count("/users").await,
        1,
        "bad input stored a user"
    );
    assert_eq!(api.total_count("/events?query=USER_CREATED").await, 1);
}

#[tokio::test]
async fn bad_app_input_is_refused_and_nothing_is_stored() {
    let node = TestNode::start().await;
    let api = node.admin();
    let valid = json!({
        "platform": "iOS",
        "bundleId": "com.example.app",
        "name": "App",
        "version": "1.0",
    });
    api.create("/apps", valid.clone()).await;
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };

    let cases = [
        (
            "one-part bundle id",
            with("bundleId", json!("app")),
            "bundleId",
        ),
        (
            "empty part",
            with("bundleId", json!("com..app")),
            "bundleId",
        ),
        (
            "bad characters",
            with("bundleId", json!("com.example/app")),
            "bundleId",
        ),
        (
            "missing bundle id",
            with("bundleId", Value::Null),
            "bundleId",
        ),
        (
            "unknown platform",
            with("platform", json!("PalmOS")),
            "platform",
        ),
        (
            "missing platform",
            with("platform", Value::Null),
            "platform",
        ),
        ("unknown source", with("source", json!("STOLEN")), "source"),
        ("bad version", with("version", json!("1 0")), "version"),
        ("missing name", with("name", Value::Null), "name"),
        ("unknown field", with("price", json!(0)), "price"),
        ("number for text", with("name", json!(3)), "name"),
    ];
    for (case, body, field) in cases {
        let answer = api.post("/apps", body).await;
        assert_eq!(
            answer.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: {}",
            answer.1
        );
        assert_invalid(&answer, field);
    }
    let duplicate = api.post("/apps", valid.clone()).await;
    assert_error(&duplicate, StatusCode::CONFLICT, "conflict");
    // The same bundle id in another version or on another platform is a different app, but an
    // update cannot turn one into the other.
    let newer = api.create("/apps", with("version", json!("1.1"))).await;
    let clash = api
        .put(&format!("/apps/{}", id(&newer)), valid.clone())
        .await;
    assert_error(&clash, StatusCode::CONFLICT, "conflict");
    assert_eq!(
        api.fetch(&format!("/apps/{}", id(&newer))).await["version"],
        "1.1"
    );
    let malformed = api
        .send_raw(Method::POST, "/apps", "application/json", "[1, 2")
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "bad_request");
    let xml = api
        .send_raw(Method::POST, "/apps", "application/xml", "<app/>")
        .await;
    assert_error(
        &xml,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    assert_eq!(api.total_count("/apps").await, 2, "bad input stored an app");
}

#[tokio::test]
async fn list_parameters_are_checked() {
    let node = TestNode::start().await;
    let api = node.admin();
    for base in [
        "/devices",
        "/users",
        "/labels",
        "/apps",
        "/policies",
        "/configurations",
        "/events",
    ] {
        for (query, field) in [
            ("limit=201", "limit"),
            ("limit=0", "limit"),
            ("limit=-5", "limit"),
            ("offset=-1", "offset"),
            ("limit=abc", "limit"),
            ("offset=1.5", "offset"),
        ] {
            let answer = api.get(&format!("{base}?{query}")).await;
            assert_eq!(
                answer.0,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{base}?{query}: {}",
                answer.1
            );
            assert_invalid(&answer, field);
        }
        let unknown = api.get(&format!("{base}?sort=name")).await;
        assert_invalid(&unknown, "sort");
        let long_query = api.get(&format!("{base}?query={}", "q".repeat(201))).await;
        assert_invalid(&long_query, "query");
        assert_eq!(
            api.get(&format!("{base}?limit=200&offset=0")).await.0,
            StatusCode::OK
        );
    }
    assert_invalid(&api.get("/devices/count?limit=1").await, "limit");
}

#[tokio::test]
async fn requests_without_valid_credentials_get_401() {
    let node = TestNode::start().await;
    // The administrator logs in first: verified credentials are cached, and a cached login
    // skips the back-off the failures below put on this address.
    let api = node.admin();
    assert_eq!(api.total_count("/users").await, 0);
    let anonymous = node.api_as(None);
    let wrong_password = node.api_as(Some((ADMIN_USER, "correct-horse-2")));
    let unknown_user = node.api_as(Some(("mallory", ADMIN_PASSWORD)));
    let empty_password = node.api_as(Some((ADMIN_USER, "")));
    let mut failures = 0;
    for (who, api) in [
        ("anonymous", &anonymous),
        ("wrong password", &wrong_password),
        ("unknown user", &unknown_user),
        ("empty password", &empty_password),
    ] {
        for (method, path) in [
            (Method::GET, "/ping"),
            (Method::GET, "/devices"),
            (Method::GET, "/users/1"),
            (Method::POST, "/users"),
        ] {
            let mut request = api.request(method.clone(), path);
            if method == Method::POST {
                request = request.json(&json!({ "principal": "sneaky@example.com" }));
            }
            let reply = api.send(request).await;
            let answer = (reply.status, reply.json());
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                // The back-off: this address has failed too often already, so it is refused
                // before any password check (never let in).
                assert!(
                    failures >= 5,
                    "{who} {method} {path}: held after {failures}"
                );
                assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "too_many_failures");
                assert!(
                    reply.header("retry-after").is_some(),
                    "{who}: no Retry-After"
                );
                continue;
            }
            assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
            failures += usize::from(who != "anonymous");
            let challenge = reply.header(WWW_AUTHENTICATE.as_str()).unwrap_or_default();
            assert!(
                challenge.starts_with("Basic "),
                "{who} {method} {path}: WWW-Authenticate {challenge:?}"
            );
        }
    }
    // Not Basic at all.
    let bearer = anonymous
        .send(
            anonymous
                .request(Method::GET, "/devices")
                .bearer_auth("token"),
        )
        .await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.total_count("/users").await,
        0,
        "an unauthenticated POST stored a user"
    );
    let (status, ping) = api.get("/ping").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ping["node"], NODE_NAME);
    assert_eq!(ping["status"], "OK");
}

#[tokio::test]
async fn unknown_routes_ids_and_methods_get_json_errors() {
    let node = TestNode::start().await;
    let api = node.admin();
    let user = api.create_user("jdoe@example.com").await;

    for path in [
        "/no-such-resource",
        "/users/999",
        "/users/abc",
        "/users/1.5",
        "/labels/999",
        "/apps/999",
        "/policies/999",
        "/configurations/999",
        "/devices/no-such-uuid",
        "/devices/no-such-uuid/commands",
        "/settings/no.such.key",
    ] {
        let answer = api.get(path).await;
        assert_eq!(answer.0, StatusCode::NOT_FOUND, "GET {path}: {}", answer.1);
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
    }
    let root = node.service_root();
    for path in ["/no/such/page", "/api/v3/devices", "/device/v1/nothing"] {
        assert_error(&root.get(path).await, StatusCode::NOT_FOUND, "not_found");
    }
    assert_error(
        &api.put("/users/abc", json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.delete("/labels/abc").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    for (method, path) in [
        (Method::DELETE, "/users".to_owned()),
        (Method::POST, format!("/users/{}", id(&user))),
        (Method::PATCH, format!("/users/{}", id(&user))),
        (Method::PUT, "/devices/count".to_owned()),
        (Method::GET, "/labels/1/devices".to_owned()),
        (Method::POST, "/events".to_owned()),
    ] {
        let reply = api.send(api.request(method.clone(), &path)).await;
        let answer = (reply.status, reply.json());
        assert_eq!(
            answer.0,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            answer.1
        );
        assert_error(
            &answer,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        );
    }
    let probe = root.post("/status/status.html", json!({})).await;
    assert_error(&probe, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(api.fetch(&format!("/users/{}", id(&user))).await, user);
}

#[tokio::test]
async fn system_manager_status_needs_credentials() {
    let node = TestNode::start().await;
    for credentials in [
        None,
        Some((ADMIN_USER, "wrong-password")),
        Some(("mallory", ADMIN_PASSWORD)),
    ] {
        let portal = node.system_manager(credentials);
        for path in ["/api/v1/status", "/metrics"] {
            let reply = portal.send(portal.request(Method::GET, path)).await;
            assert_error(
                &(reply.status, reply.json()),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            );
            let challenge = reply.header(WWW_AUTHENTICATE.as_str()).unwrap_or_default();
            assert!(challenge.starts_with("Basic "), "{challenge:?}");
        }
        // The console's pages take a login session, never HTTP Basic: its login page.
        let reply = portal.send(portal.request(Method::GET, "/")).await;
        assert!(
            reply.text().contains("Log in · System Manager"),
            "{}",
            reply.text()
        );
    }

    let portal = node.system_manager(Some((ADMIN_USER, ADMIN_PASSWORD)));
    let (status, body) = portal.get("/api/v1/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node"], NODE_NAME);
    assert_eq!(body["mode"], "Primary");
    assert_eq!(body["state"], "Active");
    assert_eq!(body["haEnabled"], false);
    assert_eq!(body["clientConnections"], "enabled");
    node.device_gate().set_open(false);
    assert_eq!(
        portal.fetch("/api/v1/status").await["clientConnections"],
        "disabled"
    );

    let home = portal.send(portal.request(Method::GET, "/")).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.text().contains(NODE_NAME), "{}", home.text());
    assert_error(
        &portal.get("/api/v2/devices").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

// A required field that serde itself enforces is named by its own name, not as `body`.
#[tokio::test]
async fn a_missing_required_field_is_named() {
    let node = TestNode::start().await;
    let api = node.admin();
    let label = api.create_label("Sales").await;
    let policy = api
        .create("/policies", json!({ "name": "P", "type": "PASSCODE" }))
        .await;
    for (method, path, field) in [
        (
            Method::PUT,
            "/settings/checkin.interval_seconds".to_owned(),
            "value",
        ),
        (
            Method::POST,
            format!("/labels/{}/devices", id(&label)),
            "deviceUuids",
        ),
        (
            Method::POST,
            format!("/policies/{}/labels", id(&policy)),
            "labelIds",
        ),
    ] {
        let answer = api.send_raw(method, &path, "application/json", "{}").await;
        assert_invalid(&answer, field);
    }
    assert_eq!(api.fetch("/settings").await, json!([]));
}

// A number or boolean where an enum's text belongs is valid JSON of the wrong shape: 422 naming
// the field, like any other wrong type (serde_json alone would file it as a syntax error).
#[tokio::test]
async fn a_wrong_json_type_for_an_enum_is_422_naming_the_field() {
    let node = TestNode::start().await;
    let api = node.admin();
    api.create_user("jdoe@example.com").await;
    for (path, body, field) in [
        (
            "/devices",
            json!({ "platform": 1, "userPrincipal": "jdoe@example.com", "serial": "S-1" }),
            "platform",
        ),
        (
            "/devices",
            json!({ "platform": "iOS", "owner": true, "userPrincipal": "jdoe@example.com", "serial": "S-1" }),
            "owner",
        ),
        (
            "/apps",
            json!({ "platform": "iOS", "bundleId": "com.example.a", "name": "A", "version": "1", "source": 5 }),
            "source",
        ),
    ] {
        let answer = api.post(path, body.clone()).await;
        assert_eq!(
            answer.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.1
        );
        assert_invalid(&answer, field);
    }
    assert_eq!(api.device_count().await, 0);
    assert_eq!(api.total_count("/apps").await, 0);
}

// The HA Configuration over the System Manager API: read, change with validation, applied live.
#[tokio::test]
async fn ha_configuration_api_validates_and_applies_without_a_restart() {
    let node = TestNode::start().await;
    let portal = node.system_manager(Some((ADMIN_USER, ADMIN_PASSWORD)));
    let config = portal.fetch("/api/v1/ha/config").await;
    assert_eq!(config["enabled"], false);
    assert_eq!(config["heartbeatInterval"], "10s");
    assert_eq!(config["heartbeatFailures"], 3);
    assert_eq!(config["recheckInterval"], "5s");
    assert_eq!(config["runEvery"], "1h");
    assert_eq!(config["startTime"], "00:00");
    assert_eq!(config["onFailure"], "promote");

    let (status, body) = portal
        .put("/api/v1/ha/config", json!({ "heartbeatFailures": 0 }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("heartbeatFailures = 0"), "{body}");
    let (status, body) = portal
        .put("/api/v1/ha/config", json!({ "heartbeatIntervall": "5s" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = portal
        .put(
            "/api/v1/ha/config",
            json!({ "enabled": true, "runEvery": "15m", "startTime": "13:00" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warnings"][0]["field"], "runEvery", "{body}");
    assert_eq!(body["snapshot"]["config"]["startTime"], "13:00");
    let status = portal.fetch("/api/v1/ha/status").await;
    assert_eq!(status["status"]["haEnabled"], true, "{status}");
    assert_eq!(status["status"]["state"], "Active");
    // Applied live: the listeners see HA enabled.
    assert_eq!(portal.fetch("/api/v1/status").await["haEnabled"], true);
}
