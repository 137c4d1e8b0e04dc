//! Conformance end to end, against the real binary with raw bytes written from the specs:
//! refusals that reach a peer that keeps writing (a lingering close) for MQTT over TCP
//! and WebSocket, STOMP and the HTTP handshake; MQTT in a WebSocket text frame; the
//! `Host` header; a will whose delay outlasts its session; an oversized MQTT 5 CONNECT;
//! RabbitMQ's STOMP destinations over TCP and WebSocket, seen from MQTT too.

use std::time::{Duration, Instant};

use ferry_testkit::mqtt::{packet, varint};
use ferry_testkit::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

// --- raw MQTT 5 packets (MQTT 5 §3), independent of Ferry's codec ---

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A 5.0 CONNECT: clean start, keep-alive 0, `props`, and an optional will (topic, will
/// properties, payload).
fn connect5(id: &str, props: &[u8], will: Option<(&str, &[u8], &[u8])>) -> Vec<u8> {
    let mut b = Vec::new();
    string(b"MQTT", &mut b);
    b.push(5);
    b.push(if will.is_some() { 0x06 } else { 0x02 });
    b.extend_from_slice(&[0, 0]);
    varint(props.len(), &mut b);
    b.extend_from_slice(props);
    string(id.as_bytes(), &mut b);
    if let Some((topic, will_props, payload)) = will {
        varint(will_props.len(), &mut b);
        b.extend_from_slice(will_props);
        string(topic.as_bytes(), &mut b);
        string(payload, &mut b);
    }
    packet(0x10, &b)
}

fn subscribe5(pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut b = pkid.to_be_bytes().to_vec();
    b.push(0);
    string(filter.as_bytes(), &mut b);
    b.push(qos);
    packet(0x82, &b)
}

fn publish5(topic: &str, qos: u8, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    string(topic.as_bytes(), &mut b);
    if qos > 0 {
        b.extend_from_slice(&pkid.to_be_bytes());
    }
    b.push(0);
    b.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &b)
}

const PINGREQ: [u8; 2] = [0xC0, 0x00];

/// Bytes a client sends right behind the input that gets it refused: more than the broker
/// reads at once, so that they are still unread in its socket when it closes (closing a
/// socket with unread input is what sends a reset).
const UNREAD: usize = 128 * 1024;

/// How a read to the end stopped.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The broker closed in order: every byte it wrote was read.
    Eof,
    /// A reset: what the broker wrote last may have been destroyed unread.
    Reset,
    /// Still open after the wait.
    Timeout,
}

async fn read_to_end<R: AsyncRead + Unpin>(rd: &mut R, wait: Duration) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Ok(Ok(0)) => return (got, End::Eof),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => return (got, End::Reset),
            Err(_) => return (got, End::Timeout),
        }
    }
}

/// Reads until `needle` has arrived (or panics after 5 s); returns what was read.
async fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{needle:?} in time; got {got:?}"))
            .expect("read");
        assert!(n > 0, "closed before {needle:?}; got {got:?}");
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

/// Keep writing `chunk` for `for_how_long`, as a peer that has not read the refusal yet
/// would (a client library writing its PUBRELs and pings). Returns the first write error:
/// a reset from the broker makes the client's writes fail (a broken pipe), and a client
/// that gives up on a failed write never reads the refusal waiting in its socket.
fn keep_writing<W: AsyncWrite + Unpin + Send + 'static>(
    mut wr: W,
    chunk: Vec<u8>,
    for_how_long: Duration,
) -> tokio::task::JoinHandle<Option<std::io::Error>> {
    tokio::spawn(async move {
        let until = Instant::now() + for_how_long;
        while Instant::now() < until {
            if let Err(e) = wr.write_all(&chunk).await {
                return Some(e);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    })
}

/// The refusal was read and the client's writes went on without error until it stopped.
async fn assert_lingered(writer: tokio::task::JoinHandle<Option<std::io::Error>>, end: End) {
    assert_eq!(end, End::Eof, "closed in order, no reset");
    let failed = writer.await.expect("writer task");
    assert!(
        failed.is_none(),
        "the client's writes failed (the broker reset the connection): {failed:?}"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The WebSocket payloads in `bytes` (server frames, unmasked), with their opcodes.
fn ws_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, head) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => break,
            126 => break,
            n => (usize::from(n), 2),
        };
        if bytes.len() < head + len {
            break;
        }
        frames.push((opcode, bytes[head..head + len].to_vec()));
        bytes = &bytes[head + len..];
    }
    frames
}

