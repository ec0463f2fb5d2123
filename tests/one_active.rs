//! One Active node, whatever the operator or the network does (issue 15), with real processes:
//! the seed's three servers in two data centers when data center 1 comes back in every order,
//! a paused (SIGSTOP) Active node resumed beside its successor, and the operator actions the
//! nodes refuse. Each test checks, from probes taken all along, that two nodes never answered
//! `/status/status.html` OK at once for longer than the stated bound, and that every write
//! acknowledged to a client is on the final Active node or in a divergence export.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::check::{StatusWatch, divergence_entries, in_exported, missing};
use support::lb::Lb;
use support::load::Writers;
use support::node::{FAST, Links, Node, describe, start_pair, three_servers, wait_until};

/// The longest two nodes may both answer the status probe OK: one heartbeat interval (FAST: 1 s)
/// for the stale node to hear of the newer ballot, one probe interval of the watch, and the
/// scheduling slack of a loaded 2-core machine.
const DUAL_ACTIVE_BOUND: Duration = Duration::from_millis(1_000 + 500 + 500);

/// Runs per test (`TANDEM_FAULT_RUNS`, default 1): `TANDEM_FAULT_RUNS=5 cargo nextest run
/// --test one_active --no-capture` gives RELIABILITY.md its figures.
fn runs() -> usize {
    std::env::var("TANDEM_FAULT_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(1)
}

/// Which nodes of data center 1 come back first.
#[derive(Clone, Copy, Debug)]
enum Return {
    PrimaryFirst,
    SecondaryFirst,
    Together,
}

/// The operator brings the DR node online as the guide has it: by hand, once it is clear the
/// main data center is gone. While the main nodes were seen Active moments ago the node refuses
/// (with the reason); the operator reads it and tries again, as one would.
fn promote_dr_by_hand(c: &Node) {
    wait_until(
        || format!("C never allowed its promotion: {:?}", c.ha_log()),
        || {
            let output = c.cli(&["failover", "mode", "primary"]);
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(
                    stderr.contains("refused:") && stderr.contains("--force"),
                    "{}",
                    describe(&output)
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            output.status.success()
        },
    );
    c.wait_for_state("Active");
}

/// `tandem failover sync` from `source`, again while the node's own replication stream holds
/// the sync lock (syncs never overlap).
fn sync_when_free(node: &Node, source: &Node) {
    wait_until(
        || format!("{} never got to sync", node.dir.display()),
        || {
            let output = node.cli(&["failover", "sync", &source.endpoint()]);
            let busy = String::from_utf8_lossy(&output.stderr).contains("another sync is running");
            assert!(output.status.success() || busy, "{}", describe(&output));
            output.status.success()
        },
    );
}

fn dual_active_longest(overlaps: &[(String, String, Instant, Instant)]) -> Duration {
    overlaps
        .iter()
        .map(|(_, _, from, until)| *until - *from)
        .max()
        .unwrap_or_default()
}

/// The seed's scenario: data center 1 (A and B) is lost under load, the DR node C is promoted
/// by hand, then A and B are restarted (not resynced first, as an operator in a hurry would) in
/// the given order. Neither may serve beside C beyond the bound, devices stay on C, and every
/// acknowledged write is on C.
fn data_center_1_returns(order: Return, a_trusts_c: bool) {
    for run in 0..runs() {
        data_center_1_returns_once(order, a_trusts_c, run);
    }
}

fn data_center_1_returns_once(order: Return, a_trusts_c: bool, run: usize) {
    let (mut a, mut b, c) = three_servers(a_trusts_c);
    let lb = Lb::start(&[
        ("main-primary", &a, "main"),
        ("main-secondary", &b, "main"),
        ("dr-secondary", &c, "dr"),
    ]);
    lb.wait_until_active("main-primary");
    let workload = Writers::start(lb.device_port, 3, &format!("{order:?}-{a_trusts_c}-{run}"));
    workload.wait_for_more(40, "at the start");
    a.kill_9();
    b.kill_9();
    promote_dr_by_hand(&c);
    lb.wait_until_active("dr-secondary");
    workload.wait_for_more(20, "on the DR node");

    let watch = StatusWatch::start(&[
        ("node-a", a.service_port),
        ("node-b", b.service_port),
        ("node-c", c.service_port),
    ]);
    // When A could first learn of C's ballot: at once with trust, otherwise once B is back.
    let news_from;
    match order {
        Return::PrimaryFirst => {
            a.serve();
            if a_trusts_c {
                a.wait_until_fenced();
                news_from = Instant::now();
            } else {
                // Nothing A can reach knows of C: it serves in its old epoch (the traffic
                // controller keeps devices on C) until B is back and tells it.
                a.wait_for_state("Active");
                b.serve();
                news_from = Instant::now();
            }
        }
        Return::SecondaryFirst => {
            b.serve();
            news_from = Instant::now();
            // B hears of C's ballot from C (it checks every trusted peer) before A returns.
            wait_until(
                || format!("B never learned of C: {:#}", b.status()),
                || b.status()["controller"]["newestClaim"]["nodeName"] == "node-c",
            );
            a.serve();
        }
        Return::Together => {
            a.serve();
            b.serve();
            news_from = Instant::now();
        }
    }
    let fenced = a.wait_until_fenced();
    let reason = fenced["controller"]["fenced"].as_str().unwrap_or_default();
    assert!(reason.contains("node-c is Active in epoch"), "{reason}");
    if !a_trusts_c {
        assert!(reason.contains("learned through node-b"), "{reason}");
        // A knows C only through B, and says how to fix that.
        let warnings = fenced["controller"]["trustWarnings"].to_string();
        assert!(
            warnings.contains("node-c") && warnings.contains("trusted-hosts add"),
            "{fenced:#}"
        );
    }
    workload.wait_for_more(20, "after data center 1 returned");
    let overlaps = watch.stop();
    let acknowledged = workload.stop();

    // Two nodes answered OK at once only until A could have learned of C, plus the bound.
    for (first, second, from, until) in &overlaps {
        let after_news = until.saturating_duration_since((*from).max(news_from));
        assert!(
            after_news <= DUAL_ACTIVE_BOUND,
            "{first} and {second} both answered OK for {after_news:?} after the news was \
             reachable ({:?} in all): {overlaps:?}",
            *until - *from
        );
    }
    assert_eq!(c.state(), "Active");
    assert_eq!(lb.active().as_deref(), Some("dr-secondary"));
    // The operator then brings A and B back into step from C; what only they held (writes A
    // acknowledged that had not reached the DR node when data center 1 was lost: continuous
    // replication's lag) is exported, the rest is on C.
    if !a_trusts_c {
        // As A's trust warning says.
        a.trust(&c);
        c.trust(&a);
    }
    for node in [&a, &b] {
        sync_when_free(node, &c);
    }
    let exported: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|node| divergence_entries(node))
        .map(|entry| entry.to_string())
        .collect();
    let after_promotion = missing(&acknowledged, &c.labels());
    let lost: Vec<&String> = after_promotion
        .iter()
        .filter(|name| !in_exported(&exported, name))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    eprintln!(
        "data center 1 returns ({order:?}, A trusts C: {a_trusts_c}) run {run}: {} acknowledged, {} only in \
         the main data center's divergence exports, 0 lost; longest dual OK {:?} in all",
        acknowledged.len(),
        after_promotion.len(),
        dual_active_longest(&overlaps)
    );
}

#[test]
fn data_center_1_returns_primary_first_trusting_the_dr_node() {
    data_center_1_returns(Return::PrimaryFirst, true);
}

#[test]
fn data_center_1_returns_primary_first_knowing_the_dr_node_only_through_the_secondary() {
    data_center_1_returns(Return::PrimaryFirst, false);
}

#[test]
fn data_center_1_returns_secondary_first() {
    data_center_1_returns(Return::SecondaryFirst, false);
}

#[test]
fn data_center_1_returns_both_together() {
    data_center_1_returns(Return::Together, false);
}

#[test]
fn data_center_1_returns_both_together_trusting_the_dr_node() {
    data_center_1_returns(Return::Together, true);
}

/// The Active node is stopped (SIGSTOP) longer than failure detection, under load, its
/// Secondary promotes, and the old one is resumed while the new one serves. Clients keep
/// writing straight to the paused node (connections a load balancer would still hold) and
/// through nothing else. Afterwards: no moment in which both answered the status probe OK,
/// and every write acknowledged by anyone is on the final Active node or in a divergence export.
fn paused_active_node_resumes_beside_its_successor(replication: &[&str]) {
    for run in 0..runs() {
        paused_active_node_resumes_once(replication, run);
    }
}

fn paused_active_node_resumes_once(replication: &[&str], run: usize) {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    let mut options = replication.to_vec();
    options.extend_from_slice(FAST);
    let mut secondary = options.clone();
    secondary.extend_from_slice(&["--if-behind", "promote"]);
    start_pair(&mut a, &mut b, &links, &options, &secondary);
    if replication.contains(&"scheduled") {
        b.ok(&["failover", "sync", &a.endpoint()]);
    } else {
        wait_until(
            || format!("{:#}", b.status()),
            || b.status()["follower"]["connected"] == true,
        );
    }
    let on_a = Writers::start(a.service_port, 3, &format!("to-a-{run}"));
    let on_b = Writers::start(b.service_port, 2, &format!("to-b-{run}"));
    on_a.wait_for_more(40, "before the pause");
    let watch = StatusWatch::start(&[("node-a", a.service_port), ("node-b", b.service_port)]);
    let synchronous = replication.contains(&"synchronous");
    a.signal("STOP");
    b.wait_for_state("Active");
    if !synchronous {
        // (Synchronous with `block`: the promoted node takes writes once a Standby follows it.)
        on_b.wait_for_more(20, "on the promoted node");
    }
    a.signal("CONT");
    a.wait_until_fenced();
    if !synchronous {
        on_b.wait_for_more(20, "after the old Primary resumed");
    }
    let overlaps = watch.stop();
    let mut acknowledged = on_a.stop();
    acknowledged.extend(on_b.stop());
    assert!(
        overlaps.is_empty(),
        "both answered OK at once ({:?} at most): {overlaps:?}",
        dual_active_longest(&overlaps)
    );
    // A's writes that B lacks are exported when A resyncs from B.
    a.kill_9();
    a.ok(&["failover", "sync", &b.endpoint()]);
    let exported: Vec<String> = divergence_entries(&a)
        .iter()
        .map(|entry| entry.to_string())
        .collect();
    let lost = missing(&acknowledged, &b.labels());
    let lost_outright: Vec<&String> = lost
        .iter()
        .filter(|name| !in_exported(&exported, name))
        .collect();
    assert!(lost_outright.is_empty(), "lost: {lost_outright:?}");
    if synchronous {
        // Synchronous: nothing acknowledged may be missing from the Active node at all.
        assert!(
            lost.is_empty(),
            "acknowledged but not on the Active node: {lost:?}"
        );
    }
    let log = a.ha_log();
    assert!(
        log.iter()
            .any(|(_, _, message)| message.starts_with("this node was frozen for")),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|(_, _, message)| message.contains("differs from this node's by")),
        "a pause is not clock skew: {log:?}"
    );
    eprintln!(
        "paused Active node ({replication:?}) run {run}: {} acknowledged, {} of them only in the old \
         Primary's divergence export, none lost; no dual OK",
        acknowledged.len(),
        lost.len()
    );
}

