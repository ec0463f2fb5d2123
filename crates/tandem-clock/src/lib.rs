//! The wall clock, read in one place.
//!
//! The decisions of Tandem (`tandem-ha`'s controller, `tandem-lb`'s policy) read no clock: their
//! runtimes pass time in. Those runtimes, the store's change log and replication read the wall
//! clock here, so every wall-clock time in Tandem is the same unit from the same source, and a
//! test or simulation knows the one function to look for.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the wall clock: comparable between nodes (within
/// their clock offset, which Test Connection and heartbeats report), but it may step back or
/// forward (an operator or NTP setting the clock), so durations are measured on a monotonic
/// clock instead. A clock set before 1970 reads 0.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wall_clock_reads_after_2025_in_milliseconds() {
        // 2025-01-01T00:00:00Z in ms: a clock that reads earlier is wrong, or not in ms.
        assert!(super::wall_clock_ms() > 1_735_689_600_000);
        assert!(super::wall_clock_ms() < 1_735_689_600_000 * 10);
    }
}
