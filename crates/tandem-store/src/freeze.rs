//! Noticing that this process was frozen: stopped (SIGSTOP), its VM suspended, or stalled so
//! long that a peer could have detected a failure and taken over meanwhile.
//!
//! While a process is frozen nothing in it runs, so it cannot notice at the time; when it
//! resumes, every timer that ran out fires at once, and an answer prepared before the freeze
//! may go out after it. A node that was superseded meanwhile must not acknowledge anything,
//! so one thread beats every [`BEAT_INTERVAL`]: a beat much later than due is a freeze, and
//! every database with a threshold at or under the gap is marked. Until the HA runtime clears
//! the mark (its peers showed no newer ballot, or the node is not Active), and also while the
//! beat itself is overdue (the process resumed but the beat thread has not run yet), writes are
//! not acknowledged and the probes do not answer Active.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How often the beat thread wakes. Short enough that a resumed process sees its freeze within
/// a tick of the HA runtime; long enough to cost nothing measurable.
pub const BEAT_INTERVAL: Duration = Duration::from_millis(10);
/// Databases watched at most (one or two per node; tests run several nodes in one process).
const WATCHED_MAX: usize = 256;

/// One database's view of freezes: its threshold and the gap it was marked with.
#[derive(Debug, Default)]
pub struct FreezeMark {
    /// Gaps at least this long count (ms); 0: this database does not care (HA disabled).
    threshold_ms: AtomicU64,
    /// The longest gap seen since the mark was last cleared (ms); 0: none.
    gap_ms: AtomicU64,
    /// Counts the freezes marked: a clear covers only those its caller dealt with.
    generation: AtomicU64,
}

impl FreezeMark {
    /// Watches freezes of at least `threshold` from now on; `None` stops watching and clears.
    pub fn set_threshold(self: &Arc<Self>, threshold: Option<Duration>) {
        let ms = threshold.map_or(0, |threshold| threshold.as_millis().max(1) as u64);
        let before = self.threshold_ms.swap(ms, Ordering::AcqRel);
        if ms == 0 {
            self.gap_ms.store(0, Ordering::Release);
        } else if before == 0 {
            beat().watch(self);
        }
    }

    /// The gap (ms) of a freeze not yet dealt with, or of one in progress (the beat is overdue).
    pub fn frozen_ms(&self) -> Option<u64> {
        let threshold = self.threshold_ms.load(Ordering::Acquire);
        if threshold == 0 {
            return None;
        }
        let marked = self.gap_ms.load(Ordering::Acquire);
        if marked > 0 {
            return Some(marked);
        }
        let overdue = beat().overdue_ms();
        (overdue >= threshold).then_some(overdue)
    }

