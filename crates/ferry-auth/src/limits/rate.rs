//! New connections per second per source address.

use std::net::IpAddr;
use std::time::Instant;

use super::table::AddressTable;
use super::{address_key, TokenBucket};
use crate::config::LimitSettings;

/// A token bucket per source address for new connections, in a bounded table (an address
/// whose bucket has refilled is forgotten first: a full bucket is the same as a new one).
#[derive(Debug, Clone)]
pub struct ConnectionRateLimiter {
    rate: f64,
    burst: u32,
    ipv6_prefix_len: u8,
    table: AddressTable<TokenBucket>,
}

impl ConnectionRateLimiter {
    /// `rate` new connections per second per address with bursts of `burst` (a rate of 0
    /// or less: no limit), tracking at most `max_addresses` addresses, IPv6 grouped by
    /// `ipv6_prefix_len`.
    pub fn new(rate: f64, burst: u32, max_addresses: usize, ipv6_prefix_len: u8) -> Self {
        Self {
            rate,
            burst,
            ipv6_prefix_len,
            table: AddressTable::new(max_addresses),
        }
    }

    /// The limiter `[limits]` describes.
    pub fn from_settings(settings: &LimitSettings) -> Self {
        Self::new(
            settings.connection_rate,
            settings.connection_burst,
            settings.max_tracked_addresses,
            settings.ipv6_prefix_len,
        )
    }

    /// Whether the limit is on.
    pub fn is_enabled(&self) -> bool {
        self.rate.is_finite() && self.rate > 0.0
    }

    /// Whether a new connection from `addr` at `now` is within the rate (and counts it).
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> bool {
        if !self.is_enabled() {
            return true;
        }
        let (rate, burst) = (self.rate, self.burst);
        let key = address_key(addr, self.ipv6_prefix_len);
        self.table
            .entry(key, now, |bucket, now| bucket.is_full(now), || TokenBucket::new(rate, burst, now))
            .try_take(now, 1)
    }

    /// When `addr` may next connect (`now` if it may now).
    pub fn next_allowed(&self, addr: IpAddr, now: Instant) -> Option<Instant> {
        match self.table.get(&address_key(addr, self.ipv6_prefix_len)) {
            Some(bucket) if self.is_enabled() => bucket.next_available(now),
            _ => Some(now),
        }
    }

    /// The number of addresses tracked.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_address_is_limited_others_are_not() {
        let t0 = Instant::now();
        let mut limiter = ConnectionRateLimiter::new(10.0, 5, 1000, 64);
        let flood: IpAddr = "198.51.100.1".parse().unwrap();
        let calm: IpAddr = "198.51.100.2".parse().unwrap();
        let allowed = (0..100).filter(|_| limiter.check(flood, t0)).count();
        assert_eq!(allowed, 5);
        assert!(limiter.check(calm, t0));
        assert_eq!(limiter.next_allowed(flood, t0), Some(t0 + Duration::from_millis(100)));
        assert_eq!(limiter.next_allowed(calm, t0), Some(t0));
        assert!(limiter.check(flood, t0 + Duration::from_millis(100)));
        // The same /64 shares a bucket.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert!((0..5).all(|_| limiter.check(a, t0)));
        assert!(!limiter.check(b, t0));
    }

    #[test]
    fn many_addresses_cannot_grow_the_table() {
        let t0 = Instant::now();
        let mut limiter = ConnectionRateLimiter::new(1.0, 1, 64, 64);
        for i in 0..10_000u32 {
            limiter.check(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_millis(u64::from(i)));
            assert!(limiter.tracked() <= 64);
        }
    }

    #[test]
    fn zero_rate_is_no_limit() {
        let t0 = Instant::now();
        let mut limiter = ConnectionRateLimiter::new(0.0, 0, 10, 64);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..1000).all(|_| limiter.check(addr, t0)));
        assert_eq!(limiter.tracked(), 0);
        assert!(!limiter.is_enabled());
        assert!(ConnectionRateLimiter::from_settings(&LimitSettings::default()).is_enabled());
    }
}
