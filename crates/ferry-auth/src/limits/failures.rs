//! Slowing down addresses that keep failing to authenticate.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::address_key;
use super::table::AddressTable;
use crate::config::FailedAuthSettings;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
}

/// Counts failed authentications per source address. After `max_failures` within `window`
/// (from the first), every attempt from the address should wait [`FailedAuthTracker::delay`]
/// before it is answered: `delay`, doubled for each further failure, at most `max_delay`.
/// The transport (or adapter) waits that long before reading the next CONNECT from the
/// address, or before answering a failed one.
#[derive(Debug, Clone)]
pub struct FailedAuthTracker {
    settings: FailedAuthSettings,
    ipv6_prefix_len: u8,
    table: AddressTable<Failures>,
}

impl FailedAuthTracker {
    /// A tracker with `settings`, IPv6 addresses grouped by `ipv6_prefix_len`.
    pub fn new(settings: FailedAuthSettings, ipv6_prefix_len: u8) -> Self {
        let table = AddressTable::new(settings.max_tracked_addresses);
        Self {
            settings,
            ipv6_prefix_len,
            table,
        }
    }

    /// Records a failure from `addr` at `now`; returns the delay now in force for it.
    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) -> Duration {
        if self.settings.max_failures == 0 {
            return Duration::ZERO;
        }
        let window = self.settings.window;
        let key = address_key(addr, self.ipv6_prefix_len);
        let expired = move |f: &Failures, now: Instant| now.saturating_duration_since(f.first) >= window;
        let failures = self.table.entry(key, now, expired, || Failures { count: 0, first: now });
        if expired(failures, now) {
            *failures = Failures { count: 0, first: now };
        }
        failures.count = failures.count.saturating_add(1);
        self.delay(addr, now)
    }

    /// Records a success from `addr`: its failures are forgotten.
    pub fn record_success(&mut self, addr: IpAddr) {
        self.table.remove(&address_key(addr, self.ipv6_prefix_len));
    }

    /// How long an attempt from `addr` at `now` should wait (zero when it need not).
    pub fn delay(&self, addr: IpAddr, now: Instant) -> Duration {
        let s = &self.settings;
        let Some(failures) = self.table.get(&address_key(addr, self.ipv6_prefix_len)) else {
            return Duration::ZERO;
        };
        if s.max_failures == 0 || failures.count < s.max_failures || now.saturating_duration_since(failures.first) >= s.window {
            return Duration::ZERO;
        }
        let doublings = (failures.count - s.max_failures).min(31);
        s.delay.saturating_mul(1 << doublings).min(s.max_delay)
    }

    /// The number of addresses tracked.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FailedAuthSettings {
        FailedAuthSettings {
            max_failures: 3,
            window: Duration::from_secs(60),
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            max_tracked_addresses: 8,
        }
    }

    #[test]
    fn delays_grow_after_the_threshold_and_reset() {
        let t0 = Instant::now();
        let mut tracker = FailedAuthTracker::new(settings(), 64);
        let addr: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "203.0.113.10".parse().unwrap();
        assert_eq!(tracker.record_failure(addr, t0), Duration::ZERO);
        assert_eq!(tracker.record_failure(addr, t0), Duration::ZERO);
        assert_eq!(tracker.record_failure(addr, t0), Duration::from_secs(1));
        assert_eq!(tracker.record_failure(addr, t0), Duration::from_secs(2));
        assert_eq!(tracker.record_failure(addr, t0), Duration::from_secs(4));
        assert_eq!(tracker.record_failure(addr, t0), Duration::from_secs(5));
        for _ in 0..100 {
            tracker.record_failure(addr, t0);
        }
        assert_eq!(tracker.delay(addr, t0), Duration::from_secs(5));
        assert_eq!(tracker.delay(other, t0), Duration::ZERO);
        // The window passes: forgiven.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(tracker.delay(addr, later), Duration::ZERO);
        assert_eq!(tracker.record_failure(addr, later), Duration::ZERO);
        // A success forgets at once.
        for _ in 0..5 {
            tracker.record_failure(other, t0);
        }
        assert!(tracker.delay(other, t0) > Duration::ZERO);
        tracker.record_success(other);
        assert_eq!(tracker.delay(other, t0), Duration::ZERO);
    }

    #[test]
    fn bounded_and_switchable_off() {
        let t0 = Instant::now();
        let mut tracker = FailedAuthTracker::new(settings(), 64);
        for i in 0..1000u32 {
            tracker.record_failure(IpAddr::from(i.to_be_bytes()), t0);
            assert!(tracker.tracked() <= 8);
        }
        let mut off = FailedAuthTracker::new(
            FailedAuthSettings {
                max_failures: 0,
                ..settings()
            },
            64,
        );
        let addr: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(off.record_failure(addr, t0), Duration::ZERO);
        }
    }
}
