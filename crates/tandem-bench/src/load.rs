//! Phases 2 to 4: C workers, each opening a connection, sending K requests on it and moving on
//! to the next one; a probe on its own keep-alive connection meanwhile. The same harness runs
//! the reference workload (the status page, anonymous) and the check-in workload (each
//! connection a device presenting its identity).

use crate::cpu;
use crate::fleet::Device;
use crate::flood::{self, FloodResult};
use crate::histogram::Histogram;
use crate::http::{Connection, Failure, Target};
use crate::memory::{self, MemoryResult};
use crate::tls::Tls;
use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Pause after a failed connection before the worker tries the next one, so a refusing server
/// is not hammered in a tight loop (and the error count stays meaningful).
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Error kinds are few (see [`Failure::kind`]); each keeps its first message as an example.
const ERROR_EXAMPLE_CHARS_MAX: usize = 300;

pub const STATUS_PATH: &str = "/status/status.html";
pub const CHECKIN_PATH: &str = "/device/v1/checkin";
const STATUS_BODY: &[u8] = b"MOBILEIRON-STATUS: OK";

pub enum Workload {
    /// `GET /status/status.html` without a client certificate: the TLS plus HTTP ceiling.
    Reference,
    /// `POST /device/v1/checkin` as the next device of the fleet, round-robin (see [`spread`]).
    CheckIn {
        fleet: Arc<Vec<Device>>,
        body: Bytes,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub connections: usize,
    pub requests_per_connection: u32,
    /// Load before measuring starts (connections ramp up, caches warm).
    pub warmup: Duration,
    pub duration: Duration,
    /// Offered requests per second over all workers; `None` sends as fast as answers come.
    pub rate: Option<f64>,
    pub probe_interval: Duration,
}

/// What runs and is watched beside each phase's workload.
#[derive(Clone, Debug, Default)]
pub struct Alongside {
    /// The server's process, for its CPU per thread and its memory.
    pub server_pid: Option<u32>,
    /// A wrong-password flood for the whole phase (warm-up included).
    pub flood: Option<flood::Options>,
    /// Idle time after the phase before the server's memory is read the last time ("after").
    pub settle: Duration,
}

#[derive(Default)]
pub struct Errors {
    pub by_kind: BTreeMap<String, (u64, String)>,
}

impl Errors {
    pub fn add(&mut self, failure: &Failure) {
        let entry = self.by_kind.entry(failure.kind()).or_insert_with(|| {
            let mut example = failure.to_string();
            example.truncate(example.floor_char_boundary(ERROR_EXAMPLE_CHARS_MAX));
            (0, example)
        });
        entry.0 += 1;
    }

    pub fn merge(&mut self, other: Errors) {
        for (kind, (count, example)) in other.by_kind {
            self.by_kind.entry(kind).or_insert((0, example)).0 += count;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().map(|(count, _)| count).sum()
    }
}

/// What one phase measured. Latencies and counts cover the measured window only; `attempts` and
/// `errors` cover the whole phase (warm-up included), since an error is an error.
#[derive(Default)]
pub struct PhaseResult {
    pub window: Duration,
    pub requests: u64,
    pub latency: Histogram,
    /// TCP connect plus TLS handshake plus HTTP setup, per connection opened.
    pub connect: Histogram,
    pub attempts: u64,
    pub errors: Errors,
    pub probe: Histogram,
    pub probe_errors: Errors,
    /// Distinct devices that checked in (check-in workload).
    pub devices_used: usize,
    pub cpu: cpu::Usage,
    pub flood: Option<FloodResult>,
    /// The server's memory (with `--server-pid` on Linux).
    pub memory: Option<MemoryResult>,
}

impl PhaseResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn error_fraction(&self) -> f64 {
        self.errors.total() as f64 / self.attempts.max(1) as f64
    }
}

struct Shared {
    target: Target,
    tls: Tls,
    workload: Workload,
    options: Options,
    next_device: AtomicUsize,
    measure_from: Instant,
    end: Instant,
}

impl Shared {
    fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }
}

