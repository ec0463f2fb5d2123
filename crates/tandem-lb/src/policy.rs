//! The traffic-controller rule as a pure state machine: probe results (each with the ballot
//! the backend stated) and operator commands in, routing commands out, time passed in. No I/O,
//! no clock.
//!
//! The rule (guide: Load balancer setup; PRODUCT.md section 7):
//!
//! 1. Traffic stays on the active backend while its `/status/status.html` probe passes.
//! 2. When the active backend is **down** (`fall` consecutive failed status probes), new
//!    connections to it are refused and its open ones closed, and traffic moves to the first
//!    candidate that can take it: its `/hastatus.html` is up (the guide's condition) **and** its
//!    latest `/status/status.html` passed, meaning the Tandem node has promoted itself to Active.
//!    Candidates are tried in configuration order, those of the active backend's data-center
//!    group first (GTM: another group only when no backend of this one can take traffic).
//! 3. It never moves back by itself: a backend that comes back healthy gets traffic only through
//!    [`Policy::resume`] (Manual Resume = Yes).
//!
//! Ballots (the `tandem-ballot` header, `tandem_ha::ballot`) refine the rule for Tandem nodes:
//!
//! 4. A backend's *claim* is its ballot while it is Active with HA enabled. The policy keeps the
//!    newest claim it has ever seen (any backend's claim, any backend's `newest`, and what the
//!    state file remembered across restarts) and never routes to a backend whose claim is below
//!    it: that node is an old Primary that has not yet learnt it was replaced, and devices sent to
//!    it would write into a database the fleet has left. When the active backend's claim falls
//!    below, traffic follows the backend holding the newest claim (not a fail-back: it follows the
//!    newer Active). The first routing after a start follows the same rule, then the remembered
//!    active backend, then configuration order.
//!    4b. A backend that states it stepped down (Standby or Not Available in the HA group while
//!    another node holds the newest claim) loses traffic the same way, on that probe: after a
//!    switchover or a fence the old Primary says so at once, so devices do not wait for `fall`
//!    failed status probes ([`Policy::stood_down`]).
//! 5. A backend with `ha=disabled` has left the HA group (a standalone node, e.g. during the
//!    guide's upgrade): it is never a failover candidate; if it is the active backend, traffic
//!    stays on it and a warning is logged once.
//! 6. Two backends in the HA group passing `/status/status.html` at once is a dual-Active alarm,
//!    logged at ERROR once per episode and shown until it clears.
//! 7. A maintenance hold (the guide's upgrade step 3, "disable the load balancer from failing
//!    over") stops every automatic switch until released; it never overrides rules 2 and 4 for
//!    new connections: a backend marked down or holding a stale claim gets none.
//!
//! Backends that state no ballot (an older or non-Tandem server) keep rules 1 to 3 as they are.
//!
//! Why the candidate must also pass `/status/status.html`: a Tandem Standby refuses device
//! traffic until it promotes itself, and the controller never moves back by itself. Moving as soon
//! as the Primary failed a few probes would pin the fleet to a Standby that may never promote (the
//! Primary only blipped for less than the Secondary's heartbeat detection, or If Failure Detected
//! is Keep in Standby). Waiting for the candidate to be Active makes the controller follow the
//! nodes' own decision; the guide's condition (`/hastatus.html` OK) still holds, since an Active
//! node answers it with OK.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tandem_ha::ballot::{Ballot, ProbeBallot};

/// The two pages probed on every backend (PRODUCT.md section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Page {
    /// `/status/status.html`: OK only on the node that serves devices (Active).
    Status,
    /// `/hastatus.html`: OK on a healthy Standby and on an Active node.
    HaStatus,
}

impl Page {
    pub const ALL: [Page; 2] = [Page::Status, Page::HaStatus];

    pub fn path(self) -> &'static str {
        match self {
            Page::Status => "/status/status.html",
            Page::HaStatus => "/hastatus.html",
        }
    }
}

/// Whether a page passed: `Ok` is HTTP 200 with `MOBILEIRON-STATUS: OK` in the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The first line of the body, e.g. `MOBILEIRON-STATUS: OK (Mode: Standby)`.
    Ok(String),
    /// Why it failed: a status code and body line, a refused connection, a TLS error, a timeout.
    Failed(String),
}

/// What a probe answer said about the backend's ballot (the `tandem-ballot` header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BallotSeen {
    Stated(ProbeBallot),
    /// The backend answered, without a usable header: why (missing: an older or non-Tandem
    /// server; or unparsable). It is treated as a backend without ballots.
    Unusable(String),
    /// No HTTP answer (refused, TLS error, timeout): nothing learnt; the latest ballot stays.
    NoAnswer,
}

/// Debounced health of one page of one backend, HAProxy-style: `fall` consecutive failures mark
/// it down, `rise` consecutive passes mark it up. The very first result sets it directly, so a
/// freshly started controller routes after one probe round instead of `rise` rounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub state: HealthState,
    /// Consecutive results that disagree with `state` (counting towards `fall` or `rise`).
    pub streak: u32,
    pub last_ok: bool,
    pub last_detail: String,
    pub last_probe_at_ms: Option<i64>,
    pub changed_at_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// No result yet.
    Unknown,
    Up,
    Down,
}