#[test]
fn a_paused_active_node_resumes_fenced_scheduled() {
    paused_active_node_resumes_beside_its_successor(&["--replication", "scheduled"]);
}

#[test]
fn a_paused_active_node_resumes_fenced_continuous() {
    paused_active_node_resumes_beside_its_successor(&["--replication", "continuous"]);
}

#[test]
fn a_paused_active_node_resumes_fenced_synchronous() {
    paused_active_node_resumes_beside_its_successor(&[
        "--replication",
        "synchronous",
        "--if-standby-lost",
        "block",
    ]);
}

/// The operator actions that would break "one Active node" are refused with the reason and
/// the fix, and carried out with --force; disabling HA on the Standby (the guide's upgrade,
/// step 1) leaves the group without touching the Primary.
#[test]
fn operator_actions_that_would_break_one_active_node_are_refused_unless_forced() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, FAST, FAST);
    wait_until(
        || format!("{:#}", a.status()),
        || a.status()["controller"]["cluster"][0]["nodeName"] == "node-b",
    );
    // Making the only Active node a Secondary would leave the fleet with none.
    let b_endpoint = b.endpoint();
    let refused = a.cli(&[
        "ha",
        "configure",
        "--mode",
        "secondary",
        "--primary",
        &b_endpoint,
    ]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("only Active node") && stderr.contains("--force"),
        "{stderr}"
    );
    let refused = a.cli(&["failover", "mode", "secondary"]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    assert_eq!(a.state(), "Active");
    // Promoting the Standby while the Primary serves would make two Active nodes.
    let refused = b.cli(&["failover", "mode", "primary"]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("node-a is Active in epoch 1") && stderr.contains("switchover"),
        "{stderr}"
    );
    let refused = b.cli(&["ha", "configure", "--node-status", "active"]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    assert_eq!(b.state(), "Standby");
    // The guide's upgrade, step 1: HA disabled on the Secondary. It leaves the group in its
    // epoch; the Primary is not fenced and stays the only Active node of the group.
    b.ok(&["ha", "configure", "--disable"]);
    let status = b.status();
    assert_eq!(
        status["controller"]["status"]["haEnabled"], false,
        "{status:#}"
    );
    assert_eq!(status["controller"]["epoch"], 1, "{status:#}");
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(a.state(), "Active");
    assert!(a.status()["controller"]["fenced"].is_null());
    assert!(a.status()["controller"]["dualActive"].is_null());
    let (_, headers_b) = (0, b.get("/hastatus.html"));
    assert_eq!(headers_b.0, 200);
    // Back in the group as a Standby: nothing to export, nothing fenced.
    b.ok(&["ha", "configure", "--enable"]);
    b.wait_for_state("Standby");
    assert_eq!(a.state(), "Active");
    // Forced, the promotion happens, and the older ballot steps down within a heartbeat.
    let forced = b.ok(&["failover", "mode", "primary", "--force"]);
    assert!(forced.contains("epoch 2"), "{forced}");
    a.wait_until_fenced();
    assert!(!b.dir.join("divergence").exists());
}

/// The guide's upgrade procedure, step by step, under load through the traffic controller, with
/// a version change in the middle: no failover, no fencing, nothing exported, nothing lost.
#[test]
fn the_guides_upgrade_procedure_runs_with_no_failover_and_nothing_lost() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, FAST, FAST);
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    lb.wait_until_active("main-primary");
    let workload = Writers::start(lb.device_port, 3, "upgrade");
    workload.wait_for_more(30, "before the upgrade");
    b.ok(&["failover", "sync", &a.endpoint()]);

    // 1. Disable HA on the Secondary: it leaves the group; the Primary is not fenced.
    b.ok(&["ha", "configure", "--disable"]);
    // 2. The last sync completed.
    let last = &b.history()[0];
    assert_eq!(last["result"], "succeeded", "{last:#}");
    // 3. Hold the traffic controller where it is.
    let held = lb.cli(&["hold", "--reason", "upgrade"]);
    assert!(held.status.success(), "{}", describe(&held));
    workload.wait_for_more(30, "with HA disabled on the Secondary");
    assert_eq!(a.state(), "Active");
    // 4. Upgrade the Secondary; make it Primary for a while (the guide: to fetch the upgrade),
    // then Secondary again. With HA disabled that takes no ballot.
    b.restart_as_another_version();
    b.ok(&["failover", "mode", "primary"]);
    b.ok(&["failover", "mode", "secondary"]);
    assert_eq!(b.status()["controller"]["epoch"], 1);
    workload.wait_for_more(30, "with the Secondary upgraded");
    // 5. Upgrade the Primary (devices wait meanwhile: the guide's outage).
    a.restart_as_another_version();
    a.wait_for_state("Active");
    // 6. Enable HA on the Secondary: a Standby again, and in step after a sync.
    b.ok(&["ha", "configure", "--enable"]);
    b.wait_for_state("Standby");
    workload.wait_for_more(30, "after the upgrade");
    let acknowledged = workload.stop();
    b.ok(&["failover", "sync", &a.endpoint()]);
    // 7. Validate: the same content on both; 9. release the traffic controller.
    let verify = b.ok(&["ha", "verify", &a.endpoint()]);
    assert!(verify.starts_with("identical"), "{verify}");
    assert_eq!(lb.active().as_deref(), Some("main-primary"));
    assert_eq!(lb.status()["switches"], 0, "{:#}", lb.status());
    let released = lb.cli(&["release"]);
    assert!(released.status.success(), "{}", describe(&released));
    assert_eq!(lb.active().as_deref(), Some("main-primary"));
    for node in [&a, &b] {
        let status = node.status();
        assert_eq!(status["controller"]["epoch"], 1, "no failover: {status:#}");
        assert!(status["controller"]["fenced"].is_null(), "{status:#}");
        assert!(!node.dir.join("divergence").exists(), "nothing exported");
    }
    let lost = missing(&acknowledged, &a.labels());
    assert!(lost.is_empty(), "lost: {lost:?}");
    eprintln!(
        "the guide's upgrade procedure: {} acknowledged, all on the Primary and the Secondary; no \
         failover, no fencing, nothing exported",
        acknowledged.len()
    );
}

