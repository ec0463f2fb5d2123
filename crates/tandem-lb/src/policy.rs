//! The traffic-controller rule as a pure state machine: probe results and operator commands in,
//! routing commands out, time passed in. No I/O, no clock.
//!
//! The rule (guide: Load balancer setup; PRODUCT.md section 7):
//!
//! 1. Traffic stays on the active backend while its `/status/status.html` probe passes.
//! 2. When the active backend is **down** (`fall` consecutive failed status probes), its open
//!    connections are closed and traffic moves to the first candidate that can take it: its
//!    `/hastatus.html` is up (the guide's condition) **and** its latest `/status/status.html`
//!    passed, meaning the Tandem node has promoted itself to Active. Candidates are tried in
//!    configuration order, those of the active backend's data-center group first (GTM: another
//!    group only when no backend of this one can take traffic).
//! 3. It never moves back by itself: a backend that comes back healthy gets traffic only through
//!    [`Policy::resume`] (Manual Resume = Yes).
//!
//! Why the candidate must also pass `/status/status.html`: a Tandem Standby refuses device
//! traffic until it promotes itself, and the controller never moves back by itself. Moving as soon
//! as the Primary failed a few probes would pin the fleet to a Standby that may never promote (the
//! Primary only blipped for less than the Secondary's heartbeat detection, or If Failure Detected
//! is Keep in Standby). Waiting for the candidate to be Active makes the controller follow the
//! nodes' own decision; the guide's condition (`/hastatus.html` OK) still holds, since an Active
//! node answers it with OK.

use serde::Serialize;

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
}

impl Backend {
    fn health_mut(&mut self, page: Page) -> &mut Health {
        match page {
            Page::Status => &mut self.status,
            Page::HaStatus => &mut self.hastatus,
        }
    }

