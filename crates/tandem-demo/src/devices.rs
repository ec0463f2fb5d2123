//! Simulated devices: registered through the admin API (for a user the demo creates), enrolled
//! with their PIN, then checking in through the traffic controller with the identity issued at
//! enrollment as their TLS client certificate. Each check-in is a durable write: it stores
//! `clientVersion = demo-d<device>-<n>` with `n` counting the device's check-ins, so the node
//! that ends Active can later be asked whether it holds every acknowledged one.

use crate::error::{DemoError, DemoResult};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each device checks in this often: 20 devices make 40 check-ins/s, a modest load that still
/// measures a gap in device service to within a few tens of milliseconds.
pub const CHECKIN_INTERVAL: Duration = Duration::from_millis(500);
/// A check-in unanswered after this long counts as an error; the device then tries again. Far
/// above a check-in's latency on a loaded debug build, short next to a failover.
const CHECKIN_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed check-in a device tries again this soon, as a real client retries, so the
/// outage it sees ends within this much of the service's return.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Admin requests (create the user, register devices, list them) may take this long.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The user the demo's devices belong to (devices need an existing user).
pub const DEMO_USER: &str = "demo-user";
/// Acknowledged check-ins counted for the rate shown in the live view (the last second's).
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// A refused check-in's answer is kept this long in the summary's last error: enough for the
/// API's message (which names the node and why).
const ERROR_BODY_CHARS: usize = 240;
/// Admin list pages (the API's largest).
const PAGE_SIZE: usize = 200;

/// The admin credentials and the device port (the traffic controller's).
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// One enrolled device.
pub struct Enrolled {
    pub uuid: String,
    identity_pem: String,
}

/// What the devices saw, shared with the live view and the summary.
#[derive(Default)]
pub struct Stats {
    pub acknowledged: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Per device: every acknowledged check-in number.
    pub acknowledged_by_device: Vec<Vec<u64>>,
    last_ok: Option<Instant>,
    /// The longest time without any acknowledged check-in, and when it ended.
    pub longest_gap: Duration,
    pub longest_gap_ended: Option<Instant>,
    recent: VecDeque<Instant>,
}

impl Stats {
    fn acknowledge(&mut self, device: usize, n: u64, now: Instant) {
        self.acknowledged += 1;
        self.acknowledged_by_device[device].push(n);
        if let Some(last) = self.last_ok
            && now - last > self.longest_gap
        {
            self.longest_gap = now - last;
            self.longest_gap_ended = Some(now);
        }
        self.last_ok = Some(now);
        self.recent.push_back(now);
        self.trim(now);
    }

    fn trim(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Acknowledged check-ins in the last second.
    pub fn rate(&mut self) -> usize {
        self.trim(Instant::now());
        self.recent.len()
    }

    /// Time since the last acknowledged check-in.
    pub fn since_last_ok(&self) -> Option<Duration> {
        self.last_ok.map(|at| at.elapsed())
    }
}

pub type SharedStats = Arc<Mutex<Stats>>;

pub fn lock(stats: &SharedStats) -> std::sync::MutexGuard<'_, Stats> {
    stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An HTTPS client for loopback nodes. The nodes' certificates are their own (self-signed, and a
/// promoted Secondary serves its Primary's), so the demo does not check them: it talks to the
/// processes it started, on loopback only.
pub fn client(identity_pem: Option<&str>, timeout: Duration) -> DemoResult<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(timeout);
    if let Some(pem) = identity_pem {
        let identity = reqwest::Identity::from_pem(pem.as_bytes())
            .map_err(|error| DemoError::Failed(format!("device identity: {error}")))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|error| DemoError::Failed(format!("HTTPS client: {error}")))
}

/// A JSON POST as admin; the answer's JSON, or why not.
async fn admin_post(
    client: &reqwest::Client,
    target: &Target,
    path: &str,
    body: Value,
) -> DemoResult<Value> {
    let url = format!("https://127.0.0.1:{}{path}", target.port);
    let answer = client
        .post(&url)
        .basic_auth(&target.user, Some(&target.password))
        .json(&body)
        .send()
        .await
        .map_err(|error| DemoError::Failed(format!("POST {path}: {error}")))?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(DemoError::Failed(format!("POST {path}: {status}: {text}")));
    }
    serde_json::from_str(&text)
        .map_err(|error| DemoError::Failed(format!("POST {path}: {error}: {text}")))
}

