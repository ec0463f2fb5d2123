//! The traffic controller's I/O: device listeners that pass TCP streams through to the active
//! backend, the probe loop that feeds the [`Policy`], the state file, and the admin listener
//! (status, resume, hold, release, witness, metrics). Every decision is the policy's; this
//! module only carries it out.

use crate::config::LbConfig;
use crate::metrics::{Metrics, render};
use crate::policy::{Command, Level, Memory, Page, Policy, Refused};
use crate::probe::{ProbeSetupError, Prober, client_config};
use crate::state_file::StateFileError;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tandem_clock::wall_clock_ms;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Device connections open at once through the controller. Beyond it new connections are
/// closed at once (counted in `tandem_lb_refused_connections_total`) rather than queued: a
/// queue would hold devices longer than their own connect timeout.
pub const CONNECTIONS_MAX: usize = 20_000;
/// Time to open the connection to the backend. A backend that takes longer is counted as a
/// failed connection; the device retries, and the probes decide whether the backend is down.
const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A pass-through connection on which neither side sent a byte for this long is closed, so dead
/// devices do not hold connection slots for ever (the HAProxy recipe's `timeout client` is the
/// same). App downloads keep moving bytes, so they are not cut.
const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How often an open connection checks whether it went idle.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// After dead evidence about the active backend (a refused connection: a device's, passed
/// through, or a probe's), probe rounds come this often instead of every `probe_interval`, so
/// `fall` failed probes mark it down in a few tens of milliseconds and the Secondary's promotion
/// is seen as soon as it happens. A refused TCP connect is an answer from the machine (nothing
/// listens), unlike a timeout, which a merely slow Primary also gives: timeouts never start
/// fast rounds. Four TLS probes per 25 ms cost a node little, and only during a failure.
const FAST_PROBE_INTERVAL: Duration = Duration::from_millis(25);
/// Fast rounds end once traffic is routed to a backend whose status passes again, or this long
/// after the last dead evidence (the Secondary's own detection, at the guide's defaults 20 s,
/// may take that long; probing fast for longer tells nothing new).
const FAST_PROBE_WINDOW: Duration = Duration::from_secs(30);

/// After a failed `accept` (e.g. out of file descriptors) the listener waits this long instead
/// of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Probe(#[from] ProbeSetupError),
    #[error("admin listener: {0}")]
    Admin(std::io::Error),
    #[error(transparent)]
    State(#[from] StateFileError),
}

struct Shared {
    config: LbConfig,
    policy: Mutex<Policy>,
    route: watch::Sender<Option<usize>>,
    /// Bumped when a backend is marked down: connections to it close.
    down: Vec<watch::Sender<u64>>,
    metrics: Metrics,
    slots: Arc<Semaphore>,
    /// Wakes the probe loop at once: the active backend refused a connection.
    dead_evidence: tokio::sync::Notify,
}

impl Shared {
    fn policy(&self) -> MutexGuard<'_, Policy> {
        // A panic while holding the lock cannot leave the policy half-updated in a way that
        // matters more than stopping routing altogether; keep serving with its last state.
        self.policy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Carries out `commands` in order. Returns the first state-file write failure (also
    /// logged and counted), so an operator's hold or release can say it was not persisted.
    fn apply(&self, commands: Vec<Command>) -> Result<(), StateFileError> {
        let mut outcome = Ok(());
        for command in commands {
            match command {
                Command::Route(index) => {
                    self.route.send_replace(Some(index));
                    tracing::info!(backend = %self.config.backends[index].name, "new connections go to this backend");
                }
                Command::StopRouting => {
                    self.route.send_replace(None);
                    tracing::warn!("new connections are refused until a backend can take them");
                }
                Command::CloseConnections(index) => {
                    self.down[index].send_modify(|generation| *generation += 1);
                    tracing::warn!(backend = %self.config.backends[index].name, "closing its connections");
                }
                Command::Switched(switch) => match &switch.from {
                    Some(from) => {
                        self.metrics.switches.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%from, to = %switch.to, reason = %switch.reason, "traffic switched");
                    }
                    None => {
                        tracing::info!(to = %switch.to, reason = %switch.reason, "traffic routed")
                    }
                },
                Command::Log { level, message } => match level {
                    Level::Info => tracing::info!("{message}"),
                    Level::Warn => tracing::warn!("{message}"),
                    Level::Error => tracing::error!("{message}"),
                },
                // Written synchronously, before the routing commands that follow it: the
                // memory changes rarely (a newer claim, a switch, a hold) and a write is one
                // small file and two fsyncs, so blocking this worker briefly is cheaper than a
                // state file that lags behind where devices were sent.
                Command::Remember(memory) => {
                    if let Err(error) = crate::state_file::save(&self.config.state_file, &memory) {
                        self.metrics
                            .state_write_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, "the controller's memory was not saved");
                        if outcome.is_ok() {
                            outcome = Err(error);
                        }
                    }
                }
            }
        }
        outcome
    }
}

