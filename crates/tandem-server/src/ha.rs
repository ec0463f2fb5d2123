//! The HA runtime: the thin, effectful shell around the pure controller in `tandem-ha`.
//!
//! One task owns the [`Controller`]. It feeds it ticks, the results of the work it started
//! (heartbeats, peer checks, syncs, witness questions), peers' heartbeats, configuration saves
//! and operator commands, one at a time, and carries out the commands it returns in order,
//! awaiting each: `Persist` is durable before the `Serve` after it. Slow work (network, syncs)
//! runs in spawned tasks that report back as events, so a hung peer never stalls the controller.

use crate::notify::{Mail, Mailer};
use crate::state::AppState;
use serde::Serialize;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
pub(crate) use tandem_clock::wall_clock_ms;
use tandem_ha::config::{
    ConfigChange, ConfigError, ConfigWarning, HaConfig, OnStandbyLost, ReplicationMode,
};
use tandem_ha::machine::{
    Command, Controller, Durable, Event, FailOverControls, Guard, Level, Notification, Now,
    OperatorCommand, PeerView, Snapshot, SyncOutcome, SyncTrigger,
};
use tandem_ha::{NodeStatus, State};
use tandem_repl::follow::{self, FollowEnd, FollowStatus};
use tandem_repl::protocol::SwitchoverStep;
use tandem_repl::sync::SyncOptions;
use tandem_repl::{HaLink, LOG_MODULE, Replication, Session};
use tandem_store::history::{self, Trigger};
use tandem_store::trust::{self, Endpoint};
use tandem_store::{NodeStore, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the controller is ticked. Heartbeat and schedule times are honoured to this
/// precision; 50 ms keeps promotion within the 200 ms the failover benchmark allows.
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);
/// Inputs waiting for the controller. Peers' heartbeats beyond this are dropped (the next one
/// brings the same news); operator requests wait for room.
pub const INPUTS_QUEUED_MAX: usize = 256;
/// Time a peer gets to answer the startup check before the node serves without its answer.
pub const PEER_CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// Bounds on one heartbeat's round trip: the Re-check interval, within these limits (a dead
/// process fails at once; a hung one takes the timeout).
const HEARTBEAT_TIMEOUT_MIN: Duration = Duration::from_millis(200);
const HEARTBEAT_TIMEOUT_MAX: Duration = Duration::from_secs(10);
/// Wait before a continuous follower reconnects after its session failed (the Primary is down
/// or unreachable): short, so the stream resumes quickly, but not a busy loop.
const FOLLOW_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Wait before a follower tries again after the fallback sync was refused or failed (e.g. a
/// divergence that needs an operator): the reason is in the log, retrying fast would only
/// repeat it.
const FOLLOW_REFUSED_PAUSE: Duration = Duration::from_secs(60);
/// Wait before asking the witnesses again to record a fallback they refused or did not answer:
/// writes wait meanwhile, so not long; but a witness that refuses will refuse again.
const DEGRADE_RECORD_RETRY: Duration = Duration::from_secs(1);
/// The node-local setting that holds the controller's durable state (JSON).
pub const DURABLE_SETTING: &str = "ha.durable";
pub use crate::notify::NOTIFICATIONS_MODULE;

/// The stored durable state, or the defaults for a node that never saved one. The epoch is at
/// least the newest epoch in the replicated change log.
pub async fn load_durable(local: &NodeStore, log_epoch: i64) -> StoreResult<Durable> {
    let stored = local
        .database()
        .read(|conn| history::setting(conn, DURABLE_SETTING))
        .await?;
    let mut durable = match stored {
        Some(json) => serde_json::from_str::<Durable>(&json).map_err(|error| {
            StoreError::Corrupt(format!(
                "the stored HA configuration ({DURABLE_SETTING}) cannot be read: {error}"
            ))
        })?,
        None => Durable::new(HaConfig::default(), 1),
    };
    // Saved by an older version: the epoch it saved was the newest it knew, held or synced.
    durable.held_epoch.get_or_insert(durable.epoch);
    durable.epoch = durable.epoch.max(log_epoch).max(1);
    Ok(durable)
}

pub async fn save_durable(local: &NodeStore, durable: &Durable) -> StoreResult<()> {
    let json = serde_json::to_string(durable)
        .map_err(|error| StoreError::Corrupt(format!("cannot encode the HA state: {error}")))?;
    local
        .database()
        .write(move |conn| history::set_setting(conn, DURABLE_SETTING, &json))
        .await
}

/// What saving a configuration returns.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Configured {
    pub warnings: Vec<ConfigWarning>,
    pub snapshot: Snapshot,
}

/// How long an Active node holds its writes closed for a switchover that does not finish (the
/// initiator died): then it asks the initiator how it stands, and reopens unless the initiator
/// became Active in a newer epoch (in which case it is fenced).
pub const SWITCHOVER_HOLD_MAX: Duration = Duration::from_secs(60);

// One input at a time waits in a bounded queue; boxing the configuration change (the largest
// variant) would save nothing that matters.
#[allow(clippy::large_enum_variant)]
enum Input {
    Event(Event),
    Switchover {
        step: SwitchoverStep,
        peer_name: String,
        peer_endpoints: Vec<String>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The switchover hold expired; the initiator's view, if it answered.
    HoldExpired {
        initiator: Option<PeerView>,
    },
    /// The peers answered the check made for a refused request; judge it again.
    Refreshed {
        events: Vec<Event>,
        request: Request,
    },
    /// The witnesses answered a record about this node's own ballot.
    Recorded {
        record: tandem_ha::record::RecordKind,
        generation: i64,
        outcome: crate::witness::Recorded,
    },
    /// An operator's configuration change or role command.
    Request(Request),
}

/// The handle the listeners, the control socket and replication use; cheap to clone.
#[derive(Clone)]
pub struct HaHandle {
    inputs: mpsc::Sender<Input>,
    snapshot: watch::Receiver<Snapshot>,
    view: Arc<RwLock<PeerView>>,
    follower: watch::Receiver<FollowStatus>,
    standby_holds: watch::Receiver<i64>,
    /// Nonzero while synchronous replication acknowledges writes without the Standby.
    sync_degraded: Arc<std::sync::atomic::AtomicI64>,
}

impl HaHandle {
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// The position a following Standby holds (on the node it follows).
    pub fn standby_holds(&self) -> watch::Receiver<i64> {
        self.standby_holds.clone()
    }

    /// The continuous follower's state (default when this node does not follow).
    pub fn follower(&self) -> FollowStatus {
        self.follower.borrow().clone()
    }

    pub async fn configure(&self, change: ConfigChange) -> Result<Configured, ConfigureError> {
        let (reply, answer) = oneshot::channel();
        self.inputs
            .send(Input::Request(Request::Configure { change, reply }))
            .await
            .map_err(|_| ConfigureError::Stopped)?;
        match answer.await {
            Ok(Ok(configured)) => Ok(configured),
            Ok(Err(error)) => Err(ConfigureError::Invalid(error)),
            Err(_) => Err(ConfigureError::Stopped),
        }
    }

