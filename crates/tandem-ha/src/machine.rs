//! The HA controller as a pure state machine: events in, commands out, time injected.
//!
//! A runtime (in `tandem-server`) feeds it events — a tick with the current time, heartbeat
//! results, peers seen, syncs finished, configuration saved, operator commands — and carries out
//! the [`Command`]s it returns, in order. Ordering is part of the contract: a promotion is
//! `Persist` (the new epoch, durable) before `Serve` (Active), so no write is ever accepted in an
//! epoch that a crash could forget.
//!
//! Invariants (checked by the unit tests and the seeded simulation):
//! - A node enters Active only by continuing its own durable tenure (it was Active and no peer
//!   is known to hold a higher epoch) or by taking a fresh epoch above every epoch it has seen.
//! - An Active node that learns of an Active peer with a higher epoch steps down to
//!   Not Available (fencing) and stays there, across restarts, until an operator acts.
//! - A node that would start Active with HA enabled asks its peers first and serves nothing
//!   until they answered or the runtime gave up on them.
//! - Syncs never overlap: a sync due while one runs is skipped and recorded.

use crate::ballot::Ballot;
use crate::cluster::{Cluster, KnownNode, Member};
use crate::config::{
    ConfigError, ConfigWarning, HaConfig, NodeStatusSetting, OnBehind, OnFailure, OnStandbyLost,
    ReplicationMode,
};
use crate::schedule::{next_slot, next_start_time};
use crate::{Mode, NodeStatus, State};
use serde::{Deserialize, Serialize};

/// The current time, as the runtime read it: a monotonic clock for intervals (heartbeats), and
/// the wall clock (UTC) for the schedule and for comparing clocks with peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub monotonic_ms: u64,
    pub wall_ms: i64,
}

impl From<Now> for crate::cluster::At {
    fn from(now: Now) -> Self {
        Self {
            monotonic_ms: now.monotonic_ms,
            wall_ms: now.wall_ms,
        }
    }
}

/// Clocks further apart than this are a warning and a notification (the guide requires equal
/// clocks on both servers; the schedule and the logs depend on it).
pub const CLOCK_SKEW_WARN_MS: i64 = 2_000;

/// What the controller keeps on disk (node-local store): the configuration, the epoch, why the
/// node is fenced, and the schedule's anchor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Durable {
    pub config: HaConfig,
    /// The highest epoch this node has held or synced; a promotion takes a higher one.
    pub epoch: i64,
    /// Set when this node was fenced (Not Available); cleared only by an operator's role change.
    pub fenced: Option<String>,
    /// Wall-clock ms of the StartTime the schedule counts from, set when the config is saved.
    pub schedule_anchor_ms: Option<i64>,
    /// The state of the node this one follows (its Primary), Active or Standby, as its last such
    /// heartbeat answer told. Durable so that a restarted node still knows it follows a node that
    /// was only a Standby (a DR node following the main Secondary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed_state: Option<State>,
    /// The newest epoch this node took itself: its first, or a promotion's. Below `epoch` when
    /// a sync brought a newer one from another node's history: that ballot is the other
    /// node's, so this node never resumes Active in it (it takes a fresh one, or is fenced by
    /// its holder). Absent in state saved by older versions: read as the saved `epoch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_epoch: Option<i64>,
}

impl Durable {
    pub fn new(config: HaConfig, epoch: i64) -> Self {
        Self {
            config,
            epoch,
            fenced: None,
            schedule_anchor_ms: None,
            followed_state: None,
            held_epoch: Some(epoch),
        }
    }

    /// Whether this node's epoch came from another node's history (a sync) rather than from a
    /// promotion of its own.
    pub fn epoch_adopted(&self) -> bool {
        self.held_epoch.is_some_and(|held| held < self.epoch)
    }
}

/// How a peer describes itself in a heartbeat (either direction) or a startup check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    pub node_name: String,
    /// The node's unique id: with the epoch it forms the node's ballot (see [`Controller`]).
    pub node_id: String,
    pub ha_enabled: bool,
    pub mode: Mode,
    pub state: State,
    pub epoch: i64,
    pub wall_clock_ms: i64,
    /// How the node replicates (absent from nodes that predate replication modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationMode>,
    /// Synchronous replication: what the node does when its Standby stops confirming, and
    /// after how long (a Standby judges what it may lack by its Primary's policy, not its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_standby_lost: Option<OnStandbyLost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_timeout: Option<crate::config::Span>,
    /// Synchronous replication: the node acknowledges writes without its Standby at the moment
    /// (it fell back after the timeout and has not been confirmed since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledging_without_standby: Option<bool>,
    /// Every other node the sender knows of (gossip), so ballots reach every node
    /// transitively (see [`crate::cluster`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known: Vec<KnownNode>,
    /// The sender's own Fail Over Controls and witness count (absent from older nodes): each
    /// node keeps its own across a failover, so `ha status` can say when the two differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_over_controls: Option<FailOverControls>,
}

/// A node's Fail Over Controls and how many witnesses it asks: settings of its own, used while
/// it is a Secondary, and kept when a failover makes an old Primary a Secondary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailOverControls {
    pub heartbeat_interval: crate::config::Span,
    pub heartbeat_failures: u32,
    pub recheck_interval: crate::config::Span,
    pub witnesses: usize,
}

impl FailOverControls {
    pub fn of(config: &HaConfig) -> Self {
        Self {
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_failures: config.heartbeat_failures,
            recheck_interval: config.recheck_interval,
            witnesses: config.witnesses.len(),
        }
    }
}

impl std::fmt::Display for FailOverControls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "heartbeat every {} × {}, re-check every {}, {}",
            self.heartbeat_interval,
            self.heartbeat_failures,
            self.recheck_interval,
            match self.witnesses {
                0 => "no witness".to_owned(),
                1 => "1 witness".to_owned(),
                count => format!("{count} witnesses"),
            }
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncTrigger {
    Scheduled,
    Manual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Notification events (guide: Notification Settings, Notify On).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Notification {
    /// Notify On: Sync Completion.
    SyncCompleted,
    /// Notify On: Failure — a sync failed.
    SyncFailed,
    /// Notify On: Failure — the Primary stopped answering heartbeats.
    FailureDetected,
    /// Notify On: This server becomes primary.
    BecamePrimary,
    /// This node was fenced by a peer with a higher epoch.
    Fenced,
    /// The peer's clock differs by more than [`CLOCK_SKEW_WARN_MS`].
    ClockSkew,
    /// The peer replicates differently (scheduled, continuous, synchronous) from this node.
    ReplicationMismatch,
    /// Synchronous replication fell back to continuous: writes are acknowledged without the
    /// Standby (raised by the runtime, which times the confirmations).
    ReplicationDegraded,
    /// The Primary failed while this Standby may lack writes it acknowledged (If Behind at
    /// Failure = standby): the automatic promotion is held for an operator.
    PromotionHeld,
    /// Two nodes of the HA group are Active at once (seen directly or by gossip).
    DualActive,
    /// The operator's Test action (guide: Notification Settings, Test).
    Test,
}

impl Notification {
    /// A short title for a subject line.
    pub fn title(self) -> &'static str {
        match self {
            Notification::SyncCompleted => "sync completed",
            Notification::SyncFailed => "sync failed",
            // A DR node follows the main Secondary, not a Primary.
            Notification::FailureDetected => "the node it replicates from stopped answering",
            Notification::BecamePrimary => "this server became the Active node",
            Notification::Fenced => "this server was fenced",
            Notification::ClockSkew => "clocks disagree",
            Notification::ReplicationMismatch => "the nodes replicate differently",
            Notification::ReplicationDegraded => "synchronous replication degraded",
            Notification::PromotionHeld => "automatic promotion held: this node may lack writes",
            Notification::DualActive => "two nodes are Active",
            Notification::Test => "test notification",
        }
    }
}

