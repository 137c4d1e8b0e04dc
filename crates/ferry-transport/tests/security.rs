//! Admission and client identity through the real transport, over loopback: listener,
//! per-address and rate limits, the PROXY protocol, `X-Forwarded-For`, bearer tokens on
//! the upgrade, the byte-rate throttle, and mTLS identities. A fixture adapter answers
//! each input with what the transport told it about the connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use ferry_auth::{Gatekeeper, LimitSettings};
use ferry_core::{Adapter, Connection, ConnectionInfo, Input, MessageKind, Output, Sniff, Subprotocol};
use ferry_testkit::gatekeeper::{anonymous_gatekeeper, hs256_token, jwt_gatekeeper};
use ferry_testkit::pki::Pki;
use ferry_transport::config::{ClientAuth, ListenerConfig, Listeners, TlsConfig};
use ferry_transport::{Registry, Server, ServerParts, TransportConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on every wait for the server, so that a broken server fails the test instead of
/// hanging it (never asserted as a duration).
const PATIENCE: Duration = Duration::from_secs(10);

/// Answers every input with `peer=<addr> cn=<CN or -> bearer=<yes|no> total=<bytes>\n`.
struct Reporter;

struct Report {
    about: String,
    total: usize,
}

impl Adapter for Reporter {
    fn name(&self) -> &'static str {
        "mqtt"
    }
    fn subprotocols(&self) -> &'static [Subprotocol] {
        ferry_mqtt::adapter::SUBPROTOCOLS
    }
    fn message_kind(&self) -> MessageKind {
        MessageKind::Binary
    }
    fn sniff(&self, first: &[u8]) -> Sniff {
        if first.first() == Some(&0x10) {
            Sniff::Match
        } else {
            Sniff::NoMatch
        }
    }
    fn open(&self, info: &std::sync::Arc<ConnectionInfo>, _now: Instant) -> Box<dyn Connection> {
        let creds = info.credentials.as_deref();
        let cn = creds
            .and_then(|c| c.client_cert.as_ref())
            .and_then(|c| c.common_name.clone())
            .unwrap_or_else(|| "-".into());
        let bearer = if creds.and_then(|c| c.bearer.as_ref()).is_some() {
            "yes"
        } else {
            "no"
        };
        Box::new(Report {
            about: format!("peer={} cn={cn} bearer={bearer}", info.peer),
            total: 0,
        })
    }
}

impl Connection for Report {
    fn on_input(&mut self, input: Input, _now: Instant, out: &mut Output) {
        let n = match &input {
            Input::Stream(b) | Input::Message(_, b) => b.len(),
        };
        self.total += n;
        out.send(MessageKind::Binary, Bytes::from(format!("{} total={}\n", self.about, self.total)));
    }
}

fn listener(enabled: bool) -> ListenerConfig {
    let l = ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    if enabled {
        l
    } else {
        l.disabled()
    }
}

/// `ws` and `mqtt` on, the TLS listeners on only with `tls`.
fn config(tls: Option<TlsConfig>) -> TransportConfig {
    let secure = tls.is_some();
    TransportConfig {
        listeners: Listeners {
            backlog: 128,
            ws: listener(true),
            wss: listener(secure),
            mqtt: listener(true),
            mqtts: listener(secure),
            stomp: listener(false),
            stomps: listener(false),
            ..Listeners::default()
        },
        tls: tls.unwrap_or_default(),
        ..TransportConfig::default()
    }
}

fn gate(limits: LimitSettings) -> Arc<Gatekeeper> {
    Arc::new(anonymous_gatekeeper(limits))
}

async fn start(config: TransportConfig, gate: Arc<Gatekeeper>) -> Server {
    let mut registry = Registry::new();
    registry.register(Arc::new(Reporter));
    Server::start(ServerParts {
        gate,
        ..ServerParts::new(config, registry)
    })
    .await
    .unwrap()
}

fn addr(server: &Server, name: &str) -> SocketAddr {
    server.local_addrs().iter().find(|(n, _)| *n == name).unwrap().1
}

/// Reads one report line.
async fn line<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut text = Vec::new();
    loop {
        let mut b = [0u8; 1];
        match tokio::time::timeout(PATIENCE, s.read(&mut b))
            .await
            .expect("server answers in time")
        {
            Ok(1) if b[0] == b'\n' => return String::from_utf8(text).ok(),
            Ok(1) => text.push(b[0]),
            _ => return None,
        }
    }
}

/// Sends an MQTT-looking first byte on a stream listener and reads the report.
async fn report<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Option<String> {
    s.write_all(&[0x10]).await.ok()?;
    line(s).await
}

