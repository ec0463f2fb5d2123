//! Continuous and synchronous replication (`tandem ha configure --replication
//! continuous|synchronous`) between real `tandem` processes over real SSH.
//! - Continuous: writes on the Primary reach the Standby as they commit, the follower's state
//!   and lag show in `tandem ha status`, and after `kill -9` of the Primary under a write load
//!   the promoted Secondary holds every acknowledged write but the last instants'.
//! - Synchronous: over repeated `kill -9` of the Primary under load, not one acknowledged write
//!   is missing on the promoted Secondary; with the Standby gone, writes wait (`block`) or, after
//!   the timeout, go on with an alarm (`continuous`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::lb::Lb;
use support::load::Writers;
use support::node::{FAST, Links, Node, start_pair, wait_until};

/// A Primary and its Secondary replicating as `replication` says (plus `options` on both),
/// both running, the Secondary following.
fn pair_with(replication: &str, options: &[&str]) -> (Node, Node) {
    let mut a = Node::init("node-a");
    let mut b = Node::init("node-b");
    start_streaming(&mut a, &mut b, replication, options);
    (a, b)
}

/// As [`pair_with`], with the traffic controller in front of the pair as both nodes' witness:
/// synchronous replication that falls back to continuous, with automatic promotion, is refused
/// without such a third party (it tells a cut link from a dead Primary).
fn pair_with_witness(replication: &str, options: &[&str]) -> (Node, Node, Lb) {
    let mut a = Node::init("node-a");
    let mut b = Node::init("node-b");
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    let witness = format!("http://{}/witness/primary", lb.admin);
    let mut options = options.to_vec();
    options.extend(["--witness", &witness]);
    start_streaming(&mut a, &mut b, replication, &options);
    (a, b, lb)
}

/// Starts `a` as the Primary and `b` as its following Secondary.
fn start_streaming(a: &mut Node, b: &mut Node, replication: &str, options: &[&str]) {
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    let mut primary = vec!["--replication", replication];
    primary.extend_from_slice(options);
    let mut secondary = primary.clone();
    secondary.extend_from_slice(FAST);
    start_pair(a, b, &links, &primary, &secondary);
    wait_until(
        || format!("the follower never connected: {:#}", b.status()),
        || b.status()["follower"]["connected"] == true,
    );
}

fn pair() -> (Node, Node) {
    pair_with("continuous", &[])
}

fn create_label(node: &Node, name: &str) -> u16 {
    node.request(
        reqwest::Method::POST,
        "/api/v2/labels",
        Some(serde_json::json!({ "name": name })),
    )
    .0
}

#[test]
fn writes_reach_the_standby_as_they_commit_and_the_status_shows_the_follower() {
    let (a, b) = pair();
    for index in 0..20 {
        assert_eq!(create_label(&a, &format!("streamed-{index}")), 201);
    }
    wait_until(
        || format!("the writes never reached node-b: {:?}", b.labels()),
        || {
            b.labels()
                .iter()
                .filter(|name| name.starts_with("streamed-"))
                .count()
                == 20
        },
    );
    let status = b.status();
    let follower = &status["follower"];
    assert_eq!(follower["connected"], true, "{status:#}");
    assert!(
        follower["appliedEntries"].as_u64().unwrap_or(0) >= 20,
        "{status:#}"
    );
    assert!(follower["lastLagMs"].is_i64(), "{status:#}");
    // Sync History: one row for the stream (not one per batch), kept up to date while it runs.
    wait_until(
        || format!("{:#?}", b.history()),
        || {
            let rows = b.history();
            let running: Vec<&serde_json::Value> = rows
                .iter()
                .filter(|row| row["trigger"] == "continuous" && row["result"] == "running")
                .collect();
            running.len() == 1
                && running[0]["kind"] == "stream"
                && running[0]["entries"].as_i64().unwrap_or(0) >= 20
        },
    );
    let text = b.ok(&["ha", "status"]);
    assert!(text.contains("Continuous replication from"), "{text}");
    assert!(text.contains("Replication: continuous"), "{text}");
    assert!(status["behind"].is_null(), "{status:#}");
    let (code, probe) = b.get("/status/replication.html");
    assert_eq!(code, 200, "{probe}");
    assert!(
        probe.starts_with("TANDEM-REPLICATION: OK (in step"),
        "{probe}"
    );
    // Prometheus metrics on the System Manager listener (System Manager credentials).
    let (code, metrics) =
        support::node::https(b.sysmgr_port, reqwest::Method::GET, "/metrics", None);
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.contains("tandem_ha_state{state=\"Standby\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_replication_follower_connected 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tandem_replication_behind 0"), "{metrics}");
    let (_, primary_metrics) =
        support::node::https(a.sysmgr_port, reqwest::Method::GET, "/metrics", None);
    assert!(
        primary_metrics.contains("tandem_ha_state{state=\"Active\"} 1"),
        "{primary_metrics}"
    );
    // The Standby still refuses writes of its own.
    assert_eq!(create_label(&b, "on-the-standby"), 503);
    // Both nodes hold the same data.
    b.ok(&["ha", "verify", &a.endpoint()]);
}

