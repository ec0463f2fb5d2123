//! Accounts and password back-off (issue 16, items 1 and 3), against real nodes: `tandem users`
//! through the control socket, the admin API (`/api/v2/admin-users`) and the System Manager API
//! (`/api/v1/users`), and 429 with `Retry-After` for a source that keeps failing.

use crate::support::node::{Call, Links, Node, PASSWORD, describe, start_pair, tandem};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

/// Failures a source may make before it waits (`tandem_server`'s `FAILURES_FREE`).
const FAILURES_FREE: usize = 5;
/// The longest a source is made to wait (`SOURCE_BACKOFF_MAX`), plus scheduling slack: a test
/// that honours Retry-After never waits longer than this.
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(31);

const OTHER_PASSWORD: &str = "lantern-orbit-42";

pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: String,
}

/// One request on its own connection from the loopback address `from`, as `user`.
pub(crate) fn call(
    port: u16,
    from: &str,
    method: Method,
    path: &str,
    (user, password): (&str, &str),
    body: Option<Value>,
) -> Answer {
    let mut call = Call::new(port, method, path)
        .from(from.parse().unwrap())
        .user(Some((user, password)))
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        call = call.json(body);
    }
    let reply = call.send().unwrap();
    Answer {
        status: reply.status,
        retry_after: reply
            .headers
            .get("retry-after")
            .and_then(|value| value.to_str().ok()?.parse().ok()),
        body: reply.text(),
    }
}

fn admin_ping(node: &Node, from: &str, user: &str, password: &str) -> Answer {
    call(
        node.service_port,
        from,
        Method::GET,
        "/api/v2/ping",
        (user, password),
        None,
    )
}

/// `tandem users ARGS` with `stdin` as standard input (not a terminal: one line is read).
fn users(node: &Node, args: &[&str], stdin: &str) -> Output {
    let mut child = tandem()
        .arg("--data-dir")
        .arg(&node.dir)
        .arg("users")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `text` without ANSI colour sequences (`ESC [ … m`), as the node writes its text log.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for inner in chars.by_ref() {
                if inner == 'm' {
                    break;
                }
            }
        } else {
            plain.push(ch);
        }
    }
    plain
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn served(name: &str) -> Node {
    let mut node = Node::init(name);
    node.serve();
    node.wait_for_state("Active");
    node
}

/// The window the checks below run in: long enough that two requests surely fit in it on a
/// loaded machine (reaching it costs the waits before it, about as long).
const WINDOW_SECS_MIN: u64 = 8;

#[test]
fn a_failing_source_is_answered_429_with_retry_after_while_another_source_still_logs_in() {
    let node = served("node-a");
    // Wrong passwords, then invented user names (which count against the source as well),
    // honouring each Retry-After, until the source's delay has grown to the window.
    let mut failures = 0;
    let retry_after = loop {
        let user = if failures < FAILURES_FREE {
            "admin"
        } else {
            "nobody-here"
        };
        let answer = admin_ping(&node, "127.0.0.1", user, &format!("wrong-{failures}"));
        match answer.status {
            401 => failures += 1,
            429 => {
                assert!(failures >= FAILURES_FREE, "held after {failures} failures");
                assert!(answer.body.contains("too_many_failures"), "{}", answer.body);
                let retry_after = answer.retry_after.expect("Retry-After");
                assert!(
                    (1..=RETRY_AFTER_MAX.as_secs()).contains(&retry_after),
                    "{retry_after}"
                );
                if retry_after >= WINDOW_SECS_MIN {
                    break retry_after;
                }
                std::thread::sleep(Duration::from_secs(retry_after));
            }
            other => panic!("answer {other}: {}", answer.body),
        }
    };
    // Even the right password waits now: refused before any password check.
    let held = admin_ping(&node, "127.0.0.1", "admin", PASSWORD);
    assert_eq!(held.status, 429, "{}", held.body);
    // The administrator at another address is not held by the failures of this one.
    assert_eq!(
        admin_ping(&node, "127.0.0.2", "admin", PASSWORD).status,
        200
    );
    // Once the wait is over, the right password works from the first address too.
    std::thread::sleep(Duration::from_secs(retry_after));
    assert_eq!(
        admin_ping(&node, "127.0.0.1", "admin", PASSWORD).status,
        200
    );
    // The log names source and user, escaped.
    let log =
        without_colours(&std::fs::read_to_string(node.dir.with_extension("stderr.log")).unwrap());
    assert!(
        log.contains("authentication failed")
            && log.contains("source=127.0.0.1:")
            && log.contains("user=\"admin\"")
            && log.contains("user=\"nobody-here\""),
        "{log}"
    );
    assert!(log.contains("too many recent failures"), "{log}");
}