/// Synchronous replication with the continuous fallback, the traffic controller as witness: the
/// Primary is cut off from its Standby and from the controller at once, while administrators
/// still write to it directly. Either the Primary records its fallback at the witness first
/// (then the Standby's promotion is refused and held) or the Standby records its promotion
/// first (then the Primary may not fall back, and acknowledges nothing it cannot confirm).
/// Whichever wins, every acknowledged write is on the one node left Active.
#[test]
fn a_synchronous_primary_cut_off_records_its_fallback_first_and_loses_nothing() {
    // A 2 s synchronous timeout runs out before the Standby's 3 s detection.
    synchronous_primary_cut_off("2s", false);
}

#[test]
fn a_synchronous_standby_records_its_promotion_first_and_nothing_is_lost() {
    // A 20 s synchronous timeout: the Standby detects the failure and records first.
    synchronous_primary_cut_off("20s", true);
}

fn synchronous_primary_cut_off(synchronous_timeout: &str, standby_first: bool) {
    for run in 0..runs() {
        let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
        let to_a_ssh = support::LinkProxy::start(a.ssh_port);
        let to_a_service = support::LinkProxy::start(a.service_port);
        let lb = Lb::start_through(
            &[("main-primary", &a, "main"), ("main-secondary", &b, "main")],
            &[to_a_service.port, b.service_port],
        );
        let primary_at = format!("127.0.0.1:{}", to_a_ssh.port);
        let links = Links {
            primary_at: &primary_at,
            secondary_at: &b.endpoint(),
        };
        let witness = format!("http://{}/witness/primary", lb.admin);
        let mut options = vec![
            "--replication",
            "synchronous",
            "--synchronous-timeout",
            synchronous_timeout,
            "--witness",
            &witness,
        ];
        options.extend_from_slice(FAST);
        start_pair(&mut a, &mut b, &links, &options, &options);
        wait_until(
            || format!("{:#}", b.status()),
            || b.status()["follower"]["connected"] == true,
        );
        lb.wait_until_active("main-primary");
        // Administrators writing to the Primary directly, not through the controller.
        let direct = Writers::start(a.service_port, 3, &format!("direct-{run}"));
        direct.wait_for_more(30, "at the start");
        to_a_ssh.cut();
        to_a_service.cut();
        // Wait until one side's record decided it: the Standby promoted, or held its
        // promotion because the Primary recorded its fallback first.
        wait_until(
            || format!("neither side decided: {:#}", b.status()),
            || {
                let status = b.status();
                status["controller"]["status"]["state"] == "Active"
                    || status["controller"]["promotionHeld"].is_string()
            },
        );
        let promoted = b.state() == "Active";
        assert_eq!(promoted, standby_first, "{:#}", b.status());
        std::thread::sleep(Duration::from_secs(2));
        to_a_ssh.restore();
        to_a_service.restore();
        let acknowledged = direct.stop();
        let (final_active, other) = if promoted { (&b, &a) } else { (&a, &b) };
        if promoted {
            other.wait_until_fenced();
        } else {
            assert_eq!(a.state(), "Active");
            assert_eq!(b.state(), "Standby");
        }
        let lost = missing(&acknowledged, &final_active.labels());
        assert!(
            lost.is_empty(),
            "run {run}: not on the Active node: {lost:?}"
        );
        let records = lb.log();
        assert!(records.contains("witness record"), "{records}");
        eprintln!(
            "synchronous Primary cut off from its Standby and the witness, run {run}: {} \
             acknowledged, all on the Active node ({}); the witness's record decided",
            acknowledged.len(),
            if promoted {
                "the Standby recorded its promotion first"
            } else {
                "the Primary recorded its fallback first; the promotion was held"
            }
        );
    }
}

