//! Limits on connections, all sans-IO (`now: Instant` passed in):
//!
//! * [`TokenBucket`]: a rate with a burst.
//! * [`ConnectionRateLimiter`]: new connections per second per source address.
//! * [`FailedAuthTracker`]: slowing down an address that keeps failing to authenticate.
//! * [`ConnectionLimiter`]: open connections in all and per address, counted by RAII
//!   [`ConnectionGuard`]s.
//!
//! The per-address tables are bounded: an attacker with many addresses cannot grow them
//! without bound. IPv6 addresses are grouped by prefix ([`address_key`]), since one client
//! usually holds a whole /64.

mod bucket;
mod connections;
mod failures;
mod rate;
mod table;

use std::net::{IpAddr, Ipv6Addr};

pub use bucket::TokenBucket;
pub use connections::{ConnectionGuard, ConnectionLimiter, LimitExceeded};
pub use failures::FailedAuthTracker;
pub use rate::{ConnectionRateLimiter, Pace};

/// The key an address is counted under: IPv4 (and IPv4-mapped IPv6) addresses as they
/// are, IPv6 addresses cut to their first `ipv6_prefix_len` bits (at most 128).
pub fn address_key(addr: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let len = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_key(v4, 64), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped, 64), v4);
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(address_key(v6, 64), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(address_key(v6, 128), v6);
        assert_eq!(address_key(v6, 200), v6);
        assert_eq!(address_key(v6, 0), "::".parse::<IpAddr>().unwrap());
        assert_eq!(address_key(v6, 48), "2001:db8:1::".parse::<IpAddr>().unwrap());
    }
}