/// What the runtime must do, in order.
// A step emits a handful of commands that live until the runtime carries them out; boxing the
// one large variant (Persist, the whole configuration) would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Write this durably before carrying out the commands after it.
    Persist(Durable),
    /// Serve as `status` in `epoch`: open or fence device traffic and admin writes, answer the
    /// probes accordingly. `primary` says where devices should go when this node is not Active.
    Serve {
        status: NodeStatus,
        epoch: i64,
        primary: Option<String>,
    },
    /// Ask every trusted peer how it stands (at start, after a freeze, and every heartbeat
    /// interval); answer with a `PeerAnswered` or `PeerUnreachable` event per peer, then
    /// `PeersChecked`.
    CheckPeers,
    /// Writes may be acknowledged again: the freeze this node noticed (`Event::Frozen`) has been
    /// dealt with (it was not Active, or its peers showed no newer ballot).
    ClearFrozen,
    /// One heartbeat to the Primary; answer with `HeartbeatAnswered` or `HeartbeatFailed`.
    SendHeartbeat { to: String },
    /// Start a sync; answer with `SyncFinished`.
    StartSync { from: String, trigger: SyncTrigger },
    /// A due sync was skipped; record it in Sync History.
    SkipSync { from: String, reason: String },
    /// Ask the witnesses whether they still reach the Primary; answer with `WitnessesAnswered`.
    /// With `record_over`, when none does, also ask them to record this node's promotion over
    /// that ballot (synchronous replication with the continuous fallback, see
    /// [`crate::record`]).
    AskWitnesses {
        primary: String,
        record_over: Option<Ballot>,
    },
    /// Continuous replication: `Some(primary)`: keep a replication stream open from it (and
    /// reconnect when it fails) until told otherwise; `None`: stop following. Emitted only when
    /// the wish changes. The runtime reports the source's epoch with `SourceEpoch`.
    Follow { from: Option<String> },
    /// Synchronous replication with the continuous fallback: this node was just promoted because
    /// the node it followed failed, and that node was the only Standby it could have had. Fall
    /// back now (with witnesses: once they recorded it, as after the timeout) instead of making
    /// the first writes wait the whole synchronous timeout for it. Never emitted with `block`.
    /// `generation` is not chosen here: the runtime uses its head, as the timeout path does.
    FallBackAtPromotion,
    Notify {
        notification: Notification,
        message: String,
    },
    /// A line for the HighAvailability module log.
    Log { level: Level, message: String },
}

/// How a sync ended, as the controller needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    Succeeded {
        summary: String,
        /// The source's epoch: a later promotion must go above it.
        source_epoch: i64,
    },
    Failed {
        reason: String,
    },
    /// Another sync (e.g. an operator's) held the sync lock.
    Skipped {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The first event after the process starts.
    Started,
    Tick,
    HeartbeatAnswered(PeerView),
    HeartbeatFailed {
        reason: String,
    },
    /// A peer told us how it stands: its heartbeat to us.
    PeerSeen(PeerView),
    /// A trusted peer answered `CheckPeers` at `address`.
    PeerAnswered {
        address: String,
        view: PeerView,
    },
    /// A trusted peer did not answer `CheckPeers` at `address`.
    PeerUnreachable {
        address: String,
        reason: String,
    },
    /// This process was frozen (SIGSTOP, a suspended VM, a stall) for `gap_ms`, long enough
    /// for a peer to have taken over meanwhile; timeouts that elapsed during it say nothing
    /// about the peers.
    Frozen {
        gap_ms: u64,
    },
    /// Every peer asked by `CheckPeers` answered or was given up on.
    PeersChecked,
    SyncFinished {
        trigger: SyncTrigger,
        outcome: SyncOutcome,
    },
    /// `Some(witness)`: that witness still reaches the Primary. `None`: no reachable witness
    /// does (or none answered).
    WitnessesAnswered {
        reaching_primary: Option<String>,
        promotion: PromotionRecord,
    },
    /// Continuous replication connected to a source in this epoch: as after a sync, a later
    /// promotion must go above it.
    SourceEpoch(i64),
    /// Continuous and synchronous replication: how current this node's copy of its source is.
    /// The runtime sends it just before each heartbeat result, so a failure is judged on what
    /// the node held when the Primary last answered (If Behind at Failure). Until the first one
    /// a node is taken to be behind.
    Replication(ReplicationView),
}

/// Whether the witnesses recorded this node's promotion over its Primary's ballot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromotionRecord {
    /// Not asked (no record was needed, or a witness reaches the Primary).
    NotAsked,
    /// Every witness recorded it: the Primary can no longer go on without this node.
    Granted,
    /// A witness refused (the Primary recorded that it goes on without this node) or did not
    /// answer: why.
    Refused(String),
    /// No witness keeps records: judge by timing alone.
    Unsupported,
}

/// A following node's replication, as its runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationView {
    /// Wall-clock ms up to which this node is known to hold every write its source committed
    /// (when the request of its last answer applied whole was sent; this node's clock); `None`:
    /// not known since the process started.
    pub in_step_at_ms: Option<i64>,
    /// The stream is open, has caught up and is answering: in step as far as can be told now.
    pub streaming: bool,
    /// When the source's last answer arrived (a sign of life of the Primary it follows).
    pub answered_at_ms: Option<i64>,
    /// Why it is not in step, when it is not.
    pub behind: Option<String>,
}

impl Default for ReplicationView {
    fn default() -> Self {
        Self {
            in_step_at_ms: None,
            streaming: false,
            answered_at_ms: None,
            behind: Some("this node has not been in step with its source since it started".into()),
        }
    }
}

/// The operator's role commands (guide: Table 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OperatorCommand {
    /// `tandem failover mode primary`: an epoch above every epoch seen, as an automatic promotion
    /// takes, and Primary mode; repeatable. A node that followed a Primary keeps heartbeating
    /// it, so that Primary fences itself when they meet again (e.g. after a partition).
    ModePrimary,
    /// `tandem failover mode secondary`: Standby again; the schedule is not re-anchored.
    ModeSecondary,
}

/// Whether an operator's action that would break "one Active node" is refused with the reason
/// and the fix (the default), or carried out anyway (`--force`; `"force": true` in the APIs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Guard {
    #[default]
    Checked,
    Forced,
}

/// The newest claim to serve this node knows of, and who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimView {
    #[serde(flatten)]
    pub ballot: Ballot,
    pub node_name: String,
}

/// A trusted address that has not answered a peer check yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SilentPeer {
    pub address: String,
    pub reason: String,
}

