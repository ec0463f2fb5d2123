//! Deterministic, seeded simulation of the HA controller (`tandem_ha::machine::Controller`).
//!
//! # What is simulated
//!
//! Two or three nodes, each a real `Controller` driven the way the runtime in `tandem-server`
//! drives it: ticks every `TICK_MIN_MS`..`TICK_MAX_MS`, and its commands carried out in order.
//! - **Pair**: node-a in Primary mode, node-b in Secondary mode following node-a. **Three
//!   servers** (the guide's DR scenario, as in `tests/ha.rs`): node-c in Secondary mode follows
//!   node-b. Trusted Hosts: a–b and b–c.
//! - **Network**: a heartbeat carries the sender's view and is answered with the receiver's
//!   view as it was published before it saw the sender (the runtime queues the `PeerSeen`);
//!   every message has a random latency, may be lost (a per-seed, changing loss rate), and is
//!   cut by partitions (random sides for the nodes and the load balancer, healed later). A
//!   heartbeat or startup check that gets no answer fails after the runtime's timeout; one to a
//!   stopped node is refused at once.
//! - **Syncs** (scheduled every minute, `StartSync`) succeed with the source's epoch when the
//!   source is up and reachable, else fail, sometimes after longer than Run Every (skips).
//! - **Streams** (continuous and synchronous replication, half the seeds, with both policies for
//!   a lost Standby and both for If Behind at Failure): a node told to `Follow` is in step while
//!   its source is up and reachable (checked every tick); a stream that connects reports the
//!   source's epoch (`SourceEpoch`), and the follower's state (`Replication`) is reported before
//!   each heartbeat result, as the runtime does.
//! - **Witness**: `tandem lb`'s `GET /witness/primary`: the load balancer's place in the network
//!   answers whether the node it routes to is up, reachable from it and Active (the status
//!   probe), when the asking Secondary reaches the load balancer.
//! - **Faults** (during `FAULT_PHASE_MS`): crashes and restarts (a restarted node is
//!   `Controller::new(id, last Durable it was told to Persist)`; anything not persisted is lost),
//!   crashes in the middle of carrying out a step's commands, partitions and heals, message
//!   loss, wall-clock jumps (the monotonic clock restarts at 0 with each process), and rare
//!   operator actions done as docs/ha.md says: failback (`failover sync` from the Active node,
//!   `failover mode primary --force` on the returned node, `failover mode secondary` on the
//!   other), making a fenced node a Standby (`failover mode secondary`), Run Sync Now on a
//!   Standby, promoting a Standby by hand (refused while another node is seen Active), and the
//!   guide's upgrade window (HA disabled on a Standby, enabled again later). Every view a node
//!   sends carries its gossip of the others.
//! - **Load balancer** (a model of `tandem lb`): sends traffic to the pinned node; moves only
//!   when the pinned node fails `LB_FALL_PROBES` status probes in a row (stopped, cut off, or not
//!   Active) and another node of the HA group passes; never moves back by itself. It is
//!   restarted at random, half the time without its state file (then it routes to the newest
//!   claim that passes).
//!
//! Then everything heals for `STABILIZE_MS`: no partition, no loss, no slow message, every node
//! up, no operator.
//!
//! # Invariants, checked after every step
//!
//! 1. **Ballots** — an epoch is a ballot (counter, node id). No two nodes serve Active in the
//!    same ballot, and a node enters Active only (a) by a promotion to a counter above every
//!    counter it persisted, ever synced, or was shown by a peer since it started, or (b) at the
//!    end of its startup peer check, in its own persisted counter, when no peer shown to it was
//!    Active in a higher ballot. Two nodes *can* be Active at once in different ballots (a
//!    partition, or peers that did not answer the startup check in time): the machine promises
//!    to resolve that by fencing when they meet (2, 5), not to prevent it.
//! 2. **Fencing** — a node fenced in memory or on disk never serves Active; an Active node shown
//!    an Active peer in a higher ballot ends that step Not Available, with the fence persisted
//!    before it stops serving; it stops serving Active only then or by an operator's command;
//!    and a fence on disk is cleared only by an operator's command. What a node tells its peers
//!    (its state) is what it serves.
//! 3. **Persist before Serve** — when a node serves Active in counter E, it has already
//!    persisted (earlier in the same step or before) an epoch ≥ E and no fence.
//! 4. **Monotonic epochs** — the epochs a node persists never decrease, across restarts.
//! 5. **Liveness** — at the end of the calm, exactly one node serves Active and the others are
//!    Standby, or Not Available with a persisted fence (awaiting the operator); the load balancer
//!    is pinned to the Active node. Asserted for every pair (also when an operator promotes a
//!    Standby by hand during a partition), and for three servers with the DR node on Keep in
//!    Standby, as the guide runs it; `three_servers_end_with_one_active_node` says why not with
//!    automatic promotion on the DR node.
//! 6. **No automatic failback** — the load balancer's pin changes only when the pinned node fails
//!    its probes and the new node passes them.
//!
//! Two more tests break the runtime on purpose (a node that serves before persisting, one that
//! ignores its fence) and require the checker to report it.
//!
//! # Running
//!
//! - `cargo test -p tandem-ha --test simulation` runs seeds `0..SEEDS_DEFAULT`.
//! - More seeds: `TANDEM_SIM_SEEDS=1000000 cargo test -p tandem-ha --release --test simulation`.
//! - A failure prints the seed, the invariant, the last `TRACE_LINES_MAX` steps and the command
//!   that reruns that seed alone: `TANDEM_SIM_SEED=<n> cargo test -p tandem-ha --test
//!   simulation <test> -- --nocapture`. With `TANDEM_SIM_TRACE=all` the trace
//!   also shows the heartbeats that changed nothing.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;

use tandem_ha::config::{
    HaConfig, NodeStatusSetting, OnBehind, OnFailure, OnStandbyLost, RUN_EVERY_MIN,
    ReplicationMode, Span, StartTime,
};
use tandem_ha::machine::{
    Command, Controller, Durable, Event, Guard, Notification, Now, OperatorCommand, PeerView,
    PromotionRecord, ReplicationView, SyncOutcome, SyncTrigger,
};
use tandem_ha::{Mode, State};

/// Seeds run when `TANDEM_SIM_SEEDS` is not set; sized to stay around 30 s in a debug build.
const SEEDS_DEFAULT: u64 = 10_000;
/// Steps of the trace printed with a failure.
const TRACE_LINES_MAX: usize = 200;
/// Seeds tried to show that the checker notices a deliberately broken runtime.
const SABOTAGE_SEEDS_MAX: u64 = 500;

/// Simulated time with faults, then with none.
const FAULT_PHASE_MS: u64 = 30_000;
const STABILIZE_MS: u64 = 20_000;
/// The runtime ticks every 50 ms; jitter stands for a busy runtime (and keeps the run cheap).
const TICK_MIN_MS: u64 = 50;
const TICK_MAX_MS: u64 = 300;
/// One-way latency: mostly fast, sometimes longer than the heartbeat timeout.
const LATENCY_FAST_MAX_MS: u64 = 20;
const LATENCY_MAX_MS: u64 = 1_500;
const LATENCY_SLOW_PERMILLE: u64 = 100;
/// A connection to a stopped process is refused at once.
const REFUSED_MS: u64 = 2;
/// The runtime's timeouts (tandem-server, ha.rs).
const PEER_CHECK_TIMEOUT_MS: u64 = 3_000;
const WITNESS_TIMEOUT_MS: u64 = 2_000;
const HEARTBEAT_TIMEOUT_MIN_MS: u64 = 200;
const HEARTBEAT_TIMEOUT_MAX_MS: u64 = 10_000;
/// Time between two faults (or operator actions).
const CHAOS_GAP_MIN_MS: u64 = 300;
/// How long an operator keeps HA disabled on a Secondary to upgrade it.
const UPGRADE_WINDOW_MIN_MS: u64 = 1_000;
const UPGRADE_WINDOW_MAX_MS: u64 = 6_000;
const CHAOS_GAP_MAX_MS: u64 = 4_000;
const DOWNTIME_MIN_MS: u64 = 100;
const DOWNTIME_MAX_MS: u64 = 12_000;
const PARTITION_MIN_MS: u64 = 500;
const PARTITION_MAX_MS: u64 = 15_000;
const LOSS_MAX_PERMILLE: u64 = 400;
/// A crash between two commands of one step (e.g. after `Persist`, before `Serve`).
const CRASH_MID_STEP_PERMILLE: u64 = 3;
const CLOCK_SKEW_MAX_MS: i64 = 3_000;
const CLOCK_JUMP_MIN_MS: i64 = 1_000;
const CLOCK_JUMP_MAX_MS: i64 = 2 * 3_600_000;
const SYNC_MIN_MS: u64 = 100;
const SYNC_MAX_MS: u64 = 90_000;
const SYNC_FAIL_PERMILLE: u64 = 100;
const SYNC_BUSY_PERMILLE: u64 = 50;
const SYNC_FAILS_AFTER_MAX_MS: u64 = 3_000;
/// The load balancer's probe period and its `fall` (failed probes before a node is down).
const LB_PROBE_MS: u64 = 250;
const LB_FALL_PROBES: u32 = 2;
/// 2026-11-22 14:00:00 UTC, the wall clock at the start of every run.
const WALL0_MS: i64 = 1_795_305_600_000 + 14 * 3_600_000;
const WITNESS_URL: &str = "http://lb.example:9444/witness/primary";

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Node ids order the ballots of one counter: c > b > a.
const IDS: [&str; 3] = ["id-a", "id-b", "id-c"];
const ADDRESSES: [&str; 3] = [
    "node-a.example:2222",
    "node-b.example:2222",
    "node-c.example:2222",
];

