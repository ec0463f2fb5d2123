//! Prometheus metrics for a node's and the traffic controller's `GET /metrics`: the one writer
//! of the text exposition format (0.0.4), and the lock-free counters and histograms the hot
//! path updates (one relaxed atomic add per event; no lock, no allocation).
//!
//! Names follow Prometheus' conventions: `tandem_` first, the unit last (`_seconds`, `_bytes`),
//! `_total` on counters.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of request and sync latency buckets: from a cached probe answer
/// (about 1 ms) to a sync of a large fleet (minutes); 14 buckets keep a scrape small.
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one exposition. `fmt::Write` into a `String` cannot fail, so its results are ignored.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// One family: its HELP and TYPE lines, then a sample per row (`labels` as [`labels`]
    /// renders them, or empty). A family without rows is left out whole.
    pub fn family(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        rows: impl IntoIterator<Item = (String, String)>,
    ) {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return;
        }
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
        for (labels, value) in rows {
            let _ = writeln!(self.out, "{name}{labels} {value}");
        }
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl ToString) {
        self.family(name, kind, help, [(String::new(), value.to_string())]);
    }

    /// A histogram family: one series per row, each with `le` buckets, `_sum` and `_count`.
    /// `labels` are pairs without braces; `le` is added to them.
    pub fn histograms<'a>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Vec<(&'a str, String)>, &'a Histogram)>,
    ) {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return;
        }
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (pairs, histogram) in rows {
            let reading = histogram.read();
            let mut cumulative = 0;
            for (bound, count) in histogram.bounds.iter().zip(&reading.buckets) {
                cumulative += count;
                let mut with_le = pairs.clone();
                with_le.push(("le", bound.to_string()));
                let _ = writeln!(self.out, "{name}_bucket{} {cumulative}", labels(&with_le));
            }
            let mut with_le = pairs.clone();
            with_le.push(("le", "+Inf".into()));
            let _ = writeln!(
                self.out,
                "{name}_bucket{} {}",
                labels(&with_le),
                reading.count
            );
            let plain = labels(&pairs);
            let _ = writeln!(self.out, "{name}_sum{plain} {}", reading.sum_seconds);
            let _ = writeln!(self.out, "{name}_count{plain} {}", reading.count);
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `{name="value",…}` with each value escaped; empty for no pairs.
pub fn labels<S: AsRef<str>>(pairs: &[(&str, S)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", label_value(value.as_ref())))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A label value: backslash, quote and newline escaped (node and backend names are an
/// operator's text).
pub fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A cumulative histogram of durations, updated with atomics only.
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative; cumulated when read), plus one past the last bound.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram's values at one instant (close enough: each atomic is read once).
pub struct HistogramReading {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// A histogram with [`DURATION_BUCKETS_SECONDS`].
    pub fn durations() -> Self {
        Self::new(DURATION_BUCKETS_SECONDS)
    }

    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let index = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn read(&self) -> HistogramReading {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        // `count` from the buckets themselves, so `+Inf` always equals the last cumulative
        // bucket even while observations land during the read.
        let count = buckets.iter().sum();
        HistogramReading {
            buckets,
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let histogram = Histogram::new(&[0.1, 1.0]);
        histogram.observe(Duration::from_millis(50));
        histogram.observe(Duration::from_millis(500));
        histogram.observe(Duration::from_secs(5));
        let mut out = Exposition::new();
        out.histograms(
            "x_seconds",
            "X.",
            [(vec![("route", "a\"b".to_owned())], &histogram)],
        );
        let text = out.finish();
        assert!(text.contains("# TYPE x_seconds histogram"), "{text}");
        assert!(
            text.contains("x_seconds_bucket{route=\"a\\\"b\",le=\"0.1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"a\\\"b\",le=\"1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"a\\\"b\",le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_count{route=\"a\\\"b\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_sum{route=\"a\\\"b\"} 5.55"),
            "{text}"
        );
    }

    #[test]
    fn a_family_without_rows_is_left_out() {
        let mut out = Exposition::new();
        out.family("empty", Kind::Gauge, "Nothing.", Vec::new());
        out.single("one", Kind::Counter, "One.", 1);
        assert_eq!(out.finish(), "# HELP one One.\n# TYPE one counter\none 1\n");
    }
}
