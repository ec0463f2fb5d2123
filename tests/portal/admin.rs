//! The Admin portal in a browser, on both nodes of a pair: what the pages did is checked here
//! through `/api/v2`, and the Standby's device count against the Primary's (guide Table 3,
//! task 3).

use super::{browser_available, run_script};
use crate::support::node::{FAST, Links, Node, PASSWORD, start_pair, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

/// More devices than one page of the portal's list (50) holds, so paging shows.
const DEVICES: usize = 53;

fn api(node: &Node, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, text) = node.request(method, path, body);
    assert!(status < 300, "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn count(node: &Node) -> i64 {
    api(node, Method::GET, "/api/v2/devices/count", None)["count"]
        .as_i64()
        .unwrap_or(-1)
}

/// A user, `DEVICES` devices (two iOS, the rest Android; the second and third enrolled) and
/// the label Sales on the last; returns the UUIDs of an enrolled iOS device and of a device
/// still pending enrollment.
fn register_fleet(node: &Node) -> (String, String) {
    api(
        node,
        Method::POST,
        "/api/v2/users",
        Some(json!({"principal": "jdoe@example.com"})),
    );
    let mut uuids = Vec::new();
    for index in 0..DEVICES {
        let (platform, serial) = if index < 2 {
            ("iOS", format!("SERIAL-IOS-{index}"))
        } else {
            ("Android", format!("SERIAL-AND-{index}"))
        };
        let device = api(
            node,
            Method::POST,
            "/api/v2/devices",
            Some(json!({"platform": platform, "serial": serial,
                        "userPrincipal": "jdoe@example.com", "model": "Pixel 9"})),
        );
        uuids.push(device["uuid"].as_str().unwrap_or_default().to_owned());
        if matches!(index, 1 | 2) {
            let pin = device["enrollmentPin"].as_str().unwrap_or_default();
            let (status, text) = node.request(
                Method::POST,
                "/device/v1/enroll",
                Some(json!({"pin": pin, "osVersion": "18.1"})),
            );
            assert_eq!(status, 201, "{text}");
        }
    }
    let label = api(
        node,
        Method::POST,
        "/api/v2/labels",
        Some(json!({"name": "Sales"})),
    );
    api(
        node,
        Method::POST,
        &format!("/api/v2/labels/{}/devices", label["id"]),
        Some(json!({"deviceUuids": [uuids[DEVICES - 1]]})),
    );
    (uuids[1].clone(), uuids[0].clone())
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item[field].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_admin_portal_serves_the_primary_and_shows_the_standby_read_only() {
    if !browser_available() {
        return;
    }
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    let mut options = vec!["--replication", "continuous"];
    options.extend_from_slice(FAST);
    start_pair(&mut a, &mut b, &links, &options, &options);
    let (device, pending) = register_fleet(&a);
    wait_until(
        || format!("Standby has {} devices, Primary {}", count(&b), count(&a)),
        || count(&b) == DEVICES as i64 && count(&a) == DEVICES as i64,
    );
    let seen = run_script(
        "admin.mjs",
        &[
            (
                "TANDEM_PRIMARY_URL",
                format!("https://127.0.0.1:{}", a.service_port),
            ),
            (
                "TANDEM_STANDBY_URL",
                format!("https://127.0.0.1:{}", b.service_port),
            ),
            ("TANDEM_PASSWORD", PASSWORD.to_owned()),
            ("TANDEM_DEVICE", device.clone()),
            ("TANDEM_PENDING_DEVICE", pending.clone()),
        ],
    );

    // The device list pages, filters and searches over the fleet registered above.
    assert_eq!(seen["firstPage"], format!("1–50 of {DEVICES}"));
    assert_eq!(seen["secondPage"], format!("51–{DEVICES} of {DEVICES}"));
    assert_eq!(seen["secondPageRows"], DEVICES as i64 - 50);
    assert_eq!(seen["iosCount"], "2 devices match.");
    let searched = seen["searched"].as_array().cloned().unwrap_or_default();
    assert_eq!(searched.len(), 1, "{searched:?}");
    assert_eq!(seen["labelled"], "1 device matches.");

    // Lock (confirmed in a dialog) and Retire (confirmed on its page, without JavaScript) are
    // queued commands, as the API shows them.
    assert!(
        seen["dialog"]
            .as_str()
            .unwrap_or_default()
            .contains("Lock this device?")
    );
    let commands = api(
        &a,
        Method::GET,
        &format!("/api/v2/devices/{device}/commands"),
        None,
    );
    let queued: Vec<_> = commands
        .as_array()
        .into_iter()
        .flatten()
        .map(|command| (command["command"].clone(), command["status"].clone()))
        .collect();
    assert_eq!(
        queued,
        [
            (json!("RETIRE"), json!("PENDING")),
            (json!("LOCK"), json!("PENDING"))
        ],
        "{commands:#}"
    );
    assert_eq!(
        seen["retireConfirmUrl"],
        format!("/devices/{device}/confirm?action=retire")
    );

    // A refused principal was shown next to its field with the value, and nothing stored until
    // it was fixed.
    let refused = seen["refusedPrincipal"].as_str().unwrap_or_default();
    assert!(
        refused.contains("“bad principal” was refused: may contain only"),
        "{refused}"
    );
    assert_eq!(seen["refusedValueKept"], "bad principal");
    let users = api(&a, Method::GET, "/api/v2/users", None);
    assert_eq!(
        names(&users, "principal"),
        ["jdoe@example.com", "new.user@example.com"]
    );
    let labels = api(&a, Method::GET, "/api/v2/labels", None);
    assert_eq!(names(&labels, "name"), ["Sales", "Field-Team"]);
    let apps = api(&a, Method::GET, "/api/v2/apps", None);

    // An app without its file was refused next to the file field; the uploaded one is in the
    // catalogue with its file, byte for byte.
    assert_eq!(
        seen["refusedFile"],
        "This field is required: choose the app file."
    );
    assert_eq!(seen["keptName"], "Field Notes");
    assert_eq!(apps["totalCount"], 1, "{apps:#}");
    assert_eq!(apps["results"][0]["bundleId"], "com.example.fieldnotes");
    assert_eq!(apps["results"][0]["file"]["sizeBytes"], 5000, "{apps:#}");
    let refused = seen["refusedPayload"].as_str().unwrap_or_default();
    assert!(refused.contains("is not JSON"), "{refused}");
    let policies = api(&a, Method::GET, "/api/v2/policies", None);
    assert_eq!(names(&policies, "name"), ["Passcode"]);
    assert_eq!(policies["results"][0]["priority"], 10);
    assert_eq!(policies["results"][0]["version"], 2, "{policies:#}");
    assert_eq!(policies["results"][0]["payload"], json!({"minLength": 6}));

    // The Standby shows the Primary's device count, read-only, naming where changes go; a
    // change posted anyway is refused with the API's words and reaches neither node.
    assert_eq!(seen["primaryCount"], DEVICES as i64);
    assert_eq!(seen["standbyCount"], seen["primaryCount"]);
    let banner = seen["banner"].as_str().unwrap_or_default();
    assert!(banner.contains("Read-only"), "{banner}");
    assert!(banner.contains(&a.endpoint()), "{banner}");
    assert_eq!(seen["standbyState"], "Standby");
    assert_eq!(seen["standbyLockDisabled"], true);
    assert_eq!(seen["standbyLabelFormDisabled"], true);
    assert_eq!(seen["postedAnyway"]["status"], 503);
    let refusal = seen["postedAnyway"]["text"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("Nothing was changed") && refusal.contains("read-only"),
        "{refusal}"
    );
    for node in [&a, &b] {
        let labels = api(node, Method::GET, "/api/v2/labels?query=Sneaky", None);
        assert_eq!(labels["totalCount"], 0, "{labels:#}");
    }
}
