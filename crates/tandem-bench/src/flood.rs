//! A wrong-password flood beside a load phase, as an attacker guessing an admin's password
//! would send it: N connections, each sending `GET /api/v2/ping` with HTTP Basic
//! `USER:wrong-<n>` (a new password every time) as fast as answers come. It honours nothing:
//! no `Retry-After`, no back-off after 401, 429 or 503. Answers are counted by status.
//!
//! It runs on its own thread and runtime, as an attacker on another machine would: its tasks
//! then do not queue in front of the check-in workers' in the load generator (the two still
//! share this machine's cores, as the report's CPU lines show).

use crate::histogram::Histogram;
use crate::http::{Connection, Failure, Target};
use crate::load::Errors;
use crate::tls::Tls;
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Any admin-authenticated route would do; this one does nothing once authenticated, so the
/// flood measures the password check and nothing else.
pub const PING_PATH: &str = "/api/v2/ping";
/// Pause after a connection could not be opened or broke mid-request, before the next attempt:
/// an attacker gains nothing from spinning on a refused socket, and a spinning load generator
/// would take the cores the server is measured on.
const FLOOD_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// The status counted for a request the server accepted (only `/api/v2/ping`'s 200 can be:
/// the connection API does not return the status of a success).
pub const STATUS_ACCEPTED: u16 = 200;

#[derive(Clone, Debug)]
pub struct Options {
    pub connections: usize,
    /// An existing user, so every request costs a real argon2 check of a stored hash.
    pub user: String,
}

impl Options {
    fn authorization(&self, attempt: u64) -> Option<HeaderValue> {
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:wrong-{attempt}", self.user));
        HeaderValue::from_str(&format!("Basic {credentials}")).ok()
    }
}

/// What the flood saw in the measured window.
#[derive(Default)]
pub struct FloodResult {
    pub window: Duration,
    pub connections: usize,
    pub user: String,
    /// Answers by HTTP status, with their latency.
    pub by_status: BTreeMap<u16, Histogram>,
    /// Requests that got no answer (connection refused, reset, timed out…).
    pub errors: Errors,
    pub connections_opened: u64,
}

impl FloodResult {
    pub fn answers(&self, status: u16) -> u64 {
        self.by_status.get(&status).map_or(0, Histogram::count)
    }

    /// Answers whose status is none of `known`.
    pub fn answers_other_than(&self, known: &[u16]) -> u64 {
        self.by_status
            .iter()
            .filter(|(status, _)| !known.contains(status))
            .map(|(_, histogram)| histogram.count())
            .sum()
    }

    pub fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn total(&self) -> u64 {
        self.by_status.values().map(Histogram::count).sum::<u64>() + self.errors.total()
    }
}

struct Shared {
    target: Target,
    tls: Tls,
    options: Options,
    next_attempt: AtomicU64,
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
    by_status: BTreeMap<u16, Histogram>,
    errors: Errors,
    connections_opened: u64,
}

async fn worker(shared: Arc<Shared>) -> WorkerResult {
    let mut result = WorkerResult::default();
    while Instant::now() < shared.end {
        let mut connection = match Connection::open(&shared.target, shared.tls.anonymous()).await {
            Ok(connection) => connection,
            Err(failure) => {
                if shared.in_window(Instant::now()) {
                    result.errors.add(&failure);
                }
                tokio::time::sleep(FLOOD_ERROR_PAUSE).await;
                continue;
            }
        };
        result.connections_opened += 1;
        // Until the server closes the connection (then the worker opens the next one).
        while Instant::now() < shared.end && connection.is_open() {
            let attempt = shared.next_attempt.fetch_add(1, Ordering::Relaxed);
            let start = Instant::now();
            let answer = match shared.options.authorization(attempt) {
                Some(authorization) => {
                    connection
                        .request(
                            Method::GET,
                            PING_PATH,
                            Bytes::new(),
                            Some(&authorization),
                            false,
                        )
                        .await
                }
                None => Err(Failure::Body(format!(
                    "the user name {:?} cannot be sent in a header",
                    shared.options.user
                ))),
            };
            let done = Instant::now();
            let status = match answer {
                Ok(_) => STATUS_ACCEPTED,
                Err(Failure::Status(status, _)) => status.as_u16(),
                Err(failure) => {
                    if shared.in_window(done) {
                        result.errors.add(&failure);
                    }
                    tokio::time::sleep(FLOOD_ERROR_PAUSE).await;
                    break;
                }
            };
            if shared.in_window(done) {
                result
                    .by_status
                    .entry(status)
                    .or_default()
                    .record(done - start);
            }
        }
    }
    result
}

async fn run_workers(shared: Arc<Shared>) -> FloodResult {
    let workers: Vec<_> = (0..shared.options.connections)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut result = FloodResult {
        window: shared.end.saturating_duration_since(shared.measure_from),
        connections: shared.options.connections,
        user: shared.options.user.clone(),
        ..FloodResult::default()
    };
    for worker in workers {
        match worker.await {
            Ok(part) => {
                for (status, histogram) in part.by_status {
                    result
                        .by_status
                        .entry(status)
                        .or_default()
                        .merge(&histogram);
                }
                result.errors.merge(part.errors);
                result.connections_opened += part.connections_opened;
            }
            Err(error) => result
                .errors
                .add(&Failure::Body(format!("a flood worker failed: {error}"))),
        }
    }
    result
}

/// Floods from `start` until `end` on a thread of its own, counting answers from
/// `measure_from`; the receiver gets the result (or why the flood could not run) at the end.
pub fn start(
    target: Target,
    tls: Tls,
    options: Options,
    measure_from: Instant,
    end: Instant,
) -> tokio::sync::oneshot::Receiver<Result<FloodResult, String>> {
    let (done, result) = tokio::sync::oneshot::channel();
    let shared = Arc::new(Shared {
        target,
        tls,
        options,
        next_attempt: AtomicU64::new(0),
        measure_from,
        end,
    });
    // Instants are valid across runtimes: both read the same monotonic clock.
    let spawned = std::thread::Builder::new()
        .name("flood".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(run_workers(shared)))
                .map_err(|error| format!("cannot start the flood's runtime: {error}"));
            let _ = done.send(outcome);
        });
    if let Err(error) = spawned {
        // The sender went with the closure: the receiver reports the flood as failed.
        eprintln!("flood: cannot start its thread: {error}");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::Options;
    use base64::Engine;

    #[test]
    fn every_attempt_sends_a_new_wrong_password_for_the_user() {
        let options = Options {
            connections: 1,
            user: "admin".into(),
        };
        let decoded = |attempt| {
            let header = options
                .authorization(attempt)
                .map(|value| value.as_bytes().to_vec());
            let encoded = header.as_deref().and_then(|h| h.strip_prefix(b"Basic "));
            encoded
                .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e).ok())
                .and_then(|text| String::from_utf8(text).ok())
        };
        assert_eq!(decoded(0).as_deref(), Some("admin:wrong-0"));
        assert_eq!(decoded(41).as_deref(), Some("admin:wrong-41"));
    }
}
