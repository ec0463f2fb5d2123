//! Prometheus metrics of the traffic controller (text exposition format, `GET /metrics`).

use crate::config::LbConfig;
use crate::policy::{HealthState, Page, Policy, ProbeResult};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct BackendMetrics {
    pub connections: AtomicU64,
    pub open: AtomicI64,
    pub connect_failures: AtomicU64,
    pub closed_by_mark_down: AtomicU64,
    pub bytes_from_devices: AtomicU64,
    pub bytes_to_devices: AtomicU64,
    /// Per page (status, hastatus): latest probe duration in microseconds, and failed probes.
    pub probe_micros: [AtomicU64; 2],
    pub probe_failures: [AtomicU64; 2],
    pub probes: [AtomicU64; 2],
}

pub struct Metrics {
    pub backends: Vec<BackendMetrics>,
    pub switches: AtomicU64,
    /// New connections closed at once: no backend could take traffic, or the connection limit.
    pub refused: AtomicU64,
    /// State-file writes that failed (the memory was not saved).
    pub state_write_failures: AtomicU64,
}

fn slot(page: Page) -> usize {
    match page {
        Page::Status => 0,
        Page::HaStatus => 1,
    }
}

impl Metrics {
    pub fn new(backends: usize) -> Self {
        Self {
            backends: (0..backends).map(|_| BackendMetrics::default()).collect(),
            switches: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            state_write_failures: AtomicU64::new(0),
        }
    }

    pub fn record_probe(&self, backend: usize, page: Page, took: Duration, result: &ProbeResult) {
        let metrics = &self.backends[backend];
        let slot = slot(page);
        metrics.probes[slot].fetch_add(1, Ordering::Relaxed);
        metrics.probe_micros[slot].store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if matches!(result, ProbeResult::Failed(_)) {
            metrics.probe_failures[slot].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The exposition text.
pub fn render(metrics: &Metrics, config: &LbConfig, policy: &Policy) -> String {
    let mut out = render_ballots(config, policy);
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        write_family(&mut out, name, kind, help, rows);
    };
    let per_backend = |value: &dyn Fn(usize) -> String| -> Vec<(String, String)> {
        config
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| (format!("{{backend=\"{}\"}}", backend.name), value(index)))
            .collect()
    };
    let per_page = |value: &dyn Fn(usize, Page) -> String| -> Vec<(String, String)> {
        let mut rows = Vec::new();
        for (index, backend) in config.backends.iter().enumerate() {
            for page in Page::ALL {
                rows.push((
                    format!("{{backend=\"{}\",page=\"{}\"}}", backend.name, page.path()),
                    value(index, page),
                ));
            }
        }
        rows
    };
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed).to_string();
    family(
        "tandem_lb_active",
        "gauge",
        "1 for the backend new connections go to.",
        per_backend(&|index| u8::from(policy.active() == Some(index)).to_string()),
    );
    family(
        "tandem_lb_backend_up",
        "gauge",
        "1 while the page's debounced probe state is up (fall/rise applied).",
        per_page(&|index, page| {
            let backend = &policy.backends()[index];
            let health = match page {
                Page::Status => &backend.status,
                Page::HaStatus => &backend.hastatus,
            };
            u8::from(health.state == HealthState::Up).to_string()
        }),
    );
    family(
        "tandem_lb_state_write_failures_total",
        "counter",
        "Writes of the state file that failed (the memory was not saved; see the log).",
        vec![(String::new(), load(&metrics.state_write_failures))],
    );
    family(
        "tandem_lb_switches_total",
        "counter",
        "Times traffic moved from one backend to another (failovers and resumes).",
        vec![(String::new(), load(&metrics.switches))],
    );
    family(
        "tandem_lb_refused_connections_total",
        "counter",
        "New connections closed at once: no backend could take traffic, or the connection limit.",
        vec![(String::new(), load(&metrics.refused))],
    );
    family(
        "tandem_lb_connections_total",
        "counter",
        "Device connections passed through to the backend.",
        per_backend(&|index| load(&metrics.backends[index].connections)),
    );
    family(
        "tandem_lb_open_connections",
        "gauge",
        "Device connections open now.",
        per_backend(&|index| {
            metrics.backends[index]
                .open
                .load(Ordering::Relaxed)
                .to_string()
        }),
    );
    family(
        "tandem_lb_connect_failures_total",
        "counter",
        "Connections the controller could not open to the backend.",
        per_backend(&|index| load(&metrics.backends[index].connect_failures)),
    );
    family(
        "tandem_lb_closed_by_mark_down_total",
        "counter",
        "Open connections closed because their backend was marked down.",
        per_backend(&|index| load(&metrics.backends[index].closed_by_mark_down)),
    );
    family(
        "tandem_lb_received_bytes_total",
        "counter",
        "Bytes read from devices and passed to the backend.",
        per_backend(&|index| load(&metrics.backends[index].bytes_from_devices)),
    );
    family(
        "tandem_lb_sent_bytes_total",
        "counter",
        "Bytes read from the backend and passed to devices.",
        per_backend(&|index| load(&metrics.backends[index].bytes_to_devices)),
    );
    family(
        "tandem_lb_probes_total",
        "counter",
        "Probes sent.",
        per_page(&|index, page| load(&metrics.backends[index].probes[slot(page)])),
    );
    family(
        "tandem_lb_probe_failures_total",
        "counter",
        "Probes that failed (not 200 with MOBILEIRON-STATUS: OK, or no answer).",
        per_page(&|index, page| load(&metrics.backends[index].probe_failures[slot(page)])),
    );
    family(
        "tandem_lb_probe_duration_seconds",
        "gauge",
        "Duration of the latest probe (connect, TLS handshake, request, answer).",
        per_page(&|index, page| {
            let micros = metrics.backends[index].probe_micros[slot(page)].load(Ordering::Relaxed);
            format!("{:.6}", micros as f64 / 1e6)
        }),
    );
    out
}