impl Health {
    fn new() -> Self {
        Self {
            state: HealthState::Unknown,
            streak: 0,
            last_ok: false,
            last_detail: "not probed yet".into(),
            last_probe_at_ms: None,
            changed_at_ms: None,
        }
    }

    /// Records a result; returns the new state when it changed.
    fn record(
        &mut self,
        ok: bool,
        detail: String,
        now_ms: i64,
        limits: Limits,
    ) -> Option<HealthState> {
        self.last_ok = ok;
        self.last_detail = detail;
        self.last_probe_at_ms = Some(now_ms);
        let wanted = if ok {
            HealthState::Up
        } else {
            HealthState::Down
        };
        if self.state == wanted {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = match (self.state, ok) {
            (HealthState::Unknown, _) => 1,
            (_, true) => limits.rise,
            (_, false) => limits.fall,
        };
        if self.streak < needed {
            return None;
        }
        self.state = wanted;
        self.streak = 0;
        self.changed_at_ms = Some(now_ms);
        Some(wanted)
    }
}

impl Health {
    /// Counts a page that passed its latest probe as up, without waiting for `rise`.
    fn accept_up(&mut self, now_ms: i64) {
        if self.last_ok && self.state != HealthState::Up {
            self.state = HealthState::Up;
            self.streak = 0;
            self.changed_at_ms = Some(now_ms);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Consecutive failed probes before a page is down.
    pub fall: u32,
    /// Consecutive passed probes before a page is up again.
    pub rise: u32,
}

/// A backend as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub name: String,
    /// Data-center group (GTM): traffic leaves a group only when no backend of it can take it.
    pub group: String,
    pub status: Health,
    pub hastatus: Health,
    /// The ballot stated in the backend's latest HTTP answer (either page); `None` when it
    /// stated none it could use (see `ballot_detail`).
    #[serde(skip)]
    pub ballot: Option<ProbeBallot>,
    /// The header as stated, or why there is no usable one.
    pub ballot_detail: String,
    /// The highest claim this backend ever made (remembered across restarts).
    pub highest_claim: Option<Ballot>,
}

impl Backend {
    fn health_mut(&mut self, page: Page) -> &mut Health {
        match page {
            Page::Status => &mut self.status,
            Page::HaStatus => &mut self.hastatus,
        }
    }

    /// Its claim to serve: its ballot while it is Active with HA enabled.
    pub fn claim(&self) -> Option<&Ballot> {
        self.ballot.as_ref().and_then(ProbeBallot::claim)
    }

    /// Left the HA group (`ha=disabled`): a standalone node.
    pub fn ha_disabled(&self) -> bool {
        self.ballot
            .as_ref()
            .is_some_and(|ballot| !ballot.ha_enabled)
    }

    /// Passes the guide's test for taking traffic from a failed active backend (rule 2).
    fn passes_candidate_probes(&self) -> bool {
        self.hastatus.state == HealthState::Up && self.status.last_ok
    }
}

/// Why traffic moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Switch {
    pub at_ms: i64,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

/// The maintenance hold: no automatic switch until released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hold {
    pub reason: String,
    pub since_ms: i64,
}

/// Two or more backends of the HA group pass `/status/status.html` at once (rule 6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DualActive {
    pub since_ms: i64,
    pub backends: Vec<String>,
    /// Each backend and the ballot it states, for the log and `tandem lb status`.
    pub detail: String,
}

/// What the controller keeps across restarts (the state file): the active backend, the
/// highest claim seen per backend and overall, and the maintenance hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Memory {
    pub active: Option<String>,
    pub highest_claim: Option<Ballot>,
    pub backend_claims: BTreeMap<String, Ballot>,
    pub hold: Option<Hold>,
    /// The witness's record for synchronous replication (`tandem_ha::record`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<tandem_ha::record::Record>,
}

/// Characters of a hold's reason at most: a sentence for `tandem lb status`, not a log.
pub const HOLD_REASON_CHARS_MAX: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// What the runtime must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// New connections go to this backend (by index in the configuration).
    Route(usize),
    /// New connections are refused (closed at once) until the next `Route`: the active backend
    /// is marked down or holds a stale claim, and no other backend can take traffic yet.
    StopRouting,
    /// Close the open connections to this backend: it was marked down, or its claim is stale.
    CloseConnections(usize),
    /// Traffic moved; log it (warn) and count it.
    Switched(Switch),
    /// Something an operator should see in the log.
    Log { level: Level, message: String },
    /// The memory changed: write the state file. Emitted first, before any routing command of
    /// the same step, so the file is never behind what devices saw.
    Remember(Memory),
}

