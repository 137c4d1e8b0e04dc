//! The transport's configuration sections, as they appear in `conf/ferry.toml`.
//!
//! Every field has a default (the `Default` impls below are the embedded defaults the
//! binary runs on without a file) and unknown keys are refused.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// `[listeners.*]`: one entry per listener; each can be moved or turned off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// Pending connections the kernel may queue per listener before the broker accepts
    /// them (capped by the kernel's `net.core.somaxconn`). Large enough for bursts of
    /// reconnecting clients.
    pub backlog: u32,
    /// Bytes of output waiting for a slow peer above which its connection stops taking
    /// input and queued messages until the peer reads: with the session queues' limits,
    /// this bounds what one stalled client costs.
    pub max_pending_output: usize,
    /// Proxies (CIDR blocks such as `10.0.0.0/8`, or single addresses) trusted to tell the
    /// client's real address: by the PROXY protocol on listeners with `proxy_protocol`,
    /// and by `X-Forwarded-For` on WebSocket upgrades. Empty: nobody is trusted.
    pub trusted_proxies: Vec<TrustedNet>,
    /// A PROXY protocol header not fully received within this time drops the connection.
    #[serde(with = "humantime_serde")]
    pub proxy_protocol_timeout: Duration,
    /// After the broker ends a connection (a refusal, a close frame, an HTTP error), how
    /// long it keeps reading and discarding what the peer still sends, so that its last
    /// bytes reach the peer instead of being lost to a TCP reset (a lingering close).
    /// 0 turns lingering off.
    #[serde(with = "humantime_serde")]
    pub linger_timeout: Duration,
    /// The most bytes discarded while lingering; past it the socket is closed at once.
    pub linger_max_bytes: usize,
    /// HTTP + WebSocket (MQTT and STOMP, `/healthz`, `/metrics`).
    pub ws: ListenerConfig,
    /// HTTP + WebSocket over TLS; started only when `[tls]` names a certificate.
    pub wss: ListenerConfig,
    /// MQTT over TCP; started once an MQTT adapter is registered.
    pub mqtt: ListenerConfig,
    /// MQTT over TLS; needs `[tls]` and an MQTT adapter.
    pub mqtts: ListenerConfig,
    /// STOMP over TCP; started once a STOMP adapter is registered.
    pub stomp: ListenerConfig,
    /// STOMP over TLS; needs `[tls]` and a STOMP adapter.
    pub stomps: ListenerConfig,
    /// The admin API and dashboard (HTTP); started when the binary registers routes for
    /// it. Loopback by default: bound elsewhere, the binary refuses to start without
    /// API keys.
    pub admin: ListenerConfig,
}

impl Default for Listeners {
    fn default() -> Self {
        let on = |port: u16| ListenerConfig::new(SocketAddr::from(([0, 0, 0, 0], port)));
        Self {
            backlog: 4096,
            max_pending_output: 256 * 1024,
            trusted_proxies: Vec::new(),
            proxy_protocol_timeout: Duration::from_secs(5),
            linger_timeout: Duration::from_secs(2),
            linger_max_bytes: 256 * 1024,
            ws: on(8083),
            wss: on(8084),
            mqtt: on(1883),
            mqtts: on(8883),
            stomp: on(61613),
            stomps: on(61614),
            admin: ListenerConfig::new(SocketAddr::from(([127, 0, 0, 1], 18083))),
        }
    }
}

/// Where one listener binds, and whether it runs at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `false` turns the listener off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address and port to bind; port 0 picks a free port (logged at start).
    pub bind: SocketAddr,
    /// Open connections this listener accepts at most; 0: no limit. Beyond it new
    /// connections are closed at once (counted as `limit_listener` refusals).
    #[serde(default)]
    pub max_connections: usize,
    /// Expect a PROXY protocol header (v1 or v2) before anything else, from an address in
    /// `listeners.trusted_proxies` only; the header's source address is the client's.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// On the `ws` and `wss` listeners: whether their compressed connections may keep
    /// their deflate contexts between messages (context takeover, under the global
    /// `websocket.compression.max_takeover_contexts`); unset: as
    /// `websocket.compression.context_takeover` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deflate_context_takeover: Option<bool>,
}

impl ListenerConfig {
    /// An enabled listener on `bind`, with no connection limit and no PROXY protocol.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            enabled: true,
            bind,
            max_connections: 0,
            proxy_protocol: false,
            deflate_context_takeover: None,
        }
    }

    /// The same listener, turned off.
    pub fn disabled(self) -> Self {
        Self { enabled: false, ..self }
    }
}

fn yes() -> bool {
    true
}

/// One entry of `listeners.trusted_proxies`: a CIDR block (`10.0.0.0/8`, `fd00::/8`) or
/// a single address (`192.0.2.7`, taken as `/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNet(pub IpNet);

impl TrustedNet {
    /// Whether `addr` is inside this block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&canonical(addr))
    }
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into IPv4, as a
/// dual-stack listener reports IPv4 clients.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `addr` is in one of `nets`.
pub fn is_trusted(nets: &[TrustedNet], addr: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(addr))
}

/// A `trusted_proxies` entry that is neither a CIDR block nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CIDR block or an IP address: {0:?}")]
pub struct BadNet(String);