#[test]
fn after_kill_9_of_the_primary_under_load_only_the_last_instants_writes_can_be_missing() {
    let (mut a, b) = pair();
    let load = Writers::start(a.service_port, 1, "load");
    // Let the load run, then kill the Primary in the middle of it.
    wait_until(|| "the load never started".into(), || load.count() >= 200);
    a.kill_9();
    let killed = Instant::now();
    let acknowledged = load.stop();
    b.wait_for_state("Active");

    let on_b = b.labels();
    let missing: Vec<&(String, Instant)> = acknowledged
        .iter()
        .filter(|(name, _)| !on_b.contains(name))
        .collect();
    // Everything acknowledged more than a second before the kill is on node-b: the stream's lag
    // is milliseconds (BENCHMARKS.md), a second is a bound that cannot be mistaken for it.
    let old_missing: Vec<&String> = missing
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > Duration::from_secs(1))
        .map(|(name, _)| name)
        .collect();
    assert!(
        old_missing.is_empty(),
        "{} of {} acknowledged writes older than 1 s are missing on the promoted node: {old_missing:?}",
        old_missing.len(),
        acknowledged.len()
    );
    // The stream's Sync History row ended when the Primary died, with what it had applied.
    let rows = b.history();
    let stream = rows
        .iter()
        .find(|row| row["trigger"] == "continuous")
        .unwrap_or_else(|| panic!("no stream row: {rows:#?}"));
    assert_eq!(stream["result"], "failed", "{rows:#?}");
    assert!(stream["error"].is_string(), "{rows:#?}");
    assert!(stream["endedAt"].is_string(), "{rows:#?}");
    eprintln!(
        "acknowledged {}, missing on the promoted Secondary {} (all within the last second)",
        acknowledged.len(),
        missing.len()
    );
}

#[test]
fn synchronous_replication_loses_no_acknowledged_write_over_repeated_kill_9() {
    // Runs of the whole scenario; each kills the Primary at a different point of the load.
    const RUNS: usize = 3;
    let mut total = 0;
    for run in 0..RUNS {
        // The default policy (the continuous fallback, automatic promotion) with the
        // controller as witness: it no longer reaches the killed Primary, so B promotes.
        let (mut a, b, _lb) = pair_with_witness("synchronous", &[]);
        let load = Writers::start(a.service_port, 4, &format!("sync-{run}"));
        wait_until(
            || "the load never started".into(),
            || load.count() >= 100 + 50 * run,
        );
        if run == 0 {
            // The Standby freezes first: under continuous replication the Primary would keep
            // acknowledging writes the Standby never gets; synchronous ones wait instead.
            b.signal("STOP");
            std::thread::sleep(Duration::from_millis(500));
            a.kill_9();
            b.signal("CONT");
        } else {
            a.kill_9();
        }
        let acknowledged = load.stop();
        b.wait_for_state("Active");
        let on_b = b.labels();
        let missing: Vec<&String> = acknowledged
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !on_b.contains(*name))
            .collect();
        assert!(
            missing.is_empty(),
            "run {run}: {} of {} acknowledged writes are missing on the promoted Secondary, e.g. {:?}",
            missing.len(),
            acknowledged.len(),
            &missing[..missing.len().min(10)]
        );
        total += acknowledged.len();
    }
    eprintln!("{RUNS} runs, {total} acknowledged writes, 0 missing");
}