/// A bound traffic controller, ready to run.
pub struct Lb {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    admin: TcpListener,
    probers: Vec<Prober>,
}

impl Lb {
    pub async fn bind(config: LbConfig) -> Result<Self, LbError> {
        // Read before anything listens: a controller that cannot trust its memory must not
        // start routing.
        let remembered = crate::state_file::load(&config.state_file)?;
        let tls = client_config(&config.probe_tls)?;
        if config.probe_tls == crate::config::ProbeTls::Insecure {
            tracing::warn!("probe_tls.insecure = true: probes accept any certificate (labs only)");
        }
        let timeout = Duration::from_millis(config.probe_timeout.as_millis());
        let probers = config
            .backends
            .iter()
            .map(|backend| {
                Prober::new(
                    tls.clone(),
                    &backend.name,
                    &backend.address,
                    &backend.server_name,
                    timeout,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| LbError::Bind {
                    what: "listen",
                    addr: *addr,
                    source,
                })?;
            listeners.push(listener);
        }
        let admin = TcpListener::bind(config.admin)
            .await
            .map_err(|source| LbError::Bind {
                what: "admin",
                addr: config.admin,
                source,
            })?;
        let (policy, restored) = policy_for(&config, remembered);
        let shared = Arc::new(Shared {
            down: config
                .backends
                .iter()
                .map(|_| watch::Sender::new(0))
                .collect(),
            metrics: Metrics::new(config.backends.len()),
            route: watch::Sender::new(None),
            policy: Mutex::new(policy),
            slots: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
            dead_evidence: tokio::sync::Notify::new(),
            config,
        });
        // Only logs: restoring changes nothing on disk.
        let _ = shared.apply(restored);
        Ok(Self {
            shared,
            listeners,
            admin,
            probers,
        })
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }

    /// Runs until `shutdown` completes. Open device connections are dropped with the runtime.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), LbError> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(probe_loop(self.shared.clone(), self.probers));
        for listener in self.listeners {
            tasks.spawn(accept_loop(self.shared.clone(), listener));
        }
        let router = admin_router(self.shared.clone());
        let admin = self.admin;
        tasks.spawn(async move {
            if let Err(error) = axum::serve(admin, router).await {
                tracing::error!(%error, "admin listener stopped");
            }
        });
        shutdown.await;
        tasks.shutdown().await;
        Ok(())
    }
}

/// The policy for `config`, with what the state file remembered; the commands are its logs.
fn policy_for(config: &LbConfig, remembered: Option<Memory>) -> (Policy, Vec<Command>) {
    let mut policy = Policy::new(
        config
            .backends
            .iter()
            .map(|backend| (backend.name.clone(), backend.group.clone()))
            .collect(),
        crate::policy::Limits {
            fall: config.fall,
            rise: config.rise,
        },
    );
    let restored = match remembered {
        Some(memory) => policy.restore(memory),
        None => {
            tracing::info!(state_file = %config.state_file.display(), "no state file yet: nothing remembered (first start)");
            Vec::new()
        }
    };
    (policy, restored)
}