/// Whether the server closed `s` without answering anything.
async fn closed<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> bool {
    let _ = s.write_all(&[0x10]).await;
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(PATIENCE, s.read(&mut b)).await.expect("closed in time"),
        Ok(0) | Err(_)
    )
}

#[tokio::test]
async fn listener_limit_closes_the_connection_beyond_it() {
    let mut cfg = config(None);
    cfg.listeners.mqtt.max_connections = 1;
    cfg.listeners.ws.max_connections = 1;
    let g = gate(LimitSettings::default());
    let server = start(cfg, g.clone()).await;
    let mut first = TcpStream::connect(addr(&server, "mqtt")).await.unwrap();
    assert!(report(&mut first).await.unwrap().starts_with("peer=127.0.0.1:"));
    let mut second = TcpStream::connect(addr(&server, "mqtt")).await.unwrap();
    assert!(closed(&mut second).await);
    assert_eq!(g.stats.refused_listener.load(Ordering::Relaxed), 1);

    // The WebSocket listener says 503 when it can (best effort), and never upgrades.
    let _ws_first = TcpStream::connect(addr(&server, "ws")).await.unwrap();
    let mut ws_second = TcpStream::connect(addr(&server, "ws")).await.unwrap();
    let (status, _) = http_head(&mut ws_second, &upgrade_request("/mqtt", "")).await;
    assert!(status.is_none() || status == Some(503), "{status:?}");
    assert_eq!(g.stats.refused_listener.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn per_address_limit_and_connection_rate() {
    let g = gate(LimitSettings {
        max_connections_per_address: 2,
        ..LimitSettings::default()
    });
    let server = start(config(None), g.clone()).await;
    let mqtt = addr(&server, "mqtt");
    let mut a = TcpStream::connect(mqtt).await.unwrap();
    let mut b = TcpStream::connect(mqtt).await.unwrap();
    assert!(report(&mut a).await.is_some());
    assert!(report(&mut b).await.is_some());
    let mut c = TcpStream::connect(mqtt).await.unwrap();
    assert!(closed(&mut c).await);
    assert_eq!(g.stats.refused_address.load(Ordering::Relaxed), 1);
    drop(server);

    // A burst of 2 new connections, refilled at one per ~3 hours: the third is refused.
    let g = gate(LimitSettings {
        connection_rate: 0.0001,
        connection_burst: 2,
        ..LimitSettings::default()
    });
    let server = start(config(None), g.clone()).await;
    let mqtt = addr(&server, "mqtt");
    for _ in 0..2 {
        let mut s = TcpStream::connect(mqtt).await.unwrap();
        assert!(report(&mut s).await.is_some());
    }
    let mut s = TcpStream::connect(mqtt).await.unwrap();
    assert!(closed(&mut s).await);
    assert_eq!(g.stats.refused_rate.load(Ordering::Relaxed), 1);
}

fn proxied_config(trusted: &str) -> TransportConfig {
    let mut cfg = config(None);
    cfg.listeners.trusted_proxies = vec![trusted.parse().unwrap()];
    cfg.listeners.mqtt.proxy_protocol = true;
    cfg
}

fn v2_header(command: u8, source: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20 | command, 0x11, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&1883u16.to_be_bytes());
    h
}

#[tokio::test]
async fn proxy_protocol_gives_the_client_address_used_for_limits() {
    let g = gate(LimitSettings {
        max_connections_per_address: 1,
        ..LimitSettings::default()
    });
    let server = start(proxied_config("127.0.0.0/8"), g.clone()).await;
    let mqtt = addr(&server, "mqtt");

    // v1, with the first protocol byte in the same segment as the header.
    let mut v1 = TcpStream::connect(mqtt).await.unwrap();
    v1.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 4567 1883\r\n\x10").await.unwrap();
    assert!(line(&mut v1).await.unwrap().starts_with("peer=203.0.113.7:4567 "));

    // v2 from another client, sent in two pieces.
    let mut v2 = TcpStream::connect(mqtt).await.unwrap();
    let header = v2_header(0x1, [198, 51, 100, 9], 999);
    v2.write_all(&header[..10]).await.unwrap();
    v2.write_all(&header[10..]).await.unwrap();
    assert!(report(&mut v2).await.unwrap().starts_with("peer=198.51.100.9:999 "));

    // The per-address limit counts the real client, not the proxy.
    let mut again = TcpStream::connect(mqtt).await.unwrap();
    again.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 4568 1883\r\n").await.unwrap();
    assert!(closed(&mut again).await);
    assert_eq!(g.stats.refused_address.load(Ordering::Relaxed), 1);

    // LOCAL (a proxy's health check): the socket's own address.
    let mut local = TcpStream::connect(mqtt).await.unwrap();
    local.write_all(&v2_header(0x0, [0, 0, 0, 0], 0)).await.unwrap();
    let me = local.local_addr().unwrap();
    assert!(report(&mut local).await.unwrap().starts_with(&format!("peer={me} ")));

    // No header at all on a PROXY listener.
    let mut bare = TcpStream::connect(mqtt).await.unwrap();
    assert!(closed(&mut bare).await);
}

#[tokio::test]
async fn proxy_protocol_in_front_of_a_websocket_listener() {
    let mut cfg = proxied_config("127.0.0.0/8");
    cfg.listeners.ws.proxy_protocol = true;
    let server = start(cfg, gate(LimitSettings::default())).await;
    let mut s = TcpStream::connect(addr(&server, "ws")).await.unwrap();
    s.write_all(b"PROXY TCP6 2001:db8::5 ::1 40000 8083\r\n").await.unwrap();
    let (status, head) = http_head(&mut s, &upgrade_request("/mqtt", "")).await;
    assert_eq!(status, Some(101), "{head}");
    assert!(ws_report(&mut s).await.starts_with("peer=[2001:db8::5]:40000 "));
}

#[tokio::test]
async fn proxy_protocol_from_an_untrusted_peer_is_refused() {
    let server = start(proxied_config("10.0.0.0/8"), gate(LimitSettings::default())).await;
    let mut s = TcpStream::connect(addr(&server, "mqtt")).await.unwrap();
    let _ = s.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 4567 1883\r\n").await;
    assert!(closed(&mut s).await);
}

fn upgrade_request(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n{extra}\r\n"
    )
}

