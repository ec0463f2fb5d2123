//! The results: a table for people, one JSON object for scripts.

use crate::ERROR_FRACTION_MAX;
use crate::enroll;
use crate::flood::FloodResult;
use crate::histogram::Histogram;
use crate::load::{Errors, PhaseResult};
use crate::memory::MemoryResult;
use serde_json::{Value, json};
use std::fmt::Write;

/// The goals on a 2-core machine with durable writes. Reported, never asserted: speed
/// is judged from the numbers and their ratio to the reference.
const GOAL_CHECKINS_PER_SECOND: f64 = 5000.0;
const GOAL_CHECKIN_P99_MS: f64 = 20.0;
const GOAL_PROBE_P99_MS: f64 = 5.0;
/// The flood's answers reported on their own; the rest are summed as "other".
const STATUS_UNAUTHORIZED: u16 = 401;
const STATUS_TOO_MANY_REQUESTS: u16 = 429;
const STATUS_BUSY: u16 = 503;
const FLOOD_STATUSES: [u16; 3] = [STATUS_UNAUTHORIZED, STATUS_TOO_MANY_REQUESTS, STATUS_BUSY];
/// Memory is reported in MB of 10^6 bytes, the unit of the bound (256 MB).
const BYTES_PER_MB: f64 = 1e6;

pub struct RunSettings {
    pub target: String,
    pub devices: usize,
    pub connections: usize,
    pub requests_per_connection: u32,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub rate: Option<f64>,
    pub probe_interval_ms: f64,
    pub checkin_body: String,
    pub password_flood_connections: Option<usize>,
    pub flood_user: String,
    pub settle_s: f64,
}

pub struct Report<'a> {
    settings: &'a RunSettings,
    enrollment: Option<&'a enroll::Report>,
    reference: Option<&'a PhaseResult>,
    checkin: &'a PhaseResult,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_json(histogram: &Histogram) -> Value {
    json!({
        "count": histogram.count(),
        "mean_ms": histogram.mean_us() / 1000.0,
        "p50_ms": ms(histogram.quantile_us(0.50)),
        "p90_ms": ms(histogram.quantile_us(0.90)),
        "p99_ms": ms(histogram.quantile_us(0.99)),
        "p999_ms": ms(histogram.quantile_us(0.999)),
        "max_ms": ms(histogram.max_us()),
    })
}