/// SplitMix64: tiny, fast, and good enough to drive a simulation; every run is a function of
/// its seed alone.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (the modulo bias is irrelevant at these sizes).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn signed(&mut self, max: i64) -> i64 {
        self.below(2 * max as u64 + 1) as i64 - max
    }

    fn permille(&mut self, permille: u64) -> bool {
        self.below(1_000) < permille
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A deliberately broken runtime, to prove the checker catches what it claims to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sabotage {
    None,
    /// This node's runtime drops every `Persist`: it serves epochs it never wrote down.
    SkipPersist {
        node: usize,
    },
    /// This node's runtime, while serving Active, drops the `Persist` of a new fence and the
    /// `Serve` after it: it goes on serving after its controller stepped down.
    IgnoreFence {
        node: usize,
    },
}

/// What one seed's world looks like, drawn from the seed.
#[derive(Clone, Debug)]
struct Scenario {
    nodes: usize,
    heartbeat_interval_ms: u64,
    recheck_interval_ms: u64,
    heartbeat_failures: u32,
    on_failure: OnFailure,
    witnesses: bool,
    /// node-a also names node-b as its `primary`, so `failover mode secondary` works on it.
    primary_names_secondary: bool,
    /// The operator runs `failover mode primary` on a Standby that detected a failure (what the
    /// log advises under Keep in Standby), not knowing whether the Primary died or was cut off.
    operator_promotes_on_failure: bool,
    sabotage: Sabotage,
    /// Assert invariant 5 at the end: by default only for a pair (see
    /// `three_servers_end_with_one_active_node` for the three-server case).
    liveness: bool,
    /// If Failure Detected on the DR node (node-c) when it differs from the others' setting.
    dr_on_failure: Option<OnFailure>,
    /// Scheduled syncs, or a stream (continuous, synchronous) with its policies.
    replication: ReplicationMode,
    on_standby_lost: OnStandbyLost,
    on_behind: OnBehind,
}

impl Scenario {
    fn draw(rng: &mut SplitMix64) -> Self {
        let nodes = if rng.permille(250) { 3 } else { 2 };
        Self {
            nodes,
            heartbeat_interval_ms: rng.pick(&[500, 1_000, 2_000]),
            recheck_interval_ms: rng.pick(&[200, 500, 1_000]),
            heartbeat_failures: rng.between(1, 3) as u32,
            on_failure: if rng.permille(850) {
                OnFailure::Promote
            } else {
                OnFailure::Standby
            },
            witnesses: rng.permille(300),
            primary_names_secondary: rng.permille(500),
            operator_promotes_on_failure: false,
            sabotage: Sabotage::None,
            liveness: nodes == 2,
            dr_on_failure: None,
            replication: rng.pick(&[
                ReplicationMode::Scheduled,
                ReplicationMode::Scheduled,
                ReplicationMode::Continuous,
                ReplicationMode::Synchronous,
            ]),
            on_standby_lost: rng.pick(&[OnStandbyLost::Block, OnStandbyLost::Continuous]),
            on_behind: if rng.permille(700) {
                OnBehind::Standby
            } else {
                OnBehind::Promote
            },
        }
    }

    /// Synchronous replication with the continuous fallback and automatic promotion is refused
    /// without a third party (`HaConfig::validate`), so every node of such a world has the
    /// witness.
    fn witness_required(&self) -> bool {
        self.replication == ReplicationMode::Synchronous
            && self.on_standby_lost == OnStandbyLost::Continuous
            && self.on_failure == OnFailure::Promote
    }

    fn config(&self, mode: Mode, primary: Option<usize>, witnesses: bool) -> HaConfig {
        let config = HaConfig {
            enabled: true,
            mode,
            node_status: NodeStatusSetting::Standby,
            primary: primary.map(|node| ADDRESSES[node].parse().unwrap()),
            replication: self.replication,
            on_standby_lost: self.on_standby_lost,
            on_behind: self.on_behind,
            synchronous_timeout: Span::from_secs(5),
            lag_bound: Span::from_secs(5),
            start_time: StartTime::new(14, 0).unwrap_or(StartTime::MIDNIGHT),
            run_every: RUN_EVERY_MIN,
            heartbeat_interval: Span::from_millis(self.heartbeat_interval_ms),
            heartbeat_failures: self.heartbeat_failures,
            recheck_interval: Span::from_millis(self.recheck_interval_ms),
            on_failure: self.on_failure,
            witnesses: if witnesses || self.witness_required() {
                vec![WITNESS_URL.parse().unwrap()]
            } else {
                Vec::new()
            },
            ..HaConfig::default()
        };
        if let Err(error) = config.validate() {
            panic!("the simulated configuration must be valid: {error}");
        }
        config
    }
}

/// What a node's runtime serves, as set by the last `Serve` it carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Served {
    state: State,
    epoch: i64,
}

struct PeerCheck {
    id: u64,
    outstanding: usize,
}

struct Node {
    /// `None` while the process is stopped.
    controller: Option<Controller>,
    /// Which run of the process this is: news for an earlier run is dropped.
    life: u32,
    born_ms: u64,
    clock_offset_ms: i64,
    /// The last `Durable` it was told to persist: all that survives a crash.
    disk: Durable,
    served: Served,
    trusted: Vec<usize>,
    heartbeats_pending: Vec<u64>,
    check: Option<PeerCheck>,
    /// For invariant 1: the highest epoch a peer showed this run, and the highest ballot of an
    /// Active peer.
    shown_epoch_max: i64,
    shown_active_max: Option<(i64, String)>,
    /// The highest source epoch a finished sync brought while the node was not Active: the
    /// synced history carries it, so every later promotion, across restarts, goes above it.
    synced_epoch_max: i64,
    /// Continuous replication: the node it was told to follow, whether its stream is in step
    /// (checked every tick), and the wall-clock time it last was, in this run.
    follows: Option<usize>,
    in_step: bool,
    in_step_at_ms: Option<i64>,
}

/// What the step's input was, as the checks need it.
enum StepKind {
    PeersChecked,
    Synced(i64),
    PeerView(PeerView),
    Operator,
    Other,
}

enum Input {
    Event(Event),
    Operator(OperatorCommand, Guard),
    /// `tandem ha configure --enable|--disable` (the guide's upgrade, steps 1 and 6).
    HaEnabled(bool),
}

enum Happening {
    Tick {
        node: usize,
        life: u32,
    },
    HeartbeatArrives {
        to: usize,
        from: usize,
        life: u32,
        id: u64,
        view: PeerView,
    },
    HeartbeatReply {
        node: usize,
        life: u32,
        id: u64,
        view: PeerView,
    },
    HeartbeatRefused {
        node: usize,
        life: u32,
        id: u64,
    },
    HeartbeatTimeout {
        node: usize,
        life: u32,
        id: u64,
        timeout_ms: u64,
    },
    CheckArrives {
        to: usize,
        from: usize,
        life: u32,
        id: u64,
        view: PeerView,
    },
    CheckAnswer {
        node: usize,
        life: u32,
        id: u64,
        /// The node asked.
        peer: usize,
        view: Option<PeerView>,
    },
    CheckTimeout {
        node: usize,
        life: u32,
        id: u64,
    },
    SyncDone {
        node: usize,
        life: u32,
        trigger: SyncTrigger,
        outcome: SyncOutcome,
    },
    WitnessAnswer {
        node: usize,
        life: u32,
        reaching_primary: Option<String>,
    },
    Chaos,
    Heal {
        partition: u64,
    },
    Restart {
        node: usize,
    },
    /// The operator enables HA again on a node it disabled it on (the upgrade window ends).
    EnableHa {
        node: usize,
    },
    Stabilize,
    LbProbe,
}

struct Scheduled {
    at_ms: u64,
    seq: u64,
    what: Happening,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Time, then the order of scheduling: ties never depend on anything but the seed.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

/// The load balancer of deploy/haproxy: one stick entry, no automatic failback.
struct LoadBalancer {
    pinned: usize,
    failed_probes: Vec<u32>,
}

#[derive(Debug)]
struct Violation {
    invariant: &'static str,
    at_ms: u64,
    detail: String,
}

/// A failed seed, with what is needed to understand and rerun it.
struct Failure {
    test: &'static str,
    seed: u64,
    violation: Violation,
    trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} broke invariant `{}` at {} ms: {}",
            self.seed, self.violation.invariant, self.violation.at_ms, self.violation.detail
        )?;
        writeln!(
            f,
            "rerun it alone: TANDEM_SIM_SEED={} cargo test -p tandem-ha --test simulation {} -- \
             --nocapture",
            self.seed, self.test
        )?;
        writeln!(f, "last {} steps:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Counts across seeds, to show (and assert) that the faults reach the interesting paths.
#[derive(Clone, Debug, Default)]
struct Tally {
    seeds: u64,
    three_server_seeds: u64,
    steps: u64,
    promotions: u64,
    fences: u64,
    failbacks: u64,
    fenced_made_standby: u64,
    upgrade_windows: u64,
    lb_restarts: u64,
    syncs_now: u64,
    manual_promotions: u64,
    crashes: u64,
    mid_step_crashes: u64,
    partitions: u64,
    clock_jumps: u64,
    witness_vetoes: u64,
    skipped_syncs: u64,
    lb_moves: u64,
    seeds_with_two_active: u64,
    three_server_seeds_ending_with_two_active: u64,
    streams_connected: u64,
    promotions_held: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.seeds += other.seeds;
        self.three_server_seeds += other.three_server_seeds;
        self.steps += other.steps;
        self.promotions += other.promotions;
        self.fences += other.fences;
        self.failbacks += other.failbacks;
        self.upgrade_windows += other.upgrade_windows;
        self.lb_restarts += other.lb_restarts;
        self.fenced_made_standby += other.fenced_made_standby;
        self.syncs_now += other.syncs_now;
        self.manual_promotions += other.manual_promotions;
        self.crashes += other.crashes;
        self.mid_step_crashes += other.mid_step_crashes;
        self.partitions += other.partitions;
        self.clock_jumps += other.clock_jumps;
        self.witness_vetoes += other.witness_vetoes;
        self.skipped_syncs += other.skipped_syncs;
        self.lb_moves += other.lb_moves;
        self.seeds_with_two_active += other.seeds_with_two_active;
        self.three_server_seeds_ending_with_two_active +=
            other.three_server_seeds_ending_with_two_active;
        self.streams_connected += other.streams_connected;
        self.promotions_held += other.promotions_held;
    }
}

