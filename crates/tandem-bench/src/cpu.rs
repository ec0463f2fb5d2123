//! Where the CPU went during a measured window, from `/proc` (Linux): the whole machine, this
//! load generator, and the server process broken down by thread name. Missing files (another OS,
//! a server that exited) give empty samples rather than errors: this is evidence, not a gate.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// `USER_HZ`, the unit of `/proc/stat` times: fixed at 100 by the Linux ABI on every
/// architecture the tool runs on.
const USER_HZ: f64 = 100.0;

#[derive(Clone, Debug, Default)]
struct ThreadTimes {
    /// Nanoseconds on a CPU (`schedstat` field 1).
    running_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU (`schedstat` field 2).
    waiting_ns: u64,
}

#[derive(Clone, Debug)]
pub struct Sample {
    at: Instant,
    /// `/proc/stat` "cpu" line: user, nice, system, idle, iowait, irq, softirq, steal (ticks).
    machine: Vec<u64>,
    this_process: BTreeMap<String, ThreadTimes>,
    server: BTreeMap<String, ThreadTimes>,
}

fn machine_ticks() -> Vec<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| {
            text.lines().next().map(|line| {
                line.split_whitespace()
                    .skip(1)
                    .take(8)
                    .filter_map(|field| field.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Per thread of `pid`, keyed `name/tid`; names are what the process set (`writer:replicat`,
/// `tokio-runtime-w`), truncated by the kernel to 15 bytes.
fn process_threads(pid: &str) -> BTreeMap<String, ThreadTimes> {
    let mut threads = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Ok(schedstat) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        let mut fields = schedstat.split_whitespace().map(|f| f.parse().unwrap_or(0));
        let times = ThreadTimes {
            running_ns: fields.next().unwrap_or(0),
            waiting_ns: fields.next().unwrap_or(0),
        };
        let key = format!("{}/{}", name.trim(), entry.file_name().to_string_lossy());
        threads.insert(key, times);
    }
    threads
}

impl Sample {
    pub fn take(server_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            machine: machine_ticks(),
            this_process: process_threads("self"),
            server: server_pid
                .map(|pid| process_threads(&pid.to_string()))
                .unwrap_or_default(),
        }
    }
}

/// CPU use between two samples, in percent of one core (200 % = both cores of a 2-core machine).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    pub machine_busy_pct: f64,
    pub machine_iowait_pct: f64,
    pub machine_cores: usize,
    pub loadgen_pct: f64,
    /// Time load-generator threads were runnable but had no CPU, as percent of the window.
    pub loadgen_runqueue_wait_pct: f64,
    pub server_pct: f64,
    /// Server CPU by thread name (threads of the same name summed).
    pub server_threads_pct: BTreeMap<String, f64>,
    /// Time server threads were runnable but had no CPU, as percent of the window: high values
    /// mean the server is starved for cores (by itself or by the load generator).
    pub server_runqueue_wait_pct: f64,
}

fn by_name(
    before: &BTreeMap<String, ThreadTimes>,
    after: &BTreeMap<String, ThreadTimes>,
) -> BTreeMap<String, (u64, u64)> {
    let mut names: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (key, times) in after {
        let base = before.get(key).cloned().unwrap_or_default();
        let name = key.rsplit_once('/').map_or(key.as_str(), |(name, _)| name);
        let entry = names.entry(name.to_owned()).or_default();
        entry.0 += times.running_ns.saturating_sub(base.running_ns);
        entry.1 += times.waiting_ns.saturating_sub(base.waiting_ns);
    }
    names
}

pub fn usage(before: &Sample, after: &Sample) -> Usage {
    let window_ns = after.at.duration_since(before.at).as_nanos().max(1) as f64;
    let pct = |ns: u64| 100.0 * ns as f64 / window_ns;
    let deltas: Vec<u64> = after
        .machine
        .iter()
        .zip(&before.machine)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let ticks_total: u64 = deltas.iter().sum();
    let idle = deltas.get(3).copied().unwrap_or(0);
    let iowait = deltas.get(4).copied().unwrap_or(0);
    let window_s = window_ns / 1e9;
    let cores = if window_s > 0.0 {
        (ticks_total as f64 / USER_HZ / window_s).round() as usize
    } else {
        0
    };
    let share = |ticks: u64| {
        if ticks_total == 0 {
            0.0
        } else {
            100.0 * cores as f64 * ticks as f64 / ticks_total as f64
        }
    };
    let loadgen = by_name(&before.this_process, &after.this_process);
    let server = by_name(&before.server, &after.server);
    Usage {
        machine_busy_pct: share(ticks_total.saturating_sub(idle + iowait)),
        machine_iowait_pct: share(iowait),
        machine_cores: cores,
        loadgen_pct: pct(loadgen.values().map(|(run, _)| run).sum()),
        loadgen_runqueue_wait_pct: pct(loadgen.values().map(|(_, wait)| wait).sum()),
        server_pct: pct(server.values().map(|(run, _)| run).sum()),
        server_threads_pct: server
            .iter()
            .filter(|(_, (run, _))| *run > 0)
            .map(|(name, (run, _))| (name.clone(), pct(*run)))
            .collect(),
        server_runqueue_wait_pct: pct(server.values().map(|(_, wait)| wait).sum()),
    }
}
