//! The server's resident memory over a phase, from `/proc/PID/status` (Linux): `VmRSS` at the
//! start, sampled during the phase for its peak, at the end and once more after a settle time,
//! plus the kernel's own high-water mark `VmHWM`, which catches a peak between two samples.
//! Like `cpu`, this is evidence, not a gate: a missing file gives no numbers rather than an error.

use serde::Serialize;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// How often `VmRSS` is read during a phase: often enough to see a flood's memory rise (an
/// argon2 check holds its 19 MiB for tens of milliseconds, and many overlap under a flood),
/// rarely enough to cost nothing. `VmHWM` covers whatever falls between two samples.
pub const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// One reading of `/proc/PID/status`, in KiB as the kernel reports them.
#[derive(Clone, Copy, Debug)]
struct Reading {
    rss_kib: u64,
    hwm_kib: u64,
    /// `RssAnon`: the heap and other private memory. `VmRSS` also counts the pages of files
    /// mapped in, such as the SQLite database read through its memory map, which grow with the
    /// database whatever the load; the anonymous part is what a flood could add.
    anon_kib: u64,
}

fn read(pid: u32) -> Option<Reading> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `VmRSS` and `VmHWM` from the text of `/proc/PID/status` (lines such as `VmRSS:  1234 kB`).
fn parse_status(status: &str) -> Option<Reading> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            line.strip_prefix(name)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some(Reading {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
    })
}

/// Resets the process's `VmHWM` to its current RSS (`5` to `/proc/PID/clear_refs`, Linux 4.0
/// and later), so the high-water mark read at the end belongs to this phase. Needs the same
/// user as the server; without it `VmHWM` counts from the server's start.
fn reset_high_water_mark(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The server's memory over one phase, in bytes. A reading that failed (the server exited)
/// is `None`, never a stand-in.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryResult {
    pub start_bytes: u64,
    /// The largest `VmRSS` of the samples, from the phase's start to the end of the settle time.
    pub peak_sampled_bytes: u64,
    /// `VmHWM` at the end of the settle time.
    pub high_water_mark_bytes: Option<u64>,
    /// Whether `VmHWM` was reset at the phase's start; if not, it counts from the server's start.
    pub high_water_mark_from_phase_start: bool,
    /// At the end of the measured window, when the load (and any flood) stops.
    pub end_bytes: Option<u64>,
    /// After the settle time, with the node idle.
    pub after_settle_bytes: Option<u64>,
    pub samples: u64,
    /// `RssAnon` at the start, its largest sample, and after the settle time.
    pub anon_start_bytes: u64,
    pub anon_peak_bytes: u64,
    pub anon_after_settle_bytes: Option<u64>,
}

impl MemoryResult {
    /// The phase's peak: the larger of the samples and the high-water mark, when the latter
    /// covers only this phase.
    pub fn peak_bytes(&self) -> u64 {
        match self.high_water_mark_bytes {
            Some(mark) if self.high_water_mark_from_phase_start => {
                mark.max(self.peak_sampled_bytes)
            }
            _ => self.peak_sampled_bytes,
        }
    }
}

/// Samples the server's `VmRSS` every [`MEMORY_SAMPLE_INTERVAL`] on a task until [`finish`].
///
/// [`finish`]: Sampler::finish
pub struct Sampler {
    pid: u32,
    start: Reading,
    reset: bool,
    at_end: Option<Reading>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(u64, u64, u64)>,
}

impl Sampler {
    /// Reads the starting point and starts sampling; `None` when the server's status cannot be
    /// read (not Linux, or no such process).
    pub fn start(pid: u32) -> Option<Self> {
        let reset = reset_high_water_mark(pid);
        let start = read(pid)?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak_kib = start.rss_kib;
            let mut anon_peak_kib = start.anon_kib;
            let mut samples = 1;
            let mut ticker = tokio::time::interval(MEMORY_SAMPLE_INTERVAL);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                if let Some(reading) = read(pid) {
                    peak_kib = peak_kib.max(reading.rss_kib);
                    anon_peak_kib = anon_peak_kib.max(reading.anon_kib);
                    samples += 1;
                }
            }
            (peak_kib, anon_peak_kib, samples)
        });
        Some(Self {
            pid,
            start,
            reset,
            at_end: None,
            stop,
            task,
        })
    }

    /// At the end of the measured window, when the load stops: reads `VmRSS` there.
    pub fn mark_end(&mut self) {
        self.at_end = read(self.pid);
    }

    /// Idles until `after` (the end of the settle time), reads `VmRSS` and `VmHWM` there and
    /// stops sampling.
    pub async fn finish(self, after: Instant) -> MemoryResult {
        tokio::time::sleep_until(after).await;
        let after = read(self.pid);
        let _ = self.stop.send(true);
        // The task only loops and reads files; if it failed, the samples are lost but the
        // other readings still stand.
        let (peak_kib, anon_peak_kib, samples) =
            self.task
                .await
                .unwrap_or((self.start.rss_kib, self.start.anon_kib, 1));
        let readings = [Some(self.start), self.at_end, after];
        let bytes = |kib: u64| kib * 1024;
        MemoryResult {
            start_bytes: bytes(self.start.rss_kib),
            peak_sampled_bytes: bytes(
                readings
                    .iter()
                    .flatten()
                    .map(|reading| reading.rss_kib)
                    .fold(peak_kib, u64::max),
            ),
            high_water_mark_bytes: after.map(|reading| bytes(reading.hwm_kib)),
            high_water_mark_from_phase_start: self.reset,
            end_bytes: self.at_end.map(|reading| bytes(reading.rss_kib)),
            after_settle_bytes: after.map(|reading| bytes(reading.rss_kib)),
            samples,
            anon_start_bytes: bytes(self.start.anon_kib),
            anon_peak_bytes: bytes(
                readings
                    .iter()
                    .flatten()
                    .map(|reading| reading.anon_kib)
                    .fold(anon_peak_kib, u64::max),
            ),
            anon_after_settle_bytes: after.map(|reading| bytes(reading.anon_kib)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_status;

    #[test]
    fn resident_memory_and_high_water_mark_are_read_from_proc_status() {
        let status = "Name:\ttandem\nVmPeak:\t  900000 kB\nVmHWM:\t   98700 kB\n\
                      VmRSS:\t   59000 kB\nRssAnon:\t   30000 kB\n";
        let reading = parse_status(status).map(|r| (r.rss_kib, r.hwm_kib, r.anon_kib));
        assert_eq!(reading, Some((59_000, 98_700, 30_000)));
        assert!(parse_status("Name:\tkthreadd\n").is_none());
    }
}