/// Sends `request` and reads the response head: the status (`None` if the server closed
/// first) and the head's text.
async fn http_head<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, request: &str) -> (Option<u16>, String) {
    let _ = s.write_all(request.as_bytes()).await;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        match tokio::time::timeout(PATIENCE, s.read(&mut b)).await.expect("answer in time") {
            Ok(1) => head.push(b[0]),
            _ => return (None, String::from_utf8_lossy(&head).into_owned()),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    (head.get(9..12).and_then(|s| s.parse().ok()), head)
}

/// A masked binary frame holding `payload` (under 126 bytes).
fn masked(payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut f = vec![0x82, 0x80 | u8::try_from(payload.len()).unwrap()];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// After a 101: sends one binary message and reads the report frame's text.
async fn ws_report<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> String {
    s.write_all(&masked(&[0x10])).await.unwrap();
    let mut head = [0u8; 2];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut head)).await.unwrap().unwrap();
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    s.read_exact(&mut payload).await.unwrap();
    String::from_utf8(payload).unwrap()
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let mut cfg = config(None);
    cfg.listeners.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let g = gate(LimitSettings {
        max_connections_per_address: 1,
        ..LimitSettings::default()
    });
    let server = start(cfg, g.clone()).await;
    let ws = addr(&server, "ws");
    let mut s = TcpStream::connect(ws).await.unwrap();
    let xff = "X-Forwarded-For: 1.2.3.4, 198.51.100.1, 127.0.0.5\r\n";
    let (status, head) = http_head(&mut s, &upgrade_request("/mqtt", xff)).await;
    assert_eq!(status, Some(101), "{head}");
    assert!(ws_report(&mut s).await.starts_with("peer=198.51.100.1:0 "));

    // A second connection of the same client, through the same proxy: admitted at the
    // upgrade by the forwarded address, and refused there.
    let mut t = TcpStream::connect(ws).await.unwrap();
    let (status, head) = http_head(&mut t, &upgrade_request("/mqtt", xff)).await;
    assert_eq!(status, Some(503), "{head}");
    assert_eq!(g.stats.refused_address.load(Ordering::Relaxed), 1);

    // Another client through the proxy is let in.
    let mut u = TcpStream::connect(ws).await.unwrap();
    let (status, _) = http_head(&mut u, &upgrade_request("/mqtt", "X-Forwarded-For: 198.51.100.2\r\n")).await;
    assert_eq!(status, Some(101));
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = start(config(None), gate(LimitSettings::default())).await;
    let mut s = TcpStream::connect(addr(&server, "ws")).await.unwrap();
    let (status, _) = http_head(&mut s, &upgrade_request("/mqtt", "X-Forwarded-For: 198.51.100.1\r\n")).await;
    assert_eq!(status, Some(101));
    assert!(ws_report(&mut s).await.starts_with("peer=127.0.0.1:"));
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn jwt_gate() -> Arc<Gatekeeper> {
    Arc::new(jwt_gatekeeper(SECRET).with_clock(Arc::new(|| UNIX_EPOCH + Duration::from_secs(NOW))))
}

fn token(sub: &str) -> String {
    hs256_token(SECRET, &serde_json::json!({ "sub": sub, "exp": NOW + 3600 }))
}

#[tokio::test]
async fn bearer_tokens_on_the_upgrade() {
    let g = jwt_gate();
    let server = start(config(None), g.clone()).await;
    let ws = addr(&server, "ws");

    // A bad token in the header: 401, no upgrade.
    let mut s = TcpStream::connect(ws).await.unwrap();
    let (status, head) = http_head(&mut s, &upgrade_request("/mqtt", "Authorization: Bearer not.a.token\r\n")).await;
    assert_eq!(status, Some(401), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer error=\"invalid_token\""),
        "{head}"
    );
    assert_eq!(g.stats.auth_bad_credentials.load(Ordering::Relaxed), 1);

    // A good one in the query, percent-encoded: upgraded, and handed to the adapter.
    let good = token("alice");
    let encoded: String = form_urlencoded::byte_serialize(good.as_bytes()).collect();
    let mut s = TcpStream::connect(ws).await.unwrap();
    let (status, head) = http_head(&mut s, &upgrade_request(&format!("/mqtt?x=1&access_token={encoded}"), "")).await;
    assert_eq!(status, Some(101), "{head}");
    assert!(ws_report(&mut s).await.contains(" bearer=yes "));

    // No token: upgraded; the adapter decides at CONNECT.
    let mut s = TcpStream::connect(ws).await.unwrap();
    let (status, _) = http_head(&mut s, &upgrade_request("/mqtt", "")).await;
    assert_eq!(status, Some(101));
    assert!(ws_report(&mut s).await.contains(" bearer=no "));
}