// --- every refusal reaches the client ---

/// A lingering broker and one that closes at once: the same refusal must be read.
fn broker_with(env: &[(&str, &str)]) -> Broker {
    Broker::start_with("", env)
}

#[tokio::test]
async fn receive_maximum_exceeded_reaches_an_mqtt_client_that_keeps_writing_over_tcp() {
    let b = broker_with(&[("FERRY_MQTT__RECEIVE_MAXIMUM", "2")]);
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    s.write_all(&connect5("rm-tcp", &[], None)).await.unwrap();
    read_until(&mut s, &[0x20]).await;
    // Three QoS 2 PUBLISHes without PUBREL: the third is one more than Receive Maximum 2.
    let mut burst = Vec::new();
    for pkid in 1..=3 {
        burst.extend(publish5("rm/t", 2, pkid, b"x"));
    }
    // In the same write, more than the broker reads at once: input it has not read when
    // it refuses.
    burst.extend(PINGREQ.repeat(UNREAD / 2));
    s.write_all(&burst).await.unwrap();
    let (mut rd, wr) = s.into_split();
    // The client goes on writing (a PUBREL for an earlier PUBREC, pings) before it reads.
    let mut more = vec![0x62, 0x02, 0x00, 0x01];
    more.extend_from_slice(&PINGREQ);
    let writer = keep_writing(wr, more, Duration::from_millis(800));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (got, end) = read_to_end(&mut rd, Duration::from_secs(5)).await;
    assert!(
        contains(&got, &[0xE0]) && got.windows(3).any(|w| w[0] == 0xE0 && w[2] == 0x93),
        "DISCONNECT 0x93 read: {got:?}"
    );
    assert_lingered(writer, end).await;
}