async fn probe_loop(shared: Arc<Shared>, probers: Vec<Prober>) {
    let interval = Duration::from_millis(shared.config.probe_interval.as_millis());
    let mut ticker = tokio::time::interval(interval);
    // A slow round delays the next one instead of firing a burst to catch up.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let probers = Arc::new(probers);
    // Until when rounds come every FAST_PROBE_INTERVAL.
    let mut fast_until: Option<Instant> = None;
    loop {
        let fast = fast_until.is_some_and(|until| Instant::now() < until);
        let woken = if fast {
            tokio::select! {
                () = tokio::time::sleep(FAST_PROBE_INTERVAL) => false,
                () = shared.dead_evidence.notified() => true,
            }
        } else {
            tokio::select! {
                _ = ticker.tick() => false,
                () = shared.dead_evidence.notified() => true,
            }
        };
        let refused = probe_round(&shared, &probers).await;
        if woken || refused {
            if fast_until.is_none() {
                tracing::info!(
                    "the active backend refused a connection: probing every {} ms until traffic \
                     is settled",
                    FAST_PROBE_INTERVAL.as_millis()
                );
            }
            fast_until = Some(Instant::now() + FAST_PROBE_WINDOW);
        } else if fast_until.is_some() && (!fast || settled(&shared.policy())) {
            fast_until = None;
        }
    }
}

/// Traffic is routed to a backend whose latest status probe passed, with no failure streak.
fn settled(policy: &Policy) -> bool {
    policy.passing()
        && policy.active().is_some_and(|index| {
            let status = &policy.backends()[index].status;
            status.state == crate::policy::HealthState::Up && status.last_ok && status.streak == 0
        })
}

/// One probe of every page of every backend, at once. Returns whether the active backend's
/// status probe was refused at connect (dead evidence).
async fn probe_round(shared: &Arc<Shared>, probers: &Arc<Vec<Prober>>) -> bool {
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut round = tokio::task::JoinSet::new();
    for backend in 0..probers.len() {
        for page in Page::ALL {
            let shared = shared.clone();
            let probers = probers.clone();
            let refused = refused.clone();
            round.spawn(async move {
                let started = Instant::now();
                let (result, ballot) = probers[backend].probe(page).await;
                shared
                    .metrics
                    .record_probe(backend, page, started.elapsed(), &result);
                let dead = page == Page::Status && crate::probe::refused_at_connect(&result);
                // Decided and carried out under one lock, so routing follows the policy's
                // order even when probes and an operator's command race. A failed state
                // write is logged and counted in apply; routing goes on.
                let mut policy = shared.policy();
                if dead && policy.active() == Some(backend) {
                    refused.store(true, Ordering::Relaxed);
                }
                let commands = policy.probe(wall_clock_ms(), backend, page, result, ballot);
                let _ = shared.apply(commands);
                drop(policy);
            });
        }
    }
    // Every probe ends within probe_timeout ≤ probe_interval, so rounds never overlap.
    while round.join_next().await.is_some() {}
    refused.load(Ordering::Relaxed)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (inbound, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
            shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                limit = CONNECTIONS_MAX,
                "connection limit reached; closing a new connection"
            );
            continue;
        };
        let Some(backend) = *shared.route.borrow() else {
            shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("no backend can take traffic; closing a new connection");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            pass_through(&shared, inbound, backend).await;
            drop(permit);
        });
    }
}