struct World {
    rng: SplitMix64,
    scenario: Scenario,
    now_ms: u64,
    end_ms: u64,
    seq: u64,
    next_id: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    /// Partition side of every node, then of the load balancer (also the witness).
    sides: Vec<u8>,
    partition: u64,
    loss_permille: u64,
    faults_on: bool,
    lb: LoadBalancer,
    trace: Option<VecDeque<String>>,
    /// `TANDEM_SIM_TRACE=all`: also trace heartbeats that change nothing.
    trace_routine: bool,
    tally: Tally,
    two_active_seen: bool,
}

/// Every ballot a view shows `receiver`: `(epoch, node id, Active in the HA group)` of its
/// sender and of each node it gossips about, except the receiver itself (which knows itself
/// better than any gossip).
fn shown(view: &PeerView, receiver: &str) -> Vec<(i64, String, bool)> {
    let sender = (
        view.epoch,
        view.node_id.clone(),
        view.state == State::Active && view.ha_enabled,
    );
    let gossip = view
        .known
        .iter()
        .filter(|node| node.node_id != receiver)
        .map(|node| (node.epoch, node.node_id.clone(), node.claim().is_some()));
    std::iter::once(sender).chain(gossip).collect()
}

/// Whether `view` shows an Active ballot above `(epoch, id)` held by another node.
fn shows_higher_claim(view: &PeerView, epoch: i64, id: &str) -> bool {
    shown(view, id)
        .into_iter()
        .any(|(shown_epoch, shown_id, active)| {
            active && shown_id != id && (shown_epoch, shown_id.as_str()) > (epoch, id)
        })
}

fn view_text(view: &PeerView) -> String {
    format!(
        "{} {} {} e{}",
        view.node_name, view.mode, view.state, view.epoch
    )
}

fn input_text(input: &Input) -> String {
    match input {
        Input::Operator(command, guard) => format!("operator {command:?} ({guard:?})"),
        Input::HaEnabled(enabled) => format!("operator: ha configure enabled={enabled}"),
        Input::Event(Event::HeartbeatAnswered(view)) => {
            format!("HeartbeatAnswered({})", view_text(view))
        }
        Input::Event(Event::PeerSeen(view)) => format!("PeerSeen({})", view_text(view)),
        Input::Event(Event::SyncFinished { trigger, outcome }) => {
            let outcome = match outcome {
                SyncOutcome::Succeeded { source_epoch, .. } => {
                    format!("ok, source e{source_epoch}")
                }
                SyncOutcome::Failed { .. } => "failed".into(),
                SyncOutcome::Skipped { .. } => "busy".into(),
            };
            format!("SyncFinished({trigger:?}, {outcome})")
        }
        Input::Event(event) => format!("{event:?}"),
    }
}

fn command_text(command: &Command) -> Option<String> {
    Some(match command {
        Command::Log { .. } => return None,
        Command::Persist(durable) => format!(
            "Persist(e{}, {} {:?}{})",
            durable.epoch,
            durable.config.mode,
            durable.config.node_status,
            if durable.fenced.is_some() {
                ", fenced"
            } else {
                ""
            }
        ),
        Command::Serve { status, epoch, .. } => {
            format!("Serve({} {} e{epoch})", status.mode, status.state)
        }
        Command::Notify { notification, .. } => format!("Notify({notification:?})"),
        other => format!("{other:?}"),
    })
}