/// Creates the demo's user, then registers and enrolls `count` devices, through `target`.
pub async fn enroll(target: &Target, count: usize) -> DemoResult<Vec<Enrolled>> {
    let client = client(None, ADMIN_TIMEOUT)?;
    admin_post(
        &client,
        target,
        "/api/v2/users",
        json!({ "principal": DEMO_USER }),
    )
    .await?;
    let mut enrolled = Vec::with_capacity(count);
    for index in 0..count {
        let registration = json!({
            // Platform values are case-sensitive (`iOS`, `Android`…): the API answers 422 else.
            "platform": if index % 2 == 0 { "iOS" } else { "Android" },
            "serial": format!("DEMO{index:04}"),
            "userPrincipal": DEMO_USER,
            "model": "demo",
        });
        let registered = admin_post(&client, target, "/api/v2/devices", registration).await?;
        let pin = registered["enrollmentPin"].as_str().unwrap_or_default();
        let url = format!("https://127.0.0.1:{}/device/v1/enroll", target.port);
        let answer = client
            .post(&url)
            .json(&json!({ "pin": pin }))
            .send()
            .await
            .map_err(|error| DemoError::Failed(format!("enrolling device {index}: {error}")))?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let (Some(uuid), Some(certificate), Some(key)) = (
            body["device"]["uuid"].as_str(),
            body["identity"]["certificatePem"].as_str(),
            body["identity"]["privateKeyPem"].as_str(),
        ) else {
            return Err(DemoError::Failed(format!(
                "enrolling device {index}: {status}: {text}"
            )));
        };
        enrolled.push(Enrolled {
            uuid: uuid.to_owned(),
            identity_pem: format!("{certificate}\n{key}"),
        });
    }
    Ok(enrolled)
}

/// The devices checking in, until [`Fleet::stop`].
pub struct Fleet {
    pub stats: SharedStats,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    /// Starts every device's check-in loop on `runtime`, spread over one interval.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        port: u16,
        devices: &[Enrolled],
    ) -> DemoResult<Self> {
        let stats: SharedStats = Arc::default();
        lock(&stats).acknowledged_by_device = vec![Vec::new(); devices.len()];
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(devices.len());
        for (index, device) in devices.iter().enumerate() {
            let client = client(Some(&device.identity_pem), CHECKIN_TIMEOUT)?;
            let offset = CHECKIN_INTERVAL.mul_f64(index as f64 / devices.len().max(1) as f64);
            let (stats, stop) = (stats.clone(), stop.clone());
            tasks.push(runtime.spawn(async move {
                tokio::time::sleep(offset).await;
                check_in_loop(client, port, index, stats, stop).await;
            }));
        }
        Ok(Self { stats, stop, tasks })
    }

    /// Stops the devices and waits for their last check-ins to be answered or fail.
    pub fn stop(self, runtime: &tokio::runtime::Runtime) {
        self.stop.store(true, Ordering::Release);
        runtime.block_on(async {
            for task in self.tasks {
                let _ = task.await;
            }
        });
    }
}

async fn check_in_loop(
    client: reqwest::Client,
    port: u16,
    device: usize,
    stats: SharedStats,
    stop: Arc<AtomicBool>,
) {
    let url = format!("https://127.0.0.1:{port}/device/v1/checkin");
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let body = json!({ "clientVersion": client_version(device, n) });
        let outcome = match client.post(&url).json(&body).send().await {
            Ok(answer) if answer.status() == reqwest::StatusCode::OK => Ok(()),
            Ok(answer) => {
                let status = answer.status();
                let text = answer.text().await.unwrap_or_default();
                Err(format!(
                    "{status}: {}",
                    text.chars().take(ERROR_BODY_CHARS).collect::<String>()
                ))
            }
            Err(error) => Err(with_causes(&error)),
        };
        let pause = {
            let mut stats = lock(&stats);
            match outcome {
                Ok(()) => {
                    stats.acknowledge(device, n, Instant::now());
                    CHECKIN_INTERVAL
                }
                Err(error) => {
                    stats.errors += 1;
                    stats.last_error = Some(error);
                    RETRY_PAUSE
                }
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// An error and its causes on one line (reqwest's own message names only the URL).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text += &format!(": {inner}");
        cause = inner.source();
    }
    text
}

/// What check-in `n` of `device` stores.
pub fn client_version(device: usize, n: u64) -> String {
    format!("demo-d{device}-{n}")
}

/// Every device's stored `clientVersion`, by uuid, as the node on `port` holds them.
pub async fn stored_versions(
    target: &Target,
    port: u16,
) -> DemoResult<std::collections::HashMap<String, String>> {
    let client = client(None, ADMIN_TIMEOUT)?;
    let mut versions = std::collections::HashMap::new();
    let mut offset = 0;
    loop {
        let url =
            format!("https://127.0.0.1:{port}/api/v2/devices?limit={PAGE_SIZE}&offset={offset}");
        let answer = client
            .get(&url)
            .basic_auth(&target.user, Some(&target.password))
            .send()
            .await
            .map_err(|error| DemoError::Failed(format!("listing devices: {error}")))?;
        let page: Value = answer
            .json()
            .await
            .map_err(|error| DemoError::Failed(format!("listing devices: {error}")))?;
        let results = page["results"].as_array().cloned().unwrap_or_default();
        for device in &results {
            if let (Some(uuid), Some(version)) =
                (device["uuid"].as_str(), device["clientVersion"].as_str())
            {
                versions.insert(uuid.to_owned(), version.to_owned());
            }
        }
        if page["hasMore"] != true || results.is_empty() {
            return Ok(versions);
        }
        offset += results.len();
    }
}