    pub async fn operator(
        &self,
        command: OperatorCommand,
        guard: Guard,
    ) -> Result<Snapshot, String> {
        let (reply, answer) = oneshot::channel();
        self.inputs
            .send(Input::Request(Request::Operator {
                command,
                guard,
                reply,
            }))
            .await
            .map_err(|_| "the HA controller has stopped".to_owned())?;
        answer
            .await
            .unwrap_or_else(|_| Err("the HA controller has stopped".into()))
    }

    /// Reports the end of a manual sync (Run Sync Now) so a promotion goes above the epoch it
    /// brought.
    pub fn sync_finished(&self, outcome: SyncOutcome) {
        let _ = self.inputs.try_send(Input::Event(Event::SyncFinished {
            trigger: SyncTrigger::Manual,
            outcome,
        }));
    }
}

impl HaLink for HaHandle {
    fn view(&self) -> PeerView {
        let mut view = self
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // The clock is read now: peers compare it with theirs.
        view.wall_clock_ms = wall_clock_ms();
        // Read now too: a Standby must not take over while this node goes on without it.
        if view.replication == Some(ReplicationMode::Synchronous) {
            view.acknowledging_without_standby = Some(
                self.sync_degraded
                    .load(std::sync::atomic::Ordering::Acquire)
                    != 0,
            );
        }
        view
    }

    fn peer_seen(&self, peer: PeerView) {
        let _ = self.inputs.try_send(Input::Event(Event::PeerSeen(peer)));
    }

    fn switchover(
        &self,
        step: SwitchoverStep,
        peer_name: String,
        peer_endpoints: Vec<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> {
        let inputs = self.inputs.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            inputs
                .send(Input::Switchover {
                    step,
                    peer_name,
                    peer_endpoints,
                    reply,
                })
                .await
                .map_err(|_| "the HA controller has stopped".to_owned())?;
            answer
                .await
                .unwrap_or_else(|_| Err("the HA controller has stopped".into()))
        })
    }
}

/// Why Save and Apply did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    /// Every problem with the change (or the "one Active node" refusal, with its fix).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("the HA controller has stopped")]
    Stopped,
}

impl ConfigureError {
    /// A role change refused for "one Active node" (not a usage error: the input is valid).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ConfigureError::Invalid(error) if error.to_string().contains("refused: "))
    }
}

/// An operator's request, kept while the peers are asked before it is judged again.
// One lives for a peer check, now and then: boxing the configuration would save nothing.
#[allow(clippy::large_enum_variant)]
enum Request {
    Configure {
        change: ConfigChange,
        reply: oneshot::Sender<Result<Configured, ConfigError>>,
    },
    Operator {
        command: OperatorCommand,
        guard: Guard,
        reply: oneshot::Sender<Result<Snapshot, String>>,
    },
}

/// This node's own records at the witnesses, as a Primary of synchronous replication with the
/// continuous fallback.
#[derive(Debug, Default)]
struct Records {
    /// A request is out: one at a time, so a late answer never overtakes a newer request.
    in_flight: bool,
    /// The generation of the fallback the witnesses recorded and not yet cleared.
    fallback: Option<i64>,
    /// The highest position acknowledged without the Standby's confirmation: the record is
    /// cleared only once the Standby holds it.
    unconfirmed_max: i64,
    /// After a start: clear any record of this ballot a crash left standing, once in step.
    recover_at_start: bool,
    /// Not before (after a refusal or no answer).
    retry_at: Option<Instant>,
    /// A refusal was logged (once per episode).
    refusal_logged: bool,
}

/// A switchover in progress on the Active node that hands over.
struct Hold {
    initiator: String,
    initiator_name: String,
    until: Instant,
    /// Whether the device gate was open before (restored on resume).
    devices_were_open: bool,
    expiring: bool,
}

/// The clock the controller sees: monotonic since the runtime started, and the wall clock.
#[derive(Clone, Copy)]
struct Clock {
    origin: Instant,
}

/// One peer check: this node's view out, the peer's back, over a kept session.
async fn ask_peer(
    replication: Replication,
    endpoint: Endpoint,
    ours: PeerView,
    sessions: Arc<std::sync::Mutex<std::collections::HashMap<String, Session>>>,
) -> Event {
    let address = endpoint.to_string();
    let taken = lock_sessions(&sessions).remove(&address);
    let ask = async {
        let mut session = match taken {
            Some(session) => session,
            None => replication
                .open_ha_session(&endpoint)
                .await
                .map_err(|error| error.to_string())?,
        };
        let view = replication
            .heartbeat(&mut session, &ours)
            .await
            .map_err(|error| error.to_string())?;
        Ok::<_, String>((session, view))
    };
    match tokio::time::timeout(PEER_CHECK_TIMEOUT, ask).await {
        Ok(Ok((session, view))) => {
            lock_sessions(&sessions).insert(address.clone(), session);
            Event::PeerAnswered { address, view }
        }
        Ok(Err(reason)) => Event::PeerUnreachable { address, reason },
        Err(_) => Event::PeerUnreachable {
            address,
            reason: format!("no answer within {} ms", PEER_CHECK_TIMEOUT.as_millis()),
        },
    }
}