impl World {
    fn new(seed: u64, scenario: impl FnOnce(&mut SplitMix64) -> Scenario, trace: bool) -> Self {
        let mut rng = SplitMix64(seed);
        let scenario = scenario(&mut rng);
        let count = scenario.nodes;
        let mut nodes = Vec::with_capacity(count);
        for node in 0..count {
            let (mode, primary) = match node {
                0 => (Mode::Primary, scenario.primary_names_secondary.then_some(1)),
                _ => (Mode::Secondary, Some(node - 1)),
            };
            let mut config = scenario.config(mode, primary, node > 0 && scenario.witnesses);
            if node == 2
                && let Some(on_failure) = scenario.dr_on_failure
            {
                config.on_failure = on_failure;
            }
            let trusted = (0..count)
                .filter(|&peer| peer + 1 == node || node + 1 == peer)
                .collect();
            nodes.push(Node {
                controller: None,
                life: 0,
                born_ms: 0,
                clock_offset_ms: rng.signed(CLOCK_SKEW_MAX_MS),
                disk: Durable {
                    config,
                    epoch: 1,
                    fenced: None,
                    schedule_anchor_ms: Some(WALL0_MS - rng.below(60_000) as i64),
                    followed_state: None,
                    held_epoch: Some(1),
                },
                served: Served {
                    state: State::NotAvailable,
                    epoch: 1,
                },
                trusted,
                heartbeats_pending: Vec::new(),
                check: None,
                shown_epoch_max: 0,
                shown_active_max: None,
                synced_epoch_max: 0,
                follows: None,
                in_step: false,
                in_step_at_ms: None,
            });
        }
        let tally = Tally {
            seeds: 1,
            three_server_seeds: u64::from(count == 3),
            ..Tally::default()
        };
        Self {
            rng,
            scenario,
            now_ms: 0,
            end_ms: FAULT_PHASE_MS + STABILIZE_MS,
            seq: 0,
            next_id: 0,
            queue: BinaryHeap::new(),
            nodes,
            sides: vec![0; count + 1],
            partition: 0,
            loss_permille: 0,
            faults_on: true,
            lb: LoadBalancer {
                pinned: 0,
                failed_probes: vec![0; count],
            },
            trace: trace.then(VecDeque::new),
            trace_routine: std::env::var("TANDEM_SIM_TRACE").is_ok_and(|value| value == "all"),
            tally,
            two_active_seen: false,
        }
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            if trace.len() == TRACE_LINES_MAX {
                trace.pop_front();
            }
            trace.push_back(format!("{:>6} ms  {}", self.now_ms, line()));
        }
    }

    fn note_routine(&mut self, line: impl FnOnce() -> String) {
        if self.trace_routine {
            self.note(line);
        }
    }

    fn at(&mut self, delay_ms: u64, what: Happening) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at_ms: self.now_ms + delay_ms,
            seq: self.seq,
            what,
        }));
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn violation(&self, invariant: &'static str, detail: String) -> Violation {
        Violation {
            invariant,
            at_ms: self.now_ms,
            detail,
        }
    }

    fn up(&self, node: usize) -> bool {
        self.nodes[node].controller.is_some()
    }

    fn alive(&self, node: usize, life: u32) -> bool {
        self.up(node) && self.nodes[node].life == life
    }

    fn lb_place(&self) -> usize {
        self.nodes.len()
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.sides[a] == self.sides[b]
    }

    /// Whether one message from `a` gets to `b`: no partition between them, and not lost.
    fn delivers(&mut self, a: usize, b: usize) -> bool {
        self.linked(a, b) && !(self.loss_permille > 0 && self.rng.permille(self.loss_permille))
    }

    /// A slow message is a fault too (it outlasts the heartbeat timeout): none in the calm.
    fn latency(&mut self) -> u64 {
        if self.faults_on && self.rng.permille(LATENCY_SLOW_PERMILLE) {
            self.rng.between(LATENCY_FAST_MAX_MS, LATENCY_MAX_MS)
        } else {
            self.rng.between(1, LATENCY_FAST_MAX_MS)
        }
    }

    fn node_by_address(&self, address: &str) -> Option<usize> {
        ADDRESSES[..self.nodes.len()]
            .iter()
            .position(|candidate| *candidate == address)
    }

    fn now_of(&self, node: usize) -> Now {
        let node = &self.nodes[node];
        Now {
            monotonic_ms: self.now_ms - node.born_ms,
            wall_ms: WALL0_MS + self.now_ms as i64 + node.clock_offset_ms,
        }
    }

    /// How the node describes itself to a peer (the runtime's published view).
    fn view_of(&self, node: usize) -> Option<PeerView> {
        let controller = self.nodes[node].controller.as_ref()?;
        let status = controller.status();
        Some(PeerView {
            node_name: NAMES[node].to_owned(),
            node_id: IDS[node].to_owned(),
            ha_enabled: status.ha_enabled,
            mode: status.mode,
            state: status.state,
            epoch: controller.epoch(),
            wall_clock_ms: self.now_of(node).wall_ms,
            replication: Some(controller.durable().config.replication),
            on_standby_lost: Some(controller.durable().config.on_standby_lost),
            synchronous_timeout: Some(controller.durable().config.synchronous_timeout),
            acknowledging_without_standby: None,
            known: controller.known(self.now_of(node)),
            fail_over_controls: None,
        })
    }

    fn run(mut self) -> Result<Tally, (Violation, Option<VecDeque<String>>)> {
        match self.simulate() {
            Ok(()) => Ok(self.tally),
            Err(violation) => Err((violation, self.trace)),
        }
    }

    fn simulate(&mut self) -> Result<(), Violation> {
        for node in 0..self.nodes.len() {
            let delay = self.rng.below(200);
            self.at(delay, Happening::Restart { node });
        }
        let gap = self.rng.between(CHAOS_GAP_MIN_MS, CHAOS_GAP_MAX_MS);
        self.at(gap, Happening::Chaos);
        self.at(FAULT_PHASE_MS, Happening::Stabilize);
        self.at(LB_PROBE_MS, Happening::LbProbe);
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at_ms > self.end_ms {
                break;
            }
            self.now_ms = next.at_ms;
            self.happen(next.what)?;
        }
        self.now_ms = self.end_ms;
        if self.scenario.nodes == 3 {
            let active = (0..3)
                .filter(|&node| self.nodes[node].served.state == State::Active)
                .count();
            self.tally.three_server_seeds_ending_with_two_active += u64::from(active > 1);
        }
        if self.scenario.liveness {
            self.check_liveness()?;
        }
        self.tally.seeds_with_two_active = u64::from(self.two_active_seen);
        Ok(())
    }

    fn happen(&mut self, what: Happening) -> Result<(), Violation> {
        match what {
            Happening::Tick { node, life } => {
                if self.alive(node, life) {
                    self.check_stream(node)?;
                }
                if self.alive(node, life) {
                    self.step(node, Input::Event(Event::Tick))?;
                    if self.alive(node, life) {
                        let delay = self.rng.between(TICK_MIN_MS, TICK_MAX_MS);
                        self.at(delay, Happening::Tick { node, life });
                    }
                }
            }
            Happening::HeartbeatArrives {
                to,
                from,
                life,
                id,
                view,
            } => {
                // The runtime answers with the view it published, then queues the PeerSeen.
                if let Some(answer) = self.view_of(to) {
                    self.step(to, Input::Event(Event::PeerSeen(view)))?;
                    if self.delivers(to, from) {
                        let delay = self.latency();
                        self.at(
                            delay,
                            Happening::HeartbeatReply {
                                node: from,
                                life,
                                id,
                                view: answer,
                            },
                        );
                    } else {
                        self.note_routine(|| {
                            format!("{} -> {}: heartbeat answer lost", NAMES[to], NAMES[from])
                        });
                    }
                }
            }
            Happening::HeartbeatReply {
                node,
                life,
                id,
                view,
            } => {
                if self.alive(node, life) && self.take_heartbeat(node, id) {
                    self.heartbeat_result(node, Event::HeartbeatAnswered(view))?;
                }
            }
            Happening::HeartbeatRefused { node, life, id } => {
                if self.alive(node, life) && self.take_heartbeat(node, id) {
                    let reason = "connection refused".to_owned();
                    self.heartbeat_result(node, Event::HeartbeatFailed { reason })?;
                }
            }
            Happening::HeartbeatTimeout {
                node,
                life,
                id,
                timeout_ms,
            } => {
                if self.alive(node, life) && self.take_heartbeat(node, id) {
                    let reason = format!("no answer within {timeout_ms} ms");
                    self.heartbeat_result(node, Event::HeartbeatFailed { reason })?;
                }
            }
            Happening::CheckArrives {
                to,
                from,
                life,
                id,
                view,
            } => {
                if let Some(answer) = self.view_of(to) {
                    self.step(to, Input::Event(Event::PeerSeen(view)))?;
                    if self.delivers(to, from) {
                        let delay = self.latency();
                        self.at(
                            delay,
                            Happening::CheckAnswer {
                                node: from,
                                life,
                                id,
                                peer: to,
                                view: Some(answer),
                            },
                        );
                    }
                }
            }
            Happening::CheckAnswer {
                node,
                life,
                id,
                peer,
                view,
            } => {
                if !self.alive(node, life) {
                    return Ok(());
                }
                let Some(check) = self.nodes[node]
                    .check
                    .as_mut()
                    .filter(|check| check.id == id)
                else {
                    return Ok(());
                };
                check.outstanding = check.outstanding.saturating_sub(1);
                let done = check.outstanding == 0;
                let address = ADDRESSES[peer].to_owned();
                match view {
                    Some(view) => {
                        self.step(node, Input::Event(Event::PeerAnswered { address, view }))?
                    }
                    None => {
                        let reason = "connection refused".to_owned();
                        self.step(
                            node,
                            Input::Event(Event::PeerUnreachable { address, reason }),
                        )?
                    }
                }
                if done && self.alive(node, life) {
                    self.finish_check(node)?;
                }
            }
            Happening::CheckTimeout { node, life, id } => {
                if self.alive(node, life)
                    && self.nodes[node]
                        .check
                        .as_ref()
                        .is_some_and(|check| check.id == id)
                {
                    self.finish_check(node)?;
                }
            }
            Happening::SyncDone {
                node,
                life,
                trigger,
                outcome,
            } => {
                if self.alive(node, life) {
                    self.step(node, Input::Event(Event::SyncFinished { trigger, outcome }))?;
                }
            }
            Happening::WitnessAnswer {
                node,
                life,
                reaching_primary,
            } => {
                if self.alive(node, life) {
                    self.tally.witness_vetoes += u64::from(reaching_primary.is_some());
                    // The witnesses' records for synchronous replication are not modelled here
                    // (the Primary's fallback is the runtime's): answered as a witness that keeps
                    // none, so the Standby judges by timing, as before records.
                    let promotion = PromotionRecord::Unsupported;
                    self.step(
                        node,
                        Input::Event(Event::WitnessesAnswered {
                            reaching_primary,
                            promotion,
                        }),
                    )?;
                }
            }
            Happening::EnableHa { node } => {
                if self.up(node) {
                    self.step(node, Input::HaEnabled(true))?;
                } else {
                    // The operator waits for the node to be back.
                    self.at(UPGRADE_WINDOW_MIN_MS, Happening::EnableHa { node });
                }
            }
            Happening::Chaos => {
                if self.faults_on {
                    self.chaos()?;
                    let gap = self.rng.between(CHAOS_GAP_MIN_MS, CHAOS_GAP_MAX_MS);
                    self.at(gap, Happening::Chaos);
                }
            }
            Happening::Heal { partition } => {
                if partition == self.partition {
                    self.heal();
                }
            }
            Happening::Restart { node } => {
                if !self.up(node) {
                    self.restart(node)?;
                }
            }
            Happening::Stabilize => {
                self.faults_on = false;
                self.heal();
                self.loss_permille = 0;
                self.note(|| "calm: no more faults, every node up".into());
                for node in 0..self.nodes.len() {
                    if !self.up(node) {
                        self.restart(node)?;
                    }
                }
            }
            Happening::LbProbe => {
                self.probe()?;
                self.at(LB_PROBE_MS, Happening::LbProbe);
            }
        }
        Ok(())
    }

    /// Continuous replication, as the runtime checks it every tick: the stream is in step while
    /// the node it follows is up and reachable. A stream that (re)connects reports the source's
    /// epoch first, as the follower does when its session opens.
    fn check_stream(&mut self, node: usize) -> Result<(), Violation> {
        let source = self.nodes[node].follows;
        let in_step = source.is_some_and(|source| self.up(source) && self.linked(node, source));
        if in_step {
            self.nodes[node].in_step_at_ms = Some(self.now_of(node).wall_ms);
        }
        if in_step == self.nodes[node].in_step {
            return Ok(());
        }
        self.nodes[node].in_step = in_step;
        if let Some(source) = source.filter(|_| in_step) {
            self.tally.streams_connected += 1;
            let epoch = self.nodes[source].disk.epoch;
            self.step(node, Input::Event(Event::SourceEpoch(epoch)))?;
        }
        Ok(())
    }

    /// A heartbeat's result, after the follower's state, as the runtime reports them.
    fn heartbeat_result(&mut self, node: usize, result: Event) -> Result<(), Violation> {
        let state = &self.nodes[node];
        let view = ReplicationView {
            in_step_at_ms: state.in_step_at_ms,
            streaming: state.in_step,
            answered_at_ms: state.in_step_at_ms,
            behind: (!state.in_step).then(|| "the replication stream is down".to_owned()),
        };
        self.step(node, Input::Event(Event::Replication(view)))?;
        self.step(node, Input::Event(result))
    }

    fn take_heartbeat(&mut self, node: usize, id: u64) -> bool {
        let pending = &mut self.nodes[node].heartbeats_pending;
        match pending.iter().position(|&candidate| candidate == id) {
            Some(index) => {
                pending.swap_remove(index);
                true
            }
            None => false,
        }
    }

    fn finish_check(&mut self, node: usize) -> Result<(), Violation> {
        self.nodes[node].check = None;
        self.step(node, Input::Event(Event::PeersChecked))
    }

    fn restart(&mut self, node: usize) -> Result<(), Violation> {
        let state = &mut self.nodes[node];
        state.life += 1;
        state.born_ms = self.now_ms;
        state.controller = Some(Controller::new(IDS[node], state.disk.clone()));
        state.served.state = State::NotAvailable;
        state.heartbeats_pending.clear();
        state.check = None;
        state.shown_epoch_max = 0;
        state.shown_active_max = None;
        state.follows = None;
        state.in_step = false;
        state.in_step_at_ms = None;
        let life = state.life;
        self.note(|| format!("{} starts (run {life})", NAMES[node]));
        self.step(node, Input::Event(Event::Started))?;
        if self.alive(node, life) {
            let delay = self.rng.between(1, TICK_MAX_MS);
            self.at(delay, Happening::Tick { node, life });
        }
        Ok(())
    }

    fn crash(&mut self, node: usize, why: &str) {
        let state = &mut self.nodes[node];
        state.controller = None;
        state.served.state = State::NotAvailable;
        state.heartbeats_pending.clear();
        state.check = None;
        self.tally.crashes += 1;
        self.note(|| format!("{} crashes ({why})", NAMES[node]));
        let downtime = self.rng.between(DOWNTIME_MIN_MS, DOWNTIME_MAX_MS);
        self.at(downtime, Happening::Restart { node });
    }

    fn heal(&mut self) {
        if self.sides.iter().any(|&side| side != 0) {
            self.note(|| "partition healed".into());
        }
        self.sides.iter_mut().for_each(|side| *side = 0);
        self.partition += 1;
    }

    /// One fault, or an operator's action.
    fn chaos(&mut self) -> Result<(), Violation> {
        let count = self.nodes.len();
        match self.rng.below(100) {
            0..=24 => {
                let node = self.rng.below(count as u64) as usize;
                if self.up(node) {
                    self.crash(node, "kill -9");
                }
            }
            25..=44 => {
                self.partition += 1;
                let partition = self.partition;
                for side in &mut self.sides {
                    *side = (self.rng.next_u64() & 1) as u8;
                }
                self.tally.partitions += 1;
                let sides = self.sides.clone();
                self.note(|| format!("partition {sides:?} (nodes…, load balancer)"));
                let duration = self.rng.between(PARTITION_MIN_MS, PARTITION_MAX_MS);
                self.at(duration, Happening::Heal { partition });
            }
            45..=54 => self.heal(),
            55..=69 => {
                self.loss_permille = if self.rng.permille(300) {
                    0
                } else {
                    self.rng.below(LOSS_MAX_PERMILLE + 1)
                };
                let loss = self.loss_permille;
                self.note(|| format!("message loss now {loss}‰"));
            }
            70..=79 => {
                let node = self.rng.below(count as u64) as usize;
                let size = self
                    .rng
                    .between(CLOCK_JUMP_MIN_MS as u64, CLOCK_JUMP_MAX_MS as u64);
                let jump = if self.rng.permille(500) {
                    -(size as i64)
                } else {
                    size as i64
                };
                self.nodes[node].clock_offset_ms += jump;
                self.tally.clock_jumps += 1;
                self.note(|| format!("{}'s wall clock jumps {jump} ms", NAMES[node]));
            }
            80..=87 => self.operator()?,
            88..=91 => self.restart_lb(),
            _ => {}
        }
        Ok(())
    }

    /// `tandem lb` killed and restarted: its probe counts start again. With its state file it
    /// keeps its route; without it (lost, or a new controller), its first route is the newest
    /// claim among the nodes of the HA group that pass the status probe, as the real policy's.
    fn restart_lb(&mut self) {
        self.tally.lb_restarts += 1;
        for failed in &mut self.lb.failed_probes {
            *failed = 0;
        }
        if !self.rng.permille(500) {
            self.note(|| "load balancer restarts with its state file".to_owned());
            return;
        }
        let lb = self.lb_place();
        let newest = (0..self.nodes.len())
            .filter(|&node| {
                self.up(node)
                    && self.linked(lb, node)
                    && self.nodes[node].served.state == State::Active
                    && self.nodes[node]
                        .controller
                        .as_ref()
                        .is_some_and(|c| c.status().ha_enabled)
            })
            .max_by_key(|&node| (self.nodes[node].served.epoch, IDS[node]));
        if let Some(newest) = newest {
            self.lb.pinned = newest;
        }
        let pinned = self.lb.pinned;
        self.note(|| {
            format!(
                "load balancer restarts without its state file: routes to {}",
                NAMES[pinned]
            )
        });
    }

    /// An operator following docs/ha.md, acting on what `tandem ha status` shows.
    fn operator(&mut self) -> Result<(), Violation> {
        #[derive(Clone, Copy)]
        enum Action {
            /// `failover sync <active>` and `failover mode primary` on `returned`, then
            /// `failover mode secondary` on `active`.
            Failback { returned: usize, active: usize },
            /// `failover sync <its primary>` (when reachable), then `failover mode secondary`.
            MakeStandby { fenced: usize },
            /// `failover mode primary` on a Standby whose Primary stopped answering.
            Promote { standby: usize },
            /// `failover sync <its primary>` on a Standby (Run Sync Now).
            SyncNow { standby: usize, source: usize },
            /// The guide's upgrade window: HA disabled on a Standby, enabled again later.
            UpgradeWindow { standby: usize },
        }
        let count = self.nodes.len();
        let mut actions = Vec::new();
        for (returned, &returned_address) in ADDRESSES[..count].iter().enumerate() {
            for active in 0..count {
                let follows_returned = self.nodes[active].controller.as_ref().is_some_and(|c| {
                    c.durable().config.primary_text().as_deref() == Some(returned_address)
                });
                // A sensible operator never leaves two nodes in Primary mode (e.g. making the
                // DR node's source Primary while the main Primary still runs).
                let another_primary = (0..count).any(|other| {
                    other != returned
                        && other != active
                        && self.nodes[other]
                            .controller
                            .as_ref()
                            .is_some_and(|c| c.durable().config.mode == Mode::Primary)
                });
                if returned != active
                    && !another_primary
                    && self.up(returned)
                    && self.nodes[returned].served.state != State::Active
                    && self.up(active)
                    && self.nodes[active].served.state == State::Active
                    && self.linked(returned, active)
                    && follows_returned
                {
                    actions.push(Action::Failback { returned, active });
                }
            }
            if let Some(controller) = &self.nodes[returned].controller {
                let durable = controller.durable();
                if durable.fenced.is_some() && durable.config.primary.is_some() {
                    actions.push(Action::MakeStandby { fenced: returned });
                }
                let source = durable
                    .config
                    .primary_text()
                    .and_then(|address| self.node_by_address(&address));
                if let Some(source) = source
                    && controller.status().state == State::Standby
                    && self.up(source)
                    && self.linked(returned, source)
                {
                    actions.push(Action::SyncNow {
                        standby: returned,
                        source,
                    });
                }
                if controller.status().state == State::Standby {
                    actions.push(Action::UpgradeWindow { standby: returned });
                }
                if self.scenario.operator_promotes_on_failure
                    && controller.status().state == State::Standby
                    && controller.snapshot().heartbeat.failure_detected
                {
                    actions.push(Action::Promote { standby: returned });
                }
            }
        }
        if actions.is_empty() {
            return Ok(());
        }
        match actions[self.rng.below(actions.len() as u64) as usize] {
            Action::Failback { returned, active } => {
                self.tally.failbacks += 1;
                self.note(|| format!("operator: failback to {}", NAMES[returned]));
                self.manual_sync(returned, active)?;
                // The operator goes on only while `ha status` shows each step done.
                if self.up(returned) {
                    // The guide's swap while the other node still serves: refused unless forced.
                    self.step(
                        returned,
                        Input::Operator(OperatorCommand::ModePrimary, Guard::Forced),
                    )?;
                }
                if self.up(returned) && self.nodes[returned].served.state == State::Active {
                    self.step(
                        active,
                        Input::Operator(OperatorCommand::ModeSecondary, Guard::Checked),
                    )?;
                }
            }
            Action::MakeStandby { fenced } => {
                self.tally.fenced_made_standby += 1;
                self.note(|| format!("operator: make fenced {} a Standby", NAMES[fenced]));
                let source = self.nodes[fenced]
                    .controller
                    .as_ref()
                    .and_then(|c| c.durable().config.primary_text())
                    .and_then(|address| self.node_by_address(&address));
                if let Some(source) =
                    source.filter(|&source| self.up(source) && self.linked(fenced, source))
                {
                    self.manual_sync(fenced, source)?;
                }
                if self.up(fenced) {
                    self.step(
                        fenced,
                        Input::Operator(OperatorCommand::ModeSecondary, Guard::Checked),
                    )?;
                }
            }
            Action::SyncNow { standby, source } => {
                self.tally.syncs_now += 1;
                self.note(|| format!("operator: sync {} now", NAMES[standby]));
                self.manual_sync(standby, source)?;
            }
            Action::UpgradeWindow { standby } => {
                self.tally.upgrade_windows += 1;
                self.note(|| format!("operator: HA disabled on {} to upgrade it", NAMES[standby]));
                self.step(standby, Input::HaEnabled(false))?;
                let window = self
                    .rng
                    .between(UPGRADE_WINDOW_MIN_MS, UPGRADE_WINDOW_MAX_MS);
                self.at(window, Happening::EnableHa { node: standby });
            }
            Action::Promote { standby } => {
                self.tally.manual_promotions += 1;
                self.note(|| format!("operator: promote {} by hand", NAMES[standby]));
                self.step(
                    standby,
                    Input::Operator(OperatorCommand::ModePrimary, Guard::Checked),
                )?;
            }
        }
        Ok(())
    }

    /// `tandem failover sync <source>` on a running node: reported as a manual `SyncFinished`.
    fn manual_sync(&mut self, node: usize, source: usize) -> Result<(), Violation> {
        let Some(source_epoch) = self.nodes[source]
            .controller
            .as_ref()
            .map(Controller::epoch)
        else {
            return Ok(());
        };
        self.step(
            node,
            Input::Event(Event::SyncFinished {
                trigger: SyncTrigger::Manual,
                outcome: SyncOutcome::Succeeded {
                    summary: format!("full sync from {}", NAMES[source]),
                    source_epoch,
                },
            }),
        )
    }

    /// One input to one node's controller, its commands carried out in order, then the checks.
    fn step(&mut self, node: usize, input: Input) -> Result<(), Violation> {
        let now = self.now_of(node);
        let kind = match &input {
            Input::Operator(..) | Input::HaEnabled(_) => StepKind::Operator,
            Input::Event(Event::PeersChecked) => StepKind::PeersChecked,
            Input::Event(
                Event::PeerSeen(view)
                | Event::HeartbeatAnswered(view)
                | Event::PeerAnswered { view, .. },
            ) => StepKind::PeerView(view.clone()),
            Input::Event(Event::SyncFinished {
                outcome: SyncOutcome::Succeeded { source_epoch, .. },
                ..
            }) => StepKind::Synced(*source_epoch),
            // A stream holds its source's history as a sync does.
            Input::Event(Event::SourceEpoch(epoch)) => StepKind::Synced(*epoch),
            Input::Event(_) => StepKind::Other,
        };
        if let StepKind::PeerView(view) = &kind {
            let state = &mut self.nodes[node];
            // What the view shows: the sender itself and everything it gossips.
            for (epoch, id, active) in shown(view, IDS[node]) {
                state.shown_epoch_max = state.shown_epoch_max.max(epoch);
                let ballot = (epoch, id);
                if active
                    && state
                        .shown_active_max
                        .as_ref()
                        .is_none_or(|max| ballot > *max)
                {
                    state.shown_active_max = Some(ballot);
                }
            }
        }
        let described = self.trace.is_some().then(|| input_text(&input));
        let persisted_before = self.nodes[node].disk.epoch;
        let Some(controller) = self.nodes[node].controller.as_mut() else {
            return Ok(());
        };
        let commands = match input {
            Input::Event(event) => controller.handle(now, event),
            Input::Operator(command, guard) => {
                match controller.operator_with(now, command, guard) {
                    Ok(commands) => commands,
                    Err(refusal) => {
                        self.note(|| format!("{}: operator refused: {refusal}", NAMES[node]));
                        return Ok(());
                    }
                }
            }
            Input::HaEnabled(enabled) => {
                let mut config = controller.durable().config.clone();
                config.enabled = enabled;
                match controller.configure_with(now, config, Guard::Checked) {
                    Ok((_, commands)) => commands,
                    Err(refusal) => {
                        self.note(|| format!("{}: operator refused: {refusal}", NAMES[node]));
                        return Ok(());
                    }
                }
            }
        };
        self.tally.steps += 1;
        if let Some(described) = described {
            let done: Vec<String> = commands.iter().filter_map(command_text).collect();
            // Heartbeats that change nothing would fill the trace: shown only on request.
            let routine = matches!(kind, StepKind::PeerView(_) | StepKind::Other)
                && (described == "Tick" || matches!(kind, StepKind::PeerView(_)))
                && done
                    .iter()
                    .all(|command| command.starts_with("SendHeartbeat"));
            if !routine || self.trace_routine {
                self.note(|| format!("{}: {described} -> [{}]", NAMES[node], done.join(", ")));
            }
        }
        let was = self.nodes[node].served;
        self.carry_out(node, &kind, commands, persisted_before)?;
        if !self.up(node) {
            return Ok(());
        }
        if let StepKind::Synced(source_epoch) = kind
            && was.state != State::Active
        {
            let synced = &mut self.nodes[node].synced_epoch_max;
            *synced = (*synced).max(source_epoch);
        }
        // Invariant 2: an Active node of the HA group shown a higher Active ballot (by its
        // sender or in the sender's gossip) ends the step Not Available. (A node with HA
        // disabled has left the group: it serves standalone and fences on nothing.)
        let in_group = self.nodes[node]
            .controller
            .as_ref()
            .is_some_and(|c| c.status().ha_enabled);
        if let StepKind::PeerView(view) = &kind
            && was.state == State::Active
            && in_group
            && shows_higher_claim(view, was.epoch, IDS[node])
            && self.nodes[node].served.state != State::NotAvailable
        {
            return Err(self.violation(
                "fencing",
                format!(
                    "{} served Active in e{} and was shown {}, yet serves {}",
                    NAMES[node],
                    was.epoch,
                    view_text(view),
                    self.nodes[node].served.state
                ),
            ));
        }
        self.check_world()
    }

    /// Carries out the commands as the runtime does, checking invariants 1–4 on the way. A
    /// crash may stop it between two commands.
    fn carry_out(
        &mut self,
        node: usize,
        kind: &StepKind,
        commands: Vec<Command>,
        persisted_before: i64,
    ) -> Result<(), Violation> {
        let crash_after = (self.faults_on
            && !matches!(kind, StepKind::Operator)
            && commands.len() > 1
            && self.rng.permille(CRASH_MID_STEP_PERMILLE))
        .then(|| self.rng.below(commands.len() as u64 - 1) as usize);
        let mut dropping_fence = false;
        for (index, command) in commands.into_iter().enumerate() {
            match self.scenario.sabotage {
                Sabotage::SkipPersist { node: broken }
                    if broken == node && matches!(command, Command::Persist(_)) =>
                {
                    continue;
                }
                Sabotage::IgnoreFence { node: broken } if broken == node => match &command {
                    Command::Persist(durable)
                        if durable.fenced.is_some()
                            && self.nodes[node].disk.fenced.is_none()
                            && self.nodes[node].served.state == State::Active =>
                    {
                        dropping_fence = true;
                        continue;
                    }
                    Command::Serve { .. } if dropping_fence => continue,
                    _ => {}
                },
                _ => {}
            }
            match command {
                Command::Persist(durable) => self.persist(node, kind, durable)?,
                Command::Serve { status, epoch, .. } => {
                    self.serve(node, kind, status, epoch, persisted_before)?
                }
                Command::CheckPeers => self.check_peers(node),
                Command::SendHeartbeat { to } => self.send_heartbeat(node, &to),
                Command::StartSync { from, trigger } => self.start_sync(node, &from, trigger),
                Command::AskWitnesses { primary, .. } => self.ask_witnesses(node, &primary),
                Command::Follow { from } => {
                    self.nodes[node].follows =
                        from.as_deref().and_then(|from| self.node_by_address(from));
                }
                Command::SkipSync { .. } => self.tally.skipped_syncs += 1,
                // The simulated nodes replicate by schedule: no write gate to fall back from.
                Command::ClearFrozen | Command::FallBackAtPromotion => {}
                Command::Notify { notification, .. } => match notification {
                    Notification::BecamePrimary => self.tally.promotions += 1,
                    Notification::Fenced => self.tally.fences += 1,
                    Notification::PromotionHeld => self.tally.promotions_held += 1,
                    _ => {}
                },
                Command::Log { .. } => {}
            }
            if crash_after == Some(index) {
                self.tally.mid_step_crashes += 1;
                self.crash(node, "between two commands of one step");
                return Ok(());
            }
        }
        Ok(())
    }

    fn persist(&mut self, node: usize, kind: &StepKind, durable: Durable) -> Result<(), Violation> {
        let disk = &self.nodes[node].disk;
        if durable.epoch < disk.epoch {
            return Err(self.violation(
                "epochs-monotonic",
                format!(
                    "{} persists e{} over e{}",
                    NAMES[node], durable.epoch, disk.epoch
                ),
            ));
        }
        if disk.fenced.is_some() && durable.fenced.is_none() && !matches!(kind, StepKind::Operator)
        {
            return Err(self.violation(
                "fencing",
                format!(
                    "{}'s fence was cleared on disk without an operator",
                    NAMES[node]
                ),
            ));
        }
        self.nodes[node].disk = durable;
        Ok(())
    }

    fn serve(
        &mut self,
        node: usize,
        kind: &StepKind,
        status: tandem_ha::NodeStatus,
        epoch: i64,
        persisted_before: i64,
    ) -> Result<(), Violation> {
        let state = status.state;
        let current = &self.nodes[node];
        let was = current.served;
        let name = NAMES[node];
        if state == State::Active {
            if current.disk.epoch < epoch {
                return Err(self.violation(
                    "persist-before-serve",
                    format!(
                        "{name} serves Active in e{epoch} with only e{} on disk",
                        current.disk.epoch
                    ),
                ));
            }
            let fenced_in_memory = current
                .controller
                .as_ref()
                .is_some_and(|c| c.durable().fenced.is_some());
            if current.disk.fenced.is_some() || fenced_in_memory {
                return Err(self.violation(
                    "fencing",
                    format!("{name} serves Active in e{epoch} while fenced"),
                ));
            }
            // A node with HA disabled serves standalone, outside the group: it takes no ballot.
            if status.ha_enabled && (was.state != State::Active || was.epoch != epoch) {
                let floor = persisted_before
                    .max(current.shown_epoch_max)
                    .max(current.synced_epoch_max);
                let fresh = epoch > floor;
                let unopposed = current
                    .shown_active_max
                    .as_ref()
                    .is_none_or(|(counter, id)| (*counter, id.as_str()) < (epoch, IDS[node]));
                let continuing = matches!(kind, StepKind::PeersChecked)
                    && epoch == persisted_before
                    && unopposed;
                if !fresh && !continuing {
                    return Err(self.violation(
                        "ballots",
                        format!(
                            "{name} enters Active in e{epoch}: neither above every epoch it \
                             persisted, synced or was shown (e{floor}) nor its own tenure after an \
                             unopposed startup check (persisted e{persisted_before}, highest \
                             Active peer shown {:?})",
                            current.shown_active_max
                        ),
                    ));
                }
            }
        } else if was.state == State::Active {
            let fenced_by_peer = matches!(kind, StepKind::PeerView(view)
                if shows_higher_claim(view, was.epoch, IDS[node]));
            let allowed = matches!(kind, StepKind::Operator)
                || (fenced_by_peer && current.disk.fenced.is_some());
            if !allowed {
                return Err(self.violation(
                    "fencing",
                    format!(
                        "{name} stops serving Active (e{}) for {state} without an operator, or \
                         without a persisted fence by a higher Active ballot",
                        was.epoch
                    ),
                ));
            }
        }
        self.nodes[node].served = Served { state, epoch };
        Ok(())
    }

    /// Invariants that hold between steps: 1 (distinct ballots), 2 (fenced or not, a node
    /// serves what its controller says it is).
    fn check_world(&mut self) -> Result<(), Violation> {
        let mut active: Vec<usize> = Vec::new();
        for (node, state) in self.nodes.iter().enumerate() {
            let Some(controller) = &state.controller else {
                continue;
            };
            if state.served.state != controller.status().state {
                return Err(self.violation(
                    "fencing",
                    format!(
                        "{} serves {} but its controller is {} (and tells its peers so)",
                        NAMES[node],
                        state.served.state,
                        controller.status().state
                    ),
                ));
            }
            if state.served.state == State::Active {
                if controller.durable().fenced.is_some() || state.disk.fenced.is_some() {
                    return Err(self.violation(
                        "fencing",
                        format!("{} is fenced but serves Active", NAMES[node]),
                    ));
                }
                active.push(node);
            }
        }
        for (index, &a) in active.iter().enumerate() {
            for &b in &active[index + 1..] {
                if (self.nodes[a].served.epoch, IDS[a]) == (self.nodes[b].served.epoch, IDS[b]) {
                    return Err(self.violation(
                        "ballots",
                        format!(
                            "{} and {} both serve Active in ballot e{}",
                            NAMES[a], NAMES[b], self.nodes[a].served.epoch
                        ),
                    ));
                }
            }
        }
        self.two_active_seen |= active.len() > 1;
        Ok(())
    }

    /// Invariant 5: one Active node; every other one Standby, or fenced and waiting for the
    /// operator; the load balancer on the Active one.
    fn check_liveness(&self) -> Result<(), Violation> {
        let count = self.nodes.len();
        let describe = || {
            (0..count)
                .map(|node| {
                    let state = &self.nodes[node];
                    format!(
                        "{} {} e{}{}",
                        NAMES[node],
                        state.served.state,
                        state.served.epoch,
                        if state.disk.fenced.is_some() {
                            " (fenced)"
                        } else {
                            ""
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let active: Vec<usize> = (0..count)
            .filter(|&node| self.nodes[node].served.state == State::Active)
            .collect();
        let [active] = active[..] else {
            return Err(self.violation(
                "liveness",
                format!(
                    "after {STABILIZE_MS} ms of calm, {} node(s) are Active: {}",
                    active.len(),
                    describe()
                ),
            ));
        };
        let waiting = |state: &Node| {
            state.served.state == State::Standby
                || (state.served.state == State::NotAvailable && state.disk.fenced.is_some())
        };
        if (0..count).any(|node| node != active && !waiting(&self.nodes[node])) {
            return Err(self.violation(
                "liveness",
                format!(
                    "a node that is not Active is neither Standby nor fenced: {}",
                    describe()
                ),
            ));
        }
        if self.lb.pinned != active {
            return Err(self.violation(
                "liveness",
                format!(
                    "the load balancer is pinned to {}, not to the Active node: {}",
                    NAMES[self.lb.pinned],
                    describe()
                ),
            ));
        }
        Ok(())
    }

    fn check_peers(&mut self, node: usize) {
        let Some(view) = self.view_of(node) else {
            return;
        };
        let id = self.id();
        let life = self.nodes[node].life;
        let peers = self.nodes[node].trusted.clone();
        self.nodes[node].check = Some(PeerCheck {
            id,
            outstanding: peers.len(),
        });
        let timeout = if peers.is_empty() {
            0
        } else {
            PEER_CHECK_TIMEOUT_MS
        };
        self.at(timeout, Happening::CheckTimeout { node, life, id });
        for peer in peers {
            if !self.up(peer) {
                self.at(
                    REFUSED_MS,
                    Happening::CheckAnswer {
                        node,
                        life,
                        id,
                        peer,
                        view: None,
                    },
                );
            } else if self.delivers(node, peer) {
                let delay = self.latency();
                let view = view.clone();
                self.at(
                    delay,
                    Happening::CheckArrives {
                        to: peer,
                        from: node,
                        life,
                        id,
                        view,
                    },
                );
            } else {
                self.note(|| format!("{} -> {}: peer check lost", NAMES[node], NAMES[peer]));
            }
        }
    }

    fn send_heartbeat(&mut self, node: usize, to: &str) {
        let Some(view) = self.view_of(node) else {
            return;
        };
        let id = self.id();
        let life = self.nodes[node].life;
        let recheck_ms = self.nodes[node]
            .controller
            .as_ref()
            .map_or(HEARTBEAT_TIMEOUT_MIN_MS, |c| {
                c.durable().config.recheck_interval.as_millis()
            });
        let timeout_ms = recheck_ms.clamp(HEARTBEAT_TIMEOUT_MIN_MS, HEARTBEAT_TIMEOUT_MAX_MS);
        self.nodes[node].heartbeats_pending.push(id);
        self.at(
            timeout_ms,
            Happening::HeartbeatTimeout {
                node,
                life,
                id,
                timeout_ms,
            },
        );
        match self.node_by_address(to) {
            Some(target) if self.up(target) => {
                if self.delivers(node, target) {
                    let delay = self.latency();
                    self.at(
                        delay,
                        Happening::HeartbeatArrives {
                            to: target,
                            from: node,
                            life,
                            id,
                            view,
                        },
                    );
                } else {
                    self.note_routine(|| {
                        format!("{} -> {}: heartbeat lost", NAMES[node], NAMES[target])
                    });
                }
            }
            _ => self.at(REFUSED_MS, Happening::HeartbeatRefused { node, life, id }),
        }
    }

    fn start_sync(&mut self, node: usize, from: &str, trigger: SyncTrigger) {
        let life = self.nodes[node].life;
        let source = self
            .node_by_address(from)
            .filter(|&source| self.up(source) && self.linked(node, source));
        let (outcome, duration) = match source {
            Some(source) if !self.rng.permille(SYNC_FAIL_PERMILLE) => {
                let source_epoch = self.nodes[source]
                    .controller
                    .as_ref()
                    .map_or(0, Controller::epoch);
                let summary = format!("sync from {}", NAMES[source]);
                let duration = self.rng.between(SYNC_MIN_MS, SYNC_MAX_MS);
                (
                    SyncOutcome::Succeeded {
                        summary,
                        source_epoch,
                    },
                    duration,
                )
            }
            Some(_) if self.rng.permille(SYNC_BUSY_PERMILLE) => (
                SyncOutcome::Skipped {
                    reason: "an operator's sync holds the lock".into(),
                },
                REFUSED_MS,
            ),
            _ => {
                let duration = self.rng.between(REFUSED_MS, SYNC_FAILS_AFTER_MAX_MS);
                (
                    SyncOutcome::Failed {
                        reason: format!("sync from {from} failed"),
                    },
                    duration,
                )
            }
        };
        self.at(
            duration,
            Happening::SyncDone {
                node,
                life,
                trigger,
                outcome,
            },
        );
    }

    /// The witness is `tandem lb`'s `GET /witness/primary`: whether the node the load balancer
    /// routes to (its pin) is up, on its side of any partition, and passes the status probe
    /// (serves Active). It answers about the node that serves devices, not about the asking
    /// node's Primary: in the three-server scenario that is node-a, whom node-c never sees.
    fn ask_witnesses(&mut self, node: usize, _primary: &str) {
        let life = self.nodes[node].life;
        let lb = self.lb_place();
        let (reaching_primary, delay) = if self.delivers(node, lb) {
            let target = self.lb.pinned;
            let sees = self.up(target)
                && self.linked(lb, target)
                && self.nodes[target].served.state == State::Active;
            let delay = self.latency() + self.latency();
            (sees.then(|| WITNESS_URL.to_owned()), delay)
        } else {
            (None, WITNESS_TIMEOUT_MS)
        };
        self.at(
            delay,
            Happening::WitnessAnswer {
                node,
                life,
                reaching_primary,
            },
        );
    }

    /// The load balancer probes every node's `/status/status.html`; checks invariant 6.
    fn probe(&mut self) -> Result<(), Violation> {
        let lb = self.lb_place();
        let passes: Vec<bool> = (0..self.nodes.len())
            .map(|node| {
                self.up(node)
                    && self.linked(lb, node)
                    && self.nodes[node].served.state == State::Active
            })
            .collect();
        for (failed, passed) in self.lb.failed_probes.iter_mut().zip(&passes) {
            *failed = if *passed { 0 } else { failed.saturating_add(1) };
        }
        let pinned = self.lb.pinned;
        if self.lb.failed_probes[pinned] < LB_FALL_PROBES {
            return Ok(());
        }
        // A node with HA disabled is outside the group: never a candidate (its probes say so in
        // the `Tandem-Ballot` header).
        let in_group = |node: usize| {
            self.nodes[node]
                .controller
                .as_ref()
                .is_some_and(|c| c.status().ha_enabled)
        };
        let Some(target) =
            (0..self.nodes.len()).find(|&node| node != pinned && passes[node] && in_group(node))
        else {
            return Ok(());
        };
        // Invariant 6, judged from the world rather than from the balancer's counters.
        let pinned_serves = self.up(pinned)
            && self.linked(lb, pinned)
            && self.nodes[pinned].served.state == State::Active;
        let target_serves = self.up(target)
            && self.linked(lb, target)
            && self.nodes[target].served.state == State::Active;
        if pinned_serves || !target_serves {
            return Err(self.violation(
                "no-automatic-failback",
                format!(
                    "the load balancer moved from {} (serving: {pinned_serves}) to {} (serving: \
                     {target_serves})",
                    NAMES[pinned], NAMES[target]
                ),
            ));
        }
        self.lb.pinned = target;
        self.tally.lb_moves += 1;
        self.note(|| {
            format!(
                "load balancer moves from {} to {}",
                NAMES[pinned], NAMES[target]
            )
        });
        Ok(())
    }
}

/// Runs one seed; on failure runs it again with the trace on (it is deterministic) and returns
/// everything needed to report it.
fn run_seed(
    test: &'static str,
    seed: u64,
    scenario: fn(&mut SplitMix64) -> Scenario,
) -> Result<Tally, Failure> {
    let violation = match World::new(seed, scenario, false).run() {
        Ok(tally) => return Ok(tally),
        Err((violation, _)) => violation,
    };
    let Err((again, trace)) = World::new(seed, scenario, true).run() else {
        panic!("seed {seed} failed ({violation:?}) untraced but passed traced: not deterministic");
    };
    assert_eq!(
        (again.invariant, again.at_ms),
        (violation.invariant, violation.at_ms),
        "seed {seed} must fail the same way when traced"
    );
    Err(Failure {
        test,
        seed,
        violation: again,
        trace: trace.map(Vec::from).unwrap_or_default(),
    })
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(value) => Some(value),
        Err(error) => panic!("{name}={text:?} is not a whole number: {error}"),
    }
}

/// The seeds to run: `TANDEM_SIM_SEED` alone, or `0..TANDEM_SIM_SEEDS`.
fn seeds() -> Vec<u64> {
    match env_u64("TANDEM_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("TANDEM_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT)).collect(),
    }
}

/// Runs the seeds on every core (each seed is independent and deterministic).
fn run_seeds(
    test: &'static str,
    seeds: &[u64],
    scenario: fn(&mut SplitMix64) -> Scenario,
) -> (Tally, Vec<Failure>) {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = seeds.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = seeds
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    let mut failures = Vec::new();
                    for &seed in chunk {
                        match run_seed(test, seed, scenario) {
                            Ok(one) => tally.add(&one),
                            Err(failure) => failures.push(failure),
                        }
                    }
                    (tally, failures)
                })
            })
            .collect();
        let mut tally = Tally::default();
        let mut failures = Vec::new();
        for worker in workers {
            let (one, mut failed) = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            tally.add(&one);
            failures.append(&mut failed);
        }
        failures.sort_by_key(|failure| failure.seed);
        (tally, failures)
    })
}