/// An operator's command that was refused; the message says why and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    backends: Vec<Backend>,
    #[serde(skip)]
    limits: Limits,
    /// The backend traffic goes to (remembered across restarts).
    active: Option<usize>,
    /// New connections are passed to the active backend. False before this run's first routing,
    /// and while the active backend is marked down or holds a stale claim.
    passing: bool,
    /// This run has made its first routing decision.
    #[serde(skip)]
    routed: bool,
    active_since_ms: Option<i64>,
    last_switch: Option<Switch>,
    switches: u64,
    /// Set while traffic cannot go where the rule wants it: why.
    waiting: Option<String>,
    /// The newest claim seen anywhere (rule 4).
    highest_claim: Option<Ballot>,
    hold: Option<Hold>,
    /// The witness's one register for synchronous replication (see [`Policy::record`]).
    register: tandem_ha::record::Register,
    /// The last `Remember` was not saved: the next one is emitted whatever changed.
    memory_unsaved: bool,
    dual_active: Option<DualActive>,
    /// The active backend left the HA group and that was logged (rule 5, once).
    #[serde(skip)]
    standalone_warned: bool,
    /// The memory as last emitted in [`Command::Remember`] (or restored).
    #[serde(skip)]
    remembered: Memory,
}

impl Policy {
    /// `backends` are `(name, group)` in configuration order.
    pub fn new(backends: Vec<(String, String)>, limits: Limits) -> Self {
        Self {
            backends: backends
                .into_iter()
                .map(|(name, group)| Backend {
                    name,
                    group,
                    status: Health::new(),
                    hastatus: Health::new(),
                    ballot: None,
                    ballot_detail: "not probed yet".into(),
                    highest_claim: None,
                })
                .collect(),
            limits,
            active: None,
            passing: false,
            routed: false,
            active_since_ms: None,
            last_switch: None,
            switches: 0,
            waiting: None,
            highest_claim: None,
            hold: None,
            register: tandem_ha::record::Register::default(),
            memory_unsaved: false,
            dual_active: None,
            standalone_warned: false,
            remembered: Memory::default(),
        }
    }

