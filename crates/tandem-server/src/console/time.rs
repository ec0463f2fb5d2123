//! Times as both consoles show them: UTC to the second, marked `UTC`, and how long ago (or
//! until) in the largest whole unit. One place, so every window reads alike.

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;

const SHOWN: &[BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");

/// `2026-12-03 16:50:23 UTC`.
pub fn utc(at: OffsetDateTime) -> String {
    at.format(SHOWN).unwrap_or_else(|_| at.to_string())
}

/// Milliseconds since the Unix epoch (the HA controller's wall-clock times) as [`utc`].
pub fn utc_ms(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(at) => utc(at),
        Err(_) => format!("{ms} ms after 1970"),
    }
}

/// A stored time (the store's RFC 3339 timestamp) as [`utc`], or as stored when it does not
/// read as a time.
pub fn utc_stored(stored: &str) -> String {
    tandem_store::common::parse_timestamp(stored).map_or_else(|_| stored.to_owned(), utc)
}

/// A span in its largest whole unit: "12 s", "5 min", "3 h", "2 d" (two of a unit before the
/// next, so "90 s" rather than "1 min").
pub fn span(seconds: i64) -> String {
    match seconds.unsigned_abs() {
        s @ 0..120 => format!("{s} s"),
        s @ 120..7_200 => format!("{} min", s / 60),
        s @ 7_200..172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// "12 s ago" for a moment `seconds_ago` seconds back, "in 55 min" for one ahead.
pub fn relative(seconds_ago: i64) -> String {
    if seconds_ago >= 0 {
        format!("{} ago", span(seconds_ago))
    } else {
        format!("in {}", span(seconds_ago))
    }
}

/// [`relative`] between two times in Unix milliseconds.
pub fn relative_ms(ms: i64, now_ms: i64) -> String {
    relative((now_ms - ms) / 1000)
}

/// A stored time as a page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moment {
    /// [`utc`], or the stored text when it does not read as a time.
    pub utc: String,
    /// [`relative`]; empty when the time does not read.
    pub ago: String,
    /// The stored text, for `<time datetime>`.
    pub iso: String,
}

impl Moment {
    /// `stored` (the store's RFC 3339 timestamp) as shown at `now`.
    pub fn stored(stored: &str, now: OffsetDateTime) -> Self {
        match tandem_store::common::parse_timestamp(stored) {
            Ok(at) => Self {
                utc: utc(at),
                ago: relative((now - at).whole_seconds()),
                iso: stored.to_owned(),
            },
            Err(_) => Self {
                utc: stored.to_owned(),
                ago: String::new(),
                iso: stored.to_owned(),
            },
        }
    }

    pub fn stored_optional(stored: Option<&str>, now: OffsetDateTime) -> Option<Self> {
        stored.map(|stored| Self::stored(stored, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_utc_to_the_second_with_how_long_ago_or_until() {
        assert_eq!(utc_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_ms(1_764_780_623_000), "2025-12-03 16:50:23 UTC");
        let now = 1_764_780_623_000;
        assert_eq!(relative_ms(now - 12_000, now), "12 s ago");
        assert_eq!(relative_ms(now + 55 * 60_000, now), "in 55 min");
        assert_eq!(relative(5 * 60), "5 min ago");
        assert_eq!(relative(3 * 3600), "3 h ago");
        assert_eq!(relative(3 * 86_400), "3 d ago");
        assert_eq!(span(6 * 3600 + 59), "6 h");

        let at = tandem_store::common::parse_timestamp("2026-12-03T16:50:22.500Z").unwrap();
        let shown = Moment::stored("2026-12-03T16:49:00.000Z", at);
        assert_eq!(shown.utc, "2026-12-03 16:49:00 UTC");
        assert_eq!(shown.ago, "82 s ago");
        assert_eq!(shown.iso, "2026-12-03T16:49:00.000Z");
        let garbage = Moment::stored("garbage", at);
        assert_eq!(
            (garbage.utc.as_str(), garbage.ago.as_str()),
            ("garbage", "")
        );
    }
}
