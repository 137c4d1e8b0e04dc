//! Broker URLs: the scheme picks the transport, the host must be a loopback address.
//!
//! | scheme | transport | default port |
//! |---|---|---|
//! | `ws://` | WebSocket | 8083 |
//! | `wss://` | WebSocket over TLS | 8084 |
//! | `tcp://` | plain TCP | 1883 (MQTT), 61613 (STOMP) |
//! | `mqtt://` | plain TCP, MQTT only | 1883 |
//! | `mqtts://`, `ssl://`, `tls://` | TLS | 8883 (MQTT), 61614 (STOMP) |
//! | `stomp://` | plain TCP, STOMP only | 61613 |
//! | `stomp+ssl://`, `stomps://` | TLS, STOMP only | 61614 |
//!
//! The load generator only ever talks to this machine: a host must be `localhost`, an
//! address in 127.0.0.0/8, `::1` or an IPv4-mapped loopback address. Host names are
//! never resolved.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::cli::Protocol;

/// How bytes travel to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    /// Plain TCP.
    Tcp,
    /// TCP with TLS.
    Tls,
    /// WebSocket over plain TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Transport {
    /// Whether the connection is encrypted.
    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether protocol bytes travel in WebSocket messages.
    pub(crate) fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// Short name for reports: `tcp`, `tls`, `ws`, `wss`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The URL as given.
    pub url: String,
    /// How to reach the broker.
    pub transport: Transport,
    /// The host as written (`localhost`, `127.0.0.1`, `::1`), for TLS server names and
    /// the HTTP `Host` header.
    pub host: String,
    /// The loopback address and port to connect to.
    pub addr: SocketAddr,
    /// The request path for WebSocket upgrades (`/` when none is given).
    pub path: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    /// No `scheme://`.
    #[error("`{0}` has no scheme: write ws://, wss://, tcp://, mqtt://, mqtts://, stomp:// or stomps://")]
    MissingScheme(String),
    /// A scheme this tool does not speak.
    #[error("unknown scheme `{0}`: use ws, wss, tcp, mqtt, mqtts, stomp or stomps")]
    UnknownScheme(String),
    /// A protocol-specific scheme used with the other protocol.
    #[error("scheme `{scheme}` is for {expected}, not {protocol}")]
    WrongProtocol {
        /// The URL's scheme.
        scheme: String,
        /// The protocol the scheme implies.
        expected: Protocol,
        /// The protocol asked for.
        protocol: Protocol,
    },
    /// Nothing between `://` and the port or path.
    #[error("`{0}` has no host")]
    MissingHost(String),
    /// A port that is not a number from 1 to 65535.
    #[error("bad port `{0}`")]
    BadPort(String),
    /// User information (`user@host`) is not supported.
    #[error("user information in URLs is not supported (`{0}`)")]
    UserInfo(String),
    /// A host that is not on this machine.
    #[error("`{0}` is not a loopback address: ferry-bench only targets 127.0.0.0/8, ::1 or localhost")]
    NotLoopback(String),
}

/// Parses `url` for `protocol` and checks that it points at this machine.
pub(crate) fn parse(url: &str, protocol: Protocol) -> Result<Target, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| UrlError::MissingScheme(url.to_string()))?;
    let scheme_lc = scheme.to_ascii_lowercase();
    let (transport, only) = match scheme_lc.as_str() {
        "ws" => (Transport::Ws, None),
        "wss" => (Transport::Wss, None),
        "tcp" => (Transport::Tcp, None),
        "ssl" | "tls" => (Transport::Tls, None),
        "mqtt" => (Transport::Tcp, Some(Protocol::Mqtt)),
        "mqtts" => (Transport::Tls, Some(Protocol::Mqtt)),
        "stomp" => (Transport::Tcp, Some(Protocol::Stomp)),
        "stomp+ssl" | "stomps" => (Transport::Tls, Some(Protocol::Stomp)),
        _ => return Err(UrlError::UnknownScheme(scheme.to_string())),
    };
    if let Some(expected) = only {
        if expected != protocol {
            return Err(UrlError::WrongProtocol {
                scheme: scheme_lc,
                expected,
                protocol,
            });
        }
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(UrlError::UserInfo(url.to_string()));
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err(UrlError::MissingHost(url.to_string()));
    }
    let port = match port {
        Some(p) => p,
        None => default_port(transport, protocol),
    };
    let ip = loopback_ip(host)?;
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.split('#').next().unwrap_or("/").to_string(),
        p => format!("/{}", p.split('#').next().unwrap_or("")),
    };
    Ok(Target {
        url: url.to_string(),
        transport,
        host: host.to_string(),
        addr: SocketAddr::new(ip, port),
        path,
    })
}

/// The port a scheme implies when the URL has none.
pub(crate) fn default_port(transport: Transport, protocol: Protocol) -> u16 {
    match (transport, protocol) {
        (Transport::Ws, _) => 8083,
        (Transport::Wss, _) => 8084,
        (Transport::Tcp, Protocol::Mqtt) => 1883,
        (Transport::Tls, Protocol::Mqtt) => 8883,
        (Transport::Tcp, Protocol::Stomp) => 61613,
        (Transport::Tls, Protocol::Stomp) => 61614,
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UrlError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(|| UrlError::MissingHost(authority.to_string()))?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| UrlError::BadPort(p.to_string()))?),
        };
        (&rest[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(UrlError::BadPort(p.to_string())),
        },
    };
    Ok((host, port))
}