    /// Takes back what the state file remembered. Names no longer configured are dropped (the
    /// overall highest claim stays: it may belong to a node now reached under another name).
    pub fn restore(&mut self, memory: Memory) -> Vec<Command> {
        let mut commands = Vec::new();
        if let Some(name) = &memory.active {
            match self.index_of(name) {
                Some(index) => self.active = Some(index),
                None => commands.push(Command::Log {
                    level: Level::Warn,
                    message: format!(
                        "the state file names {name} as the active backend, but no backend \
                         has that name now ({}); the first routing starts afresh",
                        self.names()
                    ),
                }),
            }
        }
        for (name, claim) in &memory.backend_claims {
            if let Some(index) = self.index_of(name) {
                self.backends[index].highest_claim = Some(claim.clone());
            }
        }
        self.highest_claim = memory.highest_claim.clone();
        self.hold = memory.hold.clone();
        self.register.record = memory.synchronous.clone();
        commands.push(Command::Log {
            level: if self.hold.is_some() {
                Level::Warn
            } else {
                Level::Info
            },
            message: format!(
                "remembered: active backend {}, newest claim seen {}{}",
                memory.active.as_deref().unwrap_or("none"),
                memory
                    .highest_claim
                    .as_ref()
                    .map_or_else(|| "none".into(), Ballot::to_string),
                match &self.hold {
                    Some(hold) => format!(
                        "; maintenance hold since {} ms ({}): no automatic switch until \
                         `tandem lb release`",
                        hold.since_ms, hold.reason
                    ),
                    None => String::new(),
                }
            ),
        });
        self.remembered = memory;
        commands
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// New connections are passed to the active backend now.
    pub fn passing(&self) -> bool {
        self.passing
    }

    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The maintenance hold, while it is on.
    pub fn held(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }

    pub fn dual_active(&self) -> Option<&DualActive> {
        self.dual_active.as_ref()
    }

    pub fn highest_claim(&self) -> Option<&Ballot> {
        self.highest_claim.as_ref()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.backends
            .iter()
            .position(|backend| backend.name == name)
    }

    /// What the state file must hold now.
    pub fn memory(&self) -> Memory {
        Memory {
            active: self.active.map(|index| self.backends[index].name.clone()),
            highest_claim: self.highest_claim.clone(),
            backend_claims: self
                .backends
                .iter()
                .filter_map(|backend| {
                    let claim = backend.highest_claim.clone()?;
                    Some((backend.name.clone(), claim))
                })
                .collect(),
            hold: self.hold.clone(),
            synchronous: self.register.record.clone(),
        }
    }

    /// A node's request to the witness's record (`POST /witness/primary`): the Primary that
    /// falls back from synchronous replication, or its Standby about to promote over it. The
    /// first record wins; a granted change is remembered (the `Remember` command) before the
    /// answer goes out.
    pub fn record(
        &mut self,
        now_ms: i64,
        request: &tandem_ha::record::RecordRequest,
    ) -> (tandem_ha::record::RecordAnswer, Vec<Command>) {
        let (changed, answer) = self.register.request(now_ms, request);
        let mut commands = Vec::new();
        if changed || !answer.granted {
            commands.push(Command::Log {
                level: if answer.granted {
                    Level::Warn
                } else {
                    Level::Error
                },
                message: format!(
                    "witness record: {} asks to record {:?} about {}: {}",
                    request.node,
                    request.record,
                    request.primary,
                    if answer.granted {
                        "recorded".to_owned()
                    } else {
                        format!("refused ({})", answer.reason)
                    }
                ),
            });
        }
        self.remember(&mut commands);
        (answer, commands)
    }

    /// The witness's register now (to undo a record whose `Remember` was not saved).
    pub fn register(&self) -> &tandem_ha::record::Register {
        &self.register
    }

    /// The state file could not be written: the record made in memory is undone (granting it
    /// unsaved could let a restarted controller grant the opposite), and the next change is
    /// written whatever it is.
    pub fn memory_not_saved(&mut self, register_before: tandem_ha::record::Register) {
        self.register = register_before;
        self.memory_unsaved = true;
    }

    /// Witness answer (PRODUCT.md, witness-guarded promotion): whether the controller still
    /// reaches the backend traffic goes to. It says "cannot reach" only once the controller has
    /// itself stopped routing there: the status page is debounced down (`fall` failed probes,
    /// the same debounce as the route) **and** new connections are no longer passed to it. A
    /// witness that answered on the latest single probe told a Secondary to promote while
    /// devices still reached a paused Primary (issue 15); answering like the route means the
    /// nodes and the devices never see two different Primaries through this controller. With
    /// no active backend at all (first start, nothing routed yet) it reaches none.
    pub fn reaches_active(&self) -> bool {
        self.active.is_some_and(|index| {
            self.passing || self.backends[index].status.state != HealthState::Down
        })
    }

    /// A probe result for `backend`'s `page` at `now_ms`, with the ballot its answer stated.
    pub fn probe(
        &mut self,
        now_ms: i64,
        backend: usize,
        page: Page,
        result: ProbeResult,
        ballot: BallotSeen,
    ) -> Vec<Command> {
        let mut commands = Vec::new();
        if backend >= self.backends.len() {
            return commands;
        }
        // The active backend's connections were closed when routing to it stopped (a
        // mark-down, or a stale claim); closing them again would close none.
        let already_closed = self.active == Some(backend) && self.routed && !self.passing;
        let marked_down = self.record_health(now_ms, backend, page, result, &mut commands);
        self.record_ballot(backend, ballot, &mut commands);
        self.decide(now_ms, &mut commands);
        if marked_down && !already_closed {
            // After the routing commands: a connection accepted meanwhile either sees the
            // route moved or is closed by this.
            commands.push(Command::CloseConnections(backend));
        }
        self.track_dual_active(now_ms, &mut commands);
        self.remember(&mut commands);
        commands
    }

    fn record_health(
        &mut self,
        now_ms: i64,
        backend: usize,
        page: Page,
        result: ProbeResult,
        commands: &mut Vec<Command>,
    ) -> bool {
        let target = &mut self.backends[backend];
        let (ok, detail) = match result {
            ProbeResult::Ok(detail) => (true, detail),
            ProbeResult::Failed(detail) => (false, detail),
        };
        let before = target.health_mut(page).state;
        let Some(state) = target
            .health_mut(page)
            .record(ok, detail, now_ms, self.limits)
        else {
            return false;
        };
        let detail = target.health_mut(page).last_detail.clone();
        let message = format!(
            "{} {} is {}: {detail}",
            target.name,
            page.path(),
            describe(state)
        );
        let level = if state == HealthState::Down {
            Level::Warn
        } else {
            Level::Info
        };
        commands.push(Command::Log { level, message });
        // Only a backend that was up can hold connections worth closing.
        page == Page::Status && state == HealthState::Down && before == HealthState::Up
    }

    fn record_ballot(&mut self, backend: usize, seen: BallotSeen, commands: &mut Vec<Command>) {
        let target = &mut self.backends[backend];
        match seen {
            BallotSeen::NoAnswer => {}
            BallotSeen::Unusable(why) => {
                if target.ballot.is_some() || target.ballot_detail != why {
                    let level = if target.ballot.is_some() {
                        Level::Warn
                    } else {
                        Level::Info
                    };
                    commands.push(Command::Log {
                        level,
                        message: format!(
                            "{} states no usable ballot ({why}); it is routed as a backend \
                             without ballots",
                            target.name
                        ),
                    });
                }
                target.ballot = None;
                target.ballot_detail = why;
            }
            BallotSeen::Stated(ballot) => {
                target.ballot_detail = ballot.header_value();
                if let Some(claim) = ballot.claim()
                    && target
                        .highest_claim
                        .as_ref()
                        .is_none_or(|seen| claim > seen)
                {
                    target.highest_claim = Some(claim.clone());
                }
                let name = target.name.clone();
                let seen = [ballot.claim().cloned(), ballot.newest.clone()];
                target.ballot = Some(ballot);
                for claim in seen.into_iter().flatten() {
                    self.raise_highest_claim(claim, &name, commands);
                }
            }
        }
    }

    fn raise_highest_claim(&mut self, claim: Ballot, from: &str, commands: &mut Vec<Command>) {
        if self
            .highest_claim
            .as_ref()
            .is_some_and(|seen| *seen >= claim)
        {
            return;
        }
        commands.push(Command::Log {
            level: Level::Info,
            message: format!("newest claim seen: {claim} (stated by {from})"),
        });
        self.highest_claim = Some(claim);
    }

    /// The backend's claim is below the newest claim seen (rule 4).
    pub fn below_newest_claim(&self, index: usize) -> bool {
        match (self.backends[index].claim(), &self.highest_claim) {
            (Some(claim), Some(highest)) => claim < highest,
            _ => false,
        }
    }

    /// The backend says itself that it no longer serves: it states a ballot in the HA group
    /// while Standby or Not Available, and the newest claim known is another node's, in an epoch
    /// at least its own (rule 4b; a Standby takes its source's epoch counter when it syncs, so
    /// the counters may be equal). An old Primary after a switchover or a fence answers so on
    /// its very next probe, so traffic follows the newer claim at once instead of after `fall`
    /// failed status probes. A node restarting in its own tenure holds the newest claim itself:
    /// it keeps traffic.
    pub fn stood_down(&self, index: usize) -> bool {
        self.backends[index].ballot.as_ref().is_some_and(|ballot| {
            ballot.ha_enabled
                && ballot.state != tandem_ha::State::Active
                && self.highest_claim.as_ref().is_some_and(|highest| {
                    highest.node_id != ballot.own.node_id && highest.epoch >= ballot.own.epoch
                })
        })
    }

    /// Rule 4 or 4b: traffic must leave this backend for the newest claim.
    fn superseded(&self, index: usize) -> bool {
        self.below_newest_claim(index) || self.stood_down(index)
    }

    /// May be given traffic by an automatic switch: no ballot (rules 1 to 3 as they are), or a
    /// claim that is the newest seen. A standalone node (`ha=disabled`) or a Tandem node that
    /// claims nothing never is.
    fn may_take_over(&self, index: usize) -> bool {
        match &self.backends[index].ballot {
            None => true,
            Some(ballot) => ballot.claim().is_some_and(|claim| {
                self.highest_claim
                    .as_ref()
                    .is_none_or(|highest| claim >= highest)
            }),
        }
    }

    /// May keep (or be given by the first routing or an operator) traffic: its status page is
    /// not down and its claim is not stale.
    fn may_keep(&self, index: usize) -> bool {
        self.backends[index].status.state != HealthState::Down && !self.superseded(index)
    }

    /// Moves traffic to `to`, or to the first backend whose status page is up and whose claim
    /// is not stale. Refused, with the reason, when that backend cannot take traffic. Works
    /// under a maintenance hold (the operator decides), which remains.
    pub fn resume(&mut self, now_ms: i64, to: Option<&str>) -> Result<Vec<Command>, Refused> {
        let target = match to {
            Some(name) => self.resume_target_named(name)?,
            None => (0..self.backends.len())
                .find(|&index| {
                    self.backends[index].status.state == HealthState::Up
                        && !self.below_newest_claim(index)
                })
                .ok_or_else(|| {
                    Refused(format!(
                        "no backend passes /status/status.html with a current claim, so none \
                         can take traffic; {}",
                        self.where_traffic_stays()
                    ))
                })?,
        };
        let mut commands = Vec::new();
        if self.active == Some(target) && self.passing {
            commands.push(Command::Log {
                level: Level::Info,
                message: format!(
                    "resume: traffic is already on {}; nothing changed",
                    self.backends[target].name
                ),
            });
        } else {
            self.switch(now_ms, target, "operator resume".into(), &mut commands);
        }
        if let Some(hold) = &self.hold {
            commands.push(Command::Log {
                level: Level::Warn,
                message: format!(
                    "resume: the maintenance hold ({}) remains: no automatic switch until \
                     `tandem lb release`",
                    hold.reason
                ),
            });
        }
        self.track_dual_active(now_ms, &mut commands);
        self.remember(&mut commands);
        Ok(commands)
    }

    fn resume_target_named(&self, name: &str) -> Result<usize, Refused> {
        let index = self.index_of(name).ok_or_else(|| {
            Refused(format!(
                "there is no backend named {name:?}; the backends are {}",
                self.names()
            ))
        })?;
        let backend = &self.backends[index];
        if backend.status.state != HealthState::Up {
            return Err(Refused(format!(
                "{name} cannot take traffic: its /status/status.html is {} ({}); {}",
                describe(backend.status.state),
                backend.status.last_detail,
                self.where_traffic_stays()
            )));
        }
        if let (Some(claim), Some(highest)) = (backend.claim(), &self.highest_claim)
            && claim < highest
        {
            return Err(Refused(format!(
                "{name} claims {claim}, below the newest claim seen ({highest}): it is an old \
                 Primary that has not learnt it was replaced, and devices sent to it would \
                 write into a database the fleet has left; {}. Let it reach its peers (it then \
                 fences itself), or make it Primary again with the guide's failback. If the \
                 node holding {highest} is gone for good, stop tandem lb, remove its state file \
                 (state_file in lb.toml) and start it again",
                self.where_traffic_stays()
            )));
        }
        Ok(index)
    }

    /// Starts the maintenance hold (the guide's upgrade step 3): no automatic switch until
    /// [`Policy::release`]. Holding again replaces the reason.
    pub fn hold(&mut self, now_ms: i64, reason: Option<&str>) -> Result<Vec<Command>, Refused> {
        let reason = reason.unwrap_or("maintenance").trim();
        if reason.is_empty()
            || reason.chars().count() > HOLD_REASON_CHARS_MAX
            || reason.chars().any(char::is_control)
        {
            return Err(Refused(format!(
                "reason = {reason:?}: give one line of text of 1 to {HOLD_REASON_CHARS_MAX} \
                 characters, e.g. --reason \"upgrade to 2.4\""
            )));
        }
        let since_ms = self.hold.as_ref().map_or(now_ms, |hold| hold.since_ms);
        self.hold = Some(Hold {
            reason: reason.to_owned(),
            since_ms,
        });
        let mut commands = vec![Command::Log {
            level: Level::Warn,
            message: format!(
                "maintenance hold ({reason}): {}; no automatic switch until `tandem lb \
                 release` (`tandem lb resume` still moves traffic)",
                self.where_traffic_stays()
            ),
        }];
        self.remember(&mut commands);
        Ok(commands)
    }

    /// Ends the maintenance hold; the rule applies again at once.
    pub fn release(&mut self, now_ms: i64) -> Vec<Command> {
        let mut commands = Vec::new();
        let Some(hold) = self.hold.take() else {
            commands.push(Command::Log {
                level: Level::Info,
                message: "release: no maintenance hold; nothing changed".into(),
            });
            return commands;
        };
        commands.push(Command::Log {
            level: Level::Warn,
            message: format!(
                "maintenance hold ({}) released: automatic switches apply again",
                hold.reason
            ),
        });
        self.waiting = None;
        self.decide(now_ms, &mut commands);
        self.track_dual_active(now_ms, &mut commands);
        self.remember(&mut commands);
        commands
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.backends.iter().map(|b| b.name.as_str()).collect();
        names.join(", ")
    }

    fn where_traffic_stays(&self) -> String {
        match self.active {
            Some(index) => format!("traffic stays on {}", self.backends[index].name),
            None => "no backend has traffic".into(),
        }
    }

    fn decide(&mut self, now_ms: i64, commands: &mut Vec<Command>) {
        if !self.routed {
            self.first_routing(now_ms, commands);
            return;
        }
        let Some(active) = self.active else {
            return;
        };
        if self.may_keep(active) {
            self.waiting = None;
            if !self.passing {
                self.passing = true;
                commands.push(Command::Route(active));
            }
            self.warn_standalone(active, commands);
            return;
        }
        let stale = self.superseded(active);
        // A mark-down closes them already; a stale claim closes them here, after the routing
        // commands (as a mark-down does).
        let close_stale =
            self.passing && stale && self.backends[active].status.state != HealthState::Down;
        let candidate = self.candidate_after(active);
        match candidate {
            Some(candidate) if self.hold.is_none() => {
                let reason = self.switch_reason(active, candidate, stale);
                self.switch(now_ms, candidate, reason, commands);
            }
            _ => {
                if self.passing {
                    self.passing = false;
                    commands.push(Command::StopRouting);
                }
                let waiting = self.waiting_reason(active, stale);
                self.set_waiting(waiting, commands);
            }
        }
        if close_stale {
            commands.push(Command::CloseConnections(active));
        }
    }

    /// The first routing of this run: once every backend has answered, the rule picks (rule 4,
    /// then the remembered active backend, then configuration order), so the backend that
    /// answers fastest at start-up does not win.
    fn first_routing(&mut self, now_ms: i64, commands: &mut Vec<Command>) {
        if self
            .backends
            .iter()
            .any(|backend| backend.status.state == HealthState::Unknown)
        {
            return;
        }
        let fit = |index: &usize| {
            self.backends[*index].status.state == HealthState::Up && self.may_keep(*index)
        };
        let remembered = self.active.filter(fit);
        let chosen = if self.hold.is_some() && self.active.is_some() {
            // Held: traffic stays where it was, or goes nowhere.
            remembered
        } else {
            remembered
                .or_else(|| {
                    (0..self.backends.len())
                        .filter(fit)
                        .filter(|&index| self.backends[index].claim().is_some())
                        .max_by(|&a, &b| self.backends[a].claim().cmp(&self.backends[b].claim()))
                })
                .or_else(|| (0..self.backends.len()).find(fit))
        };
        let Some(chosen) = chosen else {
            let waiting = match (self.active, &self.hold) {
                (Some(active), Some(hold)) => format!(
                    "maintenance hold ({}): traffic stays on {}, which cannot take it now; no \
                     new connection is routed until it can, `tandem lb resume` or `tandem lb \
                     release`",
                    hold.reason, self.backends[active].name
                ),
                _ => format!(
                    "no backend passes /status/status.html with a current claim (newest claim \
                     seen: {}); no traffic is routed [{}]",
                    self.highest_claim
                        .as_ref()
                        .map_or_else(|| "none".into(), Ballot::to_string),
                    self.describe_backends(0..self.backends.len())
                ),
            };
            self.set_waiting(waiting, commands);
            return;
        };
        self.routed = true;
        let backend = &self.backends[chosen];
        let reason = match backend.claim() {
            Some(claim) => format!(
                "first routing: it passes /status/status.html ({}) and holds the newest claim \
                 ({claim})",
                backend.status.last_detail
            ),
            None if self.active == Some(chosen) => format!(
                "first routing: the remembered active backend passes /status/status.html ({})",
                backend.status.last_detail
            ),
            None => format!(
                "first routing: first backend in order that passes /status/status.html ({})",
                backend.status.last_detail
            ),
        };
        if self.active == Some(chosen) {
            // Where traffic already was before the restart: nothing moved.
            self.active = None;
        }
        self.switch(now_ms, chosen, reason, commands);
        self.warn_standalone(chosen, commands);
    }

    fn switch_reason(&self, active: usize, candidate: usize, stale: bool) -> String {
        let failed = &self.backends[active];
        let to = &self.backends[candidate];
        let why = if stale {
            self.stale_claim(active)
        } else {
            format!(
                "{} failed {} status probes in a row (last: {})",
                failed.name, self.limits.fall, failed.status.last_detail
            )
        };
        let claim = to
            .claim()
            .map_or_else(String::new, |claim| format!(" and claims {claim}"));
        format!(
            "{why}; {} /hastatus.html is up and it passes /status/status.html ({}){claim}",
            to.name, to.status.last_detail
        )
    }

    /// Why a backend's claim no longer counts, with its latest status probe (a node that went
    /// silent keeps the claim it last stated, so its probe says whether it is also gone).
    fn stale_claim(&self, index: usize) -> String {
        let backend = &self.backends[index];
        if !self.below_newest_claim(index)
            && let Some(ballot) = &backend.ballot
        {
            return format!(
                "{} stepped down: its ballot says `{}` while another node holds the newest \
                 claim ({}) (its latest status probe: {})",
                backend.name,
                ballot.header_value(),
                self.highest_claim
                    .as_ref()
                    .map_or_else(String::new, Ballot::to_string),
                backend.status.last_detail
            );
        }
        format!(
            "{}'s claim, {}, is below the newest claim seen ({}) (its latest status probe: {})",
            backend.name,
            backend.claim().map_or_else(String::new, Ballot::to_string),
            self.highest_claim
                .as_ref()
                .map_or_else(String::new, Ballot::to_string),
            backend.status.last_detail
        )
    }

    fn waiting_reason(&self, active: usize, stale: bool) -> String {
        let backend = &self.backends[active];
        let what = if stale {
            self.stale_claim(active)
        } else {
            format!("{} is down", backend.name)
        };
        match &self.hold {
            Some(hold) => format!(
                "{what}; the maintenance hold ({}) keeps traffic there: new connections are \
                 refused until it can take them again, `tandem lb resume` or `tandem lb release`",
                hold.reason
            ),
            None => format!(
                "{what} and no other backend can take traffic yet [{}]",
                self.describe_backends(self.order_after(active).into_iter())
            ),
        }
    }

    fn describe_backends(&self, indexes: impl Iterator<Item = usize>) -> String {
        let reasons: Vec<String> = indexes
            .map(|index| {
                let backend = &self.backends[index];
                let ballot = match (&backend.ballot, backend.claim()) {
                    (Some(_), Some(claim)) if self.below_newest_claim(index) => {
                        format!(", claim {claim} is stale")
                    }
                    (Some(_), Some(claim)) => format!(", claims {claim}"),
                    (Some(ballot), None) if !ballot.ha_enabled => {
                        ", HA disabled (never a failover candidate)".into()
                    }
                    (Some(_), None) => ", claims nothing".into(),
                    (None, _) => String::new(),
                };
                format!(
                    "{}: /hastatus.html {} ({}), /status/status.html {}{ballot}",
                    backend.name,
                    describe(backend.hastatus.state),
                    backend.hastatus.last_detail,
                    backend.status.last_detail
                )
            })
            .collect();
        reasons.join("; ")
    }

    fn set_waiting(&mut self, waiting: String, commands: &mut Vec<Command>) {
        // Logged once per distinct situation, not on every probe round.
        if self.waiting.as_deref() != Some(waiting.as_str()) {
            commands.push(Command::Log {
                level: Level::Warn,
                message: waiting.clone(),
            });
            self.waiting = Some(waiting);
        }
    }

    /// Rule 5: a standalone active backend keeps traffic, with one warning.
    fn warn_standalone(&mut self, active: usize, commands: &mut Vec<Command>) {
        let standalone = self.backends[active].ha_disabled();
        if standalone && !self.standalone_warned {
            commands.push(Command::Log {
                level: Level::Warn,
                message: format!(
                    "{} has HA disabled (a standalone node): traffic stays on it, but no other \
                     backend will take over if it fails until HA is enabled on it again",
                    self.backends[active].name
                ),
            });
        }
        self.standalone_warned = standalone;
    }

    /// Other backends in failover order: the active backend's group first, then the rest, each
    /// in configuration order.
    fn order_after(&self, active: usize) -> Vec<usize> {
        let group = &self.backends[active].group;
        let same = (0..self.backends.len())
            .filter(|&index| index != active && &self.backends[index].group == group);
        let other = (0..self.backends.len()).filter(|&index| &self.backends[index].group != group);
        same.chain(other).collect()
    }

    /// The backend holding the newest claim first (rule 4), else the first backend without
    /// ballots in failover order.
    fn candidate_after(&self, active: usize) -> Option<usize> {
        let candidates: Vec<usize> = self
            .order_after(active)
            .into_iter()
            .filter(|&index| {
                self.backends[index].passes_candidate_probes() && self.may_take_over(index)
            })
            .collect();
        candidates
            .iter()
            .copied()
            .find(|&index| self.backends[index].claim().is_some())
            .or_else(|| candidates.first().copied())
    }

    fn switch(&mut self, now_ms: i64, to: usize, reason: String, commands: &mut Vec<Command>) {
        let switch = Switch {
            at_ms: now_ms,
            from: self.active.map(|index| self.backends[index].name.clone()),
            to: self.backends[to].name.clone(),
            reason,
        };
        // The rule accepted the target on its latest status pass (a candidate that has just
        // promoted itself is still debounced down from its Standby days): from here it counts
        // as up, so the new active backend is not judged down on its past as a Standby.
        self.backends[to].status.accept_up(now_ms);
        self.active = Some(to);
        self.passing = true;
        self.routed = true;
        self.active_since_ms = Some(now_ms);
        self.waiting = None;
        self.standalone_warned = false;
        // The first routing is not a switch: nothing moved.
        if switch.from.is_some() {
            self.switches += 1;
        }
        self.last_switch = Some(switch.clone());
        commands.push(Command::Route(to));
        commands.push(Command::Switched(switch));
    }

    /// Rule 6: two or more backends of the HA group pass their latest status probe.
    fn track_dual_active(&mut self, now_ms: i64, commands: &mut Vec<Command>) {
        let serving: Vec<&Backend> = self
            .backends
            .iter()
            .filter(|backend| {
                backend.status.last_ok && backend.ballot.as_ref().is_some_and(|b| b.ha_enabled)
            })
            .collect();
        if serving.len() < 2 {
            if let Some(episode) = self.dual_active.take() {
                commands.push(Command::Log {
                    level: Level::Info,
                    message: format!(
                        "dual Active resolved: only one backend of the HA group passes \
                         /status/status.html now (was: {})",
                        episode.detail
                    ),
                });
            }
            return;
        }
        let names: Vec<String> = serving.iter().map(|backend| backend.name.clone()).collect();
        let detail = serving
            .iter()
            .map(|backend| format!("{} [{}]", backend.name, backend.ballot_detail))
            .collect::<Vec<_>>()
            .join(", ");
        if self.dual_active.is_none() {
            commands.push(Command::Log {
                level: Level::Error,
                message: format!(
                    "DUAL ACTIVE: {} backends of the HA group pass /status/status.html at once: \
                     {detail}. Traffic goes only to the newest claim ({}); the other node must \
                     fence itself once it reaches its peers. Check the link between the nodes",
                    names.len(),
                    self.highest_claim
                        .as_ref()
                        .map_or_else(|| "none".into(), Ballot::to_string)
                ),
            });
        }
        let since_ms = self
            .dual_active
            .as_ref()
            .map_or(now_ms, |episode| episode.since_ms);
        self.dual_active = Some(DualActive {
            since_ms,
            backends: names,
            detail,
        });
    }

    /// Emits [`Command::Remember`] first in `commands` when the memory changed.
    fn remember(&mut self, commands: &mut Vec<Command>) {
        let memory = self.memory();
        if self.memory_unsaved || memory != self.remembered {
            self.memory_unsaved = false;
            self.remembered = memory.clone();
            commands.insert(0, Command::Remember(memory));
        }
    }
}

fn describe(state: HealthState) -> &'static str {
    match state {
        HealthState::Unknown => "not probed yet",
        HealthState::Up => "up",
        HealthState::Down => "down",
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
