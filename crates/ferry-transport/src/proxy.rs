//! The client's real address behind a trusted proxy: the PROXY protocol (v1 text and v2
//! binary, parsed by the `ppp` crate) in front of a TCP stream, and `X-Forwarded-For` on a
//! WebSocket upgrade. Both are believed only from `listeners.trusted_proxies`.

use std::net::{IpAddr, SocketAddr};

use hyper::header::HeaderMap;
use ppp::{v1, v2, HeaderResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::{canonical, is_trusted, TrustedNet};

/// The 12-byte signature that starts a PROXY protocol v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v2 header's fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The longest v1 header (spec §2.1), CRLF included.
const V1_MAX: usize = 107;
/// The most address and TLV bytes accepted after a v2 header's fixed part. The spec lets
/// a header grow to 64 KiB of TLVs; proxies send addresses and a few short TLVs.
pub(crate) const V2_MAX_PAYLOAD: usize = 4096;

/// Why a PROXY protocol header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    /// The connection failed or closed before the header was complete.
    #[error("connection closed or failed before the PROXY header was complete: {0}")]
    Io(#[from] std::io::Error),
    /// The first bytes are not a PROXY protocol header.
    #[error("no PROXY protocol header")]
    Missing,
    /// The header is longer than this server accepts.
    #[error("PROXY header too long")]
    TooLong,
    /// The header is malformed.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
}

/// Reads exactly one PROXY protocol header (v1 or v2) from `stream`, no byte more, and
/// returns the client address it names: `Ok(None)` when it names none (v1 `UNKNOWN`, v2
/// `LOCAL` such as a proxy's health check, or an unspecified or UNIX family), in which
/// case the socket's own peer stands. The caller bounds the time it may take.
pub(crate) async fn read_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    // Peeking lets the v1 header be read up to its CRLF without consuming what follows.
    let mut buf = [0u8; V1_MAX];
    let mut head = Vec::with_capacity(V2_FIXED);
    loop {
        let room = V1_MAX - head.len();
        let peeked = stream.peek(&mut buf[..room]).await?;
        if peeked == 0 {
            return Err(ProxyHeaderError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let seen = &buf[..peeked];
        let start = head.len();
        // What we know so far, with the peeked bytes, decides the version.
        let mut probe = head.clone();
        probe.extend_from_slice(seen);
        let prefix = probe.len().min(V2_SIGNATURE.len());
        if probe[..prefix] == V2_SIGNATURE[..prefix] {
            if probe.len() < V2_FIXED {
                // Consume what was peeked and wait for more (peek then blocks).
                consume(stream, &mut head, peeked).await?;
                continue;
            }
            consume(stream, &mut head, V2_FIXED - start).await?;
            return read_v2_rest(stream, head).await;
        }
        let v1_prefix = probe.len().min(6);
        if probe[..v1_prefix] != b"PROXY "[..v1_prefix] {
            return Err(ProxyHeaderError::Missing);
        }
        if let Some(end) = probe.windows(2).position(|w| w == b"\r\n") {
            consume(stream, &mut head, end + 2 - start).await?;
            return parse(&head);
        }
        if probe.len() >= V1_MAX {
            return Err(ProxyHeaderError::TooLong);
        }
        consume(stream, &mut head, peeked).await?;
    }
}

/// Reads `n` bytes (already peeked, so at hand) onto `head`.
async fn consume(stream: &mut TcpStream, head: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    let start = head.len();
    head.resize(start + n, 0);
    stream.read_exact(&mut head[start..]).await.map(|_| ())
}

async fn read_v2_rest(stream: &mut TcpStream, mut head: Vec<u8>) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyHeaderError::TooLong);
    }
    let start = head.len();
    head.resize(start + len, 0);
    stream.read_exact(&mut head[start..]).await?;
    parse(&head)
}

/// The client address in a complete PROXY header (`None`: use the socket's peer).
pub(crate) fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (v2::Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
        }),
        HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::Malformed(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::Malformed(e.to_string())),
    }
}