#[tokio::test]
async fn receive_maximum_exceeded_reaches_an_mqtt_client_that_keeps_writing_over_websocket() {
    let b = broker_with(&[("FERRY_MQTT__RECEIVE_MAXIMUM", "2"), ("FERRY_WEBSOCKET__CLOSE_TIMEOUT", "200ms")]);
    let mut s = TcpStream::connect(b.addr("ws")).await.unwrap();
    let resp = http_raw(&mut s, &upgrade_request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n")).await;
    assert_eq!(resp.status, 101);
    s.write_all(&client_frame(true, 0x2, &connect5("rm-ws", &[], None), true))
        .await
        .unwrap();
    read_until(&mut s, &[0x20]).await;
    let mut burst = Vec::new();
    for pkid in 1..=3 {
        burst.extend(publish5("rm/t", 2, pkid, b"x"));
    }
    let mut frames = client_frame(true, 0x2, &burst, true);
    for _ in 0..UNREAD / 8 {
        frames.extend(client_frame(true, 0x2, &PINGREQ, true));
    }
    s.write_all(&frames).await.unwrap();
    let (mut rd, wr) = s.into_split();
    // Past the close handshake's timeout the broker gives up on the client's close frame;
    // the client is still writing and has read nothing yet.
    let writer = keep_writing(wr, client_frame(true, 0x2, &PINGREQ, true), Duration::from_millis(1200));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (got, end) = read_to_end(&mut rd, Duration::from_secs(5)).await;
    let frames = ws_frames(&got);
    assert!(
        frames
            .iter()
            .any(|(op, p)| *op == 0x2 && p.windows(3).any(|w| w[0] == 0xE0 && w[2] == 0x93)),
        "DISCONNECT 0x93 read: {frames:?}"
    );
    assert!(frames.iter().any(|(op, _)| *op == 0x8), "then the close frame: {frames:?}");
    assert_lingered(writer, end).await;
}

#[tokio::test]
async fn a_stomp_error_reaches_a_client_that_keeps_writing() {
    let b = broker_with(&[]);
    let mut s = TcpStream::connect(b.addr("stomp")).await.unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0").await.unwrap();
    read_until(&mut s, b"CONNECTED").await;
    let mut bad = b"BOGUS\n\n\0".to_vec();
    bad.extend(b"SEND\ndestination:/topic/x\n\nmore\0".repeat(UNREAD / 32));
    s.write_all(&bad).await.unwrap();
    let (mut rd, wr) = s.into_split();
    let writer = keep_writing(wr, b"SEND\ndestination:/topic/x\n\nmore\0".to_vec(), Duration::from_millis(800));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (got, end) = read_to_end(&mut rd, Duration::from_secs(5)).await;
    assert!(contains(&got, b"ERROR\n"), "ERROR read: {:?}", String::from_utf8_lossy(&got));
    assert_lingered(writer, end).await;
}

#[tokio::test]
async fn a_refused_handshake_reaches_a_client_that_keeps_writing() {
    let b = broker_with(&[]);
    let s = TcpStream::connect(b.addr("ws")).await.unwrap();
    let request = upgrade_request("/", "Sec-WebSocket-Protocol: nothing-we-serve\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend(vec![b'z'; UNREAD]);
    let (mut rd, mut wr) = s.into_split();
    // Written from a task: the broker may stop reading before all of it is in.
    let writer = tokio::spawn(async move {
        if let Err(e) = wr.write_all(&bytes).await {
            return Some(e);
        }
        keep_writing(wr, vec![b'z'; 512], Duration::from_millis(800)).await.ok().flatten()
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (got, end) = read_to_end(&mut rd, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400"), "the refusal is read: {text:?}");
    assert!(text.contains("mqtt"), "it names what is served: {text:?}");
    assert_lingered(writer, end).await;
}

// --- MQTT over WebSocket only in binary frames ---

#[tokio::test]
async fn mqtt_in_a_websocket_text_frame_is_closed_and_counted() {
    let b = broker_with(&[]);
    // A subscriber over TCP, which must not see the PUBLISH.
    let mut sub = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    sub.write_all(&connect5("text-sub", &[], None)).await.unwrap();
    read_until(&mut sub, &[0x20]).await;
    sub.write_all(&subscribe5(1, "text/t", 0)).await.unwrap();
    read_until(&mut sub, &[0x90]).await;
    let mut s = TcpStream::connect(b.addr("ws")).await.unwrap();
    let resp = http_raw(&mut s, &upgrade_request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n")).await;
    assert_eq!(resp.status, 101);
    s.write_all(&client_frame(true, 0x2, &connect5("text", &[], None), true))
        .await
        .unwrap();
    read_until(&mut s, &[0x20]).await;
    // A valid, all-ASCII PUBLISH in a text frame (opcode 0x1).
    let publish = publish5("text/t", 0, 0, b"ascii");
    assert!(publish.is_ascii());
    s.write_all(&client_frame(true, 0x1, &publish, true)).await.unwrap();
    let mut disconnect = None;
    let code = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read_server_frame(&mut s).await {
                Some((_, 0x2, p)) if p.first() == Some(&0xE0) => disconnect = Some(p),
                Some((_, 0x8, p)) => return u16::from_be_bytes([p[0], p[1]]),
                Some(_) => {}
                None => panic!("closed without a close frame"),
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(code, 1003, "unsupported data");
    assert_eq!(disconnect.map(|p| p[2]), Some(0x82), "MQTT 5 DISCONNECT 0x82 first");
    assert_eq!(metric(b.addr("ws"), "ferry_mqtt_text_frames_total").await, Some(1.0));
    let (got, _) = read_to_end(&mut sub, Duration::from_millis(300)).await;
    assert!(!contains(&got, b"ascii"), "not routed: {got:?}");
}

// --- Host ---

#[tokio::test]
async fn requests_without_one_host_header_are_refused() {
    let b = broker_with(&[]);
    let addr = b.addr("ws");
    for (what, request) in [
        ("no Host", "GET /healthz HTTP/1.1\r\n\r\n".to_string()),
        ("two Hosts", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_string()),
        (
            "two Hosts, HTTP/1.0",
            "GET /metrics HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n".to_string(),
        ),
        (
            "an upgrade without Host",
            upgrade_request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n").replace("Host: 127.0.0.1\r\n", ""),
        ),
    ] {
        let resp = http_request(addr, &request).await;
        assert_eq!(resp.status, 400, "{what}");
        assert!(resp.body.contains("Host"), "{what}: one line saying why: {:?}", resp.body);
        assert_eq!(resp.body.lines().count(), 1, "{what}");
    }
    // HTTP/1.0 does not need one.
    let resp = http_request(addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(resp.status, 200);
    assert_eq!(http_request(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.status, 200);
}

// --- MQTT 5 wills and CONNECT limits ---

#[tokio::test]
async fn a_will_whose_delay_outlasts_its_session_goes_at_once() {
    let b = broker_with(&[]);
    let mut sub = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    sub.write_all(&connect5("will-watch", &[], None)).await.unwrap();
    read_until(&mut sub, &[0x20]).await;
    sub.write_all(&subscribe5(1, "wills/#", 1)).await.unwrap();
    read_until(&mut sub, &[0x90]).await;
    // Session expiry 0 (the default) and Will Delay Interval 5 s (property 0x18).
    let will_props = [0x18, 0, 0, 0, 5];
    let mut c = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    c.write_all(&connect5("will-short", &[], Some(("wills/short", &will_props, b"short-session"))))
        .await
        .unwrap();
    read_until(&mut c, &[0x20]).await;
    let dropped = Instant::now();
    drop(c);
    read_until(&mut sub, b"short-session").await;
    assert!(
        dropped.elapsed() < Duration::from_secs(3),
        "the will went when the session ended, not after 5 s"
    );
    // Session expiry 1 s (property 0x11), same will delay: the will goes after 1 s.
    let mut c = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    c.write_all(&connect5(
        "will-one",
        &[0x11, 0, 0, 0, 1],
        Some(("wills/one", &will_props, b"one-second-session")),
    ))
    .await
    .unwrap();
    read_until(&mut c, &[0x20]).await;
    let dropped = Instant::now();
    drop(c);
    read_until(&mut sub, b"one-second-session").await;
    let waited = dropped.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn an_oversized_mqtt5_connect_is_answered_with_connack_0x95() {
    let b = broker_with(&[("FERRY_MQTT__MAX_PACKET_SIZE_UNAUTHENTICATED", "100")]);
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    let big = connect5(&"x".repeat(200), &[], None);
    s.write_all(&big).await.unwrap();
    let (got, end) = read_to_end(&mut s, Duration::from_secs(5)).await;
    assert_eq!(got, [0x20, 0x03, 0x00, 0x95, 0x00], "CONNACK Packet too large");
    assert_eq!(end, End::Eof);
}

// --- RabbitMQ's STOMP destinations ---

async fn stomp_connect(s: &mut TcpStream) {
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0").await.unwrap();
    read_until(s, b"CONNECTED").await;
}

#[tokio::test]
async fn rabbitmq_destinations_over_tcp_and_websocket_reach_mqtt_and_stomp() {
    let b = broker_with(&[]);
    // MQTT sees /exchange/amq.topic/KEY as the topic KEY maps to.
    let mut mqtt = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    mqtt.write_all(&connect5("rmq-mqtt", &[], None)).await.unwrap();
    read_until(&mut mqtt, &[0x20]).await;
    mqtt.write_all(&subscribe5(1, "rmq/+", 0)).await.unwrap();
    read_until(&mut mqtt, &[0x90]).await;
    // A fan-out subscriber over WebSocket (text frames, stompjs's framing).
    let mut ws = TcpStream::connect(b.addr("ws")).await.unwrap();
    let resp = http_raw(&mut ws, &upgrade_request("/stomp", "Sec-WebSocket-Protocol: v12.stomp\r\n")).await;
    assert_eq!(resp.status, 101);
    ws.write_all(&client_frame(true, 0x1, b"CONNECT\naccept-version:1.2\nhost:/\n\n\0", true))
        .await
        .unwrap();
    read_until(&mut ws, b"CONNECTED").await;
    ws.write_all(&client_frame(
        true,
        0x1,
        b"SUBSCRIBE\nid:fan\ndestination:/exchange/amq.fanout\nreceipt:r\n\n\0",
        true,
    ))
    .await
    .unwrap();
    read_until(&mut ws, b"RECEIPT").await;
    // A queue consumer over TCP on /amq/queue/NAME.
    let mut worker = TcpStream::connect(b.addr("stomp")).await.unwrap();
    stomp_connect(&mut worker).await;
    worker
        .write_all(b"SUBSCRIBE\nid:w\ndestination:/amq/queue/rmq.jobs\nreceipt:r\n\n\0")
        .await
        .unwrap();
    read_until(&mut worker, b"RECEIPT").await;
    let mut sender = TcpStream::connect(b.addr("stomp")).await.unwrap();
    stomp_connect(&mut sender).await;
    sender
        .write_all(
            b"SEND\ndestination:/exchange/amq.topic/rmq.key\n\nto-mqtt\0\
              SEND\ndestination:/queue/rmq.jobs\n\nto-queue\0\
              SEND\ndestination:/exchange/amq.fanout/any.key\n\nto-fans\0",
        )
        .await
        .unwrap();
    read_until(&mut mqtt, b"to-mqtt").await;
    read_until(&mut worker, b"to-queue").await;
    let got = read_until(&mut ws, b"to-fans").await;
    assert!(
        contains(&got, b"destination:/exchange/amq.fanout\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // Another exchange: an ERROR naming the served ones.
    sender.write_all(b"SEND\ndestination:/exchange/amq.direct/x\n\nx\0").await.unwrap();
    let got = read_until(&mut sender, b"ERROR").await;
    let got = [got, read_to_end(&mut sender, Duration::from_secs(3)).await.0].concat();
    assert!(
        contains(&got, b"/exchange/amq.topic/KEY, /exchange/amq.fanout"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

// --- STOMP 1.1 ACK by message id ---

#[tokio::test]
async fn a_stomp_1_1_ack_naming_another_subscription_settles_over_websocket() {
    let b = broker_with(&[]);
    let mut ws = TcpStream::connect(b.addr("ws")).await.unwrap();
    let resp = http_raw(&mut ws, &upgrade_request("/stomp", "Sec-WebSocket-Protocol: v11.stomp\r\n")).await;
    assert_eq!(resp.status, 101);
    let send = |frame: &[u8]| client_frame(true, 0x1, frame, true);
    ws.write_all(&send(b"CONNECT\naccept-version:1.1\nhost:/\n\n\0")).await.unwrap();
    read_until(&mut ws, b"CONNECTED").await;
    ws.write_all(&send(
        b"SUBSCRIBE\nid:right\ndestination:/queue/ack11\nack:client-individual\nreceipt:s\n\n\0",
    ))
    .await
    .unwrap();
    read_until(&mut ws, b"RECEIPT").await;
    ws.write_all(&send(b"SEND\ndestination:/queue/ack11\n\nsettle-me\0")).await.unwrap();
    let got = read_until(&mut ws, b"settle-me").await;
    let text = String::from_utf8_lossy(&got);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("message-id:"))
        .expect("a message-id header")
        .to_owned();
    let ack = format!("ACK\nmessage-id:{id}\nsubscription:wrong\nreceipt:a\n\n\0");
    ws.write_all(&send(ack.as_bytes())).await.unwrap();
    let got = read_until(&mut ws, b"receipt-id:a").await;
    assert!(!contains(&got, b"ERROR"), "{:?}", String::from_utf8_lossy(&got));
    // Settled: a consumer after this connection gets nothing back.
    drop(ws);
    let mut next = TcpStream::connect(b.addr("stomp")).await.unwrap();
    stomp_connect(&mut next).await;
    next.write_all(b"SUBSCRIBE\nid:n\ndestination:/queue/ack11\n\n\0").await.unwrap();
    let (got, _) = read_to_end(&mut next, Duration::from_millis(500)).await;
    assert!(
        !contains(&got, b"settle-me"),
        "the ACKed message came back: {:?}",
        String::from_utf8_lossy(&got)
    );
}
