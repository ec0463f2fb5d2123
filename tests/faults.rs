//! Fault runs with a checker (issue 7): clients write through the traffic controller and record
//! every acknowledged write; a fault strikes; afterwards the checker proves that every
//! acknowledged write is on the final Active node or in the old Primary's divergence export
//! (nothing silently lost), and that writes the two nodes took apart carry different epochs.
//!
//! The short version runs in CI (one run per replication mode). A soak for RELIABILITY.md:
//! `TANDEM_FAULT_RUNS=10 cargo nextest run --test faults --no-capture`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::check::{divergence_entries, in_exported, missing};
use support::lb::Lb;
use support::load::Writers;
use support::node::{FAST, Links, Node, raw, start_pair, wait_until};
use support::{Degradation, LinkProxy};

/// Runs per replication mode (`TANDEM_FAULT_RUNS`, default 1).
fn runs() -> usize {
    std::env::var("TANDEM_FAULT_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(1)
}

/// A Primary and its Secondary replicating as `replication` (fast Fail Over Controls), behind a
/// traffic controller that routes to the Primary; with `cut_to_primary`, the controller reaches
/// the Primary through a link proxy the test can cut. Returns once traffic goes to the Primary
/// and the Secondary holds its data (synced once, or following).
fn pair_behind_lb(replication: &str, cut_to_primary: bool) -> (Node, Node, Lb, Option<LinkProxy>) {
    pair_behind_lb_with(replication, cut_to_primary, [Vec::new(), Vec::new()])
}

/// [`pair_behind_lb`], each node served with its own extra environment.
fn pair_behind_lb_with(
    replication: &str,
    cut_to_primary: bool,
    [a_env, b_env]: [Vec<(String, String)>; 2],
) -> (Node, Node, Lb, Option<LinkProxy>) {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    a.serve_env = a_env;
    b.serve_env = b_env;
    let link = cut_to_primary.then(|| LinkProxy::start(a.service_port));
    let primary_port = link.as_ref().map_or(a.service_port, |link| link.port);
    let lb = Lb::start_through(
        &[("main-primary", &a, "main"), ("main-secondary", &b, "main")],
        &[primary_port, b.service_port],
    );
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    let mut primary = vec!["--replication", replication];
    // Synchronous with the continuous fallback and automatic promotion needs a third party:
    // the controller is both nodes' witness (it reaches the Primary until it dies).
    let witness = format!("http://{}/witness/primary", lb.admin);
    if replication == "synchronous" {
        primary.extend(["--witness", &witness]);
    }
    let mut secondary = primary.clone();
    secondary.extend_from_slice(FAST);
    start_pair(&mut a, &mut b, &links, &primary, &secondary);
    if replication == "scheduled" {
        b.ok(&["failover", "sync", &a.endpoint()]);
    } else {
        wait_until(
            || format!("{:#}", b.status()),
            || b.status()["follower"]["connected"] == true,
        );
    }
    lb.wait_until_active("main-primary");
    (a, b, lb, link)
}

/// For `hold`, checks every 250 ms that A is still Active and B still Standby.
fn assert_roles_hold(a: &Node, b: &Node, hold: Duration, context: &str) {
    let until = Instant::now() + hold;
    while Instant::now() < until {
        assert_eq!(a.state(), "Active", "{context}");
        assert_eq!(b.state(), "Standby", "{context}: {:#}", b.status());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The end of a run in which nothing may fail over: traffic never switched, every acknowledged
/// write is on the Primary and, once the Secondary has caught up, on the Secondary.
fn assert_nothing_moved_or_lost(a: &Node, b: &Node, lb: &Lb, acknowledged: &[(String, Instant)]) {
    assert_eq!(lb.status()["switches"], 0);
    let lost = missing(acknowledged, &a.labels());
    assert!(lost.is_empty(), "{lost:?}");
    wait_until(
        || "the Secondary never caught up".into(),
        || missing(acknowledged, &b.labels()).is_empty(),
    );
}

/// What one run found.
#[derive(Debug, Default)]
struct Outcome {
    acknowledged: usize,
    on_final_active: usize,
    in_divergence_export: usize,
    lost: Vec<String>,
    /// Longest time between two acknowledged writes around the failover.
    outage: Duration,
}

/// `kill -9` of the Primary under a write load through `tandem lb`, failover, the old Primary's
/// return and the guide's resync; then the checker.
fn kill_the_primary_under_load(replication: &str, run: usize) -> Outcome {
    let (mut a, b, lb, _) = pair_behind_lb(replication, false);

    let workload = Writers::start(lb.device_port, 3, &format!("{replication}-{run}"));
    workload.wait_for_more(60, "at the start");
    a.kill_9();
    b.wait_for_state("Active");
    lb.wait_until_active("main-secondary");
    // The load goes on against the new Active node for a while.
    workload.wait_for_more(30, "after the failover");
    let acknowledged = workload.stop();

    // The old Primary returns fenced; the guide's failback starts with a sync from the Active
    // node, which saves whatever only the old Primary held.
    a.serve();
    a.wait_until_fenced();
    a.ok(&["failover", "sync", &b.endpoint()]);

    // The checker.
    let on_b = b.labels();
    let exported = divergence_entries(&a);
    let promoted_epoch = b.status()["controller"]["epoch"].as_i64().unwrap_or(0);
    for entry in &exported {
        let epoch = entry["epoch"].as_i64().unwrap_or(i64::MAX);
        assert!(
            epoch < promoted_epoch,
            "the old Primary wrote in epoch {epoch}, not below the new Active's {promoted_epoch}: {entry}"
        );
    }
    let exported_text: Vec<String> = exported.iter().map(ToString::to_string).collect();
    let mut outcome = Outcome {
        acknowledged: acknowledged.len(),
        ..Outcome::default()
    };
    for (name, _) in &acknowledged {
        if on_b.contains(name) {
            outcome.on_final_active += 1;
        } else if in_exported(&exported_text, name) {
            outcome.in_divergence_export += 1;
        } else {
            outcome.lost.push(name.clone());
        }
    }
    let mut times: Vec<Instant> = acknowledged.iter().map(|(_, at)| *at).collect();
    times.sort();
    outcome.outage = times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    outcome
}

fn check(replication: &str) {
    for run in 0..runs() {
        let outcome = kill_the_primary_under_load(replication, run);
        eprintln!("{replication} run {run}: {outcome:?}");
        assert!(
            outcome.lost.is_empty(),
            "{replication} run {run}: acknowledged writes neither on the Active node nor \
             exported: {:?}",
            outcome.lost
        );
        if replication != "scheduled" {
            // Streamed modes: what the old Primary held alone is at most the last instants'.
            assert!(
                outcome.in_divergence_export <= outcome.acknowledged / 10,
                "{replication} run {run}: {outcome:?}"
            );
        }
        if replication == "synchronous" {
            assert_eq!(outcome.in_divergence_export, 0, "{outcome:?}");
        }
    }
}

#[test]
fn kill_9_of_the_primary_under_load_scheduled_loses_nothing_silently() {
    check("scheduled");
}

#[test]
fn kill_9_of_the_primary_under_load_continuous_loses_nothing_silently() {
    check("continuous");
}

#[test]
fn kill_9_of_the_primary_under_load_synchronous_loses_nothing() {
    check("synchronous");
}

/// `kill -9` of the traffic controller under load, restarted a second later with the same
/// configuration: no failover happens, every acknowledged write is on the Primary and (streamed)
/// on the Secondary, and traffic resumes on the Primary.
#[test]
fn kill_9_of_the_traffic_controller_under_load_loses_nothing() {
    for run in 0..runs() {
        let (a, b, mut lb, _) = pair_behind_lb("continuous", false);
        let workload = Writers::start(lb.device_port, 3, &format!("lb-{run}"));
        workload.wait_for_more(60, "at the start");
        lb.kill_9_and_restart(Duration::from_secs(1));
        lb.wait_until_active("main-primary");
        workload.wait_for_more(30, "after the restart");
        let acknowledged = workload.stop();
        assert_eq!(a.state(), "Active");
        assert_eq!(b.state(), "Standby");
        assert_nothing_moved_or_lost(&a, &b, &lb, &acknowledged);
        eprintln!(
            "traffic controller run {run}: {} acknowledged, all on the Primary and the Secondary",
            acknowledged.len()
        );
    }
}

/// The link between the traffic controller and the Primary is cut under load, while the nodes
/// still reach each other: the Secondary keeps receiving heartbeat answers and stays Standby, so
/// the controller has no Active candidate and does not move traffic (moving it to a Standby
/// would pin the fleet to a node that refuses it). Devices see an outage until the link heals;
/// then traffic continues on the Primary. Nothing is lost, and nothing is written twice.
#[test]
fn a_cut_between_the_traffic_controller_and_the_primary_moves_nothing_and_loses_nothing() {
    for run in 0..runs() {
        let (a, b, lb, to_a) = pair_behind_lb("continuous", true);
        let to_a = to_a.expect("asked for a link to the Primary");
        let workload = Writers::start(lb.device_port, 3, &format!("cut-{run}"));
        workload.wait_for_more(60, "at the start");
        to_a.cut();
        // Long enough for the controller to mark the Primary down (3 × 400 ms) and for the
        // Secondary to have had several heartbeats answered.
        std::thread::sleep(Duration::from_secs(3));
        let status = lb.status();
        assert_eq!(status["active"], "main-primary", "{status:#}");
        assert_eq!(status["switches"], 0, "{status:#}");
        assert!(
            status["waiting"]
                .as_str()
                .is_some_and(|why| why.contains("main-primary is down")),
            "{status:#}"
        );
        assert_eq!(b.state(), "Standby");
        to_a.restore();
        workload.wait_for_more(30, "after the link returned");
        let acknowledged = workload.stop();
        assert_eq!(lb.status()["switches"], 0);
        let lost = missing(&acknowledged, &a.labels());
        assert!(lost.is_empty(), "run {run}: {lost:?}");
        eprintln!(
            "controller-Primary cut run {run}: {} acknowledged, all on the Primary, no switch",
            acknowledged.len()
        );
    }
}

/// The guide's upgrade runs the two nodes on different releases for a while. The Secondary is
/// restarted as another version under load: its Primary still answers heartbeats, so it stays
/// Standby well past the detection time (a version difference is not a failure; were it one,
/// the Secondary would promote itself beside a healthy Primary). Nothing replicates meanwhile,
/// and the Secondary says why; once the versions match again it catches up. Traffic never moves.
#[test]
fn a_secondary_of_another_version_stays_standby_and_catches_up_when_versions_match() {
    for run in 0..runs() {
        let (a, mut b, lb, _) = pair_behind_lb("continuous", false);
        let workload = Writers::start(lb.device_port, 3, &format!("version-{run}"));
        workload.wait_for_more(30, "at the start");
        b.restart_as_another_version();
        wait_until(
            || format!("{:?}", b.ha_log()),
            || {
                b.ha_log().iter().any(|(_, _, message)| {
                    message.contains("answers heartbeats but cannot replicate")
                        && message.contains("software versions differ")
                })
            },
        );
        // Three times the detection time (1 s + 2 × 1 s re-checks).
        assert_roles_hold(&a, &b, Duration::from_secs(9), &format!("run {run}"));
        let status = b.status();
        assert!(
            status["behind"]
                .as_str()
                .is_some_and(|why| why.contains("software versions differ")),
            "run {run}: {status:#}"
        );
        // Nothing replicated meanwhile, though the Primary took writes.
        let held = status["position"]["headSeq"].clone();
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(b.status()["position"]["headSeq"], held, "run {run}");
        b.kill_9();
        b.serve_env.clear();
        b.serve();
        let acknowledged = workload.stop();
        assert_eq!(a.state(), "Active");
        assert_nothing_moved_or_lost(&a, &b, &lb, &acknowledged);
        eprintln!(
            "other-version Secondary run {run}: {} acknowledged, all on the Primary and, once \
             the versions matched, the Secondary; no promotion, no switch",
            acknowledged.len()
        );
    }
}

/// A tmpfs of a given size: a file system that fills up. Unmounted (lazily, so a process still
/// holding a file cannot make it fail) when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (the test is skipped, with the reason) when this machine cannot mount one; CI
    /// runs as root and can.
    fn mount(size_mib: u64) -> Option<Self> {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&path)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Self {
                path,
                _parent: parent,
            }),
            Ok(output) => {
                let why = String::from_utf8_lossy(&output.stderr).trim().to_owned();
                support::skip_without("mount -t tmpfs (root)", &why, "run as root, as CI does");
                None
            }
            Err(error) => {
                support::skip_without("mount", &error.to_string(), "util-linux, as root");
                None
            }
        }
    }

    fn used_mib(&self) -> u64 {
        let output = std::process::Command::new("df")
            .args(["--output=used", "-B1M"])
            .arg(&self.path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("df: {output:?}"))
    }

    fn resize(&self, size_mib: u64) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size_mib}m")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {size_mib} MiB");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The Secondary's disk fills up during a sync, an incremental one (app files to fetch) and a
