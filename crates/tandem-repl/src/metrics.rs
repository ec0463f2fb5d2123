//! Counters of the syncs this node ran (scheduled and manual), for `/metrics`: updated once per
//! sync, read at each scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tandem_metrics::Histogram;

/// The sync kinds Sync History records; `unknown`: the sync failed before choosing one.
pub const SYNC_KINDS: [&str; 4] = ["full", "incremental", "none", "unknown"];
/// How a sync ended, as Sync History records it.
pub const SYNC_RESULTS: [&str; 3] = ["succeeded", "failed", "refused"];

pub struct SyncMetrics {
    runs: [[AtomicU64; SYNC_RESULTS.len()]; SYNC_KINDS.len()],
    duration: Histogram,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        Self {
            runs: Default::default(),
            duration: Histogram::durations(),
        }
    }
}

impl SyncMetrics {
    /// Counts one finished sync.
    pub fn record(&self, kind: Option<&str>, result: &str, took: Duration) {
        let kind = kind
            .and_then(|kind| SYNC_KINDS.iter().position(|known| *known == kind))
            .unwrap_or(SYNC_KINDS.len() - 1);
        let result = SYNC_RESULTS
            .iter()
            .position(|known| *known == result)
            .unwrap_or(1);
        self.runs[kind][result].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(took);
    }

    /// `(kind, result, count)` for every combination, zeros included (so a rate exists from the
    /// first scrape).
    pub fn runs(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut rows = Vec::new();
        for (kind, results) in SYNC_KINDS.iter().zip(&self.runs) {
            for (result, count) in SYNC_RESULTS.iter().zip(results) {
                rows.push((*kind, *result, count.load(Ordering::Relaxed)));
            }
        }
        rows
    }

    pub fn duration(&self) -> &Histogram {
        &self.duration
    }
}
