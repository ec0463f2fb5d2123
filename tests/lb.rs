//! `tandem lb` as an operator runs it: the real binary (no --data-dir) in front of two real
//! `tandem` nodes on loopback, probing them over HTTPS with pinned certificates. Traffic follows
//! the guide's rule, never fails back by itself, moves back on `tandem lb resume`, and the
//! controller's witness keeps a Secondary from promoting when only the nodes' link failed. The
//! nodes' ballots decide where a restarted controller sends traffic, and what it remembers in
//! its state file (the newest ballot, the maintenance hold) survives `kill -9`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::LinkProxy;
use support::free_ports;
use support::lb::{Lb, admin_get};
use support::load::Writers;
use support::node::{FAST, Links, Node, describe, start_pair, tandem, wait_until};

/// Makes `a` the Primary and `b` its Secondary (trusted both ways, fast Fail Over Controls,
/// `secondary_extra` HA options), B reaching A through `link` when given; starts both and syncs B.
fn pair(a: &mut Node, b: &mut Node, link: Option<&LinkProxy>, secondary_extra: &[&str]) {
    let primary_at = link.map_or_else(|| a.endpoint(), |link| format!("127.0.0.1:{}", link.port));
    let links = Links {
        primary_at: &primary_at,
        secondary_at: &b.endpoint(),
    };
    let mut options = FAST.to_vec();
    options.extend_from_slice(secondary_extra);
    start_pair(a, b, &links, &[], &options);
    b.ok(&["failover", "sync", &primary_at]);
}

#[test]
fn traffic_follows_the_promoted_secondary_never_fails_back_and_resumes_by_hand() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    pair(&mut a, &mut b, None, &[]);
    lb.wait_until_active("main-primary");
    assert_eq!(lb.served_by().as_deref(), Some("node-a"));
    wait_until(
        || format!("{:#}", lb.status()),
        || {
            let status = lb.status();
            let secondary = Lb::backend(&status, "main-secondary");
            secondary["hastatus"]["state"] == "up" && secondary["status"]["state"] == "down"
        },
    );
    assert_eq!(lb.witness()["reachable"], true, "{}", lb.witness());
    let text = String::from_utf8_lossy(&lb.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("Traffic goes to:  main-primary"), "{text}");

    // The Primary dies: traffic moves once the Secondary has promoted itself.
    a.kill_9();
    b.wait_for_state("Active");
    lb.wait_until_active("main-secondary");
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));
    let status = lb.status();
    let reason = status["lastSwitch"]["reason"].as_str().unwrap_or_default();
    // Either the controller marked the Primary down first, or node-b's newer ballot (epoch 2)
    // made the silent Primary's last claim stale first; both name the failed probe.
    assert!(
        reason.contains("main-primary failed 3 status probes")
            || reason.contains("main-primary's claim, epoch 1 of node"),
        "{status:#}"
    );
    assert!(reason.contains("connect"), "{status:#}");
    assert_eq!(status["switches"], 1);

    // The old Primary returns, fenced: traffic stays, and a resume to it is refused.
    a.serve();
    a.wait_until_fenced();
    let refused = lb.cli(&["resume", "--to", "main-primary"]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("main-primary cannot take traffic"),
        "{stderr}"
    );
    assert!(
        stderr.contains("traffic stays on main-secondary"),
        "{stderr}"
    );
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));

    // The guide's failback: sync the old Primary, make it Primary (forced: with node-b still
    // Active, Tandem refuses it otherwise; `ha switchover` is the way that loses nothing). It is
    // then Active in a newer epoch than node-b, so traffic follows it by itself (not a
    // fail-back: the newer Active), even while node-b still answers as Active; a resume finds it
    // there already.
    a.ok(&["failover", "sync", &b.endpoint()]);
    a.ok(&["failover", "mode", "primary", "--force"]);
    lb.wait_until_active("main-primary");
    let resumed = lb.cli(&["resume"]);
    assert!(resumed.status.success(), "{}", describe(&resumed));
    assert_eq!(lb.active().as_deref(), Some("main-primary"));
    b.ok(&["failover", "mode", "secondary"]);
    b.wait_for_state("Standby");
    assert_eq!(lb.served_by().as_deref(), Some("node-a"));

    // Metrics count what happened.
    let (code, metrics) = admin_get(&lb.admin, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("tandem_lb_active{backend=\"main-primary\"} 1"),
        "{metrics}"
    );
    let switches: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("tandem_lb_switches_total "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(switches >= 2, "{metrics}");
    assert!(metrics.contains("tandem_lb_connections_total{backend=\"main-secondary\"}"));
    let log = lb.log();
    assert!(log.contains("traffic switched"), "{log}");
}