/// forced full one: each fails with the reason (in the CLI and in Sync History), the Secondary
/// keeps serving as Standby on a consistent state, and once there is room the next sync
/// completes: the two nodes are identical, app files included.
#[test]
fn a_full_disk_on_the_secondary_during_a_sync_fails_cleanly_and_the_next_sync_completes() {
    const APPS: usize = 4;
    const APP_FILE_MIB: usize = 4;
    let Some(disk) = SmallDisk::mount(512) else {
        return;
    };
    let mut a = Node::init("node-a");
    let mut b = Node::init_in("node-b", &disk.path);
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, &[], FAST);
    for index in 0..3 {
        let (code, body) = a.request(
            reqwest::Method::POST,
            "/api/v2/labels",
            Some(serde_json::json!({ "name": format!("before-{index}") })),
        );
        assert_eq!(code, 201, "{body}");
    }
    b.ok(&["failover", "sync", &a.endpoint()]);
    let before = b.labels();
    assert!(before.contains("before-2"));

    // The Primary gains more than the Secondary's disk has room for.
    let mut app_ids = Vec::new();
    for index in 0..APPS {
        let (code, body) = a.request(
            reqwest::Method::POST,
            "/api/v2/apps",
            Some(serde_json::json!({
                "platform": "iOS",
                "bundleId": format!("com.example.big{index}"),
                "name": format!("Big {index}"),
                "version": "1.0",
            })),
        );
        assert_eq!(code, 201, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_i64()
            .unwrap();
        // Distinct contents, so each file is stored (and fetched) on its own.
        let bytes: Vec<u8> = (0..APP_FILE_MIB * 1024 * 1024)
            .map(|at| (at as u64 * 2_654_435_761 + index as u64) as u8)
            .collect();
        let path = format!("/api/v2/apps/{id}/file");
        let (code, body) = raw(a.service_port, reqwest::Method::PUT, &path, bytes);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        app_ids.push(id);
    }
    let (code, body) = a.request(
        reqwest::Method::POST,
        "/api/v2/labels",
        Some(serde_json::json!({ "name": "after" })),
    );
    assert_eq!(code, 201, "{body}");
    // Room for about one app file.
    disk.resize(disk.used_mib() + APP_FILE_MIB as u64 + 1);

    let primary_labels = a.labels();
    for sync in [
        vec!["failover", "sync", &links.primary_at],
        vec!["failover", "sync", "--full", &links.primary_at],
    ] {
        let output = b.cli(&sync);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{sync:?}: {stderr}");
        assert!(
            stderr.contains("No space left on device")
                && stderr.contains("the file system is full; free space"),
            "{sync:?}: {stderr}"
        );
        // Still the Standby it was, on a consistent state the Primary had: its previous one, or
        // (entries are committed before the app files are fetched) the Primary's, with the
        // files that did not fit left for the next sync.
        assert_eq!(b.state(), "Standby");
        let labels = b.labels();
        assert!(
            labels == before || labels == primary_labels,
            "{sync:?}: {labels:?}"
        );
        // The failure is in Sync History, with the reason: the failed write gave its space back.
        let history: Value = serde_json::from_str(&b.ok(&["ha", "history", "--json"])).unwrap();
        let last = &history[0];
        assert_eq!(last["result"], "failed", "{history:#}");
        assert!(
            last["error"]
                .as_str()
                .is_some_and(|error| error.contains("No space left on device")),
            "{history:#}"
        );
    }

    // Room again: the next sync completes, and the nodes are identical.
    disk.resize(512);
    let summary = b.ok(&["failover", "sync", links.primary_at]);
    assert!(
        summary.contains("succeeded") || summary.contains("missing app file(s)"),
        "{summary}"
    );
    assert!(b.labels().contains("after"));
    let verify = b.ok(&["ha", "verify", links.primary_at]);
    assert!(verify.starts_with("identical"), "{verify}");
    // Every app file is there, byte for byte the Primary's.
    for id in app_ids {
        let path = format!("/api/v2/apps/{id}/file");
        let download = |port| raw(port, reqwest::Method::GET, &path, Vec::new());
        let (code, body) = download(b.service_port);
        assert_eq!(code, 200, "app {id}");
        assert_eq!(body.len(), APP_FILE_MIB * 1024 * 1024, "app {id}");
        assert!(
            body == download(a.service_port).1,
            "app {id} differs from the Primary's"
        );
    }
    b.kill_9();
}

