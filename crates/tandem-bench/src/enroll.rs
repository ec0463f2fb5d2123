//! Phase 1: create users, register devices through the admin API and enroll each with its PIN,
//! over a bounded number of keep-alive connections.

use crate::fleet::{self, Record};
use crate::histogram::Histogram;
use crate::http::{Connection, Failure, Target};
use crate::tls::Tls;
use anyhow::{Result, bail};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Devices registered per user, as in a fleet where a user carries a phone, a tablet and a few
/// replaced devices over time; 100,000 devices make 10,000 users.
pub const DEVICES_PER_USER: usize = 10;
/// How often enrollment progress is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Enrollment stops when more than this fraction of the devices failed (the same 0.1 % the
/// check-in phase allows), so a broken server is reported at once rather than 100,000 times.
const ERROR_FRACTION_MAX: f64 = 0.001;
/// Pause after a failed request before reconnecting, so a refusing server is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

pub struct Options {
    /// Fleet indices to enroll: `first..end`.
    pub first: usize,
    pub end: usize,
    pub concurrency: usize,
    pub authorization: HeaderValue,
    /// Distinguishes this run's serial numbers from earlier runs' against the same node.
    pub run_tag: String,
}

#[derive(Default, Serialize)]
pub struct Report {
    pub users: usize,
    pub devices: usize,
    pub seconds: f64,
    pub devices_per_second: f64,
    pub errors: u64,
    #[serde(skip)]
    pub register: Histogram,
    #[serde(skip)]
    pub enroll: Histogram,
}