    /// How many freezes were marked so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The freezes up to `generation` were dealt with; a later one stays marked.
    pub fn clear_through(&self, generation: u64) {
        let gap = self.gap_ms.load(Ordering::Acquire);
        if self.generation.load(Ordering::Acquire) <= generation {
            // Only if no freeze was marked meanwhile (it would have raised the generation).
            let _ = self
                .gap_ms
                .compare_exchange(gap, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn mark(&self, gap_ms: u64) {
        let threshold = self.threshold_ms.load(Ordering::Acquire);
        if threshold > 0 && gap_ms >= threshold {
            self.gap_ms.fetch_max(gap_ms, Ordering::AcqRel);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

struct Beat {
    origin: Instant,
    last_ms: AtomicU64,
    watched: Mutex<Vec<Weak<FreezeMark>>>,
}

fn beat() -> &'static Beat {
    static BEAT: OnceLock<&'static Beat> = OnceLock::new();
    BEAT.get_or_init(|| {
        // One beat thread for the life of the process: leaked on purpose so it outlives every
        // database that refers to it.
        let beat: &'static Beat = Box::leak(Box::new(Beat {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            watched: Mutex::new(Vec::new()),
        }));
        let spawned = std::thread::Builder::new()
            .name("tandem-freeze-watch".into())
            .spawn(move || beat.run());
        if let Err(error) = spawned {
            // Without the thread no freeze is ever marked; the overdue check still works from
            // the last beat, so say so loudly rather than fail the node.
            tracing::error!(%error, "cannot start the freeze watch thread");
        }
        beat
    })
}

impl Beat {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// How late the beat is now, beyond its interval.
    fn overdue_ms(&self) -> u64 {
        let since = self
            .now_ms()
            .saturating_sub(self.last_ms.load(Ordering::Acquire));
        since.saturating_sub(BEAT_INTERVAL.as_millis() as u64)
    }

    fn watch(&self, mark: &Arc<FreezeMark>) {
        let mut watched = self
            .watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        watched.retain(|weak| weak.strong_count() > 0);
        if watched.len() < WATCHED_MAX
            && !watched
                .iter()
                .any(|weak| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(mark)))
        {
            watched.push(Arc::downgrade(mark));
        }
    }

    fn run(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Release);
        loop {
            std::thread::sleep(BEAT_INTERVAL);
            let now = self.now_ms();
            let gap = now
                .saturating_sub(self.last_ms.load(Ordering::Acquire))
                .saturating_sub(BEAT_INTERVAL.as_millis() as u64);
            if gap > 0 {
                // Marks first, then the beat: a reader that sees the fresh beat also sees them.
                let watched = self
                    .watched
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for mark in watched.iter().filter_map(Weak::upgrade) {
                    mark.mark(gap);
                }
            }
            self.last_ms.store(now, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_at_or_over_the_threshold_marks_until_cleared() {
        let mark = Arc::new(FreezeMark::default());
        assert_eq!(mark.frozen_ms(), None, "no threshold: never frozen");
        mark.set_threshold(Some(Duration::from_millis(50)));
        // The beat thread runs; nothing is overdue in a calm process.
        std::thread::sleep(BEAT_INTERVAL * 3);
        mark.mark(49);
        assert_eq!(mark.frozen_ms(), None);
        mark.mark(80);
        mark.mark(60);
        assert_eq!(mark.frozen_ms(), Some(80), "the longest gap is kept");
        // A clear that dealt with an earlier generation leaves a later freeze marked.
        mark.clear_through(mark.generation() - 1);
        assert_eq!(mark.frozen_ms(), Some(80));
        mark.clear_through(mark.generation());
        assert_eq!(mark.frozen_ms(), None);
        mark.mark(70);
        mark.set_threshold(None);
        assert_eq!(mark.frozen_ms(), None, "watching stopped clears the mark");
    }

    #[test]
    fn a_stopped_process_is_seen_frozen_when_it_resumes() {
        // A freeze seen from inside: the beat held back as a stopped process holds it (the
        // process-level test, `tests/freeze.rs`, stops a real node with SIGSTOP).
        let mark = Arc::new(FreezeMark::default());
        mark.set_threshold(Some(Duration::from_millis(30)));
        let beat = beat();
        // The beat's clock starts with the process's first watch: let it pass the held-back
        // amount first.
        while beat.now_ms() < 200 {
            std::thread::sleep(BEAT_INTERVAL);
        }
        let held = beat.now_ms() - 200;
        beat.last_ms.store(held, Ordering::Release);
        assert!(
            mark.frozen_ms().is_some_and(|gap| gap >= 30),
            "an overdue beat counts before the beat thread runs"
        );
        // The beat thread then marks the gap itself.
        let started = Instant::now();
        while mark.gap_ms.load(Ordering::Acquire) == 0 {
            assert!(started.elapsed() < Duration::from_secs(10), "never marked");
            beat.last_ms.store(held, Ordering::Release);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(mark.frozen_ms().is_some());
        mark.clear_through(mark.generation());
        std::thread::sleep(BEAT_INTERVAL * 3);
        assert_eq!(mark.frozen_ms(), None);
    }
}