/// The rule for a node promoted over a failed Primary (ARCHITECTURE.md): with the continuous
/// fallback it falls back at once, once the witness recorded it, instead of making its first
/// writes wait the synchronous timeout for the Standby it just failed over from.
#[test]
fn a_node_promoted_over_a_failed_primary_does_not_wait_for_it_as_its_standby() {
    // The longest timeout there is: a write answered before it ran out was answered by the rule.
    let (mut a, b, lb) = pair_with_witness("synchronous", &["--synchronous-timeout", "10m"]);
    assert_eq!(create_label(&a, "before-the-failure"), 201);
    a.kill_9();
    b.wait_for_state("Active");
    // No Standby follows node-b (node-a is dead), yet its first write is acknowledged.
    let answer = support::node::try_https_within(
        b.service_port,
        reqwest::Method::POST,
        "/api/v2/labels",
        Some(serde_json::json!({ "name": "first-after-the-failover" })),
        Duration::from_secs(120),
    );
    assert!(matches!(answer, Ok((201, _))), "{answer:?}");
    // It said why, and raised the alarm of a Primary acknowledging without its Standby.
    let log = b.ha_log();
    assert!(
        log.iter().any(|(_, _, message)| message.contains(
            "writes are acknowledged without a Standby as soon as the witnesses record it"
        )),
        "{log:#?}"
    );
    wait_until(
        || format!("{:?}", b.ha_log()),
        || {
            b.ha_log()
                .iter()
                .any(|(_, level, message)| level == "ERROR" && message.contains("degraded"))
        },
    );
    // The witness holds the record first: node-b's ballot acknowledges without a Standby, so
    // no node can promote over writes it alone holds.
    let memory = std::fs::read_to_string(lb.state_file()).unwrap();
    let memory: serde_json::Value = serde_json::from_str(&memory).unwrap();
    let record = &memory["memory"]["synchronous"];
    assert_eq!(record["kind"], "degraded", "{memory:#}");
    assert_eq!(record["by"], "node-b", "{memory:#}");
    // `ha status` on the promoted node: it is the source, not a Standby whose stream is down.
    let text = b.ok(&["ha", "status"]);
    assert!(
        text.contains("Replication: OK (Active: the source)"),
        "{text}"
    );
    assert!(!text.contains("BEHIND"), "{text}");
    let (code, probe) = b.get("/status/replication.html");
    assert_eq!(
        (code, probe.as_str()),
        (200, "TANDEM-REPLICATION: OK (Active: the source)\n")
    );
}