/// Table 1's role swap under load through the controller: the old Primary, stepping down, says
/// so on its next probe, and the new Active states the newer ballot, so traffic follows at once
/// (the reason names the ballots, not `fall` failed probes). No acknowledged write is lost.
#[test]
fn after_a_switchover_traffic_follows_the_new_active_node_by_its_ballot() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    pair(&mut a, &mut b, None, &[]);
    lb.wait_until_active("main-primary");
    let load = Writers::start(lb.device_port, 2, "swap");
    load.wait_for_more(20, "before the switchover");
    b.ok(&["ha", "switchover"]);
    lb.wait_until_active("main-secondary");
    load.wait_for_more(20, "after the switchover");
    let acknowledged = load.stop();
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));
    let status = lb.status();
    let reason = status["lastSwitch"]["reason"].as_str().unwrap_or_default();
    // By the ballots: the old Primary said it stepped down, or still claimed epoch 1 when
    // node-b's epoch 2 was seen (whichever probe came first).
    assert!(
        reason.contains("main-primary stepped down: its ballot says `epoch=")
            || reason.contains("main-primary's claim, epoch 1 of node"),
        "{status:#}"
    );
    assert!(!reason.contains("status probes in a row"), "{status:#}");
    let on_b = b.labels();
    let lost: Vec<&String> = acknowledged
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !on_b.contains(*name))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes are not on the new Active node: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

#[test]
fn the_controllers_witness_keeps_the_secondary_standby_when_only_the_link_failed() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    // B reaches A only through a link the test can cut; the controller reaches both directly.
    let link = LinkProxy::start(a.ssh_port);
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    let witness = format!("http://{}/witness/primary", lb.admin);
    pair(&mut a, &mut b, Some(&link), &["--witness", &witness]);
    lb.wait_until_active("main-primary");

    link.cut();
    let only_the_link = |b: &Node| {
        b.ha_log().iter().any(|(_, _, message)| {
            message.contains("only the link between this node and the Primary failed")
        })
    };
    wait_until(|| format!("{:?}", b.ha_log()), || only_the_link(&b));
    assert_eq!(b.state(), "Standby");
    assert_eq!(a.state(), "Active");
    assert_eq!(lb.served_by().as_deref(), Some("node-a"));

    // Now the Primary really dies: the witness no longer reaches it, B promotes, traffic follows.
    a.kill_9();
    b.wait_for_state("Active");
    lb.wait_until_active("main-secondary");
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));
}

/// Node A (Primary) and node B (its Secondary), each reaching the other only through a link
/// proxy the test can cut: `(a, b, link to A, link to B)`. B is Standby and synced.
fn cuttable_pair() -> (Node, Node, LinkProxy, LinkProxy) {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let (to_a, to_b) = (LinkProxy::start(a.ssh_port), LinkProxy::start(b.ssh_port));
    let primary_at = format!("127.0.0.1:{}", to_a.port);
    let links = Links {
        primary_at: &primary_at,
        secondary_at: &format!("127.0.0.1:{}", to_b.port),
    };
    start_pair(&mut a, &mut b, &links, &[], FAST);
    b.ok(&["failover", "sync", &primary_at]);
    (a, b, to_a, to_b)
}

