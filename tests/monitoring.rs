//! Monitoring as an operator deploys it: the Prometheus alert rules in deploy/prometheus/ pass
//! `promtool check rules` and name only metrics that real nodes and a real `tandem lb` expose,
//! every `/metrics` passes `promtool check metrics`, and the systemd units in deploy/systemd/
//! pass `systemd-analyze verify` with the hardening the README promises.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use support::lb::{Lb, admin_get};
use support::node::{Call, FAST, Links, Node, describe, start_pair, wait_until};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/tandem-rules.yml"
);
const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/systemd");

fn available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A node's `/metrics`, as a scraper with System Manager credentials reads it.
fn scrape(node: &Node) -> String {
    let reply = Call::new(node.sysmgr_port, reqwest::Method::GET, "/metrics")
        .send()
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// `promtool check metrics` (exposition on stdin): format and naming conventions.
fn check_exposition(text: &str, from: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics refused the exposition of {from}: {}\n{text}",
        describe(&output)
    );
}

/// Every series name an exposition can hold: each family, and a histogram's parts.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = declared.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for part in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{part}"));
            }
        }
    }
    names
}

/// The `tandem_…` metric names a text mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    let mut at = 0;
    while let Some(found) = text[at..].find("tandem_") {
        let start = at + found;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if start == 0 || !word(bytes[start - 1]) {
            names.insert(text[start..end].to_owned());
        }
        at = end.max(start + 1);
    }
    names
}

#[test]
fn the_alert_rules_pass_promtool_and_name_only_metrics_that_nodes_and_the_controller_expose() {
    if !available("promtool") {
        return support::skip_without(
            "promtool",
            "it checks the alert rules and the exposition",
            "Debian's prometheus package",
        );
    }
    let checked = Command::new("promtool")
        .args(["check", "rules", RULES])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", describe(&checked));
    let in_rules = metric_names(&std::fs::read_to_string(RULES).unwrap());
    assert!(in_rules.len() >= 10, "{in_rules:?}");

    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    let mut options = vec!["--replication", "continuous"];
    options.extend_from_slice(FAST);
    start_pair(&mut a, &mut b, &links, &options, &options);
    wait_until(
        || format!("{:#}", b.status()),
        || b.status()["follower"]["connected"] == true,
    );
    let lb = Lb::start(&[("node-a", &a, "dc1"), ("node-b", &b, "dc1")]);
    lb.wait_until_active("node-a");
    // A request of each sort, and a refused login, so their series carry counts.
    assert_eq!(a.get("/api/v2/labels?limit=1").0, 200);
    let refused = Call::new(a.sysmgr_port, reqwest::Method::GET, "/metrics")
        .user(Some(("admin", "not-the-password")))
        .send()
        .unwrap();
    assert_eq!(refused.status, 401);

    let mut scrapes = vec![
        ("the Active node (continuous)".to_owned(), scrape(&a)),
        ("the following Standby".to_owned(), scrape(&b)),
    ];
    let (code, text) = admin_get(&lb.admin, "/metrics");
    assert_eq!(code, 200, "{text}");
    scrapes.push(("tandem lb".to_owned(), text));

    // A Standby that syncs by schedule exposes Run Every, and the last successful sync once
    // one has run.
    a.ok(&["ha", "configure", "--replication", "scheduled"]);
    b.ok(&["ha", "configure", "--replication", "scheduled"]);
    b.ok(&["failover", "sync", &a.endpoint()]);
    scrapes.push(("a Standby syncing by schedule".to_owned(), scrape(&b)));

    let mut everything = BTreeSet::new();
    for (from, text) in &scrapes {
        check_exposition(text, from);
        everything.extend(exposed(text));
    }
    let requests = &scrapes[0].1;
    assert!(
        requests.lines().any(|line| line.starts_with(
            "tandem_http_requests_total{listener=\"service\",route=\"api\",status=\"2xx\"}"
        ) && !line.ends_with(" 0")),
        "{requests}"
    );
    assert!(
        requests.lines().any(|line| line.starts_with(
            "tandem_login_failures_total{realm=\"system_manager\",reason=\"wrong_password\"}"
        ) && !line.ends_with(" 0")),
        "{requests}"
    );
    let missing: Vec<&String> = in_rules.difference(&everything).collect();
    assert!(
        missing.is_empty(),
        "the rules name metrics no node or controller exposes: {missing:?}"
    );
}

/// `key=value` lines of a unit file (the last value of a repeated key wins, as for these keys
/// in systemd).
fn unit_settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify_and_keep_their_hardening() {
    for name in ["tandem.service", "tandem-lb.service"] {
        let text = std::fs::read_to_string(Path::new(UNITS).join(name)).unwrap();
        let settings = unit_settings(&text);
        let get = |key: &str| settings.get(key).map(String::as_str).unwrap_or_default();
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("ProtectHome", "yes"),
            ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
            ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
            ("Restart", "on-failure"),
            ("Type", "simple"),
        ] {
            assert_eq!(get(key), value, "{name}: {key}");
        }
        // Writable: the state directory systemd creates for the service, and for a node the
        // optional ("-") backup directory.
        let writable: Vec<&str> = get("ReadWritePaths").split_whitespace().collect();
        let state = format!("/var/lib/{}", get("StateDirectory"));
        let expected: Vec<&str> = if name == "tandem.service" {
            vec![&state, "-/var/backups/tandem"]
        } else {
            vec![&state]
        };
        assert_eq!(writable, expected, "{name}");
        // Longer than the node's drain, so a clean stop is never cut short by SIGKILL.
        let stop: u64 = get("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
        assert!(
            std::time::Duration::from_secs(stop) > tandem_server::DRAIN_TIMEOUT,
            "{name}"
        );
        assert!(
            get("ExecStart").starts_with("/usr/local/bin/tandem "),
            "{name}"
        );
        if name == "tandem.service" {
            assert_eq!(get("Environment"), "TANDEM_LOG=info", "{name}");
            assert!(
                text.contains("Environment=TANDEM_DATA_DIR=/var/lib/tandem\n"),
                "{name}"
            );
        }
    }
    if !available("systemd-analyze") {
        return support::skip_without(
            "systemd-analyze",
            "it verifies the systemd units",
            "Debian's systemd package",
        );
    }
    // The units name the installed binary; verify them against this build's.
    let temp = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in ["tandem.service", "tandem-lb.service"] {
        let text = std::fs::read_to_string(Path::new(UNITS).join(name))
            .unwrap()
            .replace("/usr/local/bin/tandem", env!("CARGO_BIN_EXE_tandem"));
        let path = temp.path().join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(warnings.trim().is_empty(), "{warnings}");
}