#[test]
fn synchronous_block_makes_writes_wait_for_a_lost_standby() {
    let (a, mut b) = pair_with("synchronous", &["--if-standby-lost", "block"]);
    assert_eq!(create_label(&a, "confirmed"), 201);
    b.kill_9();
    // The write waits for the Standby (the client waits far longer than this test needs).
    let waited = std::thread::spawn({
        let port = a.service_port;
        move || {
            support::node::try_https_within(
                port,
                reqwest::Method::POST,
                "/api/v2/labels",
                Some(serde_json::json!({ "name": "waits-for-the-standby" })),
                Duration::from_secs(120),
            )
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !waited.is_finished(),
        "a write was answered without the Standby"
    );
    // The Standby returns and catches up: the waiting write is answered, new ones too.
    b.serve();
    let answer = waited.join().unwrap();
    assert!(matches!(answer, Ok((201, _))), "{answer:?}");
    assert_eq!(create_label(&a, "after-the-return"), 201);
    wait_until(
        || format!("{:?}", b.labels()),
        || b.labels().contains("after-the-return"),
    );
}

#[test]
fn synchronous_continuous_policy_goes_on_without_the_standby_and_raises_the_alarm() {
    let (a, mut b) = pair_with(
        "synchronous",
        &[
            "--if-standby-lost",
            "continuous",
            "--synchronous-timeout",
            "500ms",
            // The Primary's fallback is under test; without a witness the configuration needs
            // Keep in Standby for the continuous fallback (B is killed and never promotes).
            "--on-failure",
            "standby",
        ],
    );
    b.kill_9();
    assert_eq!(create_label(&a, "without-the-standby"), 201);
    wait_until(
        || format!("{:?}", a.ha_log()),
        || {
            a.ha_log()
                .iter()
                .any(|(_, level, message)| level == "ERROR" && message.contains("degraded"))
        },
    );
    // Degraded: writes no longer wait.
    assert_eq!(create_label(&a, "still-without"), 201);
    // The Standby returns, catches up, and synchronous replication is restored.
    b.serve();
    assert_eq!(create_label(&a, "with-the-standby-again"), 201);
    wait_until(
        || format!("{:?}", a.ha_log()),
        || {
            a.ha_log()
                .iter()
                .any(|(_, _, message)| message.contains("synchronous replication restored"))
        },
    );
    let text = a.ok(&["ha", "status"]);
    assert!(text.contains("Replication: synchronous"), "{text}");
}

#[test]
fn a_standby_whose_stream_is_down_reports_itself_behind() {
    let (mut a, b) = pair_with("continuous", &["--on-failure", "standby"]);
    a.kill_9();
    wait_until(
        || format!("{:#}", b.status()),
        || {
            b.status()["behind"]
                .as_str()
                .is_some_and(|why| why.contains("is down"))
        },
    );
    assert!(
        b.ok(&["ha", "status"])
            .contains("BEHIND: the replication stream from")
    );
    let (_, metrics) = support::node::https(b.sysmgr_port, reqwest::Method::GET, "/metrics", None);
    assert!(metrics.contains("tandem_replication_behind 1"), "{metrics}");
    let (code, probe) = b.get("/status/replication.html");
    assert_eq!(code, 503, "{probe}");
    assert!(
        probe.starts_with("TANDEM-REPLICATION: BEHIND (stream down)"),
        "{probe}"
    );
    // Keep in Standby: it stays Standby and says so.
    assert_eq!(b.state(), "Standby");
}

/// If Behind at Failure = standby (the default): a Standby that lacks writes the Primary
/// acknowledged does not promote itself when the Primary dies; it says why, everywhere an
/// operator looks, and promotes when told to.
#[test]
fn a_standby_behind_when_the_primary_fails_holds_the_promotion_until_an_operator_decides() {
    let (mut a, mut b) = pair();
    // The Secondary restarts on another release (the guide's upgrade window): heartbeats go on,
    // replication is refused, and the Primary takes writes the Secondary does not get.
    b.restart_as_another_version();
    wait_until(
        || format!("{:#}", b.status()),
        || {
            b.status()["behind"]
                .as_str()
                .is_some_and(|why| why.contains("versions differ"))
        },
    );
    assert_eq!(create_label(&a, "only-on-the-primary"), 201);
    a.kill_9();
    wait_until(
        || format!("{:#}", b.status()),
        || b.status()["controller"]["promotionHeld"].is_string(),
    );
    assert_eq!(b.state(), "Standby");
    let held = b
        .ha_log()
        .into_iter()
        .find(|(_, _, message)| message.starts_with("automatic promotion held"))
        .expect("the hold is in the HighAvailability log");
    assert_eq!(held.1, "ERROR");
    assert!(held.2.contains("tandem failover mode primary"), "{held:?}");
    let text = b.ok(&["ha", "status"]);
    assert!(text.contains("AUTOMATIC PROMOTION HELD"), "{text}");
    let (code, probe) = b.get("/status/replication.html");
    assert_eq!(code, 503, "{probe}");
    assert!(probe.contains("(automatic promotion held)"), "{probe}");
    // The operator accepts the loss: the write stays on the old Primary, to be exported when
    // it resyncs.
    b.ok(&["failover", "mode", "primary"]);
    b.wait_for_state("Active");
    assert!(!b.labels().contains("only-on-the-primary"));
    assert!(b.status()["controller"]["promotionHeld"].is_null());
}

#[test]
fn three_servers_the_dr_node_streams_from_the_main_secondary_in_continuous_mode() {
    three_servers_stream("continuous");
}

#[test]
fn three_servers_the_dr_node_streams_from_the_main_secondary_in_synchronous_mode() {
    three_servers_stream("synchronous");
}

/// Main data center: A (Primary) and B (its Secondary); DR: C follows B. All in `replication`.
fn three_servers_stream(replication: &str) {
    // Synchronous with the default policy needs a third party: the controller as witness, for
    // C as well.
    let (mut a, b, lb) = if replication == "synchronous" {
        let (a, b, lb) = pair_with_witness(replication, &[]);
        (a, b, Some(lb))
    } else {
        let (a, b) = pair_with(replication, &[]);
        (a, b, None)
    };
    let witness = lb
        .as_ref()
        .map(|lb| format!("http://{}/witness/primary", lb.admin));
    let mut c = Node::init("node-c");
    c.trust(&b);
    b.trust(&c);
    let mut configure = vec![
        "ha",
        "configure",
        "--enable",
        "--mode",
        "secondary",
        "--replication",
        replication,
        "--primary",
    ];
    let b_endpoint = b.endpoint();
    configure.push(&b_endpoint);
    configure.extend_from_slice(FAST);
    if let Some(witness) = &witness {
        configure.extend(["--witness", witness]);
    }
    c.ok(&configure);
    c.serve();
    c.wait_for_state("Standby");
    wait_until(
        || format!("node-c never streamed: {:#}", c.status()),
        || c.status()["follower"]["connected"] == true,
    );
    // A write on the Primary reaches the DR node through the main Secondary.
    assert_eq!(create_label(&a, "cascaded"), 201);
    wait_until(
        || format!("{:?}", c.labels()),
        || c.labels().contains("cascaded"),
    );
    // The main Primary dies: B takes over, C keeps streaming from it, and B's writes reach C.
    a.kill_9();
    b.wait_for_state("Active");
    assert_eq!(c.state(), "Standby");
    assert_eq!(create_label(&b, "written-on-b"), 201);
    wait_until(
        || format!("{:?} / {:#}", c.labels(), c.status()),
        || c.labels().contains("written-on-b"),
    );
    c.ok(&["ha", "verify", &b.endpoint()]);
}
