//! Back-off after failed logins, per source address and per user, decided before argon2 runs.
//!
//! After [`FAILURES_FREE`] failures, each further attempt waits until a delay has passed since
//! the last failure: [`BACKOFF_DELAY_FIRST`], doubling with every failure, up to
//! [`SOURCE_BACKOFF_MAX`] for a source and [`USER_BACKOFF_MAX`] for a user. An attempt that
//! comes too early is refused at once (429 with `Retry-After`) rather than held open, which
//! would cost a connection slot. A record is forgotten after [`FAILURES_FORGOTTEN_AFTER`]
//! without failures; a correct password resets its user's record.
//!
//! No hard lock: the per-source delay is the main weapon (an attacker is slowed to one guess per
//! 30 s per address). The per-user delay is small and applies only to sources that have
//! themselves failed recently, so a flood against `admin` from one place never keeps the real
//! administrator out when they come from another: a clean source is judged by its own record.
//! The tables are bounded ([`FAILURE_SOURCES_MAX`], [`FAILURE_USERS_MAX`]); only existing users
//! get a user record (a name an attacker invents counts only against its source), and IPv6
//! sources are counted by /64, the block one host usually holds.
//!
//! Time is an input (`now`), so the rules are unit-tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tandem_store::accounts::AccountRealm;

/// Failures allowed without any delay: typos and a forgotten Caps Lock.
pub const FAILURES_FREE: u32 = 5;
/// The first delay once the free failures are used up; doubled with each further failure.
pub const BACKOFF_DELAY_FIRST: Duration = Duration::from_secs(1);
/// Longest delay for a source: one guess per 30 s per address makes online guessing hopeless
/// (2,880 a day) while a human who mistyped waits at most half a minute.
pub const SOURCE_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest delay for a user, whatever the source: small, because attackers can push it to the
/// cap at will; it only thins out a guess rate spread over many addresses.
pub const USER_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A record without failures for this long is forgotten: the delay decays after a quiet period.
pub const FAILURES_FORGOTTEN_AFTER: Duration = Duration::from_secs(15 * 60);
/// Sources tracked at once. When full, forgotten records go first, then the oldest; 4,096
/// records are well under a megabyte.
pub const FAILURE_SOURCES_MAX: usize = 4096;
/// Users tracked at once: both realms' accounts at most (`ACCOUNTS_PER_REALM_MAX` each), as only
/// existing users get a record.
pub const FAILURE_USERS_MAX: usize = 2 * tandem_store::accounts::ACCOUNTS_PER_REALM_MAX as usize;

/// Who failed: an address (an IPv6 one cut to its /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                SourceKey(IpAddr::V6(bits.into()))
            }
            v4 => SourceKey(v4),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct UserKey {
    realm: AccountRealm,
    username: String,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    /// Checks admitted and not yet settled. Counted as failures to come: without this, every
    /// connection of a flood that arrived the moment a wait ended was admitted before the first
    /// of them failed (`bench/security.sh` saw 34 guesses per 30 s window instead of one).
    in_flight: u32,
    last_failure: Instant,
    /// A refusal in the current window was logged already (one log line per window, not one
    /// per refused request of a flood).
    refusal_logged: bool,
}

impl Record {
    fn forgotten(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_failure) >= FAILURES_FORGOTTEN_AFTER
    }

    /// How long from `now` until the next attempt is allowed (`None`: allowed now).
    fn wait(&self, now: Instant, cap: Duration) -> Option<Duration> {
        // Once this source has failed, no more checks at once than its free failures left:
        // while they run, the next waits as if they had failed. A source that never failed
        // (a script logging in on many connections at once) is not held.
        let pending = self.failures.saturating_add(self.in_flight);
        if self.failures > 0 && self.in_flight > 0 && pending >= FAILURES_FREE {
            // The checks in flight end within a second or so: that is the wait to announce.
            return Some(BACKOFF_DELAY_FIRST);
        }
        let due = self.last_failure + delay_after(self.failures, cap);
        (due > now).then(|| due - now)
    }
}

/// The delay after `failures` failures: none for the free ones, then doubling up to `cap`.
pub fn delay_after(failures: u32, cap: Duration) -> Duration {
    if failures < FAILURES_FREE {
        return Duration::ZERO;
    }
    let doublings = (failures - FAILURES_FREE).min(16);
    BACKOFF_DELAY_FIRST.saturating_mul(1 << doublings).min(cap)
}

/// The decision for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run the password check.
    Check,
    /// Refuse now; the client may try again after `retry_after`. `log`: the first refusal of
    /// this window (log it; later ones of the same window are not logged).
    Refuse {
        retry_after: Duration,
        by: RefusedBy,
        log: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedBy {
    Source,
    User,
}

impl std::fmt::Display for RefusedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefusedBy::Source => "source address",
            RefusedBy::User => "user",
        })
    }
}