async fn pass_through(shared: &Shared, inbound: TcpStream, backend: usize) {
    let metrics = &shared.metrics.backends[backend];
    // Subscribed before connecting, so a mark-down during the connect closes this one too.
    let mut down = shared.down[backend].subscribe();
    down.borrow_and_update();
    // The policy stops routing before it closes a backend's connections: a connection accepted
    // just before is refused here rather than forwarded to a backend marked down.
    if *shared.route.borrow() != Some(backend) {
        shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let address = &shared.config.backends[backend].address;
    let outbound = match tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            metrics.connect_failures.fetch_add(1, Ordering::Relaxed);
            // Nothing listens there (or the machine said no): probe now, not at the next tick.
            shared.dead_evidence.notify_one();
            tracing::warn!(backend = %shared.config.backends[backend].name, %error, "cannot connect to the backend");
            return;
        }
        Err(_) => {
            metrics.connect_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(backend = %shared.config.backends[backend].name, "connecting to the backend timed out");
            return;
        }
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    metrics.open.fetch_add(1, Ordering::Relaxed);
    let traffic = AtomicU64::new(0);
    let mut device = Counted {
        inner: inbound,
        read: &metrics.bytes_from_devices,
        traffic: &traffic,
    };
    let mut node = Counted {
        inner: outbound,
        read: &metrics.bytes_to_devices,
        traffic: &traffic,
    };
    let idle = async {
        let mut checks = tokio::time::interval(IDLE_CHECK_INTERVAL);
        let (mut seen, mut quiet_since) = (0, tokio::time::Instant::now());
        loop {
            checks.tick().await;
            let now = traffic.load(Ordering::Relaxed);
            if now != seen {
                (seen, quiet_since) = (now, tokio::time::Instant::now());
            } else if quiet_since.elapsed() >= CONNECTION_IDLE_TIMEOUT {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut device, &mut node) => {}
        _ = down.changed() => {
            metrics.closed_by_mark_down.fetch_add(1, Ordering::Relaxed);
        }
        () = idle => {}
    }
    metrics.open.fetch_sub(1, Ordering::Relaxed);
}

/// A stream that counts the bytes read from it, as they pass (so the metrics move during long
/// downloads and still count connections closed by a mark-down).
struct Counted<'a> {
    inner: TcpStream,
    read: &'a AtomicU64,
    /// Bytes either way on this connection, for the idle check.
    traffic: &'a AtomicU64,
}

impl AsyncRead for Counted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.read.fetch_add(read as u64, Ordering::Relaxed);
        self.traffic.fetch_add(read as u64, Ordering::Relaxed);
        poll
    }
}

impl AsyncWrite for Counted<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn admin_router(shared: Arc<Shared>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/status", get(status))
        .route("/resume", post(resume))
        .route("/hold", post(hold))
        .route("/release", post(release))
        .route("/metrics", get(metrics))
        .route("/witness/primary", get(witness).post(witness_record))
        .with_state(shared)
}

type AdminState = axum::extract::State<Arc<Shared>>;
type AdminAnswer = (axum::http::StatusCode, axum::Json<Value>);

async fn status(axum::extract::State(shared): AdminState) -> axum::Json<Value> {
    axum::Json(status_json(&shared))
}

fn rfc3339(ms: Option<i64>) -> Value {
    ms.and_then(|ms| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    })
    .and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(Value::Null, Value::String)
}

fn page_json(health: &crate::policy::Health) -> Value {
    json!({
        "state": health.state,
        "lastOk": health.last_ok,
        "lastDetail": health.last_detail,
        "lastProbeAt": rfc3339(health.last_probe_at_ms),
        "changedAt": rfc3339(health.changed_at_ms),
        "streak": health.streak,
    })
}

fn ballot_json(ballot: Option<&tandem_ha::ballot::Ballot>) -> Value {
    serde_json::to_value(ballot).unwrap_or(Value::Null)
}

fn backends_json(shared: &Shared, policy: &Policy) -> Vec<Value> {
    policy
        .backends()
        .iter()
        .zip(&shared.config.backends)
        .enumerate()
        .map(|(index, (backend, config))| {
            let metrics = &shared.metrics.backends[index];
            json!({
                "name": backend.name,
                "address": config.address,
                "group": backend.group,
                "active": policy.active() == Some(index),
                "status": page_json(&backend.status),
                "hastatus": page_json(&backend.hastatus),
                "ballot": backend.ballot_detail,
                "claim": ballot_json(backend.claim()),
                "claimStale": policy.below_newest_claim(index),
                "haDisabled": backend.ha_disabled(),
                "highestClaim": ballot_json(backend.highest_claim.as_ref()),
                "openConnections": metrics.open.load(Ordering::Relaxed),
                "connections": metrics.connections.load(Ordering::Relaxed),
            })
        })
        .collect()
}