/// Waits until the controller's latest probes say `main-primary` passes (or not) and
/// `main-secondary` passes (or not), each with the ballot header read.
fn wait_for_probes(lb: &Lb, primary_passes: bool, secondary_passes: bool) {
    wait_until(
        || {
            format!(
                "the probes never showed that: {:#}\n{}",
                lb.status(),
                lb.log()
            )
        },
        || {
            let status = lb.status();
            let seen = |name: &str, passes: bool| {
                let backend = Lb::backend(&status, name);
                let state = if passes { "up" } else { "down" };
                backend["status"]["state"] == state
                    && backend["status"]["lastOk"] == passes
                    && (!passes
                        || backend["ballot"]
                            .as_str()
                            .is_some_and(|b| b.starts_with("epoch=")))
            };
            seen("main-primary", primary_passes) && seen("main-secondary", secondary_passes)
        },
    );
}

#[test]
fn a_restarted_controller_routes_only_to_the_newest_ballot_and_remembers_it() {
    let (mut a, b, to_a, to_b) = cuttable_pair();
    let mut lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    lb.wait_until_active("main-primary");

    // The Primary dies; the Secondary promotes itself in epoch 2 and traffic follows.
    a.kill_9();
    b.wait_for_state("Active");
    assert_eq!(b.status()["controller"]["epoch"], 2);
    lb.wait_until_active("main-secondary");
    let remembered = std::fs::read_to_string(lb.state_file()).unwrap();
    assert!(remembered.contains("\"epoch\": 2"), "{remembered}");

    // The controller is killed. The old Primary restarts behind a cut link: it cannot learn of
    // epoch 2 and serves as Active in its old epoch 1, passing /status/status.html like node-b.
    lb.kill_9();
    to_a.cut();
    to_b.cut();
    a.serve();
    a.wait_for_state("Active");
    assert_eq!(a.status()["controller"]["epoch"], 1);

    // Restarted without its memory (as a controller rebuilt after the data-center loss), it
    // sends traffic to the newest ballot only (the first backend in order would be the stale
    // Primary), and raises the dual-Active alarm.
    std::fs::remove_file(lb.state_file()).unwrap();
    lb.restart();
    wait_for_probes(&lb, true, true);
    let status = lb.status();
    assert_eq!(status["active"], "main-secondary", "{status:#}");
    assert_eq!(
        Lb::backend(&status, "main-primary")["claimStale"],
        true,
        "{status:#}"
    );
    for _ in 0..5 {
        assert_eq!(lb.served_by().as_deref(), Some("node-b"));
    }
    let alarm = &status["dualActive"];
    assert_eq!(
        alarm["backends"],
        serde_json::json!(["main-primary", "main-secondary"]),
        "{status:#}"
    );
    assert_eq!(lb.metric("tandem_lb_dual_active"), "1");
    let text = String::from_utf8_lossy(&lb.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("DUAL ACTIVE:"), "{text}");
    assert!(text.contains("epoch 1 STALE"), "{text}");
    assert!(lb.log().contains("DUAL ACTIVE"), "{}", lb.log());

    // Killed again while node-b is gone too: the stale Primary is the only node that passes,
    // and the ballot remembered in the state file still keeps devices away from it.
    let remembered = std::fs::read_to_string(lb.state_file()).unwrap();
    assert!(remembered.contains("\"epoch\": 2"), "{remembered}");
    lb.kill_9();
    drop(b);
    lb.restart();
    wait_for_probes(&lb, true, false);
    let status = lb.status();
    assert_eq!(status["passing"], false, "{status:#}");
    assert_ne!(status["active"], "main-primary", "{status:#}");
    assert_eq!(status["highestClaim"]["epoch"], 2, "{status:#}");
    assert_eq!(lb.served_by(), None);
    assert_eq!(lb.metric("tandem_lb_dual_active"), "0");
    let refused = lb.cli(&["resume", "--to", "main-primary"]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("below the newest claim seen"),
        "{}",
        describe(&refused)
    );
}