/// Runs `scenario` over the seeds (`TANDEM_SIM_SEED` or `TANDEM_SIM_SEEDS`) and fails with the
/// first broken one; returns the tally.
fn assert_seeds_pass(test: &'static str, scenario: fn(&mut SplitMix64) -> Scenario) -> Tally {
    let seeds = seeds();
    let started = std::time::Instant::now();
    let (tally, failures) = run_seeds(test, &seeds, scenario);
    eprintln!(
        "{test}: {} seed(s) in {:.1} s: {tally:#?}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(first) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|failure| failure.seed).collect();
        panic!("{} seed(s) failed: {seeds:?}\n{first}", failures.len());
    }
    tally
}

#[test]
fn seeded_simulation_keeps_the_ha_invariants() {
    let tally = assert_seeds_pass("seeded_simulation_keeps_the_ha_invariants", Scenario::draw);
    if tally.seeds >= 1_000 {
        // The run must reach the paths that matter, or passing means little.
        for (what, count) in [
            ("promotions", tally.promotions),
            ("fences", tally.fences),
            ("failbacks", tally.failbacks),
            ("fenced nodes made Standby", tally.fenced_made_standby),
            ("manual syncs of a Standby", tally.syncs_now),
            ("crashes between commands", tally.mid_step_crashes),
            ("partitions", tally.partitions),
            ("clock jumps", tally.clock_jumps),
            ("witness vetoes", tally.witness_vetoes),
            ("skipped syncs", tally.skipped_syncs),
            ("load balancer moves", tally.lb_moves),
            ("three-server seeds", tally.three_server_seeds),
            ("streams (re)connected", tally.streams_connected),
            ("promotions held as behind", tally.promotions_held),
            (
                "seeds with two Active nodes at once",
                tally.seeds_with_two_active,
            ),
        ] {
            assert!(count > 0, "no {what} in {} seeds: {tally:#?}", tally.seeds);
        }
    }
}