/// The loopback address `host` names, or why it is refused. `localhost` is 127.0.0.1;
/// any other name is refused without a DNS query.
pub(crate) fn loopback_ip(host: &str) -> Result<IpAddr, UrlError> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let ip: IpAddr = host.parse().map_err(|_| UrlError::NotLoopback(host.to_string()))?;
    if is_loopback(ip) {
        Ok(ip)
    } else {
        Err(UrlError::NotLoopback(host.to_string()))
    }
}

/// 127.0.0.0/8, ::1, or an IPv4-mapped address in 127.0.0.0/8.
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str, protocol: Protocol) -> Target {
        parse(url, protocol).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn schemes_pick_transports_and_default_ports() {
        let t = ok("ws://127.0.0.1:9000/mqtt", Protocol::Mqtt);
        assert_eq!((t.transport, t.addr.port(), t.path.as_str()), (Transport::Ws, 9000, "/mqtt"));
        let t = ok("ws://localhost", Protocol::Stomp);
        assert_eq!(
            (t.transport, t.addr, t.path.as_str()),
            (Transport::Ws, "127.0.0.1:8083".parse().unwrap(), "/")
        );
        assert_eq!(ok("wss://localhost", Protocol::Mqtt).addr.port(), 8084);
        assert_eq!(ok("tcp://127.0.0.1", Protocol::Mqtt).addr.port(), 1883);
        assert_eq!(ok("tcp://127.0.0.1", Protocol::Stomp).addr.port(), 61613);
        assert_eq!(ok("mqtt://127.0.0.1", Protocol::Mqtt).transport, Transport::Tcp);
        let t = ok("mqtts://localhost", Protocol::Mqtt);
        assert_eq!((t.transport, t.addr.port(), t.host.as_str()), (Transport::Tls, 8883, "localhost"));
        assert_eq!(ok("stomp://127.0.0.1", Protocol::Stomp).addr.port(), 61613);
        assert_eq!(ok("stomps://127.0.0.1", Protocol::Stomp).addr.port(), 61614);
        assert_eq!(ok("stomp+ssl://127.0.0.1:1", Protocol::Stomp).transport, Transport::Tls);
        assert_eq!(ok("WS://127.0.0.1/a?b=c#frag", Protocol::Mqtt).path, "/a?b=c");
        assert_eq!(ok("ws://127.0.0.1?x", Protocol::Mqtt).path, "/?x");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let t = ok("ws://[::1]:8083/", Protocol::Mqtt);
        assert_eq!(t.addr, "[::1]:8083".parse().unwrap());
        assert_eq!(ok("tcp://[::1]", Protocol::Mqtt).addr.port(), 1883);
        assert_eq!(ok("tcp://[::ffff:127.0.0.9]:5", Protocol::Mqtt).addr.port(), 5);
        assert!(matches!(parse("tcp://[::1", Protocol::Mqtt), Err(UrlError::MissingHost(_))));
        assert!(matches!(parse("tcp://[::1]x", Protocol::Mqtt), Err(UrlError::BadPort(_))));
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(parse("127.0.0.1:1883", Protocol::Mqtt), Err(UrlError::MissingScheme(_))));
        assert!(matches!(parse("http://127.0.0.1", Protocol::Mqtt), Err(UrlError::UnknownScheme(_))));
        assert!(matches!(
            parse("mqtt://127.0.0.1", Protocol::Stomp),
            Err(UrlError::WrongProtocol { .. })
        ));
        assert!(matches!(
            parse("stomp://127.0.0.1", Protocol::Mqtt),
            Err(UrlError::WrongProtocol { .. })
        ));
        assert!(matches!(parse("tcp://:1883", Protocol::Mqtt), Err(UrlError::MissingHost(_))));
        assert!(matches!(parse("tcp://127.0.0.1:0", Protocol::Mqtt), Err(UrlError::BadPort(_))));
        assert!(matches!(parse("tcp://127.0.0.1:70000", Protocol::Mqtt), Err(UrlError::BadPort(_))));
        assert!(matches!(parse("tcp://127.0.0.1:x", Protocol::Mqtt), Err(UrlError::BadPort(_))));
        assert!(matches!(parse("tcp://u:p@127.0.0.1", Protocol::Mqtt), Err(UrlError::UserInfo(_))));
    }

    #[test]
    fn only_loopback_hosts_are_accepted() {
        for host in ["127.0.0.1", "127.255.0.3", "::1", "::ffff:127.0.0.1", "localhost", "LOCALHOST"] {
            assert!(loopback_ip(host).is_ok(), "{host}");
        }
        for host in [
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "0.0.0.0",
            "8.8.8.8",
            "::",
            "::ffff:10.0.0.1",
            "fe80::1",
            "example.com",
            "localhost.example.com",
            "127.0.0.1.nip.io",
        ] {
            assert!(matches!(loopback_ip(host), Err(UrlError::NotLoopback(_))), "{host}");
        }
        assert!(matches!(
            parse("ws://10.1.2.3:8083/", Protocol::Mqtt),
            Err(UrlError::NotLoopback(_))
        ));
        assert!(matches!(
            parse("tcp://[fe80::1]:1883", Protocol::Mqtt),
            Err(UrlError::NotLoopback(_))
        ));
    }
}