#[test]
fn a_maintenance_hold_survives_a_restart_and_stops_the_failover_until_released() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let mut lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    pair(&mut a, &mut b, None, &[]);
    lb.wait_until_active("main-primary");

    let bad = lb.cli(&["hold", "--reason", ""]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("reason = \"\""),
        "{}",
        describe(&bad)
    );
    let held = lb.cli(&["hold", "--reason", "upgrade to 2.4"]);
    assert!(held.status.success(), "{}", describe(&held));
    assert!(String::from_utf8_lossy(&held.stdout).contains("held (upgrade to 2.4)"));

    lb.kill_9_and_restart(Duration::ZERO);
    wait_until(
        || format!("{:#}", lb.status()),
        || lb.status()["passing"] == true,
    );
    let status = lb.status();
    assert_eq!(status["hold"]["reason"], "upgrade to 2.4", "{status:#}");
    assert_eq!(status["active"], "main-primary", "{status:#}");
    assert_eq!(lb.metric("tandem_lb_held"), "1");
    let text = String::from_utf8_lossy(&lb.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("HELD:"), "{text}");
    assert_eq!(lb.served_by().as_deref(), Some("node-a"));

    // The Primary goes away for its upgrade and the Secondary promotes itself: held, traffic
    // does not move; new connections are refused, and only now the witness says so.
    a.kill_9();
    b.wait_for_state("Active");
    wait_for_probes(&lb, false, true);
    assert_eq!(lb.active().as_deref(), Some("main-primary"));
    assert_eq!(lb.served_by(), None);
    assert_eq!(lb.witness()["reachable"], false, "{}", lb.witness());
    let resume_hint = lb.status()["waiting"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        resume_hint.contains("maintenance hold (upgrade to 2.4)"),
        "{resume_hint}"
    );

    // Released: the rule applies at once.
    let released = lb.cli(&["release"]);
    assert!(released.status.success(), "{}", describe(&released));
    lb.wait_until_active("main-secondary");
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));
    assert_eq!(lb.metric("tandem_lb_held"), "0");
    let remembered = std::fs::read_to_string(lb.state_file()).unwrap();
    assert!(remembered.contains("\"hold\": null"), "{remembered}");
}

#[test]
fn the_command_line_names_bad_input_and_needs_no_data_directory() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("lb.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:9443\"\nadmin = \"127.0.0.1:9444\"\nfall = 0\n\
         [probe_tls]\ninsecure = true\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        tandem()
            .env_remove("TANDEM_DATA_DIR")
            .args(args)
            .output()
            .unwrap()
    };
    let bad = run(&["lb", "--config", config.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("fall = 0: must be between 1 and 100"),
        "{}",
        describe(&bad)
    );
    // A corrupt state file stops the start, naming the file and the fix.
    let good = temp.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [probe_tls]\ninsecure = true\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let state_file = temp.path().join("lb-state.json");
    std::fs::write(&state_file, "{\"version\": 1, \"memory\": {\"act").unwrap();
    let corrupt = run(&["lb", "--config", good.to_str().unwrap()]);
    assert_eq!(corrupt.status.code(), Some(1), "{}", describe(&corrupt));
    let stderr = String::from_utf8_lossy(&corrupt.stderr);
    assert!(
        stderr.contains(&format!(
            "the state file {} is not valid",
            state_file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("remove the file"), "{stderr}");

    let missing = run(&["lb"]);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--config FILE"));
    let [port] = free_ports::<1>();
    let unreachable = run(&["lb", "status", "--admin", &format!("127.0.0.1:{port}")]);
    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "{}",
        describe(&unreachable)
    );
    assert!(
        String::from_utf8_lossy(&unreachable.stderr)
            .contains("cannot reach the traffic controller"),
        "{}",
        describe(&unreachable)
    );
}