fn lock_sessions(
    sessions: &std::sync::Mutex<std::collections::HashMap<String, Session>>,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Session>> {
    sessions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Clock {
    fn now(&self) -> Now {
        Now {
            monotonic_ms: self.origin.elapsed().as_millis() as u64,
            wall_ms: wall_clock_ms(),
        }
    }
}

pub struct HaRuntime {
    controller: Controller,
    node_id: String,
    state: AppState,
    replication: Replication,
    status: watch::Sender<NodeStatus>,
    snapshot: watch::Sender<Snapshot>,
    view: Arc<RwLock<PeerView>>,
    inputs: mpsc::Receiver<Input>,
    sender: mpsc::Sender<Input>,
    clock: Clock,
    /// The open session heartbeats reuse; reopened after any failure.
    heartbeat_session: Arc<tokio::sync::Mutex<Option<Session>>>,
    hold: Option<Hold>,
    /// Continuous replication: the follower task, and what it reports.
    follower: Option<tokio::task::JoinHandle<()>>,
    follow_status: Arc<watch::Sender<FollowStatus>>,
    /// Synchronous replication on an Active node: set by the store while writes are
    /// acknowledged without the Standby's confirmation; and whether the alarm was raised.
    sync_degraded: Arc<std::sync::atomic::AtomicI64>,
    sync_degraded_reported: bool,
    /// Synchronous: since when a head (the second value) has waited for the Standby.
    unconfirmed_since: Option<(Instant, i64)>,
    /// Sends the notifications Notify On selects, off the controller's path.
    mailer: Mailer,
    /// The freezes of this process reported to the controller so far (their generation), and
    /// whether that generation was reported at all.
    frozen_reported: u64,
    frozen_seen: bool,
    /// Synchronous replication's fallback records at the witnesses (`tandem_ha::record`).
    records: Records,
    /// Open sessions of the periodic peer checks, by address (each used by one check at a time:
    /// checks never overlap).
    peer_sessions: Arc<std::sync::Mutex<std::collections::HashMap<String, Session>>>,
}

impl Drop for HaRuntime {
    fn drop(&mut self) {
        if let Some(task) = self.follower.take() {
            task.abort();
        }
    }
}

impl HaRuntime {
    /// Builds the runtime and its handle, and attaches the handle to replication.
    pub fn new(
        durable: Durable,
        node_id: String,
        state: AppState,
        replication: Replication,
        status: watch::Sender<NodeStatus>,
    ) -> (Self, HaHandle) {
        let controller = Controller::new(node_id.clone(), durable);
        let (sender, inputs) = mpsc::channel(INPUTS_QUEUED_MAX);
        let (snapshot, snapshot_receiver) = watch::channel(controller.snapshot());
        let view = Arc::new(RwLock::new(PeerView {
            node_name: state.node_name.clone(),
            node_id: node_id.clone(),
            ha_enabled: controller.status().ha_enabled,
            mode: controller.status().mode,
            state: controller.status().state,
            epoch: controller.epoch(),
            wall_clock_ms: 0,
            replication: Some(controller.durable().config.replication),
            on_standby_lost: Some(controller.durable().config.on_standby_lost),
            synchronous_timeout: Some(controller.durable().config.synchronous_timeout),
            acknowledging_without_standby: None,
            known: Vec::new(),
            fail_over_controls: Some(FailOverControls::of(&controller.durable().config)),
        }));
        let follow_status = Arc::new(watch::Sender::new(FollowStatus::default()));
        let mailer = Mailer::start(state.local.clone());
        let sync_degraded = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let handle = HaHandle {
            inputs: sender.clone(),
            snapshot: snapshot_receiver,
            view: view.clone(),
            follower: follow_status.subscribe(),
            standby_holds: replication.follower_acked(),
            sync_degraded: sync_degraded.clone(),
        };
        replication.attach_ha(Arc::new(handle.clone()));
        let runtime = Self {
            controller,
            node_id,
            state,
            replication,
            status,
            snapshot,
            view,
            inputs,
            sender,
            clock: Clock {
                origin: Instant::now(),
            },
            heartbeat_session: Arc::new(tokio::sync::Mutex::new(None)),
            hold: None,
            follower: None,
            follow_status,
            sync_degraded,
            sync_degraded_reported: false,
            unconfirmed_since: None,
            mailer,
            frozen_reported: 0,
            frozen_seen: false,
            peer_sessions: Arc::default(),
            records: Records {
                recover_at_start: true,
                ..Records::default()
            },
        };
        (runtime, handle)
    }

    /// Starts the controller: what it serves is decided before the listeners accept anything.
    pub async fn start(&mut self) {
        // Stream rows of Sync History that a stopped process left running end here, whether or
        // not this run streams.
        if let Err(error) = self
            .state
            .local
            .database()
            .write(history::interrupt_streams)
            .await
        {
            tracing::warn!(%error, "cannot mark interrupted replication streams in Sync History");
        }
        let now = self.clock.now();
        let commands = self.controller.handle(now, Event::Started);
        self.carry_out(commands).await;
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(TICK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let input = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                _ = ticks.tick() => Input::Event(Event::Tick),
                Some(input) = self.inputs.recv() => input,
            };
            self.check_frozen().await;
            let now = self.clock.now();
            match input {
                Input::Event(Event::Tick) => {
                    self.check_hold();
                    self.check_synchronous().await;
                    let commands = self.controller.handle(now, Event::Tick);
                    self.carry_out(commands).await;
                }
                Input::Switchover {
                    step,
                    peer_name,
                    peer_endpoints,
                    reply,
                } => {
                    let result = self.switchover(step, peer_name, peer_endpoints).await;
                    let _ = reply.send(result);
                }
                Input::HoldExpired { initiator } => self.hold_expired(initiator).await,
                Input::Recorded {
                    record,
                    generation,
                    outcome,
                } => self.recorded(record, generation, outcome).await,
                Input::Event(event) => {
                    if matches!(event, Event::HeartbeatFailed { .. }) {
                        self.state.metrics.heartbeat_failed();
                    }
                    if matches!(
                        event,
                        Event::HeartbeatAnswered(_) | Event::HeartbeatFailed { .. }
                    ) {
                        self.report_replication(now).await;
                    }
                    let commands = self.controller.handle(now, event);
                    self.carry_out(commands).await;
                }
                Input::Request(request) => self.request(request, false).await,
                Input::Refreshed { events, request } => {
                    for event in events {
                        let commands = self.controller.handle(self.clock.now(), event);
                        self.carry_out(commands).await;
                    }
                    self.request(request, true).await
                }
            }
        }
    }

    /// An operator's configuration change or role command. One refused for "one Active node"
    /// may rest on knowledge a moment old: the peers are asked (in a task, so the controller
    /// keeps ticking) and the request is judged again once they answered, only then finally.
    async fn request(&mut self, request: Request, refreshed: bool) {
        let request = match request {
            Request::Configure { change, reply } => {
                match self.configure(&change, refreshed).await {
                    Ok(result) => {
                        let _ = reply.send(result);
                        return;
                    }
                    Err(()) => Request::Configure { change, reply },
                }
            }
            Request::Operator {
                command,
                guard,
                reply,
            } => match self.operator(command, guard, refreshed).await {
                Ok(result) => {
                    let _ = reply.send(result);
                    return;
                }
                Err(()) => Request::Operator {
                    command,
                    guard,
                    reply,
                },
            },
        };
        let asking = self.ask_peers();
        let inputs = self.sender.clone();
        tokio::spawn(async move {
            let events = asking.await;
            let _ = inputs.send(Input::Refreshed { events, request }).await;
        });
    }

    /// Save and Apply. `Err(())`: refused for "one Active node" on what this node knew, not yet
    /// judged again after asking the peers.
    async fn configure(
        &mut self,
        change: &ConfigChange,
        refreshed: bool,
    ) -> Result<Result<Configured, ConfigError>, ()> {
        let guard = if change.force {
            Guard::Forced
        } else {
            Guard::Checked
        };
        let attempt = |runtime: &mut Self| {
            let now = runtime.clock.now();
            runtime
                .controller
                .durable()
                .config
                .with(change)
                .and_then(|(config, _)| runtime.controller.configure_with(now, config, guard))
        };
        let (warnings, commands) = match attempt(self) {
            Err(error) if !refreshed && error.to_string().contains("refused: ") => return Err(()),
            Err(error) => return Ok(Err(error)),
            Ok(done) => done,
        };
        self.carry_out(commands).await;
        // Replication settings apply to a running Active node at once.
        if self.controller.status().state == State::Active {
            self.state.db.set_ack_gate(self.ack_gate());
        }
        Ok(Ok(Configured {
            warnings,
            snapshot: self.controller.snapshot(),
        }))
    }

    /// `failover mode primary|secondary`; `Err(())` as for [`Self::configure`].
    async fn operator(
        &mut self,
        command: OperatorCommand,
        guard: Guard,
        refreshed: bool,
    ) -> Result<Result<Snapshot, String>, ()> {
        let commands = match self
            .controller
            .operator_with(self.clock.now(), command, guard)
        {
            Err(error) if !refreshed && error.starts_with("refused: ") => return Err(()),
            Err(error) => return Ok(Err(error)),
            Ok(commands) => commands,
        };
        self.carry_out(commands).await;
        Ok(Ok(self.controller.snapshot()))
    }

    /// A switchover step on the node that hands over.
    async fn switchover(
        &mut self,
        step: SwitchoverStep,
        peer_name: String,
        peer_endpoints: Vec<String>,
    ) -> Result<(), String> {
        let status = self.controller.status();
        match step {
            SwitchoverStep::Quiesce => {
                if status.state != State::Active || !status.ha_enabled {
                    return Err(format!(
                        "{} is {} (HA {}); only an Active node with HA enabled hands over",
                        self.state.node_name,
                        status.state,
                        if status.ha_enabled {
                            "enabled"
                        } else {
                            "disabled"
                        }
                    ));
                }
                let Some(initiator) = peer_endpoints.first().cloned() else {
                    return Err("the initiator is not in this node's Trusted Hosts".into());
                };
                let devices_were_open = self
                    .hold
                    .as_ref()
                    .map_or(self.state.device_gate.is_open(), |hold| {
                        hold.devices_were_open
                    });
                self.state.device_gate.set_open(false);
                let reason = format!(
                    "node {} is handing over to {peer_name} (switchover); retry on the Active node",
                    self.state.node_name
                );
                self.state
                    .db
                    .set_write_gate(Some(reason))
                    .await
                    .map_err(|error| format!("cannot close writes: {error}"))?;
                self.hold = Some(Hold {
                    initiator,
                    initiator_name: peer_name.clone(),
                    until: Instant::now() + SWITCHOVER_HOLD_MAX,
                    devices_were_open,
                    expiring: false,
                });
                self.log(
                    Level::Warn,
                    &format!(
                        "switchover to {peer_name}: new device connections refused and writes \
                         closed; every acknowledged write is in the position handed over"
                    ),
                )
                .await;
                Ok(())
            }
            SwitchoverStep::Resume => {
                self.release_hold(&format!("{peer_name} abandoned the switchover"))
                    .await;
                Ok(())
            }
            SwitchoverStep::Demote => {
                let Some(primary) = peer_endpoints.first().cloned() else {
                    return Err("the initiator is not in this node's Trusted Hosts".into());
                };
                let change = ConfigChange {
                    enabled: Some(true),
                    mode: Some(tandem_ha::Mode::Secondary),
                    node_status: Some(tandem_ha::config::NodeStatusSetting::Standby),
                    primary: Some(primary.clone()),
                    ..ConfigChange::default()
                };
                let now = self.clock.now();
                // The initiator is Active in a newer epoch by now, though this node may not
                // have heard of it yet: leaving Active here never leaves the fleet without one.
                let (_, commands) = self
                    .controller
                    .durable()
                    .config
                    .with(&change)
                    .and_then(|(config, _)| {
                        self.controller.configure_with(now, config, Guard::Forced)
                    })
                    .map_err(|error| error.to_string())?;
                self.carry_out(commands).await;
                if let Some(hold) = self.hold.take() {
                    self.state.device_gate.set_open(hold.devices_were_open);
                }
                self.log(
                    Level::Warn,
                    &format!(
                        "switchover: {peer_name} is Active now; this node is its Standby \
                         Secondary, following {primary}"
                    ),
                )
                .await;
                Ok(())
            }
        }
    }

    /// Ends a hold: writes and device connections open again if this node is still Active.
    async fn release_hold(&mut self, why: &str) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        self.state.device_gate.set_open(hold.devices_were_open);
        if self.controller.status().state == State::Active
            && let Err(error) = self.state.db.set_write_gate(None).await
        {
            self.log(Level::Error, &format!("cannot reopen writes: {error}"))
                .await;
        }
        self.log(
            Level::Warn,
            &format!("switchover hold released ({why}); serving as before"),
        )
        .await;
    }

    fn check_hold(&mut self) {
        let Some(hold) = self.hold.as_mut() else {
            return;
        };
        if hold.expiring || Instant::now() < hold.until {
            return;
        }
        hold.expiring = true;
        let initiator = hold.initiator.clone();
        let replication = self.replication.clone();
        let inputs = self.sender.clone();
        let ours = self.our_view();
        tokio::spawn(async move {
            let ask = async {
                let endpoint = Endpoint::parse(&initiator).ok()?;
                let mut session = replication.open_ha_session(&endpoint).await.ok()?;
                replication.heartbeat(&mut session, &ours).await.ok()
            };
            let initiator = tokio::time::timeout(PEER_CHECK_TIMEOUT, ask)
                .await
                .ok()
                .flatten();
            let _ = inputs.send(Input::HoldExpired { initiator }).await;
        });
    }

    /// The initiator never finished: if it became Active in a newer epoch this node is fenced
    /// (the controller decides); otherwise it serves on.
    async fn hold_expired(&mut self, initiator: Option<PeerView>) {
        let name = self
            .hold
            .as_ref()
            .map(|hold| hold.initiator_name.clone())
            .unwrap_or_default();
        if let Some(peer) = initiator {
            let commands = self
                .controller
                .handle(self.clock.now(), Event::PeerSeen(peer));
            self.carry_out(commands).await;
        }
        self.release_hold(&format!(
            "{name} did not finish the switchover within {} s",
            SWITCHOVER_HOLD_MAX.as_secs()
        ))
        .await;
    }

    fn publish(&self) {
        let status = self.controller.status();
        self.state.set_ballot(&self.controller.probe_ballot());
        self.state.db.set_freeze_threshold(
            self.controller
                .freeze_threshold_ms()
                .map(Duration::from_millis),
        );
        let view = PeerView {
            node_name: self.state.node_name.clone(),
            node_id: self.node_id.clone(),
            ha_enabled: status.ha_enabled,
            mode: status.mode,
            state: status.state,
            epoch: self.controller.epoch(),
            wall_clock_ms: self.clock.now().wall_ms,
            replication: Some(self.controller.durable().config.replication),
            on_standby_lost: Some(self.controller.durable().config.on_standby_lost),
            synchronous_timeout: Some(self.controller.durable().config.synchronous_timeout),
            acknowledging_without_standby: None,
            known: self.controller.known(self.clock.now()),
            fail_over_controls: Some(FailOverControls::of(&self.controller.durable().config)),
        };
        *self
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = view;
        let snapshot = self.controller.snapshot();
        self.snapshot.send_if_modified(|current| {
            let changed = *current != snapshot;
            if changed {
                *current = snapshot;
            }
            changed
        });
    }

    async fn carry_out(&mut self, commands: Vec<Command>) {
        for command in commands {
            if let Err(error) = self.carry_out_one(command).await {
                // A failed Persist must not be followed by the Serve that depends on it.
                tracing::error!(%error, "HA command failed; the rest of this step is abandoned");
                self.log(Level::Error, &format!("HA step abandoned: {error}"))
                    .await;
                break;
            }
        }
        self.publish();
    }

    async fn carry_out_one(&mut self, command: Command) -> Result<(), String> {
        match command {
            Command::Persist(durable) => save_durable(&self.state.local, &durable)
                .await
                .map_err(|error| format!("cannot save the HA state: {error}")),
            Command::Serve {
                status,
                epoch,
                primary,
            } => self.serve(status, epoch, primary).await,
            Command::CheckPeers => {
                self.check_peers();
                Ok(())
            }
            Command::ClearFrozen => {
                self.state.db.clear_frozen_through(self.frozen_reported);
                Ok(())
            }
            Command::SendHeartbeat { to } => {
                self.send_heartbeat(to);
                Ok(())
            }
            Command::StartSync { from, trigger } => {
                self.start_sync(from, trigger);
                Ok(())
            }
            Command::SkipSync { from, reason } => {
                let record = self
                    .state
                    .local
                    .database()
                    .write(move |conn| {
                        history::record_skipped(conn, &from, Trigger::Scheduled, &reason)
                    })
                    .await;
                if let Err(error) = record {
                    tracing::warn!(%error, "cannot record a skipped sync");
                }
                Ok(())
            }
            Command::AskWitnesses {
                primary,
                record_over,
            } => {
                self.ask_witnesses(primary, record_over);
                Ok(())
            }
            Command::Follow { from } => {
                self.follow(from);
                Ok(())
            }
            Command::FallBackAtPromotion => {
                self.fall_back_at_promotion();
                Ok(())
            }
            Command::Notify {
                notification,
                message,
            } => {
                self.notify(notification, &message).await;
                Ok(())
            }
            Command::Log { level, message } => {
                self.log(level, &message).await;
                Ok(())
            }
        }
    }

    /// Records a notification in the Notifications log and, when Notify On selects it, queues
    /// its e-mail.
    async fn notify(&self, notification: Notification, message: &str) {
        tracing::warn!(?notification, %message, "HA notification");
        let kind = serde_json::to_value(notification)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let line = format!("{kind}: {message}");
        if let Err(error) = self
            .state
            .local
            .log(NOTIFICATIONS_MODULE, "NOTICE", &line)
            .await
        {
            tracing::warn!(%error, "cannot record a notification");
        }
        let config = &self.controller.durable().config;
        if config.emails(notification) {
            let status = self.controller.status();
            let mail = Mail::compose(
                &self.state.node_name,
                notification,
                message,
                &status.state.to_string(),
                self.controller.epoch(),
            );
            self.mailer.enqueue(config, notification, mail).await;
        }
    }

    async fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => {
                tracing::info!(module = LOG_MODULE, "{message}");
                "INFO"
            }
            Level::Warn => {
                tracing::warn!(module = LOG_MODULE, "{message}");
                "WARN"
            }
            Level::Error => {
                tracing::error!(module = LOG_MODULE, "{message}");
                "ERROR"
            }
        };
        if let Err(error) = self.state.local.log(LOG_MODULE, level, message).await {
            tracing::warn!(%error, "cannot write the HighAvailability log");
        }
    }

    /// Opens or fences the node. Entering Active: the epoch new writes carry, the replicated
    /// identity, then writes open, then the probes pass. Leaving it: the probes fail first, then
    /// writes close (every write already queued commits; none after).
    async fn serve(
        &mut self,
        status: NodeStatus,
        epoch: i64,
        primary: Option<String>,
    ) -> Result<(), String> {
        let db = &self.state.db;
        if status.state == State::Active {
            // A batch from the old Primary must not land after writes open: stop following
            // first (a batch already queued on the writer commits before the gate opens).
            if let Some(task) = self.follower.take() {
                task.abort();
            }
            if self.status.borrow().state != State::Active {
                // Confirmations count only from now on (see `reset_follower_acked`).
                self.replication.reset_follower_acked();
                self.sync_degraded
                    .store(0, std::sync::atomic::Ordering::Release);
            }
            db.set_epoch(epoch);
            match self.state.identity.reload(db).await {
                Ok(true) => {
                    self.log(
                        Level::Info,
                        "serving the replicated server certificate and device CA",
                    )
                    .await
                }
                Ok(false) => {}
                Err(error) => {
                    self.log(
                        Level::Error,
                        &format!("cannot load the replicated TLS identity: {error}"),
                    )
                    .await
                }
            }
            self.state.set_elsewhere(None);
            db.set_ack_gate(self.ack_gate());
            db.set_write_gate(None)
                .await
                .map_err(|error| format!("cannot open writes: {error}"))?;
            self.status.send_replace(status);
        } else {
            self.status.send_replace(status);
            let hint = match (&primary, status.state) {
                (Some(hint), State::NotAvailable) => Some(hint.clone()),
                (Some(primary), _) => Some(format!("the Primary is {primary}")),
                (None, _) => None,
            };
            let reason = format!(
                "node {} is {} and does not accept writes{}",
                self.state.node_name,
                status.state,
                hint.as_ref()
                    .map(|hint| format!(" ({hint})"))
                    .unwrap_or_default()
            );
            self.state.set_elsewhere(hint);
            // Writes close first; then writes still waiting for a Standby are answered with an
            // error rather than acknowledged (see `Database::set_ack_gate`).
            let closed = db
                .set_write_gate(Some(reason))
                .await
                .map_err(|error| format!("cannot close writes: {error}"));
            db.set_ack_gate(None);
            closed?;
        }
        tracing::info!(state = %status.state, mode = %status.mode, epoch, "HA: serving");
        Ok(())
    }

    fn our_view(&self) -> PeerView {
        let status = self.controller.status();
        PeerView {
            node_name: self.state.node_name.clone(),
            node_id: self.node_id.clone(),
            ha_enabled: status.ha_enabled,
            mode: status.mode,
            state: status.state,
            epoch: self.controller.epoch(),
            wall_clock_ms: self.clock.now().wall_ms,
            replication: Some(self.controller.durable().config.replication),
            on_standby_lost: Some(self.controller.durable().config.on_standby_lost),
            synchronous_timeout: Some(self.controller.durable().config.synchronous_timeout),
            acknowledging_without_standby: None,
            known: self.controller.known(self.clock.now()),
            fail_over_controls: Some(FailOverControls::of(&self.controller.durable().config)),
        }
    }

    fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(
            self.controller
                .durable()
                .config
                .recheck_interval
                .as_millis(),
        )
        .clamp(HEARTBEAT_TIMEOUT_MIN, HEARTBEAT_TIMEOUT_MAX)
    }

    fn send_heartbeat(&self, to: String) {
        let replication = self.replication.clone();
        let sessions = self.heartbeat_session.clone();
        let inputs = self.sender.clone();
        let timeout = self.heartbeat_timeout();
        let mut ours = self.our_view();
        tokio::spawn(async move {
            let attempt = async {
                let endpoint = Endpoint::parse(&to).map_err(|error| error.to_string())?;
                let mut session = sessions.lock().await;
                if session
                    .as_ref()
                    .is_some_and(|open| open.endpoint != endpoint)
                {
                    *session = None;
                }
                if session.is_none() {
                    let opened = replication
                        .open_ha_session(&endpoint)
                        .await
                        .map_err(|error| error.to_string())?;
                    if let Some(reason) = &opened.incompatible {
                        // Alive, so no failover; but nothing replicates until versions match.
                        replication
                            .log(&format!(
                                "{to} answers heartbeats but cannot replicate with this node: \
                                 {reason}"
                            ))
                            .await;
                    }
                    *session = Some(opened);
                }
                let Some(open) = session.as_mut() else {
                    return Err("no session".to_owned());
                };
                ours.wall_clock_ms = wall_clock_ms();
                let answer = replication.heartbeat(open, &ours).await;
                if answer.is_err() {
                    *session = None;
                }
                answer.map_err(|error| error.to_string())
            };
            let event = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(peer)) => Event::HeartbeatAnswered(peer),
                Ok(Err(reason)) => Event::HeartbeatFailed { reason },
                Err(_) => {
                    // The session may be stuck mid-request: start afresh next time.
                    if let Ok(mut session) = sessions.try_lock() {
                        *session = None;
                    }
                    Event::HeartbeatFailed {
                        reason: format!("no answer within {} ms", timeout.as_millis()),
                    }
                }
            };
            let _ = inputs.send(Input::Event(event)).await;
        });
    }

    /// Asks every trusted peer how it stands, in parallel, each within [`PEER_CHECK_TIMEOUT`]
    /// (at start, after a freeze, and every heartbeat interval: a newer ballot reaches this node
    /// through any peer). Sessions are kept open between checks.
    fn check_peers(&self) {
        let asking = self.ask_peers();
        let inputs = self.sender.clone();
        tokio::spawn(async move {
            for event in asking.await {
                let _ = inputs.send(Input::Event(event)).await;
            }
            let _ = inputs.send(Input::Event(Event::PeersChecked)).await;
        });
    }

    /// Asks every trusted peer how it stands, in parallel, each within [`PEER_CHECK_TIMEOUT`]:
    /// one `PeerAnswered` or `PeerUnreachable` per peer.
    fn ask_peers(&self) -> impl std::future::Future<Output = Vec<Event>> + Send + 'static {
        let replication = self.replication.clone();
        let ours = self.our_view();
        let local = self.state.local.clone();
        let sessions = self.peer_sessions.clone();
        async move {
            let hosts = match local.database().read(trust::list).await {
                Ok(hosts) => hosts,
                Err(error) => {
                    // Not "no peers": a check that asked nobody proves nothing.
                    tracing::error!(%error, "cannot read the Trusted Hosts for a peer check");
                    return vec![Event::PeerUnreachable {
                        address: "Trusted Hosts".into(),
                        reason: format!("cannot read the Trusted Hosts: {error}"),
                    }];
                }
            };
            let mut asks = tokio::task::JoinSet::new();
            for host in hosts {
                let replication = replication.clone();
                let ours = ours.clone();
                let sessions = sessions.clone();
                asks.spawn(ask_peer(replication, host.endpoint(), ours, sessions));
            }
            let mut events = Vec::new();
            while let Some(answer) = asks.join_next().await {
                if let Ok(event) = answer {
                    events.push(event);
                }
            }
            events
        }
    }

    /// Tells the controller, once, that this process was frozen (see `tandem_store::freeze`);
    /// checked before every input, so a heartbeat result that timed out during the freeze is
    /// judged knowing it.
    async fn check_frozen(&mut self) {
        let Some(gap_ms) = self.state.db.frozen_ms() else {
            return;
        };
        // Every new freeze is reported, also one during the peer check after another (its
        // answers would be from before it). A freeze still in progress (the beat is overdue, not
        // yet marked) is reported once; its mark then raises the generation and reports again.
        let generation = self.state.db.freeze_generation();
        if generation < self.frozen_reported
            || (generation == self.frozen_reported && self.frozen_seen)
        {
            return;
        }
        self.frozen_reported = generation;
        self.frozen_seen = true;
        let commands = self
            .controller
            .handle(self.clock.now(), Event::Frozen { gap_ms });
        self.carry_out(commands).await;
    }

    fn start_sync(&self, from: String, trigger: SyncTrigger) {
        let replication = self.replication.clone();
        let inputs = self.sender.clone();
        tokio::spawn(async move {
            let outcome = match Endpoint::parse(&from) {
                Err(error) => SyncOutcome::Failed {
                    reason: error.to_string(),
                },
                Ok(endpoint) => {
                    let options = SyncOptions {
                        trigger: match trigger {
                            SyncTrigger::Scheduled => Trigger::Scheduled,
                            SyncTrigger::Manual => Trigger::Manual,
                        },
                        force_full: false,
                    };
                    let progress: tandem_repl::sync::ProgressSink = Arc::new(|_| {});
                    match tandem_repl::sync::run(&replication, &endpoint, options, progress).await {
                        Ok(summary) => SyncOutcome::Succeeded {
                            summary: format!(
                                "{} sync from {from}: {} change(s), {} file(s), {} bytes in {} ms",
                                summary.kind,
                                summary.entries,
                                summary.files,
                                summary.bytes,
                                summary.duration_ms
                            ),
                            source_epoch: summary.source_epoch,
                        },
                        Err(tandem_repl::ReplicationError::Busy(reason)) => {
                            SyncOutcome::Skipped { reason }
                        }
                        Err(error) => SyncOutcome::Failed {
                            reason: format!("sync from {from} failed: {error}"),
                        },
                    }
                }
            };
            let _ = inputs
                .send(Input::Event(Event::SyncFinished { trigger, outcome }))
                .await;
        });
    }

    /// Synchronous replication on this (Active) node: writes wait for the Standby's
    /// confirmation, for ever (`block`) or up to the timeout (`continuous`).
    fn ack_gate(&self) -> Option<tandem_store::db::AckGate> {
        let config = &self.controller.durable().config;
        (config.enabled && config.replication == ReplicationMode::Synchronous).then(|| {
            tandem_store::db::AckGate {
                acked: self.replication.follower_acked(),
                wait_max: match config.on_standby_lost {
                    OnStandbyLost::Block => None,
                    OnStandbyLost::Continuous => Some(Duration::from_millis(
                        config.synchronous_timeout.as_millis(),
                    )),
                },
                degraded: self.sync_degraded.clone(),
                record_required: self.records_needed(),
            }
        })
    }

    /// Synchronous replication with the continuous fallback and witnesses: the fallback is
    /// recorded by the witnesses first (`tandem_ha::record`), and a Standby promotes itself only
    /// once they recorded that instead.
    fn records_needed(&self) -> bool {
        let config = &self.controller.durable().config;
        config.enabled
            && config.replication == ReplicationMode::Synchronous
            && config.on_standby_lost == OnStandbyLost::Continuous
            && !config.witnesses.is_empty()
    }

    /// Asks the witnesses to record `record` about this node's own ballot; the outcome comes
    /// back as [`Input::Recorded`].
    fn record_own(&mut self, record: tandem_ha::record::RecordKind, generation: i64) {
        self.records.in_flight = true;
        let config = self.controller.durable().config.clone();
        let request = tandem_ha::record::RecordRequest {
            record,
            primary: tandem_ha::ballot::Ballot::new(self.controller.epoch(), self.node_id.clone()),
            node: self.state.node_name.clone(),
            generation,
        };
        let inputs = self.sender.clone();
        tokio::spawn(async move {
            let outcome = crate::witness::record_at_witnesses(&config, &request).await;
            let _ = inputs
                .send(Input::Recorded {
                    record,
                    generation,
                    outcome,
                })
                .await;
        });
    }

    /// [`Command::FallBackAtPromotion`]: the fallback the synchronous timeout would make, made
    /// now, on the same terms: with witnesses, only once they recorded it (writes wait for the
    /// record, not for the timeout); without, at once. The head is the generation, so the first
    /// Standby that holds it restores synchronous replication.
    fn fall_back_at_promotion(&mut self) {
        if self.controller.status().state != State::Active {
            return;
        }
        let Some(gate) = self.ack_gate() else {
            return;
        };
        if gate.wait_max.is_none() {
            return;
        }
        // 0 means "not degraded": an empty database's head still names a generation.
        let head = self.state.db.head_seq().max(1);
        if gate.record_required {
            // A request already out is answered first; the timeout path asks again after it.
            if !self.records.in_flight {
                self.record_own(tandem_ha::record::RecordKind::Degrade, head);
            }
        } else {
            let _ = self.sync_degraded.compare_exchange(
                0,
                head,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            );
            self.state.db.set_ack_gate(self.ack_gate());
        }
    }

    /// The witnesses answered a record about this node's own ballot.
    async fn recorded(
        &mut self,
        record: tandem_ha::record::RecordKind,
        generation: i64,
        outcome: crate::witness::Recorded,
    ) {
        use crate::witness::Recorded;
        use std::sync::atomic::Ordering;
        use tandem_ha::record::RecordKind;
        self.records.in_flight = false;
        let refusal = match outcome {
            Recorded::Granted => None,
            Recorded::Refused(reason) => Some(reason),
            // Falling back without a record would let the Standby promote over writes it lacks:
            // a witness that keeps none (often a mistyped URL) is a refusal here.
            Recorded::Unsupported => Some(
                "no witness keeps records (each answered 404 or 405): check the witness URLs; \
                 the traffic controller's is http://HOST:PORT/witness/primary"
                    .to_owned(),
            ),
        };
        let Some(reason) = refusal else {
            match record {
                RecordKind::Degrade if self.controller.status().state == State::Active => {
                    self.records.fallback = Some(generation);
                    let _ = self.sync_degraded.compare_exchange(
                        0,
                        generation,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    // Writes waiting for the Standby see the fallback now.
                    self.state.db.set_ack_gate(self.ack_gate());
                }
                RecordKind::Degrade => self.records.fallback = Some(generation),
                RecordKind::Recover => {
                    self.records.fallback = None;
                    self.records.unconfirmed_max = 0;
                    self.records.recover_at_start = false;
                }
                RecordKind::Promote => {}
            }
            self.records.retry_at = None;
            self.records.refusal_logged = false;
            return;
        };
        self.records.retry_at = Some(Instant::now() + DEGRADE_RECORD_RETRY);
        if self.records.refusal_logged {
            return;
        }
        self.records.refusal_logged = true;
        let message = match record {
            RecordKind::Degrade => format!(
                "synchronous replication cannot fall back: the witnesses did not record that this \
                 node acknowledges writes without its Standby ({reason}); writes wait for the \
                 Standby, as with --if-standby-lost block, and the record is asked again every {} s",
                DEGRADE_RECORD_RETRY.as_secs()
            ),
            _ => format!(
                "the witnesses did not clear this node's fallback record ({reason}); asked again \
                 every {} s (until they do, an automatic promotion of its Standby is held)",
                DEGRADE_RECORD_RETRY.as_secs()
            ),
        };
        self.log(Level::Error, &message).await;
    }

    /// With records: asks the witnesses to record the fallback once the head waited out the
    /// timeout, and to clear it once the Standby holds every write acknowledged without it (or,
    /// after a start, whatever record of this ballot a crash left). One request at a time, and
    /// never because the node stopped being Active: only the Standby's confirmation clears it.
    fn drive_records(&mut self, timed_out_target: Option<i64>, degraded: bool, acked: i64) {
        use tandem_ha::record::{RECOVER_ANY_GENERATION, RecordKind};
        let head = self.state.db.head_seq();
        if degraded || self.sync_degraded_reported {
            // Every write acknowledged while degraded (up to the tick that sees it end) is at
            // or below the head now.
            self.records.unconfirmed_max = self.records.unconfirmed_max.max(head);
        }
        let may_ask = !self.records.in_flight
            && self
                .records
                .retry_at
                .is_none_or(|retry_at| Instant::now() >= retry_at);
        if !may_ask {
            return;
        }
        if let Some(target) = timed_out_target
            && !degraded
        {
            match self.records.fallback {
                // The earlier fallback's record still stands (the Standby had not confirmed
                // everything yet): falling back again needs no new one.
                Some(_) => {
                    let _ = self.sync_degraded.compare_exchange(
                        0,
                        target,
                        std::sync::atomic::Ordering::AcqRel,
                        std::sync::atomic::Ordering::Acquire,
                    );
                    self.state.db.set_ack_gate(self.ack_gate());
                }
                None => self.record_own(RecordKind::Degrade, target),
            }
        } else if let Some(generation) = self.records.fallback
            && !degraded
            && acked >= self.records.unconfirmed_max
        {
            self.record_own(RecordKind::Recover, generation);
        } else if self.records.recover_at_start && self.records.fallback.is_none() && acked >= head
        {
            self.record_own(RecordKind::Recover, RECOVER_ANY_GENERATION);
        }
    }

    /// The follower's state for the controller, sent just before each heartbeat result: a
    /// failure is judged on what this node held when the Primary last answered (If Behind at
    /// Failure).
    async fn report_replication(&mut self, now: Now) {
        let view = crate::control::replication_view(
            &self.follow_status.borrow(),
            self.follower.is_some(),
            self.controller.durable().config.lag_bound,
            now.wall_ms,
        );
        let commands = self.controller.handle(now, Event::Replication(view));
        self.carry_out(commands).await;
    }

    /// Raises (and clears) the alarm when synchronous replication fell back to continuous.
    async fn check_synchronous(&mut self) {
        use std::sync::atomic::Ordering;
        let gate = self
            .ack_gate()
            .filter(|_| self.controller.status().state == State::Active);
        let Some(gate) = gate else {
            self.unconfirmed_since = None;
            return self.report_synchronous(false).await;
        };
        // Writes degrade the gate when one of them waits out the timeout, but a client that
        // gives up sooner drops its wait: so the runtime also degrades it once the head has
        // stayed unconfirmed for the timeout, whoever waits.
        // Timed per head: under a steady load the head is always a little ahead, but each head
        // seen is confirmed within milliseconds.
        let head = self.state.db.head_seq();
        let acked = *gate.acked.borrow();
        self.unconfirmed_since = match self.unconfirmed_since {
            Some((since, target)) if acked < target => Some((since, target)),
            _ if acked < head => Some((Instant::now(), head)),
            _ => None,
        };
        let timed_out = match (self.unconfirmed_since, gate.wait_max) {
            (Some((since, target)), Some(limit))
                if since.elapsed() >= limit && self.state.db.frozen_ms().is_none() =>
            {
                Some(target)
            }
            _ => None,
        };
        if let (Some(target), false) = (timed_out, gate.record_required) {
            let _ = gate
                .degraded
                .compare_exchange(0, target, Ordering::AcqRel, Ordering::Acquire);
        }
        // Writes clear it too, but only writes that come; without them the alarm would stay.
        let degraded = gate.still_degraded();
        if gate.record_required {
            self.drive_records(timed_out, degraded, acked);
        }
        self.report_synchronous(degraded).await;
    }

    /// Raises or clears the alarm when the degraded state changed.
    async fn report_synchronous(&mut self, degraded: bool) {
        if degraded == self.sync_degraded_reported {
            return;
        }
        self.sync_degraded_reported = degraded;
        let message = if degraded {
            let timeout = self.controller.durable().config.synchronous_timeout;
            format!(
                "synchronous replication degraded: no Standby confirmed a write within \
                 {timeout}; writes are acknowledged without it (continuous replication) until it \
                 has caught up, and a failover now may lose the writes since"
            )
        } else {
            "synchronous replication restored: the Standby has caught up and confirms every \
             write again"
                .to_owned()
        };
        self.log(if degraded { Level::Error } else { Level::Info }, &message)
            .await;
        if degraded {
            self.notify(Notification::ReplicationDegraded, &message)
                .await;
        }
    }

    /// Starts (or stops) continuous replication: a task that follows `from`, reconnects after a
    /// failure, and falls back to an ordinary sync (recorded in Sync History; a divergence is
    /// refused and logged) when this node's position left the source's history.
    fn follow(&mut self, from: Option<String>) {
        let stopped = self.follower.take().map(|task| task.abort()).is_some();
        self.follow_status
            .send_modify(|status| status.connected = false);
        // The aborted stream's Sync History row ends here (a row left running by a killed
        // process is marked interrupted by the next stream instead). A new stream ends it first,
        // so the two writes cannot cross.
        let local = self.state.local.database().clone();
        let end_stream = move || async move {
            let note = "this node stopped following (it was promoted, or its HA configuration \
                        changed)";
            if let Err(error) = local
                .write(move |conn| history::end_streams(conn, note))
                .await
            {
                tracing::warn!(%error, "cannot record the end of a replication stream");
            }
        };
        let Some(from) = from else {
            // Following nothing (e.g. promoted: this node is now the source): no stream to be
            // behind on, so `ha status`, the replication probe and the metrics stop reporting
            // the old one as down.
            self.follow_status
                .send_modify(|status| status.source.clear());
            if stopped {
                tokio::spawn(end_stream());
            }
            return;
        };
        let endpoint = match Endpoint::parse(&from) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                tracing::error!(%error, "continuous replication: the Primary's address is invalid");
                return;
            }
        };
        // Named before the first connection, so a stream that never opens (unreachable source,
        // different versions) is reported as down, with its error, rather than not at all.
        self.follow_status.send_modify(|status| {
            status.source = endpoint.to_string();
            status.last_error = None;
        });
        let replication = self.replication.clone();
        let status = self.follow_status.clone();
        let inputs = self.sender.clone();
        self.follower = Some(tokio::spawn(async move {
            if stopped {
                end_stream().await;
            }
            let mut lags = std::collections::VecDeque::new();
            let mut last_error = String::new();
            loop {
                let connected = |epoch: i64| {
                    // Bounded queue: if it is full the next connection reports it again.
                    let _ = inputs.try_send(Input::Event(Event::SourceEpoch(epoch)));
                };
                let result =
                    follow::follow(&replication, &endpoint, &status, &mut lags, &connected).await;
                status.send_modify(|status| status.connected = false);
                let pause = match result {
                    Ok(FollowEnd::NeedsSync { reason }) => {
                        replication
                            .log(&format!("continuous replication: {reason}; running a sync"))
                            .await;
                        let options = SyncOptions {
                            trigger: Trigger::Scheduled,
                            force_full: false,
                        };
                        let progress: tandem_repl::sync::ProgressSink = Arc::new(|_| {});
                        match tandem_repl::sync::run(&replication, &endpoint, options, progress)
                            .await
                        {
                            Ok(summary) => {
                                connected(summary.source_epoch);
                                Duration::ZERO
                            }
                            Err(error) => {
                                let message = error.to_string();
                                status.send_modify(|status| {
                                    status.last_error = Some(message.clone())
                                });
                                FOLLOW_REFUSED_PAUSE
                            }
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        let pause =
                            if matches!(error, tandem_repl::ReplicationError::Incompatible(_)) {
                                // Different versions stay different until one node is upgraded:
                                // no SSH handshake every second for the whole upgrade window.
                                FOLLOW_REFUSED_PAUSE
                            } else {
                                FOLLOW_RETRY_PAUSE
                            };
                        // Logged once per distinct error, not once per retry.
                        if message != last_error {
                            replication
                                .log(&format!(
                                    "continuous replication from {endpoint} interrupted: {message}; \
                                     reconnecting every {} s",
                                    pause.as_secs()
                                ))
                                .await;
                            last_error = message.clone();
                        }
                        status.send_modify(|status| status.last_error = Some(message));
                        pause
                    }
                };
                tokio::time::sleep(pause).await;
            }
        }));
    }

    /// Asks every witness at once whether it still reaches the Primary
    /// ([`crate::witness::ask_witnesses`]); no answer counts as unreachable.
    /// With `record_over`, when no witness reaches the Primary, also asks them to record this
    /// node's promotion over that ballot ([`tandem_ha::record`]).
    fn ask_witnesses(&self, primary: String, record_over: Option<tandem_ha::ballot::Ballot>) {
        use tandem_ha::machine::PromotionRecord;
        let config = self.controller.durable().config.clone();
        let node = self.state.node_name.clone();
        let inputs = self.sender.clone();
        tokio::spawn(async move {
            let reaching = crate::witness::ask_witnesses(&config, &primary).await;
            let promotion = match (&reaching, record_over) {
                (None, Some(over)) => {
                    let request = tandem_ha::record::RecordRequest {
                        record: tandem_ha::record::RecordKind::Promote,
                        primary: over,
                        node,
                        generation: 0,
                    };
                    match crate::witness::record_at_witnesses(&config, &request).await {
                        crate::witness::Recorded::Granted => PromotionRecord::Granted,
                        crate::witness::Recorded::Refused(reason) => {
                            PromotionRecord::Refused(reason)
                        }
                        crate::witness::Recorded::Unsupported => PromotionRecord::Unsupported,
                    }
                }
                _ => PromotionRecord::NotAsked,
            };
            let _ = inputs
                .send(Input::Event(Event::WitnessesAnswered {
                    reaching_primary: reaching,
                    promotion,
                }))
                .await;
        });
    }
}