fn status_json(shared: &Shared) -> Value {
    let policy = shared.policy();
    let snapshot = serde_json::to_value(&*policy).unwrap_or(Value::Null);
    let last_switch = snapshot.get("lastSwitch").cloned().unwrap_or(Value::Null);
    let last_switch = match last_switch {
        Value::Object(mut switch) => {
            let at = switch.remove("atMs").and_then(|at| at.as_i64());
            switch.insert("at".into(), rfc3339(at));
            Value::Object(switch)
        }
        other => other,
    };
    let hold = policy.held().map_or(
        Value::Null,
        |hold| json!({"reason": hold.reason, "since": rfc3339(Some(hold.since_ms))}),
    );
    let dual_active = policy.dual_active().map_or(Value::Null, |episode| {
        json!({
            "backends": episode.backends,
            "detail": episode.detail,
            "since": rfc3339(Some(episode.since_ms)),
        })
    });
    json!({
        "listen": shared.config.listen,
        "active": policy.active().map(|index| policy.backends()[index].name.clone()),
        "activeSince": rfc3339(snapshot.get("activeSinceMs").and_then(Value::as_i64)),
        "canTakeTraffic": policy.passing() && policy.active().is_some_and(|index| policy.backends()[index].status.state == crate::policy::HealthState::Up),
        "passing": policy.passing(),
        "waiting": snapshot.get("waiting").cloned().unwrap_or(Value::Null),
        "lastSwitch": last_switch,
        "switches": policy.switches(),
        "hold": hold,
        "dualActive": dual_active,
        "highestClaim": ballot_json(policy.highest_claim()),
        "stateFile": shared.config.state_file.display().to_string(),
        "fall": shared.config.fall,
        "rise": shared.config.rise,
        "probeInterval": shared.config.probe_interval.to_string(),
        "probeTimeout": shared.config.probe_timeout.to_string(),
        "backends": backends_json(shared, &policy),
    })
}

#[derive(serde::Deserialize)]
struct ResumeQuery {
    to: Option<String>,
}

#[derive(serde::Deserialize)]
struct HoldQuery {
    reason: Option<String>,
}

type Query<T> = Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>;

fn bad_query(error: impl std::fmt::Display, usage: &str) -> AdminAnswer {
    (
        axum::http::StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": format!("query: {error}; use {usage}")})),
    )
}

fn active_name(policy: &Policy) -> Option<String> {
    policy
        .active()
        .map(|index| policy.backends()[index].name.clone())
}

/// The answer to an operator's command whose state write failed: the change holds in this
/// process, but a restart would forget it.
fn not_persisted(error: &StateFileError) -> AdminAnswer {
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"error": format!(
            "done in the running controller, but not persisted: {error}; a restart would \
             forget it, so fix the state file and run the command again"
        )})),
    )
}

async fn resume(
    axum::extract::State(shared): AdminState,
    query: Query<ResumeQuery>,
) -> AdminAnswer {
    use axum::http::StatusCode;
    let to = match query {
        Ok(axum::extract::Query(query)) => query.to,
        Err(error) => return bad_query(error, "POST /resume or POST /resume?to=NAME"),
    };
    let mut policy = shared.policy();
    match policy.resume(wall_clock_ms(), to.as_deref()) {
        Ok(commands) => {
            let moved = commands
                .iter()
                .any(|command| matches!(command, Command::Route(_)));
            if let Err(error) = shared.apply(commands) {
                return not_persisted(&error);
            }
            let active = active_name(&policy);
            let mut message = match (&active, moved) {
                (Some(name), true) => format!("traffic moved to {name}"),
                (Some(name), false) => format!("traffic is already on {name}; nothing changed"),
                (None, _) => "no backend has traffic".into(),
            };
            if let Some(hold) = policy.held() {
                message += &format!(
                    "; the maintenance hold ({}) remains: no automatic switch until `tandem lb \
                     release`",
                    hold.reason
                );
            }
            let held = policy.held().is_some();
            (
                StatusCode::OK,
                axum::Json(
                    json!({"active": active, "moved": moved, "held": held, "message": message}),
                ),
            )
        }
        Err(Refused(reason)) => {
            tracing::warn!(%reason, "resume refused");
            (StatusCode::CONFLICT, axum::Json(json!({"error": reason})))
        }
    }
}

