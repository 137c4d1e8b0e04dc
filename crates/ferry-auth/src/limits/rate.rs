//! New connections per second per source address: paced, then refused.
//!
//! Each address has a schedule in the manner of a generic cell rate algorithm: its
//! connections are spaced `1 / rate` apart, `burst` of them may come at once, and one
//! that comes early is not refused but told how long to wait (the transport holds it
//! accepted, unread, for that long). Only a connection that would wait longer than
//! `max_wait` is refused. So a restart storm (thousands of clients reconnecting at once
//! from one carrier NAT or proxy) is spread out instead of turned away, and a flood from
//! one address still costs at most `rate × max_wait` waiting connections.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::address_key;
use super::table::AddressTable;
use crate::config::LimitSettings;

/// One address's schedule: when its next connection is due if it kept to the rate.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// The theoretical arrival time of the next connection.
    due: Instant,
}

/// What the rate says of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Serve it now.
    Now,
    /// Serve it after this wait (it is counted as coming then).
    After(Duration),
    /// It would wait longer than `max_wait`: refuse it.
    Refuse,
}

/// A schedule per source address for new connections, in a bounded table (an address
/// whose schedule is in the past is forgotten first: it is the same as a new one).
#[derive(Debug, Clone)]
pub struct ConnectionRateLimiter {
    rate: f64,
    burst: u32,
    max_wait: Duration,
    ipv6_prefix_len: u8,
    table: AddressTable<Schedule>,
}

impl ConnectionRateLimiter {
    /// `rate` new connections per second per address with bursts of `burst` (a rate of 0
    /// or less: no limit), early ones paced for at most `max_wait` (zero: refused at
    /// once), tracking at most `max_addresses` addresses, IPv6 grouped by
    /// `ipv6_prefix_len`.
    pub fn new(rate: f64, burst: u32, max_wait: Duration, max_addresses: usize, ipv6_prefix_len: u8) -> Self {
        Self {
            rate,
            burst,
            max_wait,
            ipv6_prefix_len,
            table: AddressTable::new(max_addresses),
        }
    }

    /// The limiter `[limits]` describes.
    pub fn from_settings(settings: &LimitSettings) -> Self {
        Self::new(
            settings.connection_rate,
            settings.connection_burst,
            settings.connection_max_wait,
            settings.max_tracked_addresses,
            settings.ipv6_prefix_len,
        )
    }

    /// Whether the limit is on.
    pub fn is_enabled(&self) -> bool {
        self.rate.is_finite() && self.rate > 0.0
    }

    /// The spacing of connections at the rate.
    fn interval(&self) -> Duration {
        Duration::try_from_secs_f64(1.0 / self.rate).unwrap_or(Duration::MAX)
    }

    /// When a new connection from `addr` at `now` may be served (and counts it, unless
    /// it is refused).
    pub fn pace(&mut self, addr: IpAddr, now: Instant) -> Pace {
        if !self.is_enabled() {
            return Pace::Now;
        }
        let interval = self.interval();
        // The burst tolerance: `burst` connections fit in before the first must wait.
        let tolerance = interval.saturating_mul(self.burst.max(1)).saturating_sub(interval);
        let max_wait = self.max_wait;
        let key = address_key(addr, self.ipv6_prefix_len);
        let schedule = self.table.entry(key, now, |s, now| s.due <= now, || Schedule { due: now });
        let start = schedule.due.max(now);
        let wait = start.saturating_duration_since(now + tolerance);
        if wait > max_wait {
            return Pace::Refuse;
        }
        schedule.due = start + interval;
        if wait.is_zero() {
            Pace::Now
        } else {
            Pace::After(wait)
        }
    }

    /// Whether a new connection from `addr` at `now` may be served at once (and counts it
    /// when it may); one that would have to wait is not counted.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> bool {
        let max_wait = std::mem::replace(&mut self.max_wait, Duration::ZERO);
        let pace = self.pace(addr, now);
        self.max_wait = max_wait;
        pace == Pace::Now
    }

    /// When `addr` may next connect without waiting (`now` if it may now).
    pub fn next_allowed(&self, addr: IpAddr, now: Instant) -> Option<Instant> {
        if !self.is_enabled() {
            return Some(now);
        }
        let interval = self.interval();
        let tolerance = interval.saturating_mul(self.burst.max(1)).saturating_sub(interval);
        match self.table.get(&address_key(addr, self.ipv6_prefix_len)) {
            Some(s) => Some(s.due.checked_sub(tolerance).unwrap_or(now).max(now)),
            None => Some(now),
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
        let mut limiter = ConnectionRateLimiter::new(10.0, 5, Duration::ZERO, 1000, 64);
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
        let mut limiter = ConnectionRateLimiter::new(1.0, 1, Duration::ZERO, 64, 64);
        for i in 0..10_000u32 {
            limiter.check(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_millis(u64::from(i)));
            assert!(limiter.tracked() <= 64);
        }
    }

    #[test]
    fn zero_rate_is_no_limit() {
        let t0 = Instant::now();
        let mut limiter = ConnectionRateLimiter::new(0.0, 0, Duration::ZERO, 10, 64);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..1000).all(|_| limiter.check(addr, t0)));
        assert_eq!(limiter.tracked(), 0);
        assert!(!limiter.is_enabled());
        assert!(ConnectionRateLimiter::from_settings(&LimitSettings::default()).is_enabled());
    }

    #[test]
    fn early_connections_are_paced_and_refused_only_past_the_longest_wait() {
        let t0 = Instant::now();
        // 100/s, bursts of 10, early ones wait up to 1 s.
        let mut limiter = ConnectionRateLimiter::new(100.0, 10, Duration::from_secs(1), 1000, 64);
        let storm: IpAddr = "203.0.113.9".parse().unwrap();
        let paces: Vec<Pace> = (0..200).map(|_| limiter.pace(storm, t0)).collect();
        assert!(paces[..10].iter().all(|p| *p == Pace::Now), "the burst at once");
        // Then one every 10 ms: the 11th waits 10 ms, the 110th 1 s, the 111th is refused.
        assert_eq!(paces[10], Pace::After(Duration::from_millis(10)));
        assert_eq!(paces[109], Pace::After(Duration::from_secs(1)));
        assert!(paces[110..].iter().all(|p| *p == Pace::Refuse), "{:?}", &paces[110..]);
        // A refused one is not counted: the schedule frees up with time.
        let later = t0 + Duration::from_millis(1010);
        assert_eq!(limiter.pace(storm, later), Pace::Now);
        assert_eq!(limiter.pace(storm, later), Pace::After(Duration::from_millis(10)));
        // Another address is not slowed down.
        assert_eq!(limiter.pace("203.0.113.10".parse().unwrap(), t0), Pace::Now);
    }
}
