//! A latency histogram in microseconds with bounded relative error (HDR-style log-linear
//! buckets), small enough to keep one per worker and merge at the end.
//!
//! Values below [`LINEAR_LIMIT_US`] get one bucket each; above it every power of two is split
//! into [`SUB_BUCKETS`] equal buckets, so a reported percentile is at most 1/64 (1.6 %) above
//! the true value. The maximum is kept exactly.

use std::time::Duration;

/// Sub-buckets per power of two: the relative precision is `1 / SUB_BUCKETS`.
const SUB_BUCKETS_LOG2: u32 = 6;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKETS_LOG2;
/// Values below this (in µs) are counted exactly, one bucket each.
const LINEAR_LIMIT_US: u64 = 2 * SUB_BUCKETS;
const LINEAR_LIMIT_LOG2: u32 = SUB_BUCKETS_LOG2 + 1;
/// Buckets needed to cover every `u64`.
const BUCKETS: usize =
    LINEAR_LIMIT_US as usize + (64 - LINEAR_LIMIT_LOG2 as usize) * SUB_BUCKETS as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: u128,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR_LIMIT_US {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let sub = (value >> (exponent - SUB_BUCKETS_LOG2)) & (SUB_BUCKETS - 1);
    LINEAR_LIMIT_US as usize
        + (exponent - LINEAR_LIMIT_LOG2) as usize * SUB_BUCKETS as usize
        + sub as usize
}

/// The largest value that falls in `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    if bucket < LINEAR_LIMIT_US as usize {
        return bucket as u64;
    }
    let offset = bucket - LINEAR_LIMIT_US as usize;
    let exponent = offset as u32 / SUB_BUCKETS as u32 + LINEAR_LIMIT_LOG2;
    let sub = (offset as u64) % SUB_BUCKETS;
    let low = (SUB_BUCKETS + sub) << (exponent - SUB_BUCKETS_LOG2);
    low.saturating_add((1u64 << (exponent - SUB_BUCKETS_LOG2)) - 1)
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
        self.sum_us += u128::from(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn mean_us(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.total as f64
        }
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The value at or below which `quantile` (0..=1) of the samples fall, in µs; 0 when empty.
    pub fn quantile_us(&self, quantile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(bucket).min(self.max_us);
            }
        }
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_their_values() {
        let mut previous_high = None;
        for bucket in 0..BUCKETS - 1 {
            let high = bucket_high(bucket);
            if let Some(previous) = previous_high {
                assert_eq!(
                    bucket_of(previous + 1),
                    bucket,
                    "first value of bucket {bucket}"
                );
            }
            assert_eq!(bucket_of(high), bucket, "last value of bucket {bucket}");
            previous_high = Some(high);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn relative_error_is_bounded() {
        for value in [1u64, 127, 128, 129, 1000, 12_345, 999_999, 86_400_000_000] {
            let high = bucket_high(bucket_of(value));
            assert!(high >= value);
            assert!((high - value) as f64 <= value as f64 / SUB_BUCKETS as f64);
        }
    }

    #[test]
    fn quantiles() {
        let mut histogram = Histogram::default();
        for us in 1..=1000 {
            histogram.record(Duration::from_micros(us));
        }
        assert_eq!(histogram.count(), 1000);
        assert_eq!(histogram.quantile_us(0.0), 1);
        let p50 = histogram.quantile_us(0.5);
        assert!((500..=508).contains(&p50), "{p50}");
        let p99 = histogram.quantile_us(0.99);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(histogram.quantile_us(1.0), 1000);
        assert_eq!(histogram.max_us(), 1000);
        assert!((histogram.mean_us() - 500.5).abs() < 1e-9);

        let mut merged = Histogram::default();
        merged.merge(&histogram);
        merged.merge(&histogram);
        assert_eq!(merged.count(), 2000);
        assert_eq!(merged.quantile_us(0.5), p50);
    }
}