async fn hold(axum::extract::State(shared): AdminState, query: Query<HoldQuery>) -> AdminAnswer {
    use axum::http::StatusCode;
    let reason = match query {
        Ok(axum::extract::Query(query)) => query.reason,
        Err(error) => return bad_query(error, "POST /hold or POST /hold?reason=TEXT"),
    };
    let mut policy = shared.policy();
    match policy.hold(wall_clock_ms(), reason.as_deref()) {
        Ok(commands) => {
            if let Err(error) = shared.apply(commands) {
                return not_persisted(&error);
            }
            let active = active_name(&policy);
            let reason = policy.held().map(|hold| hold.reason.clone());
            let message = format!(
                "held ({}): traffic stays on {}; no automatic switch until `tandem lb release`",
                reason.as_deref().unwrap_or_default(),
                active.as_deref().unwrap_or("no backend")
            );
            (
                StatusCode::OK,
                axum::Json(
                    json!({"held": true, "active": active, "reason": reason, "message": message}),
                ),
            )
        }
        Err(Refused(error)) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))),
    }
}

async fn release(axum::extract::State(shared): AdminState) -> AdminAnswer {
    use axum::http::StatusCode;
    let mut policy = shared.policy();
    let was_held = policy.held().is_some();
    let commands = policy.release(wall_clock_ms());
    if let Err(error) = shared.apply(commands) {
        return not_persisted(&error);
    }
    let active = active_name(&policy);
    let message = if was_held {
        format!(
            "released: automatic switches apply again; traffic goes to {}",
            active.as_deref().unwrap_or("no backend")
        )
    } else {
        "not held; nothing changed".into()
    };
    (
        StatusCode::OK,
        axum::Json(
            json!({"held": false, "released": was_held, "active": active, "message": message}),
        ),
    )
}

/// `GET /witness/primary`, for the Secondary's `--witness`: `{"reachable": bool, ...}` (nodes
/// read only `reachable`). False only once this controller has itself stopped routing to the
/// active backend: its status page is debounced down and new connections are refused
/// ([`Policy::reaches_active`]), so a Secondary never promotes while devices still reach the
/// Primary through this controller.
async fn witness(axum::extract::State(shared): AdminState) -> axum::Json<Value> {
    let policy = shared.policy();
    let backend = policy.active().map(|index| &policy.backends()[index]);
    axum::Json(json!({
        "reachable": policy.reaches_active(),
        "backend": backend.map(|backend| backend.name.clone()),
        "routing": policy.passing(),
        "status": backend.map(|backend| backend.status.state),
    }))
}

/// `POST /witness/primary`: a node asks this witness to record that the Primary falls back from
/// synchronous replication, that it recovered, or that its Standby promotes over it
/// (`tandem_ha::record`). Granted only once the record is in the state file: a record lost in a
/// crash could let both sides act.
async fn witness_record(
    axum::extract::State(shared): AdminState,
    body: Result<
        axum::Json<tandem_ha::record::RecordRequest>,
        axum::extract::rejection::JsonRejection,
    >,
) -> AdminAnswer {
    use axum::http::StatusCode;
    let axum::Json(request) = match body {
        Ok(body) => body,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({
                    "error": format!(
                        "{error}; send {{\"record\": \"degrade|recover|promote\", \"primary\": \
                         {{\"epoch\": N, \"nodeId\": \"ID\"}}, \"node\": \"NAME\"}}"
                    )
                })),
            );
        }
    };
    let mut policy = shared.policy();
    let before = policy.register().clone();
    let (answer, commands) = policy.record(wall_clock_ms(), &request);
    if let Err(error) = shared.apply(commands) {
        policy.memory_not_saved(before);
        return (
            StatusCode::OK,
            axum::Json(json!({
                "granted": false,
                "reason": format!("the witness could not save the record: {error}"),
            })),
        );
    }
    (StatusCode::OK, axum::Json(json!(answer)))
}

async fn metrics(
    axum::extract::State(shared): AdminState,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let text = {
        let policy = shared.policy();
        render(&shared.metrics, &shared.config, &policy)
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}