/// Failure counts after a recorded failure, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub source_failures: u32,
    pub user_failures: Option<u32>,
}

/// The two tables. Not thread-safe by itself; the auth layer holds it in a mutex.
#[derive(Default)]
pub struct Backoff {
    sources: HashMap<SourceKey, Record>,
    users: HashMap<UserKey, Record>,
}

impl Backoff {
    /// Whether an attempt from `source` for `user` may be checked now. `user` is `None` for a
    /// name that is no account (it has no record of its own). `source` is `None` for an
    /// attempt through a known proxy (`connections_per_address_exempt`, e.g. a load balancer
    /// passing TCP through): every client arrives from its address, so a record of that address
    /// would hold the administrator with the attacker; only the user's record counts (its delay
    /// is short), and an invented name is not tracked (the password pool still bounds its cost).
    pub fn admit(
        &mut self,
        now: Instant,
        source: impl Into<Option<SourceKey>>,
        user: Option<(AccountRealm, &str)>,
    ) -> Verdict {
        let Some(source) = source.into() else {
            return self.user_verdict(now, user).unwrap_or(Verdict::Check);
        };
        let Some(source_record) = live(&mut self.sources, &source, now) else {
            // A source without recent failures is judged by its own record only: this is what
            // keeps an administrator out of reach of a flood from elsewhere. Its check is
            // counted from now on (see `Record::in_flight`).
            record_of(&mut self.sources, source, now, FAILURE_SOURCES_MAX).in_flight = 1;
            return Verdict::Check;
        };
        if let Some(retry_after) = source_record.wait(now, SOURCE_BACKOFF_MAX) {
            let log = !std::mem::replace(&mut source_record.refusal_logged, true);
            return Verdict::Refuse {
                retry_after,
                by: RefusedBy::Source,
                log,
            };
        }
        // The user's delay holds only sources that failed themselves (a record is also kept
        // for a source whose checks are in flight).
        let failed_here = source_record.failures > 0;
        if let Some(refused) = self.user_verdict(now, user.filter(|_| failed_here)) {
            return refused;
        }
        if let Some(source_record) = self.sources.get_mut(&source) {
            source_record.in_flight = source_record.in_flight.saturating_add(1);
        }
        Verdict::Check
    }

    /// The user's delay, when it holds: a refusal.
    fn user_verdict(
        &mut self,
        now: Instant,
        user: Option<(AccountRealm, &str)>,
    ) -> Option<Verdict> {
        let (realm, username) = user?;
        let key = UserKey {
            realm,
            username: username.to_owned(),
        };
        let record = live(&mut self.users, &key, now)?;
        let retry_after = record.wait(now, USER_BACKOFF_MAX)?;
        let log = !std::mem::replace(&mut record.refusal_logged, true);
        Some(Verdict::Refuse {
            retry_after,
            by: RefusedBy::User,
            log,
        })
    }

    /// An admitted check that ended without a verdict (the password pool was full, or the
    /// client went away): it no longer counts as a failure to come.
    pub fn settled(&mut self, source: impl Into<Option<SourceKey>>) {
        if let Some(record) = source
            .into()
            .and_then(|source| self.sources.get_mut(&source))
        {
            record.in_flight = record.in_flight.saturating_sub(1);
        }
    }

    /// Records a failed check (settling the admitted one).
    pub fn failed(
        &mut self,
        now: Instant,
        source: impl Into<Option<SourceKey>>,
        user: Option<(AccountRealm, &str)>,
    ) -> Counts {
        let source = source.into();
        self.settled(source);
        let source_failures = source.map_or(0, |source| {
            bump(&mut self.sources, source, now, FAILURE_SOURCES_MAX)
        });
        let user_failures = user.map(|(realm, username)| {
            let key = UserKey {
                realm,
                username: username.to_owned(),
            };
            bump(&mut self.users, key, now, FAILURE_USERS_MAX)
        });
        Counts {
            source_failures,
            user_failures,
        }
    }

    /// A correct password: the user's record goes. The source's stays (it decays by itself): a
    /// source with one valid account must not be able to wipe its record between guesses at
    /// another.
    pub fn succeeded(
        &mut self,
        source: impl Into<Option<SourceKey>>,
        realm: AccountRealm,
        username: &str,
    ) {
        self.settled(source);
        self.users.remove(&UserKey {
            realm,
            username: username.to_owned(),
        });
    }

    #[cfg(test)]
    pub fn sources_tracked(&self) -> usize {
        self.sources.len()
    }

    #[cfg(test)]
    pub fn users_tracked(&self) -> usize {
        self.users.len()
    }
}