impl FromStr for TrustedNet {
    type Err = BadNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self(net.trunc()));
        }
        s.parse::<IpAddr>().map(|a| Self(IpNet::from(a))).map_err(|_| BadNet(s.to_owned()))
    }
}

impl fmt::Display for TrustedNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for TrustedNet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TrustedNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Whether TLS listeners ask for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate asked for.
    #[default]
    None,
    /// A certificate is asked for and verified if given; clients without one are let in.
    Optional,
    /// Clients without a certificate signed by `client_ca_file` are refused (mTLS).
    Required,
}

/// `[tls]`: the certificate shared by every TLS listener (`wss`, `mqtts`, `stomps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain, leaf first. Empty: TLS listeners off.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM file with the CA certificates that sign client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// `none`, `optional` or `required` (the last two need `client_ca_file`).
    pub client_auth: ClientAuth,
    /// A TLS handshake not finished within this time is dropped.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: ClientAuth::None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// `[http]`: the HTTP side of the WebSocket listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request head not fully received within this time is dropped (slow-loris);
    /// so is an upgrade that does not complete.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    /// At least 8192.
    pub max_request_head_size: usize,
    /// Origins allowed to open a WebSocket (`https://app.example.com`, or
    /// `https://*.example.com` for any subdomain). Empty: every origin.
    pub allowed_origins: Vec<String>,
    /// Whether a handshake without an `Origin` header (a non-browser client) is let
    /// in when `allowed_origins` is not empty.
    pub allow_missing_origin: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_request_head_size: 16 * 1024,
            allowed_origins: Vec::new(),
            allow_missing_origin: true,
        }
    }
}

/// `[websocket]`: WebSocket sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Largest message in bytes, all fragments together; larger closes with 1009.
    pub max_message_size: usize,
    /// After this long with nothing received, the server sends a ping. `0s` never pings.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// After a ping, a connection that stays silent this long is closed.
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// After sending a close frame, how long to wait for the peer's before dropping it.
    /// The session is ended when the close starts ([`ferry_core::Connection::on_closed`]),
    /// not when the handshake is over.
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// Path of the echo service used for conformance runs (Autobahn). Empty: off.
    pub echo_path: String,
    /// `[websocket.compression]`: permessage-deflate (RFC 7692).
    pub compression: crate::ws::deflate::CompressionConfig,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_message_size: 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
            echo_path: String::new(),
            compression: crate::ws::deflate::CompressionConfig::default(),
        }
    }
}

/// Everything the transport needs, gathered by the binary from its settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransportConfig {
    /// Listener addresses.
    pub listeners: Listeners,
    /// TLS material.
    pub tls: TlsConfig,
    /// HTTP limits and origin policy.
    pub http: HttpConfig,
    /// WebSocket session limits and timers.
    pub websocket: WebSocketConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct File {
        listeners: Listeners,
    }

    #[test]
    fn listener_keys_have_defaults_and_old_tables_stay_valid() {
        let file: File = toml::from_str("[listeners.mqtt]\nbind = \"127.0.0.1:1\"\n").unwrap();
        let mqtt = &file.listeners.mqtt;
        assert!(mqtt.enabled);
        assert_eq!((mqtt.max_connections, mqtt.proxy_protocol), (0, false));
        assert!(file.listeners.trusted_proxies.is_empty());
        assert_eq!(file.listeners.proxy_protocol_timeout, Duration::from_secs(5));
        let text = toml::to_string(&File {
            listeners: Listeners::default(),
        })
        .unwrap();
        assert_eq!(toml::from_str::<File>(&text).unwrap().listeners, Listeners::default());
    }

    #[test]
    fn new_listener_keys_parse() {
        let file: File = toml::from_str(
            "[listeners]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::1/8\"]\n\
             proxy_protocol_timeout = \"2s\"\n\
             [listeners.ws]\nbind = \"127.0.0.1:0\"\nmax_connections = 7\nproxy_protocol = true\n",
        )
        .unwrap();
        let l = &file.listeners;
        assert_eq!((l.ws.max_connections, l.ws.proxy_protocol), (7, true));
        assert_eq!(l.proxy_protocol_timeout, Duration::from_secs(2));
        let nets = &l.trusted_proxies;
        assert_eq!(nets[2].to_string(), "fd00::/8", "host bits are dropped");
        assert!(is_trusted(nets, "10.1.2.3".parse().unwrap()));
        assert!(is_trusted(nets, "192.0.2.7".parse().unwrap()));
        assert!(is_trusted(nets, "::ffff:10.9.9.9".parse().unwrap()), "IPv4-mapped counts as IPv4");
        assert!(is_trusted(nets, "fd12::5".parse().unwrap()));
        assert!(!is_trusted(nets, "192.0.2.8".parse().unwrap()));
        assert!(!is_trusted(nets, "11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_networks_and_unknown_keys_are_refused() {
        let err = toml::from_str::<File>("[listeners]\ntrusted_proxies = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(toml::from_str::<File>("[listeners]\ntrusted_proxies = [\"proxy.local\"]\n").is_err());
        assert!(toml::from_str::<File>("[listeners.ws]\nbind = \"127.0.0.1:0\"\nmax_conections = 1\n").is_err());
    }
}