/// The controller's view for `tandem ha status` and the System Manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub status: NodeStatus,
    pub epoch: i64,
    pub config: HaConfig,
    pub fenced: Option<String>,
    /// While fenced: the full command that makes this node the Active node's Standby.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fenced_fix: Option<String>,
    pub checking_peers: bool,
    pub heartbeat: HeartbeatStatus,
    pub clock_skew_ms: Option<i64>,
    pub clock_skew_warning: bool,
    pub sync_running: bool,
    pub next_sync_ms: Option<i64>,
    pub peer: Option<PeerView>,
    pub peer_seen_ms: Option<i64>,
    /// Why the automatic promotion after a detected failure is held (If Behind at Failure).
    pub promotion_held: Option<String>,
    /// Every other node this node knows of, directly or by gossip.
    pub cluster: Vec<Member>,
    /// Trusted addresses that have not answered a peer check (which node is there is unknown).
    pub silent_peers: Vec<SilentPeer>,
    /// The newest claim to serve known anywhere, this node's own included.
    pub newest_claim: Option<ClaimView>,
    /// Set while two nodes of the HA group are Active at once: who they are.
    pub dual_active: Option<String>,
    /// Nodes known only through gossip that this node cannot reach, each with the fix.
    pub trust_warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatStatus {
    pub active: bool,
    pub consecutive_failures: u32,
    pub failure_detected: bool,
    pub awaiting_witnesses: bool,
    pub last_ok_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Heartbeat {
    in_flight: bool,
    /// Monotonic ms the heartbeat in flight was sent at.
    sent_at_ms: u64,
    next_at_ms: u64,
    failures: u32,
    detected: bool,
    awaiting_witnesses: bool,
    last_ok_ms: Option<i64>,
    last_error: Option<String>,
}

/// The HA controller of one node.
///
/// An epoch is a ballot, as in Paxos: a counter and the node that took it, compared in that
/// order. A promotion takes the counter above every counter seen, and the node's unique id
/// breaks ties, so two nodes that promote on opposite sides of a partition still hold different,
/// ordered epochs, and when they meet the lower one steps down.
pub struct Controller {
    node_id: String,
    durable: Durable,
    status: NodeStatus,
    started: bool,
    checking_peers: bool,
    /// The highest epoch any peer has shown (a promotion goes above it).
    peer_epoch_max: i64,
    heartbeat: Heartbeat,
    sync_running: bool,
    next_sync_ms: Option<i64>,
    clock_skew_ms: Option<i64>,
    skew_notified: bool,
    peer: Option<PeerView>,
    peer_seen_ms: Option<i64>,
    last_served: Option<Command>,
    /// Where continuous replication follows from, as last commanded.
    following: Option<String>,
    /// The peer's replication mode last warned about as different from this node's.
    replication_mismatch: Option<ReplicationMode>,
    /// The follower as the runtime last reported it, and whether it was streaming when the
    /// Primary last answered a heartbeat.
    replication: ReplicationView,
    streaming_at_answer: bool,
    /// The Primary's view in its last heartbeat answer.
    followed: Option<PeerView>,
    /// Why the automatic promotion after the current failure is held.
    promotion_held: Option<String>,
    /// Every other node known, directly or by gossip.
    cluster: Cluster,
    /// The periodic check of every trusted peer.
    peer_check: PeerCheck,
    /// The dual-Active alarm while raised: who.
    dual_active: Option<String>,
    /// Monotonic ms of this node's last promotion: a peer last seen Active before it was Active
    /// in an older ballot, and is no evidence of two Active nodes (a planned switchover's old
    /// Primary stepped down meanwhile; the next sighting tells).
    promoted_at_ms: Option<u64>,
    /// Node ids already warned about as known only by gossip.
    trust_warned: std::collections::BTreeSet<String>,
    /// Monotonic ms at which this node last noticed it had been frozen.
    frozen_at_ms: Option<u64>,
    /// Writes wait for `ClearFrozen`: a freeze is being dealt with.
    frozen_pending: bool,
}

#[derive(Clone, Debug, Default)]
struct PeerCheck {
    in_flight: bool,
    started_at_ms: u64,
    next_at_ms: u64,
    /// Peers that answered, and that did not, in this round.
    answered: usize,
    unanswered: usize,
}

fn log(commands: &mut Vec<Command>, level: Level, message: impl Into<String>) {
    commands.push(Command::Log {
        level,
        message: message.into(),
    });
}

impl Controller {
    /// A controller for a node whose durable state is `durable`. Nothing is served until the
    /// `Started` event.
    pub fn new(node_id: impl Into<String>, durable: Durable) -> Self {
        Self {
            node_id: node_id.into(),
            status: NodeStatus {
                ha_enabled: durable.config.enabled,
                mode: durable.config.mode,
                state: State::NotAvailable,
            },
            durable,
            started: false,
            checking_peers: false,
            peer_epoch_max: 0,
            heartbeat: Heartbeat::default(),
            sync_running: false,
            next_sync_ms: None,
            clock_skew_ms: None,
            skew_notified: false,
            peer: None,
            peer_seen_ms: None,
            last_served: None,
            following: None,
            replication_mismatch: None,
            replication: ReplicationView::default(),
            streaming_at_answer: false,
            followed: None,
            promotion_held: None,
            cluster: Cluster::default(),
            peer_check: PeerCheck::default(),
            dual_active: None,
            promoted_at_ms: None,
            trust_warned: Default::default(),
            frozen_at_ms: None,
            frozen_pending: false,
        }
    }

    pub fn status(&self) -> NodeStatus {
        self.status
    }

    pub fn epoch(&self) -> i64 {
        self.durable.epoch
    }

    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    /// What this node's probes say about its ballot (the `Tandem-Ballot` header).
    pub fn probe_ballot(&self) -> crate::ballot::ProbeBallot {
        crate::ballot::ProbeBallot {
            own: crate::ballot::Ballot::new(self.durable.epoch, self.node_id.clone()),
            state: self.status.state,
            ha_enabled: self.status.ha_enabled,
            newest: self.newest_claim(),
        }
    }

    /// The newest ballot this node knows an Active node of the HA group to hold: its own while
    /// it is Active with HA enabled, or one learned from its peers.
    pub fn newest_claim(&self) -> Option<Ballot> {
        self.newest_known_claim().map(|(ballot, _)| ballot)
    }

    /// What this node tells its peers about the others (gossip), at `now`.
    pub fn known(&self, now: Now) -> Vec<KnownNode> {
        self.cluster.known(now.into())
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            status: self.status,
            epoch: self.durable.epoch,
            config: self.durable.config.clone(),
            fenced: self.durable.fenced.clone(),
            fenced_fix: self
                .durable
                .fenced
                .is_some()
                .then(|| self.follow_active_advice(None)),
            checking_peers: self.checking_peers,
            heartbeat: HeartbeatStatus {
                active: self.heartbeats_wanted(),
                consecutive_failures: self.heartbeat.failures,
                failure_detected: self.heartbeat.detected,
                awaiting_witnesses: self.heartbeat.awaiting_witnesses,
                last_ok_ms: self.heartbeat.last_ok_ms,
                last_error: self.heartbeat.last_error.clone(),
            },
            clock_skew_ms: self.clock_skew_ms,
            clock_skew_warning: self
                .clock_skew_ms
                .is_some_and(|skew| skew.abs() > CLOCK_SKEW_WARN_MS),
            sync_running: self.sync_running,
            next_sync_ms: self
                .schedule_wanted()
                .then_some(self.next_sync_ms)
                .flatten(),
            peer: self.peer.clone(),
            peer_seen_ms: self.peer_seen_ms,
            promotion_held: self.promotion_held.clone(),
            cluster: self.cluster.members().cloned().collect(),
            silent_peers: self
                .cluster
                .silent()
                .map(|(address, reason)| SilentPeer {
                    address: address.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            newest_claim: self
                .newest_known_claim()
                .map(|(ballot, node_name)| ClaimView { ballot, node_name }),
            dual_active: self.dual_active.clone(),
            trust_warnings: self.trust_warnings(),
        }
    }

    /// The state the configuration calls for, before fencing and the startup check.
    fn configured_state(&self) -> State {
        let config = &self.durable.config;
        if !config.enabled {
            return State::Active;
        }
        match (config.mode, config.node_status) {
            (Mode::Primary, _) | (Mode::Secondary, NodeStatusSetting::Active) => State::Active,
            (Mode::Secondary, NodeStatusSetting::Standby) => State::Standby,
        }
    }

    /// Where devices should go while this node does not serve them.
    fn primary_hint(&self) -> Option<String> {
        match (&self.durable.fenced, self.status.state) {
            (_, State::Active) => None,
            (Some(reason), _) => Some(reason.clone()),
            (None, _) if self.checking_peers => {
                Some("this node is asking its trusted peers before it serves".into())
            }
            (None, _) => self.durable.config.primary_text(),
        }
    }

    /// Emits `Serve` when what is served changed (state, epoch, or where devices should go).
    fn serve(&mut self, state: State, commands: &mut Vec<Command>) {
        if self.frozen_pending && !self.checking_peers {
            // The freeze is dealt with: the peer check after it ended (or was overtaken by a
            // fence or an operator), so whatever is served next stands on current knowledge.
            self.frozen_pending = false;
            commands.push(Command::ClearFrozen);
        }
        let config = &self.durable.config;
        self.status = NodeStatus {
            ha_enabled: config.enabled,
            mode: config.mode,
            state,
        };
        let serve = Command::Serve {
            status: self.status,
            epoch: self.durable.epoch,
            primary: self.primary_hint(),
        };
        if self.last_served.as_ref() != Some(&serve) {
            self.last_served = Some(serve.clone());
            commands.push(serve);
        }
    }

    fn persist(&self, commands: &mut Vec<Command>) {
        commands.push(Command::Persist(self.durable.clone()));
    }

    /// A Standby Secondary heartbeats its Primary (the guide); an Active node keeps doing so
    /// with the Primary it followed, whether it was promoted automatically or by `failover mode
    /// primary`, so that an old Primary that returns, or that kept serving behind a partition,
    /// learns of the newer epoch and fences itself.
    fn heartbeats_wanted(&self) -> bool {
        let config = &self.durable.config;
        let following = config.mode == Mode::Secondary
            && matches!(self.status.state, State::Standby | State::Active);
        let promoted_by_hand = config.mode == Mode::Primary && self.status.state == State::Active;
        self.started
            && config.enabled
            && config.primary.is_some()
            && (following || promoted_by_hand)
    }

    /// Only a Standby Secondary syncs on the schedule (guide, Table 4: an Active one does not),
    /// and only with scheduled replication.
    fn schedule_wanted(&self) -> bool {
        self.heartbeats_wanted()
            && self.durable.config.mode == Mode::Secondary
            && self.durable.config.replication == ReplicationMode::Scheduled
            && self.status.state == State::Standby
    }

    /// A Standby Secondary with continuous or synchronous replication follows its Primary;
    /// nothing else does.
    fn follow_wanted(&self) -> Option<String> {
        let config = &self.durable.config;
        (self.started
            && config.enabled
            && config.mode == Mode::Secondary
            && config.replication != ReplicationMode::Scheduled
            && self.status.state == State::Standby)
            .then(|| config.primary_text())
            .flatten()
    }

    /// Emits `Follow` when where this node should follow from changed.
    fn reconcile_follow(&mut self, commands: &mut Vec<Command>) {
        let wanted = self.follow_wanted();
        if wanted != self.following {
            log(
                commands,
                Level::Info,
                match &wanted {
                    Some(primary) => format!("continuous replication from {primary} starts"),
                    None => "continuous replication stops".to_owned(),
                },
            );
            self.following = wanted.clone();
            commands.push(Command::Follow { from: wanted });
        }
    }

    /// Takes a fresh epoch above everything seen, durably, then serves Active.
    fn promote(&mut self, now: Now, why: &str, commands: &mut Vec<Command>) {
        let epoch = self
            .durable
            .epoch
            .max(self.peer_epoch_max)
            .max(self.cluster.epoch_max())
            + 1;
        // Whether the node this one followed was detected failed: then it is gone, and it was
        // the Standby this node would have had.
        let followed_failed = self.heartbeat.detected;
        self.durable.epoch = epoch;
        self.durable.held_epoch = Some(epoch);
        self.promoted_at_ms = Some(now.monotonic_ms);
        self.durable.fenced = None;
        self.promotion_held = None;
        if self.durable.config.mode == Mode::Secondary {
            self.durable.config.node_status = NodeStatusSetting::Active;
        }
        self.heartbeat = Heartbeat {
            next_at_ms: now.monotonic_ms + self.durable.config.heartbeat_interval.as_millis(),
            ..Heartbeat::default()
        };
        self.persist(commands);
        self.serve(State::Active, commands);
        log(
            commands,
            Level::Warn,
            format!("promoted to Active in epoch {epoch}: {why}"),
        );
        commands.push(Command::Notify {
            notification: Notification::BecamePrimary,
            message: format!("this server became primary (Active, epoch {epoch}): {why}"),
        });
        if followed_failed {
            self.standby_known_lost(commands);
        }
    }

    /// After a promotion over a failed Primary, with synchronous replication: the rule for the
    /// first writes (ARCHITECTURE.md). With the continuous fallback the node falls back at once:
    /// waiting the timeout for a Standby it knows is gone protects nothing, and the fallback
    /// keeps its guarantees (with witnesses it is recorded before any write is acknowledged
    /// without a Standby, so no node can promote over this one's writes; the alarm is raised as
    /// after the timeout; the first Standby to catch up restores it). With `block` writes wait
    /// for a Standby, as the mode promises.
    fn standby_known_lost(&self, commands: &mut Vec<Command>) {
        let config = &self.durable.config;
        if !config.enabled || config.replication != ReplicationMode::Synchronous {
            return;
        }
        let primary = config.primary_text().unwrap_or_default();
        match config.on_standby_lost {
            OnStandbyLost::Continuous => {
                let first = if config.witnesses.is_empty() {
                    "now"
                } else {
                    "as soon as the witnesses record it"
                };
                log(
                    commands,
                    Level::Warn,
                    format!(
                        "synchronous replication: the Standby this node would wait for is {primary}, \
                         which just failed; writes are acknowledged without a Standby {first} \
                         (--if-standby-lost continuous), not after the {} timeout, until a \
                         Standby catches up",
                        config.synchronous_timeout
                    ),
                );
                commands.push(Command::FallBackAtPromotion);
            }
            OnStandbyLost::Block => log(
                commands,
                Level::Warn,
                format!(
                    "synchronous replication with --if-standby-lost block: writes wait until a \
                     Standby confirms them ({primary}, the failed Primary, or another node \
                     following this one)"
                ),
            ),
        }
    }

    /// Steps down for good: `holder` is Active with `newer`, a ballot above this node's own.
    fn fence(
        &mut self,
        newer: &Ballot,
        holder: &str,
        via: Option<&str>,
        commands: &mut Vec<Command>,
    ) {
        let learned = via
            .map(|via| format!(" (learned through {via})"))
            .unwrap_or_default();
        let reason = if newer.epoch == self.durable.epoch && self.durable.epoch_adopted() {
            format!(
                "{holder} is Active in epoch {}{learned}, the epoch this node's data came from \
                 (a sync): the ballot is {holder}'s, not this node's",
                newer.epoch
            )
        } else if newer.epoch == self.durable.epoch {
            format!(
                "{holder} is also Active in epoch {}{learned}, and wins the tie (epochs are \
                 ordered by their counter, then by node id)",
                newer.epoch
            )
        } else {
            format!(
                "{holder} is Active in epoch {}{learned}, newer than this node's epoch {}",
                newer.epoch, self.durable.epoch
            )
        };
        self.durable.fenced = Some(reason.clone());
        self.checking_peers = false;
        self.persist(commands);
        self.serve(State::NotAvailable, commands);
        let advice = format!(
            "{reason}; this node stopped serving (Not Available). To return it to service with \
             nothing lost, make it a Standby of the Active node: {}; once it is in step, \
             `tandem ha switchover` here gives it the Primary role back",
            self.follow_active_advice(Some((newer, holder)))
        );
        log(commands, Level::Error, advice.clone());
        commands.push(Command::Notify {
            notification: Notification::Fenced,
            message: advice,
        });
    }

    /// The full command that makes this node a Standby of the Active node: with its replication
    /// address when a peer check or gossip told it (the newest claim known, or `holder`), else a
    /// placeholder to fill in. `failover mode secondary` alone works only once `--primary` is
    /// set, which an old Primary usually lacks.
    fn follow_active_advice(&self, holder: Option<(&Ballot, &str)>) -> String {
        let newest = self
            .cluster
            .members()
            .filter_map(|member| member.claim().map(|claim| (claim, member)))
            .max_by(|a, b| a.0.cmp(&b.0));
        let holder_name = holder.map(|(_, name)| name);
        let (name, address) = match newest {
            Some((claim, member))
                if holder.is_none_or(|(newer, _)| claim >= *newer) && member.address.is_some() =>
            {
                (Some(member.node_name.as_str()), member.address.as_deref())
            }
            _ => (holder_name, None),
        };
        let address = address.unwrap_or("<the Active node's replication address, HOST:PORT>");
        let whom = name.map_or_else(String::new, |name| format!(" ({name}, the Active node)"));
        if self.durable.config.mode == Mode::Secondary && self.durable.config.primary.is_some() {
            return format!(
                "`tandem failover mode secondary` (its Primary is set), or `tandem ha configure \
                 --mode secondary --primary {address}`{whom}"
            );
        }
        format!("`tandem ha configure --mode secondary --primary {address}`{whom}")
    }

    /// A peer's view arrived. `contact` says how: it decides whether the clock comparison means
    /// anything and which address the peer was reached at.
    fn observe_peer(
        &mut self,
        now: Now,
        peer: PeerView,
        contact: Contact,
        commands: &mut Vec<Command>,
    ) {
        self.peer_epoch_max = self.peer_epoch_max.max(peer.epoch);
        self.peer_seen_ms = Some(now.wall_ms);
        if let Some(sent_at_ms) = contact.sent_at_ms()
            && self.frozen_at_ms.is_none_or(|frozen| frozen < sent_at_ms)
        {
            // Only an answer to this node's own request, with no freeze of this node in between,
            // says how the clocks compare (a queued message or a pause would look like skew).
            self.compare_clocks(now, &peer, commands);
        }
        if peer.node_id != self.node_id {
            let node = KnownNode {
                node_id: peer.node_id.clone(),
                node_name: peer.node_name.clone(),
                address: None,
                ha_enabled: peer.ha_enabled,
                mode: peer.mode,
                state: peer.state,
                epoch: peer.epoch,
                age_ms: 0,
            };
            let at = now.into();
            self.cluster
                .direct(node, contact.address().map(str::to_owned), at);
            // Every epoch shown counts for a later promotion, even one a fresher entry replaces.
            for node in &peer.known {
                self.peer_epoch_max = self.peer_epoch_max.max(node.epoch);
            }
            let learned = self
                .cluster
                .gossip(&self.node_id, &peer.node_name, at, &peer.known);
            for node in learned {
                log(
                    commands,
                    Level::Info,
                    format!(
                        "learned of {} ({} {} in epoch {}) through {}",
                        node.node_name, node.mode, node.state, node.epoch, peer.node_name
                    ),
                );
            }
        }
        self.check_claims(now, commands);
        if !matches!(contact, Contact::Check { .. }) {
            // The node it heartbeats, or that heartbeats it: its pair.
            self.check_replication_mode(&peer, commands);
            self.peer = Some(peer);
        }
    }

    fn compare_clocks(&mut self, now: Now, peer: &PeerView, commands: &mut Vec<Command>) {
        let skew = peer.wall_clock_ms - now.wall_ms;
        self.clock_skew_ms = Some(skew);
        if skew.abs() > CLOCK_SKEW_WARN_MS {
            if !self.skew_notified {
                self.skew_notified = true;
                let message = format!(
                    "the clock of {} differs from this node's by {} ms (more than {} ms); both \
                     servers need the same time (use NTP): the schedule and the logs depend on it",
                    peer.node_name, skew, CLOCK_SKEW_WARN_MS
                );
                log(commands, Level::Warn, message.clone());
                commands.push(Command::Notify {
                    notification: Notification::ClockSkew,
                    message,
                });
            }
        } else if self.skew_notified {
            self.skew_notified = false;
            log(
                commands,
                Level::Info,
                format!(
                    "the clock of {} agrees with this node's again ({skew} ms)",
                    peer.node_name
                ),
            );
        }
    }

    /// Both nodes of a pair must replicate the same way: a synchronous Primary whose Secondary
    /// does not stream would make every write wait. Warned once per mismatch.
    fn check_replication_mode(&mut self, peer: &PeerView, commands: &mut Vec<Command>) {
        let ours = self.durable.config.replication;
        let theirs = match peer.replication {
            Some(theirs) if peer.ha_enabled && self.durable.config.enabled && theirs != ours => {
                theirs
            }
            _ => {
                self.replication_mismatch = None;
                return;
            }
        };
        if self.replication_mismatch == Some(theirs) {
            return;
        }
        self.replication_mismatch = Some(theirs);
        let consequence = if ours == ReplicationMode::Synchronous
            && self.status.state == State::Active
            && theirs == ReplicationMode::Scheduled
        {
            "; no Standby streams from this node, so every write waits for one (or, with \
             --if-standby-lost continuous, goes on after the timeout with an alarm)"
        } else {
            ""
        };
        let message = format!(
            "{} replicates {theirs} but this node is configured {ours}: set the same \
             `tandem ha configure --replication` on both nodes{consequence}",
            peer.node_name
        );
        log(commands, Level::Warn, message.clone());
        commands.push(Command::Notify {
            notification: Notification::ReplicationMismatch,
            message,
        });
    }

    /// The next run of the schedule, from the anchor (set when the configuration was saved).
    fn reschedule(&mut self, now: Now) {
        let config = &self.durable.config;
        let anchor = *self
            .durable
            .schedule_anchor_ms
            .get_or_insert_with(|| next_start_time(now.wall_ms, config.start_time));
        self.next_sync_ms = Some(next_slot(anchor, config.run_every, now.wall_ms));
    }

    pub fn handle(&mut self, now: Now, event: Event) -> Vec<Command> {
        let mut commands = Vec::new();
        match event {
            Event::Started => self.start(now, &mut commands),
            Event::Tick => self.tick(now, &mut commands),
            Event::HeartbeatAnswered(peer) => self.heartbeat_answered(now, peer, &mut commands),
            Event::HeartbeatFailed { reason } => self.heartbeat_failed(now, reason, &mut commands),
            Event::PeerSeen(peer) => self.observe_peer(now, peer, Contact::Inbound, &mut commands),
            Event::PeerAnswered { address, view } => {
                self.peer_check.answered += 1;
                let sent_at_ms = self.peer_check.started_at_ms;
                let contact = Contact::Check {
                    address,
                    sent_at_ms,
                };
                self.observe_peer(now, view, contact, &mut commands)
            }
            Event::PeerUnreachable { address, reason } => {
                self.peer_check.unanswered += 1;
                self.cluster.unreachable(&address, &reason, now.into())
            }
            Event::PeersChecked => self.peers_checked(now, &mut commands),
            Event::Frozen { gap_ms } => self.frozen(now, gap_ms, &mut commands),
            Event::SyncFinished { trigger, outcome } => {
                self.sync_finished(trigger, outcome, &mut commands)
            }
            Event::WitnessesAnswered {
                reaching_primary,
                promotion,
            } => self.witnesses_answered(now, reaching_primary, promotion, &mut commands),
            Event::SourceEpoch(epoch) => {
                if epoch > self.durable.epoch && self.status.state != State::Active {
                    self.durable.epoch = epoch;
                    self.persist(&mut commands);
                }
            }
            Event::Replication(view) => self.replication = view,
        }
        self.reconcile_follow(&mut commands);
        commands
    }

    fn start(&mut self, now: Now, commands: &mut Vec<Command>) {
        if self.started {
            return;
        }
        let state = if self.durable.fenced.is_some() && self.durable.config.enabled {
            State::NotAvailable
        } else {
            self.configured_state()
        };
        if self.durable.fenced.is_some() && !self.durable.config.enabled {
            // Disabling HA was the operator's decision to run standalone.
            self.durable.fenced = None;
            self.persist(commands);
        }
        self.started = true;
        // A warning about failing over is worth repeating at every start, not only when saved:
        // the configuration may predate it.
        if let Ok(warnings) = self.durable.config.validate() {
            for warning in warnings
                .iter()
                .filter(|warning| warning.field == "synchronousTimeout")
            {
                log(commands, Level::Warn, warning.message.clone());
            }
        }
        if state == State::Active && self.durable.config.enabled {
            self.checking_peers = true;
            self.serve(State::NotAvailable, commands);
            self.peer_check = PeerCheck {
                in_flight: true,
                started_at_ms: now.monotonic_ms,
                ..PeerCheck::default()
            };
            log(
                commands,
                Level::Info,
                format!(
                    "started as {} in epoch {}; asking the trusted peers whether one is Active in \
                     a newer epoch before serving",
                    self.durable.config.mode, self.durable.epoch
                ),
            );
            commands.push(Command::CheckPeers);
        } else {
            self.serve(state, commands);
            if let Some(reason) = &self.durable.fenced {
                log(
                    commands,
                    Level::Warn,
                    format!("started Not Available: {reason}"),
                );
            }
        }
        self.heartbeat.next_at_ms = now.monotonic_ms;
        self.reschedule(now);
    }

    fn tick(&mut self, now: Now, commands: &mut Vec<Command>) {
        if !self.started {
            return;
        }
        if self.heartbeats_wanted()
            && !self.heartbeat.in_flight
            && !self.heartbeat.awaiting_witnesses
            && now.monotonic_ms >= self.heartbeat.next_at_ms
            && let Some(primary) = self.durable.config.primary_text()
        {
            self.heartbeat.in_flight = true;
            self.heartbeat.sent_at_ms = now.monotonic_ms;
            commands.push(Command::SendHeartbeat { to: primary });
        }
        self.check_peers_when_due(now, commands);
        self.check_dual_active(now, commands);
        if !self.schedule_wanted() {
            return;
        }
        let run_every = self.durable.config.run_every.as_millis() as i64;
        let Some(due) = self.next_sync_ms else {
            self.reschedule(now);
            return;
        };
        if due > now.wall_ms + run_every {
            // The wall clock went back: count from the anchor again instead of waiting out the
            // jump.
            self.reschedule(now);
            return;
        }
        if now.wall_ms < due {
            return;
        }
        let Some(primary) = self.durable.config.primary_text() else {
            return;
        };
        if self.sync_running {
            let reason = "the previous sync is still running; syncs never overlap (consider a \
                          longer Run Every)"
                .to_owned();
            log(
                commands,
                Level::Warn,
                format!("scheduled sync from {primary} skipped: {reason}"),
            );
            commands.push(Command::SkipSync {
                from: primary,
                reason,
            });
        } else {
            self.sync_running = true;
            commands.push(Command::StartSync {
                from: primary,
                trigger: SyncTrigger::Scheduled,
            });
        }
        // One sync for any number of missed slots (a clock jump, a node that was stopped).
        let anchor = self.durable.schedule_anchor_ms.unwrap_or(due);
        self.next_sync_ms = Some(next_slot(
            anchor,
            self.durable.config.run_every,
            now.wall_ms + 1,
        ));
    }

    fn heartbeat_answered(&mut self, now: Now, peer: PeerView, commands: &mut Vec<Command>) {
        let config = &self.durable.config;
        self.heartbeat.in_flight = false;
        self.heartbeat.next_at_ms = now.monotonic_ms + config.heartbeat_interval.as_millis();
        let recovered = self.heartbeat.failures;
        self.heartbeat.failures = 0;
        self.heartbeat.detected = false;
        self.heartbeat.awaiting_witnesses = false;
        self.heartbeat.last_ok_ms = Some(now.wall_ms);
        self.heartbeat.last_error = None;
        self.promotion_held = None;
        self.streaming_at_answer = self.replication.streaming;
        self.followed = Some(peer.clone());
        log(
            commands,
            Level::Info,
            format!(
                "heartbeat to {}: {} {} in epoch {}, clock offset {} ms",
                peer.node_name,
                peer.mode,
                peer.state,
                peer.epoch,
                peer.wall_clock_ms - now.wall_ms
            ),
        );
        if recovered > 0 {
            log(
                commands,
                Level::Info,
                format!(
                    "{} answers again after {recovered} failed heartbeat(s)",
                    peer.node_name
                ),
            );
        }
        // Not Available is not recorded: a Primary restarting (checking its peers) answers so,
        // and a Primary that crash-loops must still be replaceable.
        if matches!(peer.state, State::Active | State::Standby)
            && self.durable.followed_state != Some(peer.state)
        {
            self.durable.followed_state = Some(peer.state);
            self.persist(commands);
        }
        let contact = Contact::Heartbeat {
            address: self.durable.config.primary_text(),
            sent_at_ms: self.heartbeat.sent_at_ms,
        };
        self.observe_peer(now, peer, contact, commands);
    }

    fn heartbeat_failed(&mut self, now: Now, reason: String, commands: &mut Vec<Command>) {
        if !self.heartbeat.in_flight {
            return;
        }
        let config = self.durable.config.clone();
        let primary = config.primary_text().unwrap_or_default();
        self.heartbeat.in_flight = false;
        if self
            .frozen_at_ms
            .is_some_and(|frozen| frozen >= self.heartbeat.sent_at_ms)
        {
            // Its timeout ran out while this node itself was frozen: it says nothing of the
            // Primary. Ask again at once.
            self.heartbeat.next_at_ms = now.monotonic_ms;
            log(
                commands,
                Level::Info,
                format!(
                    "heartbeat to {primary} failed across this node's own freeze ({reason}); not \
                     counted"
                ),
            );
            return;
        }
        self.cluster.unreachable(&primary, &reason, now.into());
        self.heartbeat.failures = self.heartbeat.failures.saturating_add(1);
        self.heartbeat.next_at_ms = now.monotonic_ms + config.recheck_interval.as_millis();
        self.heartbeat.last_error = Some(reason.clone());
        let failures = self.heartbeat.failures;
        if self.status.state != State::Standby {
            // An Active Secondary's heartbeats only carry epochs; a silent Primary is expected.
            if failures == 1 {
                log(
                    commands,
                    Level::Info,
                    format!("heartbeat to {primary} failed (this node is Active): {reason}"),
                );
            }
            self.heartbeat.next_at_ms = now.monotonic_ms + config.heartbeat_interval.as_millis();
            return;
        }
        log(
            commands,
            Level::Warn,
            format!(
                "heartbeat {failures} of {} to {primary} failed: {reason}",
                config.heartbeat_failures
            ),
        );
        if failures < config.heartbeat_failures || self.heartbeat.detected {
            return;
        }
        self.heartbeat.detected = true;
        let message = format!(
            "failure detected: {primary} missed {failures} consecutive heartbeats (last error: \
             {reason}); If Failure Detected is {}",
            config.on_failure
        );
        log(commands, Level::Error, message.clone());
        commands.push(Command::Notify {
            notification: Notification::FailureDetected,
            message,
        });
        let followed = self.durable.followed_state;
        if config.on_failure == OnFailure::Promote && followed == Some(State::Standby) {
            // The followed node was not serving devices, so its failure leaves the fleet with
            // whatever node does (in the three-server scenario: the main Primary, which this DR
            // node cannot see). Promoting here would make a second Active node.
            log(
                commands,
                Level::Warn,
                format!(
                    "{primary} was {} when it last answered: it was not serving devices, so this \
                     node stays Standby. If the node it followed is gone too (e.g. the whole main \
                     data center), promote this one with `tandem failover mode primary`",
                    followed.map_or("unknown".into(), |state| state.to_string())
                ),
            );
            return;
        }
        match config.on_failure {
            OnFailure::Standby => log(
                commands,
                Level::Warn,
                "Keep in Standby: this node stays Standby; promote it with `tandem failover mode \
                 primary` if the Primary does not return",
            ),
            OnFailure::Promote if !config.witnesses.is_empty() => {
                self.heartbeat.awaiting_witnesses = true;
                log(
                    commands,
                    Level::Info,
                    format!(
                        "asking {} witness(es) whether they still reach {primary} before promoting",
                        config.witnesses.len()
                    ),
                );
                let record_over = self.promotion_record_needed();
                commands.push(Command::AskWitnesses {
                    primary,
                    record_over,
                });
            }
            OnFailure::Promote => {
                let why = format!("{primary} missed {failures} consecutive heartbeats");
                self.promote_after_failure(now, &why, commands);
            }
        }
    }

    /// Whether this Standby may lack writes the failed Primary acknowledged, and so must not
    /// promote itself (If Behind at Failure = standby): the reason, or `None` to promote. What
    /// the Primary did decides it: its replication mode and its policy for a lost Standby, as its
    /// last heartbeat answer told (this node's own settings until one did).
    fn promotion_hold(&self, now: Now) -> Option<String> {
        let config = &self.durable.config;
        if config.on_behind == OnBehind::Promote {
            return None;
        }
        let followed = self.followed.as_ref();
        let replication = followed
            .and_then(|primary| primary.replication)
            .unwrap_or(config.replication);
        let on_standby_lost = followed
            .and_then(|primary| primary.on_standby_lost)
            .unwrap_or(config.on_standby_lost);
        let timeout = followed
            .and_then(|primary| primary.synchronous_timeout)
            .unwrap_or(config.synchronous_timeout);
        let reason = |view: &ReplicationView| {
            view.behind
                .clone()
                .unwrap_or_else(|| "it was in step".into())
        };
        match (replication, on_standby_lost) {
            // Every write was copied by a sync, or by nothing: there is no stream to be behind.
            (ReplicationMode::Scheduled, _) => None,
            // The Primary acknowledged nothing this node did not confirm holding.
            (ReplicationMode::Synchronous, OnStandbyLost::Block) => None,
            // The Primary goes on without this node only after a write waited the synchronous
            // timeout for it, and no write waited before this node was last in step: if that is
            // less than the timeout ago, the Primary failed before it could go on.
            (ReplicationMode::Synchronous, OnStandbyLost::Continuous) => {
                let view = &self.replication;
                if followed.and_then(|primary| primary.acknowledging_without_standby) == Some(true)
                {
                    // Even once this node is back in step, writes acknowledged meanwhile may
                    // not be here until the Primary sees it confirm.
                    return Some(
                        "the Primary was acknowledging writes without this node when it last \
                         answered (synchronous replication had fallen back to continuous)"
                            .into(),
                    );
                }
                match view.in_step_at_ms {
                    Some(at) if now.wall_ms - at < timeout.as_millis() as i64 => None,
                    Some(at) => Some(format!(
                        "this node holds the Primary's writes only up to {} ms ago ({}), longer \
                         than the Primary's synchronous timeout {timeout}: the Primary may have \
                         acknowledged writes without it",
                        now.wall_ms - at,
                        reason(view)
                    )),
                    None => Some(format!(
                        "{}, so the Primary may have acknowledged writes without this node",
                        reason(view)
                    )),
                }
            }
            // The writes this node lacks are those committed after it was last in step; what
            // counts is how far behind it was at the Primary's last sign of life: its last
            // heartbeat answer, or a later answer of the stream (which left this node in step).
            (ReplicationMode::Continuous, _) => {
                let bound = config.lag_bound;
                if self.streaming_at_answer {
                    return None;
                }
                let view = &self.replication;
                let alive_ms = self.heartbeat.last_ok_ms.max(view.answered_at_ms);
                match (view.in_step_at_ms, alive_ms) {
                    (Some(at), Some(alive_ms)) if alive_ms - at > bound.as_millis() as i64 => {
                        Some(format!(
                            "when the Primary last answered, this node held its writes only up to \
                             {} ms before ({}), more than the lag bound {bound}",
                            alive_ms - at,
                            reason(view)
                        ))
                    }
                    (Some(_), _) => None,
                    (None, _) => Some(reason(view)),
                }
            }
        }
    }

    /// The automatic promotion after a detected failure, unless this node may lack writes the
    /// Primary acknowledged; then it stays Standby and says what an operator can do.
    fn promote_after_failure(&mut self, now: Now, why: &str, commands: &mut Vec<Command>) {
        match self.promotion_hold(now) {
            None => self.promote(now, why, commands),
            Some(hold) => self.hold_promotion(why, hold, commands),
        }
    }

    /// Stays Standby after a detected failure because this node may lack acknowledged writes
    /// (`hold` says why), and says what an operator can do.
    fn hold_promotion(&mut self, why: &str, hold: String, commands: &mut Vec<Command>) {
        let message = format!(
            "automatic promotion held (If Behind at Failure = standby): {why}, but this node may \
             lack writes the Primary acknowledged: {hold}. This node stays Standby. If the Primary returns, nothing is lost; if it does not, \
             promote this node with `tandem failover mode primary` (the writes it lacks stay on \
             the old Primary and are saved to its divergence file when it resyncs)"
        );
        log(commands, Level::Error, message.clone());
        commands.push(Command::Notify {
            notification: Notification::PromotionHeld,
            message,
        });
        self.promotion_held = Some(hold);
    }

    /// The Primary's ballot when it may fall back from synchronous replication (as its last
    /// heartbeat answer told): then the witnesses must record this node's promotion first.
    fn promotion_record_needed(&self) -> Option<Ballot> {
        let primary = self.followed.as_ref()?;
        let falls_back = primary.replication == Some(ReplicationMode::Synchronous)
            && primary.on_standby_lost == Some(OnStandbyLost::Continuous);
        (falls_back && self.durable.config.on_behind == OnBehind::Standby)
            .then(|| Ballot::new(primary.epoch, primary.node_id.clone()))
    }

    fn witnesses_answered(
        &mut self,
        now: Now,
        reaching_primary: Option<String>,
        promotion: PromotionRecord,
        commands: &mut Vec<Command>,
    ) {
        if !self.heartbeat.awaiting_witnesses {
            return;
        }
        self.heartbeat.awaiting_witnesses = false;
        if self.status.state != State::Standby {
            return;
        }
        let primary = self.durable.config.primary_text().unwrap_or_default();
        match reaching_primary {
            Some(witness) => {
                log(
                    commands,
                    Level::Warn,
                    format!(
                        "witness {witness} still reaches {primary}: only the link between this \
                         node and the Primary failed; staying Standby"
                    ),
                );
                // Start counting again: the next run of failures asks the witnesses again.
                self.heartbeat.failures = 0;
                self.heartbeat.detected = false;
            }
            None => {
                let why = format!(
                    "{primary} missed {} consecutive heartbeats and no witness reaches it",
                    self.heartbeat.failures
                );
                match promotion {
                    PromotionRecord::Granted => {
                        let why = format!(
                            "{why}; the witnesses recorded this promotion, so the Primary cannot \
                             have gone on without this node"
                        );
                        self.promote(now, &why, commands);
                    }
                    PromotionRecord::Refused(reason) => {
                        self.hold_promotion(
                            &why,
                            format!("the witnesses did not record this promotion: {reason}"),
                            commands,
                        );
                    }
                    PromotionRecord::NotAsked | PromotionRecord::Unsupported => {
                        self.promote_after_failure(now, &why, commands)
                    }
                }
            }
        }
    }

    fn sync_finished(
        &mut self,
        trigger: SyncTrigger,
        outcome: SyncOutcome,
        commands: &mut Vec<Command>,
    ) {
        if trigger == SyncTrigger::Scheduled {
            self.sync_running = false;
        }
        match outcome {
            SyncOutcome::Succeeded {
                summary,
                source_epoch,
            } => {
                if source_epoch > self.durable.epoch && self.status.state != State::Active {
                    // The synced history carries the source's epoch; remember it durably so a
                    // later promotion goes above it even after a restart.
                    self.durable.epoch = source_epoch;
                    self.persist(commands);
                }
                commands.push(Command::Notify {
                    notification: Notification::SyncCompleted,
                    message: summary,
                });
            }
            SyncOutcome::Failed { reason } => commands.push(Command::Notify {
                notification: Notification::SyncFailed,
                message: reason,
            }),
            SyncOutcome::Skipped { reason } => log(
                commands,
                Level::Warn,
                format!("{trigger:?} sync skipped: {reason}").to_lowercase(),
            ),
        }
    }

    /// Saves a new configuration (guide: Save and Apply). Saving re-anchors the schedule at the
    /// next StartTime.
    pub fn configure(
        &mut self,
        now: Now,
        config: HaConfig,
    ) -> Result<(Vec<ConfigWarning>, Vec<Command>), ConfigError> {
        self.configure_with(now, config, Guard::Checked)
    }

    /// [`Self::configure`], where `guard` says whether a role change that would break "one
    /// Active node" is refused (with the reason and the fix) or carried out anyway.
    pub fn configure_with(
        &mut self,
        now: Now,
        config: HaConfig,
        guard: Guard,
    ) -> Result<(Vec<ConfigWarning>, Vec<Command>), ConfigError> {
        let warnings = config.validate()?;
        let mut commands = Vec::new();
        let before = self.durable.config.clone();
        let role_changed = before.mode != config.mode
            || before.node_status != config.node_status
            || before.enabled != config.enabled;
        if self.started
            && role_changed
            && guard == Guard::Checked
            && let Some(refusal) = self.refuse_role(now, &before, &config)
        {
            return Err(refusal);
        }
        let active_in_group = self.status.state == State::Active && self.status.ha_enabled;
        self.durable.config = config;
        self.durable.schedule_anchor_ms =
            Some(next_start_time(now.wall_ms, self.durable.config.start_time));
        if role_changed {
            self.durable.fenced = None;
        }
        log(
            &mut commands,
            Level::Info,
            format!(
                "HA configuration saved: HA {}, mode {}, next scheduled sync from StartTime {} GMT",
                if self.durable.config.enabled {
                    "enabled"
                } else {
                    "disabled"
                },
                self.durable.config.mode,
                self.durable.config.start_time
            ),
        );
        self.reschedule(now);
        if before.heartbeat_interval != self.durable.config.heartbeat_interval
            || before.primary != self.durable.config.primary
        {
            self.heartbeat.next_at_ms = now.monotonic_ms;
        }
        if !self.started {
            self.persist(&mut commands);
            return Ok((warnings, commands));
        }
        let target = if self.durable.fenced.is_some() {
            State::NotAvailable
        } else {
            self.configured_state()
        };
        if target == State::Active && self.durable.config.enabled && !active_in_group {
            // Entering Active in the HA group from anything else takes a fresh ballot: a
            // Secondary set to Active or made Primary, HA enabled on a standalone node.
            let why = "the HA configuration was changed by an operator".to_owned();
            self.checking_peers = false;
            self.promote(now, &why, &mut commands);
        } else if target == State::Active && !self.durable.config.enabled {
            // HA disabled: the node leaves the HA group and serves standalone in the epoch it
            // has. It takes no ballot, so it fences no one and no peer counts it as Active.
            self.checking_peers = false;
            self.persist(&mut commands);
            let was = self.status;
            self.serve(State::Active, &mut commands);
            if was.ha_enabled {
                log(
                    &mut commands,
                    Level::Warn,
                    format!(
                        "HA disabled: this node left the HA group and serves standalone (it was \
                         {}); it takes no ballot, fences no node, and the traffic controller \
                         does not fail over to it. Writes made here do not replicate: when HA \
                         is enabled again, a sync from the Primary saves them to a divergence \
                         export",
                        was.state
                    ),
                );
            }
        } else {
            self.persist(&mut commands);
            if target != State::Active {
                self.checking_peers = false;
            }
            self.serve(target, &mut commands);
        }
        if self.promotion_held.is_some() {
            if self.durable.config.on_failure != OnFailure::Promote {
                self.promotion_held = None;
            } else if self.status.state == State::Standby
                && self.heartbeat.detected
                && self.promotion_hold(now).is_none()
            {
                // E.g. If Behind at Failure changed to promote while the Primary is still gone.
                self.promote(
                    now,
                    "the Primary had failed, and the saved HA configuration no longer holds the \
                     promotion",
                    &mut commands,
                );
            }
        }
        self.reconcile_follow(&mut commands);
        Ok((warnings, commands))
    }

    /// `tandem failover mode primary|secondary` (guide: Table 5).
    pub fn operator(&mut self, now: Now, command: OperatorCommand) -> Result<Vec<Command>, String> {
        self.operator_with(now, command, Guard::Checked)
    }

    /// [`Self::operator`], where `guard` says whether a command that would break "one Active
    /// node" is refused (with the reason and the fix) or carried out anyway.
    pub fn operator_with(
        &mut self,
        now: Now,
        command: OperatorCommand,
        guard: Guard,
    ) -> Result<Vec<Command>, String> {
        if !self.started {
            return Err("the HA controller has not started yet; try again in a moment".into());
        }
        if guard == Guard::Checked && self.durable.config.enabled {
            let active_in_group = self.status.state == State::Active && self.status.ha_enabled;
            let refusal = match command {
                OperatorCommand::ModePrimary if !active_in_group => {
                    self.refuse_entering_active(now)
                }
                OperatorCommand::ModeSecondary => self.refuse_leaving_active(now),
                OperatorCommand::ModePrimary => None,
            };
            if let Some(refusal) = refusal {
                return Err(format!("refused: {refusal}"));
            }
        }
        let mut commands = Vec::new();
        match command {
            OperatorCommand::ModePrimary => {
                let was = self.status;
                self.durable.config.mode = Mode::Primary;
                self.durable.config.node_status = NodeStatusSetting::Standby;
                self.checking_peers = false;
                let enabled = self.durable.config.enabled;
                // Outside the HA group a mode is only a setting (the guide's upgrade makes the
                // Secondary Primary for a while): no ballot is taken.
                if !enabled || (was.state == State::Active && self.durable.fenced.is_none()) {
                    self.persist(&mut commands);
                    self.serve(State::Active, &mut commands);
                    let epoch = self.durable.epoch;
                    log(
                        &mut commands,
                        Level::Info,
                        if enabled {
                            format!(
                                "failover mode primary: already Active in epoch {epoch}; mode is \
                                 Primary"
                            )
                        } else {
                            format!(
                                "failover mode primary with HA disabled: mode is Primary; this \
                                 node serves standalone in epoch {epoch} and takes no ballot"
                            )
                        },
                    );
                } else {
                    self.promote(
                        now,
                        "an operator ran `failover mode primary`",
                        &mut commands,
                    );
                }
            }
            OperatorCommand::ModeSecondary => {
                if self.durable.config.primary.is_none() {
                    return Err(format!(
                        "this node has no Primary to follow (--primary is not set); set it to \
                         the Active node instead: {}",
                        self.follow_active_advice(None)
                    ));
                }
                self.durable.config.mode = Mode::Secondary;
                self.durable.config.node_status = NodeStatusSetting::Standby;
                self.durable.fenced = None;
                self.promotion_held = None;
                self.checking_peers = false;
                self.heartbeat = Heartbeat {
                    next_at_ms: now.monotonic_ms,
                    ..Heartbeat::default()
                };
                self.persist(&mut commands);
                if self.durable.config.enabled {
                    self.serve(State::Standby, &mut commands);
                } else {
                    self.serve(State::Active, &mut commands);
                }
                log(
                    &mut commands,
                    Level::Info,
                    format!(
                        "failover mode secondary: Standby, following {}; the sync schedule was \
                         not re-anchored",
                        self.durable.config.primary_text().unwrap_or_default()
                    ),
                );
                // The schedule keeps its anchor (the guide: this command does not restart the
                // scheduler).
                if self.next_sync_ms.is_none() {
                    self.reschedule(now);
                }
            }
        }
        self.reconcile_follow(&mut commands);
        Ok(commands)
    }
}

/// How a peer's view reached this node.
enum Contact {
    /// Its heartbeat to this node (a message that may have waited in a queue).
    Inbound,
    /// The answer to this node's heartbeat, sent at monotonic `sent_at_ms`.
    Heartbeat {
        address: Option<String>,
        sent_at_ms: u64,
    },
    /// The answer to this node's peer check at `address`, started at `sent_at_ms`.
    Check { address: String, sent_at_ms: u64 },
}

impl Contact {
    fn sent_at_ms(&self) -> Option<u64> {
        match self {
            Contact::Inbound => None,
            Contact::Heartbeat { sent_at_ms, .. } | Contact::Check { sent_at_ms, .. } => {
                Some(*sent_at_ms)
            }
        }
    }

    fn address(&self) -> Option<&str> {
        match self {
            Contact::Inbound => None,
            Contact::Heartbeat { address, .. } => address.as_deref(),
            Contact::Check { address, .. } => Some(address),
        }
    }
}

#[path = "machine_cluster.rs"]
mod cluster_rules;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