pub fn principal(user: usize) -> String {
    format!("bench-user-{user:06}")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Registered {
    uuid: String,
    enrollment_pin: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    certificate_pem: String,
    private_key_pem: String,
}

#[derive(Deserialize)]
struct EnrolledDevice {
    uuid: String,
}

#[derive(Deserialize)]
struct Enrolled {
    device: EnrolledDevice,
    identity: Identity,
}

struct Shared {
    target: Target,
    tls: Tls,
    options: Options,
    next: AtomicUsize,
    done: AtomicUsize,
    errors: AtomicUsize,
    stop: AtomicBool,
    first_error: std::sync::Mutex<Option<String>>,
    errors_max: usize,
    writer: Option<fleet::Writer>,
}

impl Shared {
    fn failed(&self, what: &str, failure: &Failure) {
        let errors = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(format!("{what}: {failure}"));
        }
        if errors > self.errors_max {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// A worker's keep-alive connection, reopened after a failure.
struct Client {
    shared: Arc<Shared>,
    connection: Option<Connection>,
}

impl Client {
    async fn post(
        &mut self,
        path: &str,
        body: serde_json::Value,
        admin: bool,
    ) -> Result<Bytes, Failure> {
        if !self.connection.as_ref().is_some_and(Connection::is_open) {
            self.connection = None;
        }
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let config = self.shared.tls.anonymous();
                self.connection
                    .insert(Connection::open(&self.shared.target, config).await?)
            }
        };
        let authorization = admin.then_some(&self.shared.options.authorization);
        let result = connection
            .request(
                Method::POST,
                path,
                Bytes::from(body.to_string()),
                authorization,
                false,
            )
            .await;
        if matches!(&result, Err(failure) if !matches!(failure, Failure::Status(..))) {
            self.connection = None;
        }
        result
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|error| Failure::Body(error.to_string()))
}

async fn create_users(shared: Arc<Shared>, users: Arc<AtomicUsize>, last: usize) -> u64 {
    let mut client = Client {
        shared: shared.clone(),
        connection: None,
    };
    let mut created = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let user = users.fetch_add(1, Ordering::Relaxed);
        if user > last {
            break;
        }
        let body = json!({ "principal": principal(user) });
        match client.post("/api/v2/users", body, true).await {
            Ok(_) => created += 1,
            // Created by an earlier run against the same node.
            Err(Failure::Status(StatusCode::CONFLICT, _)) => {}
            Err(failure) => {
                shared.failed("creating a user", &failure);
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    created
}

async fn enroll_devices(shared: Arc<Shared>) -> (Vec<Record>, Histogram, Histogram) {
    let mut client = Client {
        shared: shared.clone(),
        connection: None,
    };
    let (mut register_latency, mut enroll_latency) = (Histogram::default(), Histogram::default());
    let mut records = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if index >= shared.options.end {
            break;
        }
        let started = Instant::now();
        let registration = json!({
            "platform": "iOS",
            "serial": format!("B{}-{index:06}", shared.options.run_tag),
            "userPrincipal": principal(index / DEVICES_PER_USER),
            "model": "iPhone16,1",
            "osVersion": "18.0",
        });
        let registered = match client.post("/api/v2/devices", registration, true).await {
            Ok(body) => parse::<Registered>(&body),
            Err(failure) => Err(failure),
        };
        let registered = match registered {
            Ok(registered) => registered,
            Err(failure) => {
                shared.failed("registering a device", &failure);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let enrolling = Instant::now();
        register_latency.record(enrolling - started);
        let enrollment = json!({ "pin": registered.enrollment_pin, "osVersion": "18.1" });
        let enrolled = match client.post("/device/v1/enroll", enrollment, false).await {
            Ok(body) => parse::<Enrolled>(&body),
            Err(failure) => Err(failure),
        };
        let enrolled = match enrolled {
            Ok(enrolled) if enrolled.device.uuid == registered.uuid => enrolled,
            Ok(enrolled) => {
                let message = format!(
                    "enrolled device {} for registration {}",
                    enrolled.device.uuid, registered.uuid
                );
                shared.failed("enrolling a device", &Failure::Body(message));
                continue;
            }
            Err(failure) => {
                shared.failed("enrolling a device", &failure);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        enroll_latency.record(enrolling.elapsed());
        let record = Record {
            uuid: enrolled.device.uuid,
            certificate_pem: enrolled.identity.certificate_pem,
            private_key_pem: enrolled.identity.private_key_pem,
        };
        if let Some(writer) = &shared.writer
            && let Err(error) = writer.append(&record)
        {
            eprintln!("tandem-loadgen: {error:#}");
            shared.stop.store(true, Ordering::Relaxed);
        }
        records.push(record);
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    (records, register_latency, enroll_latency)
}

/// Enrolls fleet indices `options.first..options.end`; returns their identities in no
/// particular order.
pub async fn run(
    target: Target,
    tls: Tls,
    options: Options,
    writer: Option<fleet::Writer>,
) -> Result<(Vec<Record>, Report)> {
    let wanted = options.end - options.first;
    let concurrency = options.concurrency.max(1);
    let first_user = options.first / DEVICES_PER_USER;
    let last_user = (options.end - 1) / DEVICES_PER_USER;
    let shared = Arc::new(Shared {
        target,
        tls,
        next: AtomicUsize::new(options.first),
        errors_max: (wanted as f64 * ERROR_FRACTION_MAX) as usize,
        options,
        done: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        first_error: std::sync::Mutex::new(None),
        writer,
    });
    let started = Instant::now();

    eprintln!(
        "enroll: creating users {}..={} ({DEVICES_PER_USER} devices each)",
        principal(first_user),
        principal(last_user)
    );
    let users = Arc::new(AtomicUsize::new(first_user));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(create_users(shared.clone(), users.clone(), last_user)))
        .collect();
    let mut users_created = 0;
    for worker in workers {
        users_created += worker.await?;
    }

    eprintln!("enroll: registering and enrolling {wanted} devices, {concurrency} at a time");
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
            ticker.tick().await;
            let (mut last_done, mut last_at) = (0, Instant::now());
            loop {
                ticker.tick().await;
                let done = shared.done.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = (done - last_done) as f64 / (now - last_at).as_secs_f64();
                eprintln!(
                    "enroll: {done}/{wanted} devices ({rate:.0}/s, {} errors)",
                    shared.errors.load(Ordering::Relaxed)
                );
                (last_done, last_at) = (done, now);
            }
        })
    };
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(enroll_devices(shared.clone())))
        .collect();
    let mut records = Vec::with_capacity(wanted);
    let mut report = Report {
        users: users_created as usize,
        ..Report::default()
    };
    for worker in workers {
        let (part, register, enroll) = worker.await?;
        records.extend(part);
        report.register.merge(&register);
        report.enroll.merge(&enroll);
    }
    progress.abort();
    if let Some(writer) = &shared.writer {
        writer.finish()?;
    }
    report.devices = records.len();
    report.seconds = started.elapsed().as_secs_f64();
    report.devices_per_second = report.devices as f64 / report.seconds.max(1e-9);
    report.errors = shared.errors.load(Ordering::Relaxed) as u64;
    if shared.stop.load(Ordering::Relaxed) {
        let first = shared
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "writing the fleet file failed".into());
        bail!(
            "enrollment stopped after {} errors (more than {:.1} % of {wanted}); first: {first}",
            report.errors,
            ERROR_FRACTION_MAX * 100.0
        );
    }
    Ok((records, report))
}