#[tokio::test]
async fn without_jwt_a_bearer_token_is_ignored_not_refused() {
    let server = start(config(None), Arc::new(Gatekeeper::open())).await;
    let mut s = TcpStream::connect(addr(&server, "ws")).await.unwrap();
    let (status, head) = http_head(&mut s, &upgrade_request("/mqtt", "Authorization: Bearer meant-for-a-proxy\r\n")).await;
    assert_eq!(status, Some(101), "{head}");
    assert!(ws_report(&mut s).await.contains(" bearer=no "));
}

#[tokio::test]
async fn byte_rate_throttles_reads() {
    let g = gate(LimitSettings {
        bytes_per_second: 64 * 1024,
        byte_burst: 4096,
        ..LimitSettings::default()
    });
    let server = start(config(None), g.clone()).await;
    let mut s = TcpStream::connect(addr(&server, "mqtt")).await.unwrap();
    let total = 32 * 1024;
    let started = Instant::now();
    let mut data = vec![0u8; total];
    data[0] = 0x10;
    let (mut rd, mut wr) = s.split();
    let writer = async {
        wr.write_all(&data).await.unwrap();
    };
    let reader = async {
        loop {
            let report = line(&mut rd).await.expect("a report per read");
            let got: usize = report.rsplit("total=").next().unwrap().parse().unwrap();
            if got >= total {
                break;
            }
        }
    };
    tokio::join!(writer, reader);
    // (32 KiB - 4 KiB burst) at 64 KiB/s cannot take less than ~0.43 s: a lower bound only.
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert!(g.stats.byte_rate_throttled.load(Ordering::Relaxed) >= 1);
}

/// The kit's test PKI: a server certificate for localhost, a client certificate for
/// `device-1` (also named `device-1.example`).
fn pki() -> Pki {
    Pki::builder().client_names(&["device-1.example"]).build()
}

fn connector(pki: &Pki, alpn: &[u8]) -> TlsConnector {
    let mut config = pki.client_config(true);
    if !alpn.is_empty() {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn client_certificate_identity_reaches_the_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = TlsConfig {
        cert_file: Some(write("cert.pem", &pki.server_cert)),
        key_file: Some(write("key.pem", &pki.server_key)),
        client_ca_file: Some(write("ca.pem", &pki.ca)),
        client_auth: ClientAuth::Required,
        ..TlsConfig::default()
    };
    let server = start(config(Some(tls)), gate(LimitSettings::default())).await;
    let name = ServerName::try_from("localhost").unwrap();

    let tcp = TcpStream::connect(addr(&server, "mqtts")).await.unwrap();
    let mut s = connector(&pki, b"").connect(name.clone(), tcp).await.unwrap();
    let got = report(&mut s).await.unwrap();
    assert!(got.contains(" cn=device-1 "), "{got}");

    let tcp = TcpStream::connect(addr(&server, "wss")).await.unwrap();
    let mut s = connector(&pki, b"http/1.1").connect(name, tcp).await.unwrap();
    let (status, head) = http_head(&mut s, &upgrade_request("/mqtt", "")).await;
    assert_eq!(status, Some(101), "{head}");
    let got = ws_report(&mut s).await;
    assert!(got.contains(" cn=device-1 "), "{got}");
}