fn errors_json(errors: &Errors) -> Value {
    errors
        .by_kind
        .iter()
        .map(|(kind, (count, example))| {
            (kind.clone(), json!({ "count": count, "example": example }))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn flood_json(flood: &FloodResult) -> Value {
    let by_status: serde_json::Map<_, _> = flood
        .by_status
        .iter()
        .map(|(status, histogram)| {
            (
                status.to_string(),
                json!({
                    "per_second": flood.per_second(histogram.count()),
                    "latency": latency_json(histogram),
                }),
            )
        })
        .collect();
    json!({
        "connections": flood.connections,
        "user": flood.user,
        "window_s": flood.window.as_secs_f64(),
        "requests_per_second": flood.per_second(flood.total()),
        "unauthorized_401_per_second": flood.per_second(flood.answers(STATUS_UNAUTHORIZED)),
        "too_many_requests_429_per_second": flood.per_second(flood.answers(STATUS_TOO_MANY_REQUESTS)),
        "busy_503_per_second": flood.per_second(flood.answers(STATUS_BUSY)),
        "other_per_second": flood.per_second(flood.answers_other_than(&FLOOD_STATUSES)),
        "errors_per_second": flood.per_second(flood.errors.total()),
        "by_status": by_status,
        "errors": flood.errors.total(),
        "errors_by_kind": errors_json(&flood.errors),
        "connections_opened": flood.connections_opened,
    })
}

fn memory_json(memory: &MemoryResult) -> Value {
    let mut value = json!(memory);
    value["peak_bytes"] = json!(memory.peak_bytes());
    value
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / BYTES_PER_MB
}

fn mb_text(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "unknown".to_owned(),
        |bytes| format!("{:.1} MB", mb(bytes)),
    )
}

fn flood_text(out: &mut String, name: &str, flood: &FloodResult) {
    let rate = |count: u64| flood.per_second(count);
    let _ = writeln!(
        out,
        "\n  Wrong-password flood during {name} ({} connections as {:?}): {:.0} requests/s: \
         401 {:.0}/s, 429 {:.0}/s, 503 {:.0}/s, other {:.0}/s, errors {:.0}/s; {} connections opened",
        flood.connections,
        flood.user,
        rate(flood.total()),
        rate(flood.answers(STATUS_UNAUTHORIZED)),
        rate(flood.answers(STATUS_TOO_MANY_REQUESTS)),
        rate(flood.answers(STATUS_BUSY)),
        rate(flood.answers_other_than(&FLOOD_STATUSES)),
        rate(flood.errors.total()),
        flood.connections_opened,
    );
    header(out);
    for (status, histogram) in &flood.by_status {
        row(
            out,
            &format!("flood answers {status}"),
            Some(rate(histogram.count())),
            histogram,
            0,
        );
    }
    for (kind, (count, example)) in &flood.errors.by_kind {
        let _ = writeln!(out, "    flood error {kind}: {count} (e.g. {example})");
    }
}

fn memory_text(out: &mut String, name: &str, memory: &MemoryResult, settle_s: f64) {
    let mark = match (
        memory.high_water_mark_bytes,
        memory.high_water_mark_from_phase_start,
    ) {
        (Some(mark), true) => format!("VmHWM since the phase's start {:.1} MB", mb(mark)),
        (Some(mark), false) => format!("VmHWM since the server's start {:.1} MB", mb(mark)),
        (None, _) => "VmHWM unknown".to_owned(),
    };
    // Without a settle time the last reading is the end's: not repeated as "after".
    let after = if settle_s > 0.0 {
        format!(
            ", after {settle_s} s idle {}",
            mb_text(memory.after_settle_bytes)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  Server memory (RSS) during {name}: start {:.1} MB, peak {:.1} MB ({} samples of VmRSS; \
         {mark}), end {}{after}",
        mb(memory.start_bytes),
        mb(memory.peak_bytes()),
        memory.samples,
        mb_text(memory.end_bytes),
    );
    let _ = writeln!(
        out,
        "    of which anonymous (RssAnon; the rest is mapped files such as the database): start \
         {:.1} MB, peak {:.1} MB, after {}",
        mb(memory.anon_start_bytes),
        mb(memory.anon_peak_bytes),
        mb_text(memory.anon_after_settle_bytes),
    );
}

fn phase_json(phase: &PhaseResult) -> Value {
    json!({
        "requests": phase.requests,
        "requests_per_second": phase.throughput(),
        "latency": latency_json(&phase.latency),
        "connect": latency_json(&phase.connect),
        "attempts": phase.attempts,
        "errors": phase.errors.total(),
        "error_fraction": phase.error_fraction(),
        "errors_by_kind": errors_json(&phase.errors),
        "probe": latency_json(&phase.probe),
        "probe_errors": phase.probe_errors.total(),
        "probe_errors_by_kind": errors_json(&phase.probe_errors),
        "devices_checked_in": phase.devices_used,
        "cpu": phase.cpu,
        "flood": phase.flood.as_ref().map(flood_json),
        "memory": phase.memory.as_ref().map(memory_json),
    })
}

fn row(out: &mut String, name: &str, rate: Option<f64>, histogram: &Histogram, errors: u64) {
    let rate = rate.map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}"));
    let _ = writeln!(
        out,
        "  {name:<26} {rate:>9} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {errors:>7}",
        histogram.count(),
        histogram.mean_us() / 1000.0,
        ms(histogram.quantile_us(0.50)),
        ms(histogram.quantile_us(0.90)),
        ms(histogram.quantile_us(0.99)),
        ms(histogram.max_us()),
    );
}

fn header(out: &mut String) {
    let _ = writeln!(
        out,
        "\n  {:<26} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "latency (ms)", "req/s", "count", "mean", "p50", "p90", "p99", "max", "errors"
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

impl<'a> Report<'a> {
    pub fn new(
        settings: &'a RunSettings,
        enrollment: Option<&'a enroll::Report>,
        reference: Option<&'a PhaseResult>,
        checkin: &'a PhaseResult,
    ) -> Self {
        Self {
            settings,
            enrollment,
            reference,
            checkin,
        }
    }

    fn ratio(&self) -> Option<f64> {
        self.reference
            .map(|reference| self.checkin.throughput() / reference.throughput().max(1e-9))
    }

    fn goals(&self) -> [(String, bool); 3] {
        let checkin_p99 = ms(self.checkin.latency.quantile_us(0.99));
        let probe_p99 = ms(self.checkin.probe.quantile_us(0.99));
        [
            (
                format!(
                    "check-ins/s >= {GOAL_CHECKINS_PER_SECOND:.0}: {:.0}",
                    self.checkin.throughput()
                ),
                self.checkin.throughput() >= GOAL_CHECKINS_PER_SECOND,
            ),
            (
                format!("check-in p99 < {GOAL_CHECKIN_P99_MS} ms: {checkin_p99:.2} ms"),
                checkin_p99 < GOAL_CHECKIN_P99_MS,
            ),
            (
                format!("probe p99 under load < {GOAL_PROBE_P99_MS} ms: {probe_p99:.2} ms"),
                probe_p99 < GOAL_PROBE_P99_MS && self.checkin.probe.count() > 0,
            ),
        ]
    }

    /// Whether every phase (probes included) stayed within [`ERROR_FRACTION_MAX`].
    pub fn passed_error_budget(&self) -> bool {
        let probes_ok = |phase: &PhaseResult| {
            let attempts = phase.probe.count() + phase.probe_errors.total();
            phase.probe_errors.total() as f64 <= attempts as f64 * ERROR_FRACTION_MAX
        };
        let phase_ok =
            |phase: &PhaseResult| phase.error_fraction() <= ERROR_FRACTION_MAX && probes_ok(phase);
        phase_ok(self.checkin) && self.reference.is_none_or(phase_ok)
    }

    pub fn json(&self) -> Value {
        let s = self.settings;
        json!({
            "settings": {
                "target": s.target,
                "devices": s.devices,
                "connections": s.connections,
                "requests_per_connection": s.requests_per_connection,
                "duration_s": s.duration_s,
                "warmup_s": s.warmup_s,
                "offered_rate": s.rate,
                "probe_interval_ms": s.probe_interval_ms,
                "checkin_body": s.checkin_body,
                "password_flood_connections": s.password_flood_connections,
                "flood_user": s.flood_user,
                "settle_s": s.settle_s,
            },
            "enrollment": self.enrollment.map(|e| json!({
                "users_created": e.users,
                "devices": e.devices,
                "seconds": e.seconds,
                "devices_per_second": e.devices_per_second,
                "errors": e.errors,
                "register": latency_json(&e.register),
                "enroll": latency_json(&e.enroll),
            })),
            "reference": self.reference.map(phase_json),
            "checkin": phase_json(self.checkin),
            "checkin_to_reference_ratio": self.ratio(),
            "goals": self.goals().iter().map(|(what, met)| json!({"goal": what, "met": met})).collect::<Vec<_>>(),
            "error_budget_passed": self.passed_error_budget(),
        })
    }

    pub fn text(&self) -> String {
        let s = self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nTandem check-in benchmark: {} devices against {}, {} connections x {} requests, \
             {} s measured after {} s warm-up, {}",
            s.devices,
            s.target,
            s.connections,
            s.requests_per_connection,
            s.duration_s,
            s.warmup_s,
            s.rate.map_or_else(
                || "closed loop".to_owned(),
                |rate| format!("offered {rate:.0}/s")
            )
        );
        if let Some(connections) = s.password_flood_connections {
            let _ = writeln!(
                out,
                "Beside each phase: a wrong-password flood as {:?} from {connections} connections; \
                 server memory read again after {} s idle",
                s.flood_user, s.settle_s
            );
        }
        if let Some(e) = self.enrollment {
            let _ = writeln!(
                out,
                "\nEnrollment: {} devices ({} users created) in {:.1} s = {:.0} devices/s, {} errors; \
                 register p50 {:.1} ms p99 {:.1} ms, enroll p50 {:.1} ms p99 {:.1} ms",
                e.devices,
                e.users,
                e.seconds,
                e.devices_per_second,
                e.errors,
                ms(e.register.quantile_us(0.5)),
                ms(e.register.quantile_us(0.99)),
                ms(e.enroll.quantile_us(0.5)),
                ms(e.enroll.quantile_us(0.99)),
            );
        }
        header(&mut out);
        let phases: Vec<(&str, &PhaseResult)> = self
            .reference
            .map(|reference| ("reference", reference))
            .into_iter()
            .chain([("check-in", self.checkin)])
            .collect();
        for (name, phase) in &phases {
            row(
                &mut out,
                &format!("{name} requests"),
                Some(phase.throughput()),
                &phase.latency,
                phase.errors.total(),
            );
            row(
                &mut out,
                &format!("{name} handshakes"),
                None,
                &phase.connect,
                0,
            );
            row(
                &mut out,
                &format!("probes during {name}"),
                None,
                &phase.probe,
                phase.probe_errors.total(),
            );
        }
        if let Some(ratio) = self.ratio() {
            let _ = writeln!(
                out,
                "\n  check-in throughput / reference throughput = {ratio:.3}"
            );
        }
        let _ = writeln!(
            out,
            "  devices that checked in: {} of {}",
            self.checkin.devices_used, s.devices
        );
        for (name, phase) in &phases {
            let cpu = &phase.cpu;
            let threads = cpu
                .server_threads_pct
                .iter()
                .map(|(thread, pct)| format!("{thread} {pct:.0}%"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "\n  CPU during {name} ({} cores): machine busy {:.0}% (iowait {:.0}%, \
                 other processes {:.0}%), server {:.0}% [{threads}], server run-queue wait {:.0}%, \
                 load generator {:.0}% (run-queue wait {:.0}%)",
                cpu.machine_cores,
                cpu.machine_busy_pct,
                cpu.machine_iowait_pct,
                (cpu.machine_busy_pct - cpu.server_pct - cpu.loadgen_pct).max(0.0),
                cpu.server_pct,
                cpu.server_runqueue_wait_pct,
                cpu.loadgen_pct,
                cpu.loadgen_runqueue_wait_pct,
            );
            if phase.requests > 0 {
                let per_request = |pct: f64| {
                    pct / 100.0 * phase.window.as_secs_f64() * 1e6 / phase.requests as f64
                };
                let _ = writeln!(
                    out,
                    "    CPU per request: server {:.0} µs, load generator {:.0} µs",
                    per_request(cpu.server_pct),
                    per_request(cpu.loadgen_pct),
                );
            }
            for (kind, (count, example)) in phase
                .errors
                .by_kind
                .iter()
                .chain(phase.probe_errors.by_kind.iter())
            {
                let _ = writeln!(out, "    error {kind}: {count} (e.g. {example})");
            }
            if let Some(memory) = &phase.memory {
                memory_text(&mut out, name, memory, s.settle_s);
            }
            if let Some(flood) = &phase.flood {
                flood_text(&mut out, name, flood);
            }
        }
        let _ = writeln!(out, "\n  Goals (2 cores, durable writes):");
        for (what, met) in self.goals() {
            let _ = writeln!(out, "    {:<8} {what}", verdict(met));
        }
        let _ = writeln!(
            out,
            "  Error budget ({:.1} %): {}",
            ERROR_FRACTION_MAX * 100.0,
            if self.passed_error_budget() {
                "passed"
            } else {
                "FAILED"
            }
        );
        out
    }
}
