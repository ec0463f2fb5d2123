//! The sync schedule (guide: StartTime and Run Every). Wall-clock arithmetic in milliseconds
//! since the Unix epoch, UTC; no clock is read here.
//!
//! Saving the configuration *anchors* the schedule at the next StartTime at or after the moment
//! of saving (the guide's example: StartTime 1:00 pm saved at 2:00 pm first runs at 1:00 pm the
//! next day); from the anchor on, a sync is due every Run Every.

use crate::config::{Span, StartTime};

const DAY_MS: i64 = 86_400_000;

/// The first instant at or after `now_ms` whose time of day (UTC) is `start_time`.
pub fn next_start_time(now_ms: i64, start_time: StartTime) -> i64 {
    let midnight = now_ms.div_euclid(DAY_MS) * DAY_MS;
    let today = midnight + i64::from(start_time.minute_of_day()) * 60_000;
    if today >= now_ms {
        today
    } else {
        today + DAY_MS
    }
}

/// The first slot `anchor + k × run_every` (k ≥ 0) at or after `at_ms`.
pub fn next_slot(anchor_ms: i64, run_every: Span, at_ms: i64) -> i64 {
    let period = run_every.as_millis().max(1) as i64;
    if at_ms <= anchor_ms {
        return anchor_ms;
    }
    let periods = (at_ms - anchor_ms + period - 1) / period;
    anchor_ms + periods * period
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    /// 2026-11-22 00:00:00 UTC.
    const DAY0: i64 = 1_795_305_600_000;

    #[test]
    fn the_guides_example_saved_after_start_time_runs_the_next_day() {
        // StartTime 1:00 pm; the configuration is saved at 2:00 pm.
        let start = "13:00".parse().unwrap();
        let saved = DAY0 + 14 * HOUR;
        let first = next_start_time(saved, start);
        assert_eq!(first, DAY0 + 24 * HOUR + 13 * HOUR, "1:00 pm the next day");
        // Then Run Every takes over from that starting time.
        let run_every = Span::from_minutes(60);
        assert_eq!(next_slot(first, run_every, first + 1), first + HOUR);
        assert_eq!(next_slot(first, run_every, first + HOUR), first + HOUR);
        assert_eq!(
            next_slot(first, run_every, first + 5 * HOUR + 1),
            first + 6 * HOUR
        );
    }

    #[test]
    fn saved_before_start_time_runs_the_same_day() {
        let start = "13:00".parse().unwrap();
        assert_eq!(next_start_time(DAY0 + 12 * HOUR, start), DAY0 + 13 * HOUR);
        assert_eq!(next_start_time(DAY0 + 13 * HOUR, start), DAY0 + 13 * HOUR);
    }

    #[test]
    fn before_the_anchor_the_anchor_is_next() {
        assert_eq!(next_slot(DAY0, Span::from_minutes(90), DAY0 - HOUR), DAY0);
    }
}