/// One metric family: its help, its type and its rows (none: the family is left out).
fn write_family(out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, String)>) {
    // The one exposition writer (tandem-metrics), shared with the nodes' /metrics.
    let kind = match kind {
        "counter" => tandem_metrics::Kind::Counter,
        _ => tandem_metrics::Kind::Gauge,
    };
    let mut family = tandem_metrics::Exposition::new();
    family.family(name, kind, help, rows);
    out.push_str(&family.finish());
}

/// The routing, ballot and hold gauges (`render`'s part that reads only the policy).
fn render_ballots(config: &LbConfig, policy: &Policy) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        write_family(&mut out, name, kind, help, rows);
    };
    family(
        "tandem_lb_routing",
        "gauge",
        "1 while new connections are passed to the active backend; 0 while they are refused.",
        vec![(String::new(), u8::from(policy.passing()).to_string())],
    );
    family(
        "tandem_lb_dual_active",
        "gauge",
        "1 while two or more backends of the HA group pass /status/status.html at once.",
        vec![(
            String::new(),
            u8::from(policy.dual_active().is_some()).to_string(),
        )],
    );
    family(
        "tandem_lb_held",
        "gauge",
        "1 while the maintenance hold is on (no automatic switch until tandem lb release).",
        vec![(String::new(), u8::from(policy.held().is_some()).to_string())],
    );
    family(
        "tandem_lb_backend_claim_epoch",
        "gauge",
        "Epoch of the backend's current claim (Active with HA enabled); -1 when it claims none.",
        config
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| {
                let epoch = policy.backends()[index]
                    .claim()
                    .map_or(-1, |claim| claim.epoch);
                (
                    format!("{{backend=\"{}\"}}", backend.name),
                    epoch.to_string(),
                )
            })
            .collect(),
    );
    out
}