/// One process's clock, stepped at will through libfaketime (`LD_PRELOAD`): the wall clock only,
/// so timers and heartbeats (monotonic) run on while `SystemTime` and SQLite's clock jump, as
/// when an administrator or a broken NTP sets the time.
struct SteppedClock {
    library: std::path::PathBuf,
    offset_file: std::path::PathBuf,
    _temp: tempfile::TempDir,
}

impl SteppedClock {
    /// `None` (the test is skipped, with the reason) without Debian's libfaketime.
    fn new() -> Option<Self> {
        let library = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("faketime/libfaketimeMT.so.1"))
            .find(|path| path.is_file());
        let Some(library) = library else {
            support::skip_without(
                "libfaketime",
                "no /usr/lib/*/faketime/libfaketimeMT.so.1",
                "apt-get install libfaketime",
            );
            return None;
        };
        let temp = tempfile::tempdir().unwrap();
        let offset_file = temp.path().join("offset");
        std::fs::write(&offset_file, "+0\n").unwrap();
        Some(Self {
            library,
            offset_file,
            _temp: temp,
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", self.library.display().to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE",
                self.offset_file.display().to_string(),
            ),
            // Re-read the offset every second, not on every clock read.
            ("FAKETIME_CACHE_DURATION", "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    /// Sets the offset from real time, e.g. `+1h`, `-1h`, `+0`.
    fn step(&self, offset: &str) {
        std::fs::write(&self.offset_file, format!("{offset}\n")).unwrap();
    }
}

/// The wall clock of one node, then of the other, steps an hour (forward on the Secondary,
/// backward on the Primary) under load, and back. Failure detection runs on the monotonic clock,
/// so nothing fails over and traffic never moves; the Secondary warns that the clocks disagree;
/// every acknowledged write is on the Primary and reaches the Secondary.
#[test]
fn a_clock_step_on_either_node_under_load_moves_nothing_and_loses_nothing() {
    for run in 0..runs() {
        let (Some(clock_a), Some(clock_b)) = (SteppedClock::new(), SteppedClock::new()) else {
            return;
        };
        let (a, b, lb, _) =
            pair_behind_lb_with("continuous", false, [clock_a.env(), clock_b.env()]);
        let workload = Writers::start(lb.device_port, 3, &format!("clock-{run}"));
        workload.wait_for_more(30, "at the start");
        for (clock, offset) in [
            (&clock_b, "+1h"),
            (&clock_b, "+0"),
            (&clock_a, "-1h"),
            (&clock_a, "+0"),
        ] {
            clock.step(offset);
            // Longer than the detection time (1 s + 2 × 1 s re-checks) plus the offset's cache.
            let context = format!("run {run}, step {offset}");
            assert_roles_hold(&a, &b, Duration::from_secs(5), &context);
        }
        let acknowledged = workload.stop();
        assert!(
            b.ha_log()
                .iter()
                .any(|(_, _, message)| message.contains("differs from this node's by")),
            "run {run}: no clock warning in {:?}",
            b.ha_log()
        );
        assert_nothing_moved_or_lost(&a, &b, &lb, &acknowledged);
        eprintln!(
            "clock step run {run}: {} acknowledged, all on the Primary and the Secondary; no \
             promotion, no switch",
            acknowledged.len()
        );
    }
}

/// A Primary and its continuous Secondary behind the traffic controller, the Secondary reaching
/// the Primary through a link proxy (the network between the nodes, which the test can cut or
/// degrade); with `witness`, the controller is the Secondary's witness.
fn pair_over_link(witness: bool) -> (Node, Node, Lb, LinkProxy) {
    pair_over_link_with(witness, &["--replication", "continuous"])
}

/// [`pair_over_link`] with `replication` (options for both nodes); with `witness` the
/// controller is both nodes' witness (roles swap).
fn pair_over_link_with(witness: bool, replication: &[&str]) -> (Node, Node, Lb, LinkProxy) {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let link = LinkProxy::start(a.ssh_port);
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    let primary_at = format!("127.0.0.1:{}", link.port);
    let links = Links {
        primary_at: &primary_at,
        secondary_at: &b.endpoint(),
    };
    let witness_url = format!("http://{}/witness/primary", lb.admin);
    let mut primary = replication.to_vec();
    let mut secondary = replication.to_vec();
    secondary.extend_from_slice(FAST);
    if witness {
        primary.extend(["--witness", &witness_url]);
        secondary.extend(["--witness", &witness_url]);
    }
    start_pair(&mut a, &mut b, &links, &primary, &secondary);
    wait_until(
        || format!("{:#}", b.status()),
        || b.status()["follower"]["connected"] == true,
    );
    lb.wait_until_active("main-primary");
    (a, b, lb, link)
}

/// The link between the nodes only is cut under load, for twice the detection time; the
/// traffic controller, the Secondary's witness, still reaches the Primary. The Secondary stays
/// Standby (only the link failed), traffic stays, the stream resumes when the link returns, and
/// nothing is lost.
#[test]
fn a_cut_between_the_nodes_under_load_with_the_controller_as_witness_loses_nothing() {
    for run in 0..runs() {
        let (a, b, lb, link) = pair_over_link(true);
        let workload = Writers::start(lb.device_port, 3, &format!("node-cut-{run}"));
        workload.wait_for_more(30, "at the start");
        link.cut();
        assert_roles_hold(&a, &b, Duration::from_secs(6), &format!("run {run}"));
        assert!(
            b.ha_log().iter().any(|(_, _, message)| {
                message.contains("only the link between this node and the Primary failed")
            }),
            "run {run}: {:?}",
            b.ha_log()
        );
        link.restore();
        let acknowledged = workload.stop();
        assert_nothing_moved_or_lost(&a, &b, &lb, &acknowledged);
        eprintln!(
            "node link cut run {run}: {} acknowledged, all on the Primary and, after the cut, \
             the Secondary; no promotion, no switch",
            acknowledged.len()
        );
    }
}

/// Synchronous replication through a cut link between the nodes, under load, with the
/// controller as witness: the Standby does not promote (the witness still reaches the Primary),
/// the Primary falls back to acknowledging without it after the synchronous timeout, and once
/// the link returns the Standby catches up. Nothing acknowledged is missing from the Primary,
/// the one Active node.
#[test]
fn a_cut_between_synchronous_nodes_with_the_controller_as_witness_loses_nothing() {
    for run in 0..runs() {
        let (a, b, lb, link) = pair_over_link_with(
            true,
            &[
                "--replication",
                "synchronous",
                "--synchronous-timeout",
                "2s",
            ],
        );
        let workload = Writers::start(lb.device_port, 3, &format!("sync-cut-{run}"));
        workload.wait_for_more(30, "at the start");
        link.cut();
        assert_roles_hold(&a, &b, Duration::from_secs(6), &format!("run {run}"));
        // The Primary went on without its Standby (the alarm), and devices were served.
        workload.wait_for_more(20, "with the link cut");
        link.restore();
        let acknowledged = workload.stop();
        assert_nothing_moved_or_lost(&a, &b, &lb, &acknowledged);
        eprintln!(
            "synchronous node link cut with a witness, run {run}: {} acknowledged, all on the \
             Primary and, after the cut, the Standby; no promotion, no switch",
            acknowledged.len()
        );
    }
}

/// Synchronous replication through a cut link between the nodes, under load, without a
/// witness: the configuration allows automatic promotion only with `--if-standby-lost block`,
/// so the Primary acknowledges nothing it cannot confirm. The Standby promotes; when the link
/// returns the old Primary is fenced and the controller follows the new one. Every
/// acknowledged write is on the promoted node: none is even in a divergence export.
#[test]
fn a_cut_between_synchronous_nodes_without_a_witness_loses_nothing() {
    for run in 0..runs() {
        let (a, b, lb, link) = pair_over_link_with(
            false,
            &["--replication", "synchronous", "--if-standby-lost", "block"],
        );
        let workload = Writers::start(lb.device_port, 3, &format!("sync-cut-bare-{run}"));
        workload.wait_for_more(30, "at the start");
        link.cut();
        b.wait_for_state("Active");
        link.restore();
        a.wait_until_fenced();
        lb.wait_until_active("main-secondary");
        let acknowledged = workload.stop();
        let lost = missing(&acknowledged, &b.labels());
        assert!(lost.is_empty(), "run {run}: {lost:?}");
        eprintln!(
            "synchronous node link cut without a witness (block), run {run}: {} acknowledged, \
             all on the promoted node",
            acknowledged.len()
        );
    }
}

/// The link between the nodes turns slow and lossy under load: 40 ms per chunk each way, and
/// one chunk in 20 held a further 300 ms (a TCP retransmission after a lost segment), drawn from
/// a seed. Heartbeats still arrive within the re-check interval, so nothing fails over and
/// traffic stays; continuous replication falls behind by the link's delays and catches up once
/// the link heals; nothing is lost.
#[test]
fn a_slow_and_lossy_link_between_the_nodes_moves_nothing_and_loses_nothing() {
    for run in 0..runs() {
        let seed = 0x7A4D_0000 + run as u64;
        let (a, b, lb, link) = pair_over_link(false);
        let workload = Writers::start(lb.device_port, 3, &format!("lossy-{run}"));
        workload.wait_for_more(30, "at the start");
        link.degrade(Some(Degradation {
            delay: Duration::from_millis(40),
            loss: 0.05,
            stall: Duration::from_millis(300),
            seed,
        }));
        let degraded_from = workload.count();
        let mut lag_max_ms = 0;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            assert_eq!(a.state(), "Active", "run {run} (seed {seed})");
            let status = b.status();
            assert_eq!(
                status["controller"]["status"]["state"], "Standby",
                "run {run} (seed {seed}): {status:#}"
            );
            lag_max_ms = lag_max_ms.max(status["follower"]["lastLagMs"].as_i64().unwrap_or(0));
            std::thread::sleep(Duration::from_millis(250));
        }
        let during = workload.count() - degraded_from;
        link.degrade(None);
        let acknowledged = workload.stop();
        // Every chunk waits 40 ms: a lag below that means the link was not slowed at all.
        assert!(
            lag_max_ms >= 40,
            "run {run}: the link was not slowed ({lag_max_ms} ms)"
        );
        assert_nothing_moved_or_lost(&a, &b, &lb, &acknowledged);
        eprintln!(
            "slow and lossy link run {run} (seed {seed}): {} acknowledged ({during} while \
             degraded), all on the Primary and the Secondary; largest lag seen {lag_max_ms} ms; \
             no promotion, no switch",
            acknowledged.len()
        );
    }
}

/// The whole main data center is lost under load, in the three-server topology: A (main
/// Primary) and B (its Secondary) are killed together; C, the DR Secondary following B, is on
/// Keep in Standby, as the guide brings a DR server online by hand. The operator promotes C
/// (`failover mode primary`) and the traffic controller moves devices to it (candidates in the
/// same data center first: there are none left). Before A and B serve again each is synced from
/// C, which exports what only it held. Every acknowledged write is on C or in those exports, in
/// an epoch below C's.
#[test]
fn the_loss_of_the_main_data_center_under_load_loses_nothing_silently() {
    for run in 0..runs() {
        // B holds A's history before C starts from it (a DR node that first copied B's own
        // initial data would, rightly, find itself diverged); every node trusts every other.
        let (mut a, mut b, c) = support::node::three_servers(true);
        let lb = Lb::start(&[
            ("main-primary", &a, "main"),
            ("main-secondary", &b, "main"),
            ("dr-secondary", &c, "dr"),
        ]);
        lb.wait_until_active("main-primary");

        let workload = Writers::start(lb.device_port, 3, &format!("dc-{run}"));
        workload.wait_for_more(60, "at the start");
        a.kill_9();
        b.kill_9();
        let lost_at = Instant::now();
        // C notices that the node it follows is gone and, on Keep in Standby, only says so.
        wait_until(
            || format!("{:?}", c.log("Notifications")),
            || {
                c.log("Notifications")
                    .iter()
                    .any(|(_, _, message)| message.starts_with("failureDetected"))
            },
        );
        assert_eq!(c.state(), "Standby");
        // The operator brings the DR server online.
        c.ok(&["failover", "mode", "primary"]);
        c.wait_for_state("Active");
        lb.wait_until_active("dr-secondary");
        let switched_after = lost_at.elapsed();
        workload.wait_for_more(30, "on the DR node");
        let acknowledged = workload.stop();

        // The main data center returns: each node is synced from C before it serves (offline,
        // so neither can take a write in between).
        for node in [&a, &b] {
            node.ok(&["failover", "sync", &c.endpoint()]);
        }
        let on_c = c.labels();
        let c_epoch = c.status()["controller"]["epoch"].as_i64().unwrap_or(0);
        let exported: Vec<String> = [&a, &b]
            .iter()
            .flat_map(|node| divergence_entries(node))
            .map(|entry| {
                let epoch = entry["epoch"].as_i64().unwrap_or(i64::MAX);
                assert!(
                    epoch < c_epoch,
                    "exported epoch {epoch} not below {c_epoch}: {entry}"
                );
                entry.to_string()
            })
            .collect();
        let mut in_export = 0;
        let mut lost = Vec::new();
        for (name, _) in &acknowledged {
            if on_c.contains(name) {
                continue;
            }
            if in_exported(&exported, name) {
                in_export += 1;
            } else {
                lost.push(name.clone());
            }
        }
        assert!(lost.is_empty(), "run {run}: {lost:?}");
        for node in [&a, &b] {
            let verify = node.ok(&["ha", "verify", &c.endpoint()]);
            assert!(verify.starts_with("identical"), "{verify}");
        }
        eprintln!(
            "data center loss run {run}: {} acknowledged, {} on the DR node, {in_export} in the \
             main data center's divergence exports, 0 lost; DR serving {} ms after the loss \
             (operator acting at once)",
            acknowledged.len(),
            acknowledged.len() - in_export,
            switched_after.as_millis()
        );
    }
}