/// The old Primary, stopped, synced by hand from the node promoted in its place, then started
/// again still configured as a Primary (`tandem demo`'s failback found it): the epoch it synced
/// is the promoted node's ballot, so the returning node is fenced by it instead of winning a
/// tie of node ids and taking the fleet back.
#[test]
fn an_old_primary_synced_from_its_successor_and_restarted_as_primary_is_fenced() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, FAST, FAST);
    a.kill_9();
    b.wait_for_state("Active");
    let b_epoch = b.status()["controller"]["epoch"].as_i64().unwrap();
    assert!(b_epoch >= 2, "{:#}", b.status());
    // Offline: `failover sync` runs in the command's own process and brings B's epoch along.
    a.ok(&["failover", "sync", &b.endpoint()]);
    a.serve();
    let fenced = a.wait_until_fenced();
    assert!(
        fenced.to_string().contains("node-b"),
        "the fence names the holder: {fenced:#}"
    );
    // B kept the fleet: a few heartbeat intervals later it is still Active, in its own epoch,
    // and never saw a newer claim.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(b.state(), "Active", "{:?}", b.ha_log());
    assert_eq!(b.status()["controller"]["epoch"].as_i64(), Some(b_epoch));
    assert!(
        !b.ha_log()
            .iter()
            .any(|(_, _, message)| message.contains("stopped serving")),
        "{:?}",
        b.ha_log()
    );
}