/// The record for `key` unless it is missing or forgotten (a forgotten one is removed).
fn live<'a, K: std::hash::Hash + Eq>(
    table: &'a mut HashMap<K, Record>,
    key: &K,
    now: Instant,
) -> Option<&'a mut Record> {
    if table.get(key).is_some_and(|record| record.forgotten(now)) {
        table.remove(key);
    }
    table.get_mut(key)
}

/// Counts one failure for `key`, making room in a full table first. Returns the new count.
fn bump<K: std::hash::Hash + Eq + Clone>(
    table: &mut HashMap<K, Record>,
    key: K,
    now: Instant,
    entries_max: usize,
) -> u32 {
    let record = record_of(table, key, now, entries_max);
    if record.forgotten(now) {
        record.failures = 0;
    }
    record.failures = record.failures.saturating_add(1);
    record.last_failure = now;
    record.refusal_logged = false;
    record.failures
}

/// The record for `key`, created empty (making room in a full table first) when missing.
fn record_of<K: std::hash::Hash + Eq + Clone>(
    table: &mut HashMap<K, Record>,
    key: K,
    now: Instant,
    entries_max: usize,
) -> &mut Record {
    if !table.contains_key(&key) && table.len() >= entries_max {
        table.retain(|_, record| !record.forgotten(now));
        if table.len() >= entries_max {
            let oldest = table
                .iter()
                .min_by_key(|(_, record)| record.last_failure)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
    }
    table.entry(key).or_insert(Record {
        failures: 0,
        in_flight: 0,
        last_failure: now,
        refusal_logged: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: Option<(AccountRealm, &str)> = Some((AccountRealm::Admin, "admin"));

    fn source(text: &str) -> SourceKey {
        SourceKey::of(text.parse().unwrap())
    }

    fn retry_after(verdict: Verdict) -> Duration {
        match verdict {
            Verdict::Refuse { retry_after, .. } => retry_after,
            Verdict::Check => panic!("not refused"),
        }
    }

    #[test]
    fn delays_start_after_the_free_failures_double_and_stop_at_the_cap() {
        assert_eq!(
            delay_after(FAILURES_FREE - 1, SOURCE_BACKOFF_MAX),
            Duration::ZERO
        );
        assert_eq!(
            delay_after(FAILURES_FREE, SOURCE_BACKOFF_MAX),
            BACKOFF_DELAY_FIRST
        );
        assert_eq!(
            delay_after(FAILURES_FREE + 2, SOURCE_BACKOFF_MAX),
            BACKOFF_DELAY_FIRST * 4
        );
        assert_eq!(
            delay_after(u32::MAX, SOURCE_BACKOFF_MAX),
            SOURCE_BACKOFF_MAX
        );
        assert_eq!(delay_after(u32::MAX, USER_BACKOFF_MAX), USER_BACKOFF_MAX);
    }

    #[test]
    fn a_flooding_source_is_refused_while_another_source_still_gets_its_check() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let attacker = source("192.0.2.7");
        for _ in 0..FAILURES_FREE {
            assert_eq!(backoff.admit(start, attacker, ADMIN), Verdict::Check);
            backoff.failed(start, attacker, ADMIN);
        }
        // The attacker waits, and says so once per window.
        let first = backoff.admit(start, attacker, ADMIN);
        assert_eq!(retry_after(first), BACKOFF_DELAY_FIRST);
        assert!(matches!(
            first,
            Verdict::Refuse {
                by: RefusedBy::Source,
                log: true,
                ..
            }
        ));
        assert!(matches!(
            backoff.admit(start, attacker, ADMIN),
            Verdict::Refuse { log: false, .. }
        ));
        // The administrator elsewhere is not held by the user's record.
        assert_eq!(
            backoff.admit(start, source("198.51.100.1"), ADMIN),
            Verdict::Check
        );
        // Keep failing: the source's delay reaches its cap, the user's stays small.
        let mut now = start;
        for _ in 0..20 {
            now += SOURCE_BACKOFF_MAX;
            assert_eq!(backoff.admit(now, attacker, ADMIN), Verdict::Check);
            backoff.failed(now, attacker, ADMIN);
        }
        assert_eq!(
            retry_after(backoff.admit(now, attacker, ADMIN)),
            SOURCE_BACKOFF_MAX
        );
        // A second address that failed once is held by the user's (small) delay.
        let other = source("198.51.100.2");
        backoff.failed(now, other, None);
        let held = backoff.admit(now, other, ADMIN);
        assert!(matches!(
            held,
            Verdict::Refuse {
                by: RefusedBy::User,
                ..
            }
        ));
        assert!(retry_after(held) <= USER_BACKOFF_MAX);
        // A correct password clears the user's record at once.
        backoff.succeeded(other, AccountRealm::Admin, "admin");
        assert_eq!(backoff.admit(now, other, ADMIN), Verdict::Check);
    }

    #[test]
    fn a_burst_when_the_wait_ends_gets_one_check_not_one_per_connection() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let attacker = source("192.0.2.7");
        for _ in 0..FAILURES_FREE {
            backoff.failed(start, attacker, ADMIN);
        }
        let due = start + delay_after(FAILURES_FREE, SOURCE_BACKOFF_MAX);
        let admitted = (0..64)
            .filter(|_| backoff.admit(due, attacker, ADMIN) == Verdict::Check)
            .count();
        assert_eq!(admitted, 1, "the others wait for the one in flight");
        // Its failure doubles the wait; a check that ended without a verdict frees the next.
        backoff.failed(due, attacker, ADMIN);
        assert!(retry_after(backoff.admit(due, attacker, ADMIN)) > BACKOFF_DELAY_FIRST);
        let later = due + delay_after(FAILURES_FREE + 1, SOURCE_BACKOFF_MAX);
        assert_eq!(backoff.admit(later, attacker, ADMIN), Verdict::Check);
        backoff.settled(attacker);
        assert_eq!(backoff.admit(later, attacker, ADMIN), Verdict::Check);
        // A source that never failed is not held, however many logins it runs at once (a
        // script opening 32 connections with the right password).
        let script = source("192.0.2.8");
        let side_by_side = (0..64)
            .filter(|_| backoff.admit(start, script, ADMIN) == Verdict::Check)
            .count();
        assert_eq!(side_by_side, 64);
        // Once it has failed, only its free failures left may run at once.
        let typo = source("192.0.2.9");
        backoff.failed(start, typo, ADMIN);
        backoff.succeeded(typo, AccountRealm::Admin, "admin");
        let after_a_typo = (0..64)
            .filter(|_| backoff.admit(start, typo, ADMIN) == Verdict::Check)
            .count();
        assert_eq!(after_a_typo, FAILURES_FREE as usize - 1);
    }

    #[test]
    fn through_a_proxy_only_the_users_short_delay_holds() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        for _ in 0..FAILURES_FREE + 10 {
            assert_eq!(backoff.admit(now, None, None), Verdict::Check);
            backoff.failed(now, None, None);
        }
        assert_eq!(backoff.sources_tracked(), 0, "no address is held");
        for _ in 0..FAILURES_FREE + 10 {
            backoff.failed(now, None, ADMIN);
        }
        let held = backoff.admit(now, None, ADMIN);
        assert!(retry_after(held) <= USER_BACKOFF_MAX);
        let later = now + USER_BACKOFF_MAX;
        assert_eq!(backoff.admit(later, None, ADMIN), Verdict::Check);
    }

    #[test]
    fn records_decay_after_a_quiet_period() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let attacker = source("192.0.2.7");
        for _ in 0..FAILURES_FREE + 3 {
            backoff.failed(start, attacker, ADMIN);
        }
        assert!(matches!(
            backoff.admit(start, attacker, ADMIN),
            Verdict::Refuse { .. }
        ));
        let later = start + FAILURES_FORGOTTEN_AFTER;
        assert_eq!(backoff.admit(later, attacker, ADMIN), Verdict::Check);
        assert_eq!(
            backoff.sources_tracked(),
            1,
            "the forgotten record gave way to a fresh one, for the check now in flight"
        );
        let counts = backoff.failed(later, attacker, ADMIN);
        assert_eq!(counts.source_failures, 1, "counting starts again");
    }

    #[test]
    fn tables_stay_bounded_and_ipv6_hosts_count_by_their_64() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        for index in 0..(FAILURE_SOURCES_MAX as u32 + 100) {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + index);
            // Invented user names get no record of their own.
            backoff.failed(now, SourceKey::of(address.into()), None);
        }
        assert_eq!(backoff.sources_tracked(), FAILURE_SOURCES_MAX);
        assert_eq!(backoff.users_tracked(), 0);

        let mut backoff = Backoff::default();
        for host in 0..FAILURES_FREE {
            let address = format!("2001:db8:1:2::{:x}", host + 1);
            backoff.failed(now, source(&address), None);
        }
        assert!(matches!(
            backoff.admit(now, source("2001:db8:1:2:ffff::1"), None),
            Verdict::Refuse {
                by: RefusedBy::Source,
                ..
            }
        ));
        assert_eq!(
            backoff.admit(now, source("2001:db8:1:3::1"), None),
            Verdict::Check
        );
        // An IPv4 client seen through an IPv6 socket is the same source.
        assert_eq!(source("::ffff:192.0.2.7"), source("192.0.2.7"));
    }
}