#[test]
fn a_seed_replays_step_for_step() {
    for seed in [1, 2, 3] {
        let first = World::new(seed, Scenario::draw, true).run_traced();
        let second = World::new(seed, Scenario::draw, true).run_traced();
        assert!(first.len() > 10, "{first:?}");
        assert_eq!(first, second, "seed {seed} must replay step for step");
    }
}

impl World {
    /// The trace of a whole run, pass or fail.
    fn run_traced(mut self) -> Vec<String> {
        let outcome = self.simulate();
        let mut trace = self.trace.map(Vec::from).unwrap_or_default();
        trace.push(format!("{outcome:?}"));
        trace
    }
}

/// The first seed on which the checker notices a broken runtime.
fn first_failure_with(test: &'static str, sabotage: fn(&mut SplitMix64) -> Scenario) -> Failure {
    (0..SABOTAGE_SEEDS_MAX)
        .find_map(|seed| run_seed(test, seed, sabotage).err())
        .unwrap_or_else(|| {
            panic!("the checker did not notice a broken runtime in {SABOTAGE_SEEDS_MAX} seeds")
        })
}

fn broken_pair(rng: &mut SplitMix64, sabotage: Sabotage) -> Scenario {
    Scenario {
        nodes: 2,
        on_failure: OnFailure::Promote,
        witnesses: false,
        sabotage,
        liveness: true,
        ..Scenario::draw(rng)
    }
}

