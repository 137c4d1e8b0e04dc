//! Open connections, in all and per source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use thiserror::Error;

use super::address_key;
use crate::config::LimitSettings;

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LimitExceeded {
    /// Already `max` connections in all.
    #[error("too many connections ({max} open)")]
    Total {
        /// The limit.
        max: usize,
    },
    /// Already `max` connections from this address.
    #[error("too many connections from this address ({max} open)")]
    PerAddress {
        /// The limit.
        max: usize,
    },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Shared {
    max_total: usize,
    max_per_address: usize,
    ipv6_prefix_len: u8,
    counts: Mutex<Counts>,
}

/// Counts open connections; [`ConnectionLimiter::try_acquire`] hands out a guard per
/// connection that gives its place back when dropped. Cheap to clone (shared counts);
/// the gatekeeper holds one for the broker-wide and per-address limits (the per-listener
/// count is the transport's `ListenerLimit`). 0 means no limit. The
/// per-address map only holds addresses with open connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    shared: Arc<Shared>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
#[must_use = "the connection is counted only while the guard lives"]
pub struct ConnectionGuard {
    shared: Arc<Shared>,
    key: IpAddr,
}

impl ConnectionLimiter {
    /// At most `max_total` connections, `max_per_address` from one address (0: no limit),
    /// IPv6 grouped by `ipv6_prefix_len`.
    pub fn new(max_total: usize, max_per_address: usize, ipv6_prefix_len: u8) -> Self {
        Self {
            shared: Arc::new(Shared {
                max_total,
                max_per_address,
                ipv6_prefix_len,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// The limiter `[limits]` describes.
    pub fn from_settings(settings: &LimitSettings) -> Self {
        Self::new(
            settings.max_connections,
            settings.max_connections_per_address,
            settings.ipv6_prefix_len,
        )
    }

    /// Counts a new connection from `addr`, or says which limit it exceeds.
    pub fn try_acquire(&self, addr: IpAddr) -> Result<ConnectionGuard, LimitExceeded> {
        let s = &self.shared;
        let key = address_key(addr, s.ipv6_prefix_len);
        let mut counts = s.counts.lock();
        if s.max_total > 0 && counts.total >= s.max_total {
            return Err(LimitExceeded::Total { max: s.max_total });
        }
        let from_addr = counts.per_address.entry(key).or_insert(0);
        if s.max_per_address > 0 && *from_addr >= s.max_per_address {
            return Err(LimitExceeded::PerAddress { max: s.max_per_address });
        }
        *from_addr += 1;
        counts.total += 1;
        Ok(ConnectionGuard {
            shared: Arc::clone(&self.shared),
            key,
        })
    }

    /// Open connections in all.
    pub fn total(&self) -> usize {
        self.shared.counts.lock().total
    }

    /// Open connections from `addr` (its IPv6 prefix).
    pub fn count(&self, addr: IpAddr) -> usize {
        let key = address_key(addr, self.shared.ipv6_prefix_len);
        self.shared.counts.lock().per_address.get(&key).copied().unwrap_or(0)
    }

    /// Addresses with open connections.
    pub fn addresses(&self) -> usize {
        self.shared.counts.lock().per_address.len()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.shared.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_address.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_address.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_guards() {
        let limiter = ConnectionLimiter::new(3, 2, 64);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limiter.try_acquire(a).unwrap();
        let a2 = limiter.try_acquire(a).unwrap();
        assert_eq!(limiter.try_acquire(a).unwrap_err(), LimitExceeded::PerAddress { max: 2 });
        let b1 = limiter.try_acquire(b).unwrap();
        assert_eq!(limiter.try_acquire(b).unwrap_err(), LimitExceeded::Total { max: 3 });
        assert_eq!((limiter.total(), limiter.count(a), limiter.count(b)), (3, 2, 1));
        drop(a1);
        assert_eq!(limiter.count(a), 1);
        let b2 = limiter.try_acquire(b).unwrap();
        drop((a2, b1, b2));
        assert_eq!((limiter.total(), limiter.addresses()), (0, 0));
        // A refusal leaves nothing behind.
        let unlimited = ConnectionLimiter::new(0, 0, 64);
        let guards: Vec<_> = (0..100).map(|_| unlimited.try_acquire(a).unwrap()).collect();
        assert_eq!(unlimited.count(a), 100);
        drop(guards);
        assert_eq!(unlimited.addresses(), 0);
    }

    #[test]
    fn guards_work_across_threads() {
        let limiter = ConnectionLimiter::new(0, 0, 64);
        let threads: Vec<_> = (0..4u8)
            .map(|i| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let _guard = limiter.try_acquire(IpAddr::from([10, 0, 0, i]));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((limiter.total(), limiter.addresses()), (0, 0));
    }
}