#[test]
fn a_user_added_on_the_primary_logs_in_on_the_secondary_after_sync_and_the_standby_refuses_changes()
{
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, &[], &[]);
    let added = users(&a, &["add", "ops"], &format!("{OTHER_PASSWORD}\n"));
    assert!(added.status.success(), "{}", describe(&added));
    assert!(!String::from_utf8_lossy(&added.stdout).contains(OTHER_PASSWORD));
    // A System Manager local user, through the System Manager API.
    let sysmgr = call(
        a.sysmgr_port,
        "127.0.0.1",
        Method::POST,
        "/api/v1/users",
        ("admin", PASSWORD),
        Some(json!({ "username": "sm-ops", "password": OTHER_PASSWORD })),
    );
    assert_eq!(sysmgr.status, 201, "{}", sysmgr.body);
    assert_eq!(
        admin_ping(&a, "127.0.0.1", "ops", OTHER_PASSWORD).status,
        200
    );
    assert_eq!(
        admin_ping(&b, "127.0.0.1", "ops", OTHER_PASSWORD).status,
        401
    );
    b.ok(&["failover", "sync", &a.endpoint()]);
    assert_eq!(
        admin_ping(&b, "127.0.0.1", "ops", OTHER_PASSWORD).status,
        200
    );
    let status = call(
        b.sysmgr_port,
        "127.0.0.1",
        Method::GET,
        "/api/v1/users",
        ("sm-ops", OTHER_PASSWORD),
        None,
    );
    assert_eq!(status.status, 200, "{}", status.body);
    assert!(status.body.contains("sm-ops"), "{}", status.body);
    // The Standby lists, but refuses changes and says where to make them.
    let listed = users(&b, &["list", "--json"], "");
    assert!(listed.status.success(), "{}", describe(&listed));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ops"]);
    let refused = users(&b, &["add", "ops2"], &format!("{OTHER_PASSWORD}\n"));
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    assert!(
        stderr(&refused).contains("read-only"),
        "{}",
        describe(&refused)
    );
    assert!(
        stderr(&refused).contains("Active node"),
        "{}",
        describe(&refused)
    );
    let refused = call(
        b.sysmgr_port,
        "127.0.0.1",
        Method::DELETE,
        "/api/v1/users/sm-ops",
        ("admin", PASSWORD),
        None,
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("read_only"), "{}", refused.body);
}

#[test]
fn a_new_password_takes_effect_at_once_and_the_old_one_stops_working() {
    let node = served("node-a");
    // Verified and cached.
    assert_eq!(
        admin_ping(&node, "127.0.0.1", "admin", PASSWORD).status,
        200
    );
    let changed = users(
        &node,
        &["set-password", "admin"],
        &format!("{OTHER_PASSWORD}\n"),
    );
    assert!(changed.status.success(), "{}", describe(&changed));
    assert_eq!(
        admin_ping(&node, "127.0.0.1", "admin", PASSWORD).status,
        401
    );
    assert_eq!(
        admin_ping(&node, "127.0.0.1", "admin", OTHER_PASSWORD).status,
        200
    );
    // Through the admin API, the same.
    let changed = call(
        node.service_port,
        "127.0.0.1",
        Method::PUT,
        "/api/v2/admin-users/admin/password",
        ("admin", OTHER_PASSWORD),
        Some(json!({ "password": "quiet-meadow-77" })),
    );
    assert_eq!(changed.status, 204, "{}", changed.body);
    assert_eq!(
        admin_ping(&node, "127.0.0.1", "admin", OTHER_PASSWORD).status,
        401
    );
    assert_eq!(
        admin_ping(&node, "127.0.0.1", "admin", "quiet-meadow-77").status,
        200
    );
    // The System Manager realm kept its own password: the realms are separate accounts.
    let sysmgr = call(
        node.sysmgr_port,
        "127.0.0.1",
        Method::GET,
        "/api/v1/users",
        ("admin", PASSWORD),
        None,
    );
    assert_eq!(sysmgr.status, 200, "{}", sysmgr.body);
    // Recorded as events, with who and from where, never the password.
    let events = call(
        node.service_port,
        "127.0.0.1",
        Method::GET,
        "/api/v2/events?query=password",
        ("admin", "quiet-meadow-77"),
        None,
    );
    assert_eq!(events.status, 200, "{}", events.body);
    assert!(
        events.body.contains("ACCOUNT_PASSWORD_CHANGED"),
        "{}",
        events.body
    );
    assert!(events.body.contains("control socket"), "{}", events.body);
    assert!(events.body.contains("from 127.0.0.1:"), "{}", events.body);
    for secret in [OTHER_PASSWORD, "quiet-meadow-77"] {
        assert!(!events.body.contains(secret), "{}", events.body);
    }
}

