//! Subprotocol negotiation and first-bytes sniffing through the real transport, with
//! fixture adapters that register the real MQTT and STOMP adapters' subprotocol lists
//! but answer with a marker, so the test sees which one the transport picked. Raw HTTP over loopback TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_core::{Adapter, Connection, ConnectionInfo, Input, MessageKind, Output, Sniff, Subprotocol};
use ferry_transport::config::{ListenerConfig, Listeners};
use ferry_transport::{Registry, Server, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Answers every input with "<adapter name>:<subprotocol>".
struct Fixture {
    name: &'static str,
    subprotocols: &'static [Subprotocol],
    prefix: &'static [u8],
    kind: MessageKind,
}

struct Greeter(&'static str, Option<&'static str>, MessageKind);

impl Connection for Greeter {
    fn on_input(&mut self, _input: Input, _now: Instant, out: &mut Output) {
        out.send(self.2, Bytes::from(format!("{}:{}", self.0, self.1.unwrap_or("-"))));
    }
}

impl Adapter for Fixture {
    fn name(&self) -> &'static str {
        self.name
    }
    fn subprotocols(&self) -> &'static [Subprotocol] {
        self.subprotocols
    }
    fn message_kind(&self) -> MessageKind {
        self.kind
    }
    fn sniff(&self, first: &[u8]) -> Sniff {
        let n = first.len().min(self.prefix.len());
        match (first[..n] == self.prefix[..n], n == self.prefix.len()) {
            (false, _) => Sniff::NoMatch,
            (true, false) => Sniff::NeedMore,
            (true, true) => Sniff::Match,
        }
    }
    fn open(&self, info: &std::sync::Arc<ConnectionInfo>, _now: Instant) -> Box<dyn Connection> {
        Box::new(Greeter(self.name, info.subprotocol, self.kind))
    }
}

const MQTT: &[Subprotocol] = ferry_mqtt::adapter::SUBPROTOCOLS;
const STOMP: &[Subprotocol] = ferry_stomp::adapter::SUBPROTOCOLS;

async fn server() -> (Server, SocketAddr) {
    let mut registry = Registry::new();
    registry.register(Arc::new(Fixture {
        name: "mqtt",
        subprotocols: MQTT,
        prefix: b"\x10",
        kind: MessageKind::Binary,
    }));
    registry.register(Arc::new(Fixture {
        name: "stomp",
        subprotocols: STOMP,
        prefix: b"CONNECT",
        kind: MessageKind::Text,
    }));
    let on = || ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    let config = TransportConfig {
        listeners: Listeners {
            backlog: 1024,
            ws: on(),
            wss: on().disabled(),
            mqtt: on(),
            mqtts: on().disabled(),
            stomp: on().disabled(),
            stomps: on().disabled(),
            ..Listeners::default()
        },
        ..TransportConfig::default()
    };
    let server = Server::start(config, registry).await.unwrap();
    let addr = server.local_addrs().iter().find(|(name, _)| *name == "ws").unwrap().1;
    (server, addr)
}

/// Handshake offering `protocols` (one header line each); returns status, the echoed
/// subprotocol header, and the open stream.
async fn handshake(addr: SocketAddr, protocol_lines: &[&str]) -> (u16, Option<String>, String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let extra: String = protocol_lines.iter().map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).collect();
    let req = format!(
        "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let protocols: Vec<&str> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .map(|(_, v)| v.trim())
        .collect();
    assert!(protocols.len() <= 1, "exactly one subprotocol echoed at most: {head}");
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (
        status,
        protocols.first().map(|p| p.to_string()),
        String::from_utf8(body).unwrap(),
        s,
    )
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

async fn frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let mut payload = vec![0u8; (head[1] & 0x7f) as usize];
    s.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, payload)
}

