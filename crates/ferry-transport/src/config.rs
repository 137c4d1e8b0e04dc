//! The transport's configuration sections, as they appear in `conf/ferry.toml`.
//!
//! Every field has a default (the `Default` impls below are the embedded defaults the
//! binary runs on without a file) and unknown keys are refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[listeners.*]`: one entry per listener; each can be moved or turned off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// Pending connections the kernel may queue per listener before the broker accepts
    /// them (capped by the kernel's `net.core.somaxconn`). Large enough for bursts of
    /// reconnecting clients.
    pub backlog: u32,
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
}

impl Default for Listeners {
    fn default() -> Self {
        let on = |port: u16| ListenerConfig {
            enabled: true,
            bind: SocketAddr::from(([0, 0, 0, 0], port)),
        };
        Self {
            backlog: 4096,
            ws: on(8083),
            wss: on(8084),
            mqtt: on(1883),
            mqtts: on(8883),
            stomp: on(61613),
            stomps: on(61614),
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
}

fn yes() -> bool {
    true
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
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// Path of the echo service used for conformance runs (Autobahn). Empty: off.
    pub echo_path: String,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_message_size: 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
            echo_path: String::new(),
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
