//! When a connection starts to close, its session is told at once: over WebSocket the
//! close handshake may take up to `websocket.close_timeout` (a peer that never answers
//! the close frame), and a session still open meanwhile would keep what it holds (a
//! STOMP queue consumer taking its share of the queue's messages, an MQTT session
//! slot) without ever delivering it. Raw WebSocket frames over loopback TCP, through the
//! real transport, with a fixture adapter that records when its session is closed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_core::{Adapter, CloseRequest, Connection, ConnectionInfo, Input, MessageKind, Output, Sniff, Subprotocol};
use ferry_transport::config::{ListenerConfig, Listeners};
use ferry_transport::{Registry, Server, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// When each session was closed.
type Closed = Arc<Mutex<Vec<Instant>>>;

/// A session that answers "bye" with "ok" and a normal close, and records `on_closed`.
struct Closer(Closed);

impl Connection for Closer {
    fn on_input(&mut self, input: Input, _now: Instant, out: &mut Output) {
        if input.bytes().as_ref() == b"bye" {
            out.send(MessageKind::Text, Bytes::from_static(b"ok"));
            out.close(CloseRequest::normal("bye"));
        }
    }

    fn on_closed(&mut self, _clean: bool, now: Instant) {
        self.0.lock().unwrap().push(now);
    }
}

struct Fixture(Closed);

const SUBPROTOCOLS: &[Subprotocol] = &[Subprotocol { name: "closer", rank: 0 }];

impl Adapter for Fixture {
    fn name(&self) -> &'static str {
        "closer"
    }
    fn subprotocols(&self) -> &'static [Subprotocol] {
        SUBPROTOCOLS
    }
    fn message_kind(&self) -> MessageKind {
        MessageKind::Text
    }
    fn sniff(&self, _first: &[u8]) -> Sniff {
        Sniff::Match
    }
    fn open(&self, _info: &Arc<ConnectionInfo>, _now: Instant) -> Box<dyn Connection> {
        Box::new(Closer(self.0.clone()))
    }
}

async fn server(closed: &Closed) -> (Server, SocketAddr) {
    let mut registry = Registry::new();
    registry.register(Arc::new(Fixture(closed.clone())));
    let on = || ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    let config = TransportConfig {
        listeners: Listeners {
            backlog: 64,
            ws: on(),
            wss: on().disabled(),
            mqtt: on().disabled(),
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

async fn websocket(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = "GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut f = vec![0x80 | opcode, 0x80 | u8::try_from(payload.len()).unwrap()];
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
async fn a_session_that_closes_is_ended_at_once_though_the_peer_never_answers_the_close_frame() {
    let closed: Closed = Arc::default();
    let (_server, addr) = server(&closed).await;
    let mut s = websocket(addr).await;
    s.write_all(&masked(0x1, b"bye")).await.unwrap();
    assert_eq!(frame(&mut s).await, (0x1, b"ok".to_vec()));
    let (opcode, payload) = frame(&mut s).await;
    assert_eq!((opcode, &payload[..2]), (0x8, &1000u16.to_be_bytes()[..]), "a close frame");
    let sent = Instant::now();
    // The peer stays silent: no close frame back, the socket left open. The close
    // handshake waits for `websocket.close_timeout` (5 s); the session must not.
    for _ in 0..100 {
        if !closed.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ended = closed.lock().unwrap().clone();
    assert_eq!(ended.len(), 1, "the session is ended while the close handshake is pending");
    assert!(ended[0] < sent + Duration::from_secs(1));
    // It is not told a second time when the connection finally goes.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut rest)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(closed.lock().unwrap().len(), 1, "on_closed once");
}

#[tokio::test]
async fn a_session_is_ended_once_when_the_peer_closes() {
    let closed: Closed = Arc::default();
    let (_server, addr) = server(&closed).await;
    let mut s = websocket(addr).await;
    s.write_all(&masked(0x1, b"hello")).await.unwrap();
    s.write_all(&masked(0x8, &1000u16.to_be_bytes())).await.unwrap();
    let (opcode, _) = frame(&mut s).await;
    assert_eq!(opcode, 0x8, "the close is answered");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(closed.lock().unwrap().len(), 1, "on_closed once");
}
