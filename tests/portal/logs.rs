//! Troubleshooting → Logs: the window in a browser on a real pair's Secondary (heartbeats, the
//! level filter, paging; guide Table 3, task 5), the same lines through `GET /api/v1/logs` and
//! `tandem ha logs`, `--follow`, and the Security log under a password flood.

use super::{browser_available, run_script};
use crate::support::node::{
    FAST, Links, Node, PASSWORD, STATE_DEADLINE, start_pair, tandem, wait_until,
};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// `GET /api/v1/logs?…` on `node`'s System Manager listener, as admin.
fn api_logs(node: &Node, query: &str) -> Value {
    let reply = crate::support::node::Call::new(
        node.sysmgr_port,
        reqwest::Method::GET,
        &format!("/api/v1/logs?{query}"),
    )
    .send()
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

/// `(id, at, level, message)` of every line of an answer or a JSON Lines output.
fn facts(lines: &[Value]) -> Vec<(i64, String, String, String)> {
    lines
        .iter()
        .map(|line| {
            (
                line["id"].as_i64().unwrap(),
                line["at"].as_str().unwrap().to_owned(),
                line["level"].as_str().unwrap().to_owned(),
                line["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_secondarys_logs_show_heartbeats_alike_in_the_window_the_api_and_the_cli() {
    if !browser_available() {
        return;
    }
    let (mut a, mut b) = (Node::init("logs-primary"), Node::init("logs-secondary"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, &[], FAST);
    // Enough heartbeats (one a second with FAST) for two pages of five and more.
    wait_until(
        || format!("{:#?}", b.ha_log()),
        || {
            b.ha_log()
                .iter()
                .filter(|(_, _, message)| message.starts_with("heartbeat to logs-primary:"))
                .count()
                >= 12
        },
    );

    let seen = run_script(
        "logs.mjs",
        &[
            (
                "TANDEM_PORTAL_URL",
                format!("https://127.0.0.1:{}", b.sysmgr_port),
            ),
            ("TANDEM_PORTAL_PASSWORD", PASSWORD.to_owned()),
            ("TANDEM_PRIMARY_NAME", "logs-primary".to_owned()),
        ],
    );

    // The window's second page is the API's page before the same line id.
    let before = seen["before"].as_i64().unwrap();
    let api = api_logs(
        &b,
        &format!("module=HighAvailability&limit=5&before={before}"),
    );
    let api_messages: Vec<&str> = api["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["message"].as_str().unwrap())
        .collect();
    let page_messages: Vec<&str> = seen["page2"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["message"].as_str().unwrap())
        .collect();
    assert_eq!(api_messages, page_messages);
    assert_eq!(api["level"], "INFO");

    // Bad parameters: 422 naming each, with the value and what is accepted.
    let refused = crate::support::node::Call::new(
        b.sysmgr_port,
        reqwest::Method::GET,
        "/api/v1/logs?module=Nope&level=LOUD&limit=0",
    )
    .send()
    .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.text());
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    let fields = body["error"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 3, "{body:#}");
    assert_eq!(fields[0]["field"], "module");
    assert_eq!(fields[0]["value"], "Nope");
    assert!(
        fields[0]["problem"]
            .as_str()
            .unwrap()
            .contains("HighAvailability, Notifications, Security"),
        "{body:#}"
    );

    // The CLI agrees with the API line for line (heartbeats keep coming, so compare the lines
    // both read: the CLI reads after the API).
    let api = api_logs(&b, "module=HighAvailability&limit=20");
    let api_lines = facts(api["lines"].as_array().unwrap());
    let printed = b.ok(&[
        "ha",
        "logs",
        "--module",
        "HighAvailability",
        "--json",
        "--limit",
        "20",
    ]);
    let cli: Vec<Value> = printed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let cli_lines = facts(&cli);
    assert!(
        cli_lines.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "the CLI prints oldest first: {printed}"
    );
    let both: Vec<_> = cli_lines
        .iter()
        .filter(|line| line.0 <= api_lines[0].0)
        .collect();
    assert!(both.len() >= 10, "{printed}");
    for line in &both {
        assert!(api_lines.contains(line), "{line:?} is not in {api_lines:?}");
    }
    assert!(
        cli_lines
            .iter()
            .any(|line| line.2 == "INFO" && line.3.starts_with("heartbeat to logs-primary:")),
        "{printed}"
    );

    // The wrong password the browser typed is in the Security log through the CLI too.
    let security = b.ok(&["ha", "logs", "--module", "Security", "--level", "warn"]);
    assert!(
        security.contains("WARN   Security login failed")
            && security.contains("\"admin\" from 127.0.0.1:"),
        "{security}"
    );

    follow_prints_a_line_written_after_it_started(&b);
}

/// `tandem ha logs --follow`: a Save and Apply made after it printed the newest line reaches
/// it, as an HA configuration change in the Security log (who, from where, which field).
fn follow_prints_a_line_written_after_it_started(node: &Node) {
    let mut follow = tandem()
        .arg("--data-dir")
        .arg(&node.dir)
        .args([
            "ha", "logs", "--module", "Security", "--follow", "--json", "--limit", "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    // The newest line is printed first: from then on it follows.
    let first = lines.recv_timeout(STATE_DEADLINE).unwrap();
    assert!(!first.contains("HA configuration changed"), "{first}");
    let reply = crate::support::node::Call::new(
        node.sysmgr_port,
        reqwest::Method::PUT,
        "/api/v1/ha/config",
    )
    .json(json!({ "runEvery": "2h" }))
    .send()
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let followed = loop {
        let line = lines
            .recv_timeout(STATE_DEADLINE)
            .expect("--follow printed no new line");
        if line.contains("HA configuration changed") {
            break line;
        }
    };
    let followed: Value = serde_json::from_str(&followed).unwrap();
    let message = followed["message"].as_str().unwrap();
    assert!(
        message.contains("by user \"admin\" from 127.0.0.1:") && message.ends_with(": runEvery"),
        "{message}"
    );
    assert_eq!(followed["module"], "Security");
    crate::support::kill_9(&mut follow);
}

#[test]
fn a_flood_of_wrong_console_passwords_writes_a_few_security_lines_not_one_per_attempt() {
    /// Wrong passwords sent, by this many senders at once (a flood that ignores Retry-After).
    const ATTEMPTS: usize = 60;
    const SENDERS: usize = 10;
    let mut node = Node::init("logs-flood");
    node.serve();
    let flooder: std::net::IpAddr = "127.0.0.7".parse().unwrap();
    let port = node.sysmgr_port;
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            std::thread::spawn(move || {
                (0..ATTEMPTS / SENDERS)
                    .map(|_| {
                        crate::support::node::Call::new(port, reqwest::Method::POST, "/login")
                            .from(flooder)
                            .user(None)
                            .headers(&[
                                ("X-Tandem-Client", "tests"),
                                ("Content-Type", "application/x-www-form-urlencoded"),
                            ])
                            .raw("user=admin&password=not-it&next=%2F")
                            .send()
                            .unwrap()
                            .status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = senders
        .into_iter()
        .flat_map(|sender| sender.join().unwrap())
        .collect();
    assert!(
        statuses
            .iter()
            .all(|status| [401, 429, 503].contains(status)),
        "{statuses:?}"
    );
    // The flood was throttled: without refusals this test would prove nothing.
    assert!(statuses.contains(&429), "{statuses:?}");

    let lines: Vec<String> = node
        .log("Security")
        .into_iter()
        .map(|(_, _, message)| message)
        .filter(|message| message.contains("from 127.0.0.7:"))
        .collect();
    eprintln!(
        "{} Security lines for {ATTEMPTS} attempts (statuses {statuses:?}): {lines:#?}",
        lines.len()
    );
    let failed = lines
        .iter()
        .filter(|line| line.starts_with("login failed"))
        .count();
    // Every password actually checked is logged (the first ones at least)…
    assert!(failed >= 5, "{lines:#?}");
    assert!(
        lines.iter().all(|line| line.contains("\"admin\"")),
        "{lines:#?}"
    );
    // …but refusals without a check only once per back-off window: far fewer lines than
    // attempts.
    assert!(
        lines.len() * 2 < ATTEMPTS,
        "{} lines for {ATTEMPTS} attempts: {lines:#?}",
        lines.len()
    );

    // The administrator, elsewhere, is not held up by the flood; the account they add is in
    // the Security log with who added it and from where.
    let reply = crate::support::node::Call::new(port, reqwest::Method::POST, "/api/v1/users")
        .json(json!({ "username": "ops-two", "password": "Unusual-Horse-Battery-42" }))
        .send()
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let security = node.ok(&[
        "ha",
        "logs",
        "--module",
        "Security",
        "--contains",
        "ops-two",
    ]);
    assert!(
        security.contains(
            "account added: system manager user \"ops-two\" by \"admin\" from 127.0.0.1:"
        ),
        "{security}"
    );
}
