//! The results: a table for people, one JSON object for scripts.

use crate::ERROR_FRACTION_MAX;
use crate::enroll;
use crate::histogram::Histogram;
use crate::load::{Errors, PhaseResult};
use serde_json::{Value, json};
use std::fmt::Write;

/// The goals on a 2-core machine with durable writes. Reported, never asserted: speed
/// is judged from the numbers and their ratio to the reference.
const GOAL_CHECKINS_PER_SECOND: f64 = 5000.0;
const GOAL_CHECKIN_P99_MS: f64 = 20.0;
const GOAL_PROBE_P99_MS: f64 = 5.0;

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
        let _ = writeln!(
            out,
            "\n  {:<26} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "latency (ms)", "req/s", "count", "mean", "p50", "p90", "p99", "max", "errors"
        );
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