/// The client's address from `X-Forwarded-For` (every such header, in order, as one
/// comma-separated list), given a request that came from a trusted proxy: the right-most
/// address that is not itself a trusted proxy (each proxy appends the address it saw, so
/// everything left of that is what the client claims). When every address is a trusted
/// proxy, the left-most. `None` without the header, or when the right-most entries up to
/// the first untrusted one do not parse (then nothing in it can be believed).
pub(crate) fn forwarded_for(headers: &HeaderMap, trusted: &[TrustedNet]) -> Option<IpAddr> {
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().ok())
        .collect::<Option<_>>()?;
    let entries: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut leftmost = None;
    for entry in entries.iter().rev() {
        let addr = canonical(parse_forwarded_addr(entry)?);
        if !is_trusted(trusted, addr) {
            return Some(addr);
        }
        leftmost = Some(addr);
    }
    leftmost
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:5`,
/// `[::1]:5`), as some proxies write it.
fn parse_forwarded_addr(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn nets(list: &[&str]) -> Vec<TrustedNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    // The examples of the PROXY protocol specification (haproxy's proxy-protocol.txt).
    #[test]
    fn v1_examples_from_the_spec() {
        assert_eq!(
            parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n").unwrap(),
            Some("192.168.0.1:56324".parse().unwrap())
        );
        assert_eq!(
            parse(b"PROXY TCP6 ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n").ok(),
            None,
            "the spec's elided addresses are not addresses"
        );
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n").unwrap(),
            Some("[2001:db8::1]:1234".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n").unwrap(),
            None
        );
        assert!(parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\n").is_err());
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v2_binary_headers() {
        // PROXY, TCP over IPv4: 127.0.0.1:12345 -> 127.0.0.2:443.
        let ipv4 = [127, 0, 0, 1, 127, 0, 0, 2, 0x30, 0x39, 0x01, 0xbb];
        assert_eq!(parse(&v2(0x1, 0x11, &ipv4)).unwrap(), Some("127.0.0.1:12345".parse().unwrap()));
        // With a NOOP TLV after the addresses.
        let mut with_tlv = ipv4.to_vec();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x01, 42]);
        assert_eq!(parse(&v2(0x1, 0x11, &with_tlv)).unwrap(), Some("127.0.0.1:12345".parse().unwrap()));
        // TCP over IPv6.
        let mut ipv6 = Vec::new();
        ipv6.extend_from_slice(&"2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets());
        ipv6.extend_from_slice(&"2001:db8::8".parse::<std::net::Ipv6Addr>().unwrap().octets());
        ipv6.extend_from_slice(&[0, 80, 0, 81]);
        assert_eq!(parse(&v2(0x1, 0x21, &ipv6)).unwrap(), Some("[2001:db8::7]:80".parse().unwrap()));
        // LOCAL (a health check): the socket's address stands.
        assert_eq!(parse(&v2(0x0, 0x00, &[])).unwrap(), None);
        // Too short for its family.
        assert!(parse(&v2(0x1, 0x11, &ipv4[..4])).is_err());
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_takes_the_rightmost_untrusted_address() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_for(&xff(&["203.0.113.9"]), &trusted), ip("203.0.113.9"));
        // A spoofed left part is ignored: the last untrusted hop wins.
        assert_eq!(
            forwarded_for(&xff(&["1.1.1.1, 203.0.113.9, 10.1.1.1"]), &trusted),
            ip("203.0.113.9")
        );
        // Several header lines form one list.
        assert_eq!(
            forwarded_for(&xff(&["1.1.1.1, 203.0.113.9", "10.1.1.1,192.0.2.1"]), &trusted),
            ip("203.0.113.9")
        );
        // Ports and brackets as some proxies write them.
        assert_eq!(forwarded_for(&xff(&["[2001:db8::1]:4711"]), &trusted), ip("2001:db8::1"));
        assert_eq!(forwarded_for(&xff(&["198.51.100.4:80"]), &trusted), ip("198.51.100.4"));
        // Every hop trusted: the left-most.
        assert_eq!(forwarded_for(&xff(&["10.0.0.5, 10.0.0.6"]), &trusted), ip("10.0.0.5"));
        // Garbage at the right end: nothing is believed; garbage left of the client is ignored.
        assert_eq!(forwarded_for(&xff(&["203.0.113.9, unknown"]), &trusted), None);
        assert_eq!(forwarded_for(&xff(&["unknown, 203.0.113.9"]), &trusted), ip("203.0.113.9"));
        assert_eq!(forwarded_for(&HeaderMap::new(), &trusted), None);
        assert_eq!(forwarded_for(&xff(&[" , "]), &trusted), None);
    }
}