#[test]
fn weak_passwords_and_bad_user_names_are_refused_with_clear_errors_from_cli_and_api() {
    let node = served("node-a");
    for (user, password, expected) in [
        ("ops", "password", "most common"),
        ("ops", "12345678", "most common"),
        ("ops", "         ", "white space"),
        ("ops", "short", "at least 8"),
        ("operator1", "Operator1", "user name"),
    ] {
        let refused = users(&node, &["add", user], &format!("{password}\n"));
        assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
        let message = stderr(&refused);
        assert!(
            message.contains("password") && message.contains(expected),
            "{message}"
        );
        let echoed = format!("\"{password}\"");
        // ("password" is also the field's name.)
        let check_echo = password != "password";
        assert!(
            !(check_echo && message.contains(&echoed)),
            "echoed: {message}"
        );
        let answer = call(
            node.service_port,
            "127.0.0.1",
            Method::POST,
            "/api/v2/admin-users",
            ("admin", PASSWORD),
            Some(json!({ "username": user, "password": password })),
        );
        assert_eq!(answer.status, 422, "{}", answer.body);
        assert!(
            answer.body.contains("\"field\":\"password\""),
            "{}",
            answer.body
        );
        assert!(answer.body.contains(expected), "{}", answer.body);
        assert!(
            !(check_echo && answer.body.contains(&echoed)),
            "{}",
            answer.body
        );
    }
    for user in ["ops:1", "two words", "bell\u{7}"] {
        let refused = users(&node, &["add", user], &format!("{OTHER_PASSWORD}\n"));
        assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
        assert!(
            stderr(&refused).contains("username"),
            "{}",
            describe(&refused)
        );
        let answer = call(
            node.sysmgr_port,
            "127.0.0.1",
            Method::POST,
            "/api/v1/users",
            ("admin", PASSWORD),
            Some(json!({ "username": user, "password": OTHER_PASSWORD })),
        );
        assert_eq!(answer.status, 422, "{}", answer.body);
        assert!(
            answer.body.contains("\"field\":\"username\""),
            "{}",
            answer.body
        );
    }
    // Nothing was added.
    let listed = users(&node, &["list", "--json"], "");
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["users"].as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn the_last_user_of_a_realm_cannot_be_removed() {
    let node = served("node-a");
    let refused = users(&node, &["remove", "admin", "--system-manager"], "");
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    assert!(
        stderr(&refused).contains("last system manager user"),
        "{}",
        describe(&refused)
    );
    let refused = call(
        node.service_port,
        "127.0.0.1",
        Method::DELETE,
        "/api/v2/admin-users/admin",
        ("admin", PASSWORD),
        None,
    );
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("last admin user"), "{}", refused.body);
    // With a second user, removing one works, and the removed user is out at once.
    let added = call(
        node.service_port,
        "127.0.0.1",
        Method::POST,
        "/api/v2/admin-users",
        ("admin", PASSWORD),
        Some(json!({ "username": "ops", "password": OTHER_PASSWORD })),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(
        admin_ping(&node, "127.0.0.1", "ops", OTHER_PASSWORD).status,
        200
    );
    let removed = users(&node, &["remove", "ops"], "");
    assert!(removed.status.success(), "{}", describe(&removed));
    assert_eq!(
        admin_ping(&node, "127.0.0.1", "ops", OTHER_PASSWORD).status,
        401
    );
    let again = users(&node, &["remove", "ops"], "");
    assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
    assert!(stderr(&again).contains("not found"), "{}", describe(&again));
}

#[test]
fn init_refuses_a_colon_in_the_user_name_and_gives_each_realm_its_own_salt() {
    let temp = tempfile::tempdir().unwrap();
    let password_file = temp.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let refused = tandem()
        .arg("--data-dir")
        .arg(temp.path().join("colon"))
        .args(["init", "--name", "node-a", "--admin-user", "ad:min"])
        .arg("--admin-password-file")
        .arg(&password_file)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(
        stderr(&refused).contains("--admin-user"),
        "{}",
        describe(&refused)
    );
    assert!(stderr(&refused).contains("':'"), "{}", describe(&refused));
    assert!(!temp.path().join("colon").exists());

    let node = Node::init("node-a");
    let conn = rusqlite::Connection::open_with_flags(
        node.dir.join("replicated.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let hash = |table: &str| -> String {
        conn.query_row(
            &format!("SELECT password_hash FROM {table} WHERE username = 'admin'"),
            [],
            |row| row.get(0),
        )
        .unwrap()
    };
    let (admin, system_manager) = (hash("admin_users"), hash("system_manager_users"));
    assert!(tandem_crypto::verify_password(PASSWORD, &admin));
    assert!(tandem_crypto::verify_password(PASSWORD, &system_manager));
    assert_ne!(admin, system_manager, "the same salt in both realms");
}
