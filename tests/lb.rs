//! `tandem lb` as an operator runs it: the real binary (no --data-dir) in front of two real
//! `tandem` nodes on loopback, probing them over HTTPS with pinned certificates. Traffic follows
//! the guide's rule, never fails back by itself, moves back on `tandem lb resume`, and the
//! controller's witness keeps a Secondary from promoting when only the nodes' link failed.

mod support;

use support::LinkProxy;
use support::free_ports;
use support::lb::{Lb, admin_get};
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
    assert_eq!(lb.witness(), serde_json::json!({"reachable": true}));
    let text = String::from_utf8_lossy(&lb.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("Traffic goes to:  main-primary"), "{text}");

    // The Primary dies: traffic moves once the Secondary has promoted itself.
    a.kill_9();
    b.wait_for_state("Active");
    lb.wait_until_active("main-secondary");
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));
    let status = lb.status();
    let reason = status["lastSwitch"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("main-primary failed 3 status probes"),
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

    // The guide's failback: sync the old Primary, make it Primary. The controller does not move
    // by itself while node-b still answers as Active; the operator resumes.
    a.ok(&["failover", "sync", &b.endpoint()]);
    a.ok(&["failover", "mode", "primary"]);
    wait_until(
        || format!("main-primary never passed its probes: {:#}", lb.status()),
        || Lb::backend(&lb.status(), "main-primary")["status"]["state"] == "up",
    );
    if b.state() == "Active" {
        assert_eq!(lb.active().as_deref(), Some("main-secondary"));
    }
    let resumed = lb.cli(&["resume"]);
    assert!(resumed.status.success(), "{}", describe(&resumed));
    lb.wait_until_active("main-primary");
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
