//! Connection limits shared by every listener of a node (the replication listener here, the
//! HTTPS listeners in `tandem-server`): a count of connections per source address, and a
//! throttle for the log lines that refusals write, so a scan cannot flood the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Open connections per source address, each held by a [`AddressSlot`] that gives its place
/// back when dropped. IPv4 clients of a dual-stack listener arrive as `::ffff:a.b.c.d` and are
/// counted under their IPv4 address.
#[derive(Debug, Clone)]
pub struct PerAddress {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_address_max: usize,
}

/// One connection's place in its address's count.
#[derive(Debug)]
pub struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl PerAddress {
    pub fn new(per_address_max: usize) -> Self {
        Self {
            counts: Arc::default(),
            per_address_max,
        }
    }

    /// A place for one more connection from `address`, or `None` when it already holds
    /// `per_address_max`.
    pub fn try_acquire(&self, address: IpAddr) -> Option<AddressSlot> {
        let address = counted_as(address);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(address).or_insert(0);
        if *count >= self.per_address_max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.counts.clone(),
            address,
        })
    }

    /// Connections `address` holds now.
    pub fn count(&self, address: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&counted_as(address)).copied().unwrap_or(0)
    }
}

/// The key an address is counted under: an IPv4 address (a mapped one as IPv4), or an IPv6
/// address's /64, the block one host or one customer usually gets: counted per address, a
/// single /64 would have unlimited places.
fn counted_as(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            // Entries go with their last connection, so the map holds only addresses
            // connected now (at most as many as the listener's connection cap).
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// At most one log line per `interval` for one kind of refusal; the next line says how many
/// were left out meanwhile.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::default(),
        }
    }

    /// `Some(left out since the last line)` when a line may be written now, `None` when this
    /// one is to be left out.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.last_logged {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last_logged = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_places_back_when_its_connections_end() {
        let limit = PerAddress::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.try_acquire(a).unwrap();
        let _second = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none(), "a third from one address");
        assert!(
            limit.try_acquire(b).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert_eq!(limit.count(a), 1);
        assert!(limit.try_acquire(a).is_some());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        let limit = PerAddress::new(1);
        let _v4 = limit.try_acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(
            limit
                .try_acquire("::ffff:192.0.2.7".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn the_throttle_writes_one_line_per_interval_and_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.admit(start), Some(0));
        assert_eq!(throttle.admit(start + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit(start + Duration::from_secs(2)), None);
        assert_eq!(throttle.admit(start + Duration::from_secs(11)), Some(2));
    }
}
