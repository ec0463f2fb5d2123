//! What the fault and one-Active tests check after the fact: divergence exports, and how long
//! two nodes answered the guide's status probe OK at once.

use super::node::{Node, try_https_within};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The entries a node saved before a sync replaced them (`divergence/*.jsonl`).
pub fn divergence_entries(node: &Node) -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(node.dir.join("divergence")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .flat_map(|file| {
            std::fs::read_to_string(file.path())
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                // The first line describes the export; the others are change-log entries.
                .filter(|entry| entry.get("seq").is_some())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether the label `name` is in one of the `exported` entries (as JSON text).
pub fn in_exported(exported: &[String], name: &str) -> bool {
    exported.iter().any(|entry| {
        // The row is JSON inside the entry: its quotes are escaped once serialized again.
        entry.contains(&format!("\\\"{name}\\\"")) || entry.contains(&format!("\"{name}\""))
    })
}

/// A probe answer may take this long (a paused node answers none; a loaded one, slowly).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between two probes of one node.
const PROBE_PAUSE: Duration = Duration::from_millis(10);

/// Probes `/status/status.html` of several nodes in a loop, one thread each, recording every
/// answer with the instant it completed, until stopped.
pub struct StatusWatch {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<(Instant, bool)>>>,
    names: Vec<String>,
}

impl StatusWatch {
    pub fn start(nodes: &[(&str, u16)]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = nodes
            .iter()
            .map(|&(_, port)| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        let answer = try_https_within(
                            port,
                            reqwest::Method::GET,
                            "/status/status.html",
                            None,
                            PROBE_TIMEOUT,
                        );
                        let ok = matches!(&answer, Ok((200, body)) if body.contains("MOBILEIRON-STATUS: OK"));
                        samples.push((Instant::now(), ok));
                        std::thread::sleep(PROBE_PAUSE);
                    }
                    samples
                })
            })
            .collect();
        Self {
            stop,
            threads,
            names: nodes.iter().map(|(name, _)| name.to_string()).collect(),
        }
    }

    /// Stops probing. Returns every interval in which two nodes answered OK at once, as
    /// `(first node, second node, from, until)`. A node counts as OK from an OK answer until
    /// its next answer that is not OK (an upper bound: it may have stopped sooner).
    pub fn stop(self) -> Vec<(String, String, Instant, Instant)> {
        self.stop.store(true, Ordering::Release);
        let periods: Vec<Vec<(Instant, Instant)>> = self
            .threads
            .into_iter()
            .map(|thread| ok_periods(&thread.join().unwrap()))
            .collect();
        let mut overlaps = Vec::new();
        for (i, first) in periods.iter().enumerate() {
            for (j, second) in periods.iter().enumerate().skip(i + 1) {
                for &(a_from, a_until) in first {
                    for &(b_from, b_until) in second {
                        let (from, until) = (a_from.max(b_from), a_until.min(b_until));
                        if from < until {
                            overlaps.push((
                                self.names[i].clone(),
                                self.names[j].clone(),
                                from,
                                until,
                            ));
                        }
                    }
                }
            }
        }
        overlaps
    }
}

fn ok_periods(samples: &[(Instant, bool)]) -> Vec<(Instant, Instant)> {
    let mut periods = Vec::new();
    let mut open: Option<Instant> = None;
    for &(at, ok) in samples {
        match (open, ok) {
            (None, true) => open = Some(at),
            (Some(from), false) => {
                periods.push((from, at));
                open = None;
            }
            _ => {}
        }
    }
    if let (Some(from), Some(&(last, _))) = (open, samples.last()) {
        periods.push((from, last));
    }
    periods
}

/// The acknowledged writes whose label `labels` lacks.
pub fn missing(acknowledged: &[(String, Instant)], labels: &HashSet<String>) -> Vec<String> {
    acknowledged
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !labels.contains(*name))
        .cloned()
        .collect()
}