    /// Can take traffic from a failed active backend (rule 2).
    fn is_candidate(&self) -> bool {
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

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// New connections go to this backend (by index in the configuration).
    Route(usize),
    /// Close the open connections to this backend: it was marked down.
    CloseConnections(usize),
    /// Traffic moved; log it (warn) and count it.
    Switched(Switch),
    /// Something an operator should see in the log.
    Log { warn: bool, message: String },
}

/// An operator's resume that was refused; the message says why and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    backends: Vec<Backend>,
    #[serde(skip)]
    limits: Limits,
    active: Option<usize>,
    active_since_ms: Option<i64>,
    last_switch: Option<Switch>,
    switches: u64,
    /// Set while the active backend is down and no candidate can take traffic: why.
    waiting: Option<String>,
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
                })
                .collect(),
            limits,
            active: None,
            active_since_ms: None,
            last_switch: None,
            switches: 0,
            waiting: None,
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn active(&self) -> Option<usize> {
        self.active
    }

    pub fn switches(&self) -> u64 {
        self.switches
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.backends
            .iter()
            .position(|backend| backend.name == name)
    }

    /// Witness answer (PRODUCT.md, witness-guarded promotion): the backend traffic goes to passed
    /// its latest status probe. The latest result, not the debounced state: a Secondary asks
    /// right after its own heartbeats failed and must not wait `fall` rounds for the answer.
    pub fn reaches_active(&self) -> bool {
        self.active
            .is_some_and(|index| self.backends[index].status.last_ok)
    }

    /// A probe result for `backend`'s `page` at `now_ms`.
    pub fn probe(
        &mut self,
        now_ms: i64,
        backend: usize,
        page: Page,
        result: ProbeResult,
    ) -> Vec<Command> {
        let mut commands = Vec::new();
        let Some(target) = self.backends.get_mut(backend) else {
            return commands;
        };
        let (ok, detail) = match result {
            ProbeResult::Ok(detail) => (true, detail),
            ProbeResult::Failed(detail) => (false, detail),
        };
        let limits = self.limits;
        let before = target.health_mut(page).state;
        let changed = target.health_mut(page).record(ok, detail, now_ms, limits);
        if let Some(state) = changed {
            let detail = target.health_mut(page).last_detail.clone();
            let message = format!(
                "{} {} is {}: {detail}",
                target.name,
                page.path(),
                match state {
                    HealthState::Up => "up",
                    HealthState::Down => "down",
                    HealthState::Unknown => "unknown",
                }
            );
            let warn = state == HealthState::Down;
            commands.push(Command::Log { warn, message });
            // Only a backend that was up can hold connections worth closing.
            if page == Page::Status && state == HealthState::Down && before == HealthState::Up {
                commands.push(Command::CloseConnections(backend));
            }
        }
        self.decide(now_ms, &mut commands);
        commands
    }

    /// Moves traffic to `to`, or to the first backend whose status page is up. Refused, with the
    /// reason, when that backend cannot take traffic.
    pub fn resume(&mut self, now_ms: i64, to: Option<&str>) -> Result<Vec<Command>, Refused> {
        let target = match to {
            Some(name) => {
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
                index
            }
            None => self
                .backends
                .iter()
                .position(|backend| backend.status.state == HealthState::Up)
                .ok_or_else(|| {
                    Refused(format!(
                        "no backend passes /status/status.html, so none can take traffic; {}",
                        self.where_traffic_stays()
                    ))
                })?,
        };
        let mut commands = Vec::new();
        if self.active == Some(target) {
            commands.push(Command::Log {
                warn: false,
                message: format!(
                    "resume: traffic is already on {}; nothing changed",
                    self.backends[target].name
                ),
            });
            return Ok(commands);
        }
        self.switch(now_ms, target, "operator resume".into(), &mut commands);
        Ok(commands)
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
        match self.active {
            None => {
                // First routing: wait until every backend has answered once, so the first
                // backend in order wins even when another one answers faster at start-up.
                if self
                    .backends
                    .iter()
                    .any(|backend| backend.status.state == HealthState::Unknown)
                {
                    return;
                }
                if let Some(first) = self
                    .backends
                    .iter()
                    .position(|backend| backend.status.state == HealthState::Up)
                {
                    let reason = format!(
                        "first backend in order that passes /status/status.html ({})",
                        self.backends[first].status.last_detail
                    );
                    self.switch(now_ms, first, reason, commands);
                } else {
                    self.set_waiting(
                        "no backend passes /status/status.html yet; no traffic is routed".into(),
                        commands,
                    );
                }
            }
            Some(active) => {
                if self.backends[active].status.state != HealthState::Down {
                    self.waiting = None;
                    return;
                }
                match self.candidate_after(active) {
                    Some(candidate) => {
                        let failed = &self.backends[active];
                        let to = &self.backends[candidate];
                        let reason = format!(
                            "{} failed {} status probes in a row (last: {}); {} /hastatus.html \
                             is up and it passes /status/status.html ({})",
                            failed.name,
                            self.limits.fall,
                            failed.status.last_detail,
                            to.name,
                            to.status.last_detail
                        );
                        self.switch(now_ms, candidate, reason, commands);
                    }
                    None => {
                        let reasons: Vec<String> = self
                            .order_after(active)
                            .into_iter()
                            .map(|index| {
                                let backend = &self.backends[index];
                                format!(
                                    "{}: /hastatus.html {} ({}), /status/status.html {}",
                                    backend.name,
                                    describe(backend.hastatus.state),
                                    backend.hastatus.last_detail,
                                    backend.status.last_detail
                                )
                            })
                            .collect();
                        let waiting = format!(
                            "{} is down and no other backend can take traffic yet [{}]",
                            self.backends[active].name,
                            reasons.join("; ")
                        );
                        self.set_waiting(waiting, commands);
                    }
                }
            }
        }
    }

    fn set_waiting(&mut self, waiting: String, commands: &mut Vec<Command>) {
        // Logged once per distinct situation, not on every probe round.
        if self.waiting.as_deref() != Some(waiting.as_str()) {
            commands.push(Command::Log {
                warn: true,
                message: waiting.clone(),
            });
            self.waiting = Some(waiting);
        }
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

    fn candidate_after(&self, active: usize) -> Option<usize> {
        self.order_after(active)
            .into_iter()
            .find(|&index| self.backends[index].is_candidate())
    }

    fn switch(&mut self, now_ms: i64, to: usize, reason: String, commands: &mut Vec<Command>) {
        let switch = Switch {
            at_ms: now_ms,
            from: self.active.map(|index| self.backends[index].name.clone()),
            to: self.backends[to].name.clone(),
            reason,
        };
        self.active = Some(to);
        self.active_since_ms = Some(now_ms);
        self.waiting = None;
        // The first routing is not a switch: nothing moved.
        if switch.from.is_some() {
            self.switches += 1;
        }
        self.last_switch = Some(switch.clone());
        commands.push(Command::Route(to));
        commands.push(Command::Switched(switch));
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