#[tokio::test]
async fn each_offer_gets_the_right_subprotocol() {
    let (_server, addr) = server().await;
    for (offer, expected) in [
        (&["mqtt"][..], Some("mqtt")),
        (&["mqttv3.1"], Some("mqttv3.1")),
        (&["mqtt-v5, mqtt"], Some("mqtt-v5")),
        (&["v10.stomp, v11.stomp, v12.stomp"], Some("v12.stomp")),
        (&["v10.stomp", "v11.stomp"], Some("v11.stomp")),
        (&["foo, mqtt"], Some("mqtt")),
    ] {
        let (status, echoed, _, _) = handshake(addr, offer).await;
        assert_eq!(status, 101, "{offer:?}");
        assert_eq!(echoed.as_deref(), expected, "{offer:?}");
    }
}

#[tokio::test]
async fn unknown_offer_gets_400_naming_the_served_names() {
    let (_server, addr) = server().await;
    let (status, echoed, body, _) = handshake(addr, &["foo"]).await;
    assert_eq!(status, 400);
    assert_eq!(echoed, None);
    assert!(
        body.contains("mqtt, mqttv3.1, mqtt-v3, mqtt-v3.1.1, mqtt-v5, v12.stomp, v11.stomp, v10.stomp, stomp"),
        "{body}"
    );
}

#[tokio::test]
async fn the_chosen_adapter_runs_with_its_frame_type() {
    let (_server, addr) = server().await;
    let (_, _, _, mut s) = handshake(addr, &["v12.stomp"]).await;
    s.write_all(&masked(0x1, b"CONNECT\n\n\0")).await.unwrap();
    assert_eq!(
        frame(&mut s).await,
        (0x1, b"stomp:v12.stomp".to_vec()),
        "STOMP answers in text frames"
    );
    let (_, _, _, mut s) = handshake(addr, &["mqtt"]).await;
    s.write_all(&masked(0x2, &[0x10, 0x00])).await.unwrap();
    assert_eq!(frame(&mut s).await, (0x2, b"mqtt:mqtt".to_vec()), "MQTT answers in binary frames");
}

#[tokio::test]
async fn no_offer_picks_the_adapter_from_the_first_bytes() {
    let (_server, addr) = server().await;
    let (status, echoed, _, mut s) = handshake(addr, &[]).await;
    assert_eq!((status, echoed), (101, None));
    s.write_all(&masked(0x2, &[0x10, 0x0c])).await.unwrap();
    assert_eq!(frame(&mut s).await, (0x2, b"mqtt:-".to_vec()));

    // A STOMP CONNECT split over two messages is recognised once enough has arrived.
    let (_, _, _, mut s) = handshake(addr, &[]).await;
    s.write_all(&masked(0x1, b"CONN")).await.unwrap();
    s.write_all(&masked(0x1, b"ECT\naccept-version:1.2\n\n\0")).await.unwrap();
    assert_eq!(frame(&mut s).await, (0x1, b"stomp:-".to_vec()));

    // Bytes of no served protocol: close 1002 naming the problem.
    let (_, _, _, mut s) = handshake(addr, &[]).await;
    s.write_all(&masked(0x1, b"HELLO")).await.unwrap();
    let (opcode, payload) = frame(&mut s).await;
    assert_eq!(opcode, 0x8);
    assert_eq!(&payload[..2], &1002u16.to_be_bytes());
    assert!(String::from_utf8_lossy(&payload[2..]).contains("unrecognised protocol"));
}

#[tokio::test]
async fn protocol_ports_hand_the_raw_stream_to_their_adapter() {
    let (server, _) = server().await;
    let (name, addr) = server.local_addrs().iter().copied().find(|(name, _)| *name == "mqtt").unwrap();
    assert_eq!(name, "mqtt");
    assert!(
        !server.local_addrs().iter().any(|(n, _)| *n == "mqtts"),
        "no TLS listener without a certificate"
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x10, 0x00]).await.unwrap();
    let mut buf = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"mqtt:-", "plain bytes, no WebSocket framing");
}