#[test]
fn the_checker_catches_a_node_that_serves_an_epoch_it_never_persisted() {
    let failure = first_failure_with(
        "the_checker_catches_a_node_that_serves_an_epoch_it_never_persisted",
        |rng| broken_pair(rng, Sabotage::SkipPersist { node: 1 }),
    );
    assert_eq!(
        failure.violation.invariant, "persist-before-serve",
        "{failure}"
    );
    let report = failure.to_string();
    assert!(
        report.contains(&format!("TANDEM_SIM_SEED={} ", failure.seed)),
        "{report}"
    );
    assert!(
        report.contains("node-b: ") && failure.trace.len() > 10,
        "the report carries the trace: {report}"
    );
}

#[test]
fn the_checker_catches_a_node_that_keeps_serving_after_it_was_fenced() {
    let failure = first_failure_with(
        "the_checker_catches_a_node_that_keeps_serving_after_it_was_fenced",
        |rng| broken_pair(rng, Sabotage::IgnoreFence { node: 0 }),
    );
    assert_eq!(failure.violation.invariant, "fencing", "{failure}");
}

/// Three servers (the guide's DR scenario) with the DR node on Keep in Standby: exactly one node
/// is Active after everything healed.
///
/// With automatic promotion on the DR node this does not hold in about one seed in ten, and the
/// machine cannot make it hold: node-c (DR) follows node-b and never talks to node-a. node-c
/// no longer promotes when node-b was only a Standby (it was not serving), but when node-b had
/// taken over and then fails, node-c promotes; if node-a came back meanwhile (its startup check
/// saw no newer peer) or was only cut off, node-a and node-c both serve Active and no message
/// links them (e.g. seed 1 with `dr_on_failure: None`). The guide brings a DR node online by
/// hand; passing newer ballots on through node-b (gossip) is the planned fix.
#[test]
fn three_servers_end_with_one_active_node() {
    assert_seeds_pass("three_servers_end_with_one_active_node", |rng| Scenario {
        nodes: 3,
        liveness: true,
        dr_on_failure: Some(OnFailure::Standby),
        ..Scenario::draw(rng)
    });
}

/// `failover mode primary` on a Standby during a partition (what the log advises under Keep in
/// Standby; the operator cannot tell a dead Primary from a cut link): after the heal the node
/// promoted by hand keeps heartbeating its old Primary, which learns of the newer epoch and
/// fences itself. (Found by this simulation, e.g. seed 41: before the fix, a Primary-mode node
/// sent no heartbeats and both nodes stayed Active.)
#[test]
fn a_standby_promoted_by_hand_during_a_partition_is_resolved_after_the_heal() {
    assert_seeds_pass(
        "a_standby_promoted_by_hand_during_a_partition_is_resolved_after_the_heal",
        |rng| Scenario {
            nodes: 2,
            on_failure: OnFailure::Standby,
            operator_promotes_on_failure: true,
            liveness: true,
            ..Scenario::draw(rng)
        },
    );
}