#[derive(Default)]
struct WorkerResult {
    requests: u64,
    latency: Histogram,
    connect: Histogram,
    attempts: u64,
    errors: Errors,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckInReply {
    device_uuid: String,
}

async fn worker(shared: Arc<Shared>, index: usize) -> WorkerResult {
    let options = shared.options;
    let mut result = WorkerResult::default();
    // Rate mode: this worker's share of the offered load, staggered so workers do not send in
    // lockstep. A request's latency counts from when it was due, so a server that falls behind
    // is charged for the wait (no coordinated omission).
    let interval = options
        .rate
        .map(|rate| Duration::from_secs_f64(options.connections as f64 / rate));
    let mut due = interval.map(|interval| {
        shared.measure_from - options.warmup
            + interval.mul_f64(index as f64 / options.connections as f64)
    });
    let (method, path, body, device) = match &shared.workload {
        Workload::Reference => (Method::GET, STATUS_PATH, Bytes::new(), None),
        Workload::CheckIn { fleet, body } => {
            (Method::POST, CHECKIN_PATH, body.clone(), Some(fleet))
        }
    };
    'connections: while Instant::now() < shared.end {
        let (config, expected_uuid) = match device {
            None => (shared.tls.anonymous(), None),
            Some(fleet) => {
                let turn = shared.next_device.fetch_add(1, Ordering::Relaxed);
                let device = &fleet[spread(turn, fleet.len())];
                match shared.tls.device(device.identity.clone()) {
                    Ok(config) => (config, Some(device.uuid.as_str())),
                    Err(error) => {
                        result.attempts += 1;
                        result.errors.add(&Failure::Body(format!("{error:#}")));
                        tokio::time::sleep(ERROR_PAUSE).await;
                        continue;
                    }
                }
            }
        };
        let opening = Instant::now();
        let mut connection = match Connection::open(&shared.target, config).await {
            Ok(connection) => connection,
            Err(failure) => {
                result.attempts += 1;
                result.errors.add(&failure);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let opened = Instant::now();
        if shared.in_window(opened) {
            result.connect.record(opened - opening);
        }
        for number in 0..options.requests_per_connection {
            let start = match (&mut due, interval) {
                (Some(due), Some(interval)) => {
                    let this = *due;
                    *due += interval;
                    if this >= shared.end {
                        break 'connections;
                    }
                    if Instant::now() < this {
                        // On time: the clock starts when the timer fires, so the timer's own
                        // granularity (1 ms) is not charged to the server.
                        tokio::time::sleep_until(this).await;
                        Instant::now()
                    } else {
                        this
                    }
                }
                _ => Instant::now(),
            };
            if start >= shared.end {
                break 'connections;
            }
            let last = number + 1 == options.requests_per_connection;
            let answer = connection
                .request(method.clone(), path, body.clone(), None, last)
                .await
                .and_then(|answer| check_answer(&answer, number, expected_uuid));
            let done = Instant::now();
            result.attempts += 1;
            match answer {
                Ok(()) => {
                    if shared.in_window(done) {
                        result.requests += 1;
                        result.latency.record(done - start);
                    }
                }
                Err(failure) => {
                    let broken = !matches!(failure, Failure::Status(..) | Failure::Body(_));
                    result.errors.add(&failure);
                    if broken || !connection.is_open() {
                        continue 'connections;
                    }
                }
            }
        }
    }
    result
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The fleet index for the `turn`-th connection: every device once per round, but consecutive
/// turns far apart in the fleet (a stride coprime with its size, near the golden ratio), so the
/// devices checking in at once are spread over the whole table as in a real fleet, not packed
/// into the first pages of it.
fn spread(turn: usize, fleet_len: usize) -> usize {
    let mut stride = (fleet_len as f64 * 0.618_034) as usize | 1;
    while gcd(stride, fleet_len) != 1 {
        stride += 2;
    }
    ((turn % fleet_len) as u128 * stride as u128 % fleet_len as u128) as usize
}

/// The status page must say OK; the first check-in on a connection must be answered for the
/// device that connection authenticated as (later ones share the connection's identity).
fn check_answer(answer: &Bytes, number: u32, expected_uuid: Option<&str>) -> Result<(), Failure> {
    match expected_uuid {
        None if answer.starts_with(STATUS_BODY) => Ok(()),
        None => Err(Failure::Body(format!(
            "status page said {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(100)])
        ))),
        Some(_) if number > 0 => Ok(()),
        Some(uuid) => match serde_json::from_slice::<CheckInReply>(answer) {
            Ok(reply) if reply.device_uuid == uuid => Ok(()),
            Ok(reply) => Err(Failure::Body(format!(
                "check-in answered for device {} instead of {uuid}",
                reply.device_uuid
            ))),
            Err(error) => Err(Failure::Body(format!("check-in answer: {error}"))),
        },
    }
}

/// Probes the status page every `probe_interval` on one keep-alive connection until `end`.
async fn probe(shared: Arc<Shared>) -> (Histogram, Errors) {
    let mut latency = Histogram::default();
    let mut errors = Errors::default();
    let mut connection: Option<Connection> = None;
    let mut ticker = tokio::time::interval(shared.options.probe_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let due = ticker.tick().await;
        if due >= shared.end {
            break;
        }
        if !connection.as_ref().is_some_and(Connection::is_open) {
            match Connection::open(&shared.target, shared.tls.anonymous()).await {
                Ok(opened) => connection = Some(opened),
                Err(failure) => {
                    errors.add(&failure);
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        let start = Instant::now();
        let answer = open
            .request(Method::GET, STATUS_PATH, Bytes::new(), None, false)
            .await
            .and_then(|answer| check_answer(&answer, 0, None));
        let done = Instant::now();
        match answer {
            Ok(()) if shared.in_window(done) => latency.record(done - start),
            Ok(()) => {}
            Err(failure) => {
                errors.add(&failure);
                connection = None;
            }
        }
    }
    (latency, errors)
}

pub async fn run(
    target: Target,
    tls: Tls,
    workload: Workload,
    options: Options,
    alongside: &Alongside,
) -> PhaseResult {
    let fleet_len = match &workload {
        Workload::CheckIn { fleet, .. } => fleet.len(),
        Workload::Reference => 0,
    };
    // The starting point is read before anything of this phase reaches the server.
    let mut memory = alongside.server_pid.and_then(memory::Sampler::start);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target,
        tls,
        workload,
        options,
        next_device: AtomicUsize::new(0),
        measure_from: start + options.warmup,
        end: start + options.warmup + options.duration,
    });
    // The probe runs on its own thread and runtime, as a load balancer would run on its own
    // machine: its answers are then not queued behind the load workers' tasks in this process.
    let (probe_done, prober) = tokio::sync::oneshot::channel();
    let probe_shared = shared.clone();
    let probe_thread = std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(probe(probe_shared)));
            let _ = probe_done.send(result);
        });
    let flood = alongside.flood.clone().map(|flood_options| {
        flood::start(
            shared.target.clone(),
            shared.tls.clone(),
            flood_options,
            shared.measure_from,
            shared.end,
        )
    });
    let workers: Vec<_> = (0..options.connections)
        .map(|index| tokio::spawn(worker(shared.clone(), index)))
        .collect();

    tokio::time::sleep_until(shared.measure_from).await;
    let before = cpu::Sample::take(alongside.server_pid);
    tokio::time::sleep_until(shared.end).await;
    let after = cpu::Sample::take(alongside.server_pid);
    if let Some(memory) = &mut memory {
        memory.mark_end();
    }

    let mut result = PhaseResult {
        window: options.duration,
        cpu: cpu::usage(&before, &after),
        ..PhaseResult::default()
    };
    for worker in workers {
        match worker.await {
            Ok(part) => {
                result.requests += part.requests;
                result.latency.merge(&part.latency);
                result.connect.merge(&part.connect);
                result.attempts += part.attempts;
                result.errors.merge(part.errors);
            }
            Err(error) => {
                result.attempts += 1;
                result
                    .errors
                    .add(&Failure::Body(format!("a worker failed: {error}")));
            }
        }
    }
    match (probe_thread, prober.await) {
        (Ok(_), Ok(Ok((probe, probe_errors)))) => {
            result.probe = probe;
            result.probe_errors = probe_errors;
        }
        (Err(error), _) | (_, Ok(Err(error))) => {
            result
                .probe_errors
                .add(&Failure::Body(format!("cannot run the probe: {error}")));
        }
        (Ok(_), Err(_)) => {
            result
                .probe_errors
                .add(&Failure::Body("the probe thread failed".into()));
        }
    }
    if let Some(flood) = flood {
        result.flood = Some(match flood.await {
            Ok(Ok(flood)) => flood,
            Ok(Err(message)) => failed_flood(message, options.duration),
            Err(_) => failed_flood("the flood thread failed".into(), options.duration),
        });
    }
    if let Some(memory) = memory {
        result.memory = Some(memory.finish(shared.end + alongside.settle).await);
    }
    result.devices_used = shared.next_device.load(Ordering::Relaxed).min(fleet_len);
    result
}

/// A flood that could not run: its one error says why.
fn failed_flood(message: String, window: Duration) -> FloodResult {
    let mut flood = FloodResult {
        window,
        ..FloodResult::default()
    };
    flood.errors.add(&Failure::Body(message));
    flood
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn spread_visits_every_device_once_per_round() {
        for len in [1, 2, 7, 10, 1000, 100_000] {
            let mut seen = vec![false; len];
            for turn in 0..len {
                let index = spread(turn, len);
                assert!(!seen[index], "fleet of {len}: {index} twice");
                seen[index] = true;
            }
            assert_eq!(spread(len, len), spread(0, len));
        }
        assert!(spread(1, 100_000).abs_diff(spread(0, 100_000)) > 10_000);
    }
}
