//! HTTP messaging on the public listener, end to end: `POST /api/v1/publish` (EMQX's
//! body; 200/202/400/401/403/413), and Server-Sent Events at `GET /api/v1/events`
//! (retained first, live messages from MQTT, heartbeats, the ACL, the Origin check).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_testkit::gatekeeper::light_hash;
use ferry_testkit::mqtt::{packet, string as mqtt_string};
use ferry_testkit::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn post(addr: SocketAddr, auth: Option<&str>, body: &str) -> (u16, Value) {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = http_request(addr, &req).await;
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}

/// Opens an event stream; returns the socket after the response head (chunked body next).
async fn events(addr: SocketAddr, query: &str, extra: &str) -> (u16, TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /api/v1/events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, s, head)
}

/// Reads the stream until `needle` appears (or 5 s pass); returns what was read.
async fn read_until(s: &mut TcpStream, seen: &mut String, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => return false,
        }
    }
    true
}

/// An MQTT 3.1.1 client: connects, subscribes to `filter` if given, reads CONNACK/SUBACK.
async fn mqtt(addr: SocketAddr, id: &str, filter: Option<&str>) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut c = mqtt_string("MQTT");
    c.extend_from_slice(&[4, 0x02, 0, 60]);
    c.extend(mqtt_string(id));
    s.write_all(&packet(0x10, &c)).await.unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0]);
    if let Some(f) = filter {
        let mut sub = vec![0, 1];
        sub.extend(mqtt_string(f));
        sub.push(0);
        s.write_all(&packet(0x82, &sub)).await.unwrap();
        let mut ack = [0u8; 5];
        s.read_exact(&mut ack).await.unwrap();
        assert_eq!(ack[0], 0x90);
    }
    s
}

#[tokio::test]
async fn publish_answers_200_to_a_matched_topic_202_otherwise_and_clear_errors() {
    let b = Broker::start("[http_api]\nmax_payload = 16\nmax_body = 2048\n");
    let ws = b.addr("ws");
    let mut sub = mqtt(b.addr("mqtt"), "listener", Some("room/+/temp")).await;
    let (status, v) = post(
        ws,
        None,
        r#"{"topic":"room/1/temp","payload":"MjEuNQ==","payload_encoding":"base64","qos":1,"properties":{"content_type":"text/plain"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["id"].is_string());
    let mut got = vec![0u8; 2 + 2 + 11 + 4];
    tokio::time::timeout(Duration::from_secs(5), sub.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[4..15], b"room/1/temp");
    assert_eq!(&got[15..], b"21.5", "the base64 payload decoded");
    let (status, v) = post(ws, None, r#"{"topic":"nobody/here","payload":"x"}"#).await;
    assert_eq!(
        (status, v["reason_code"].as_u64(), v["message"].as_str()),
        (202, Some(16), Some("no_matching_subscribers"))
    );
    for (body, status, code, says) in [
        ("{nope", 400, "bad_request", "bad JSON"),
        (r#"{"topic":"a/#","payload":"x"}"#, 400, "bad_request", "bad topic"),
        (r#"{"topic":"a","qos":7}"#, 400, "bad_request", "qos"),
        (
            r#"{"topic":"a","payload":"far more than sixteen bytes"}"#,
            413,
            "payload_too_large",
            "http_api.max_payload",
        ),
    ] {
        let (s, v) = post(ws, None, body).await;
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{v}");
    }
    let big = format!(r#"{{"topic":"a","payload":"{}"}}"#, "x".repeat(4096));
    let (s, v) = post(ws, None, &big).await;
    assert_eq!((s, v["error"].as_str()), (413, Some("payload_too_large")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("http_api.max_body"));
    let r = http_request(ws, "GET /api/v1/publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.status, 405);
}

fn auth_files(dir: &std::path::Path) -> String {
    let users = format!("ann:{}\n", light_hash("pw"));
    let passwd = write_file(dir, "passwd", &users);
    let acl = write_file(dir, "acl", "user ann\ntopic readwrite ann/#\ntopic read $SYS/#\n");
    format!("[auth]\nallow_anonymous = false\npassword_file = {passwd:?}\nacl_file = {acl:?}\n[auth.failed_auth]\nmax_failures = 0\n")
}

#[tokio::test]
async fn publish_and_events_use_the_brokers_credentials_and_acl() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(&auth_files(dir.path()));
    let ws = b.addr("ws");
    let ann = "Basic YW5uOnB3"; // ann:pw
    let (s, v) = post(ws, None, r#"{"topic":"ann/x","payload":"1"}"#).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")), "{v}");
    let (s, _) = post(ws, Some("Basic YW5uOm5v"), r#"{"topic":"ann/x","payload":"1"}"#).await;
    assert_eq!(s, 401, "wrong password");
    let (s, v) = post(ws, Some(ann), r#"{"topic":"ann/x","payload":"1"}"#).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = post(ws, Some(ann), r#"{"topic":"bob/x","payload":"1"}"#).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("not_authorized")), "{v}");
    let (status, _, _) = events(ws, "topic=ann/%23", "").await;
    assert_eq!(status, 401);
    let (status, _, _) = events(ws, "topic=bob/%23", &format!("Authorization: {ann}\r\n")).await;
    assert_eq!(status, 403, "the ACL refuses the filter");
    let (status, mut s, _) = events(ws, "topic=ann/%23", &format!("Authorization: {ann}\r\n")).await;
    assert_eq!(status, 200);
    post(ws, Some(ann), r#"{"topic":"ann/y","payload":"hello ann"}"#).await;
    let mut seen = String::new();
    assert!(read_until(&mut s, &mut seen, "hello ann").await, "{seen}");
}

#[tokio::test]
async fn events_send_retained_messages_first_then_live_ones_and_heartbeats() {
    let b = Broker::start("[http_api]\nsse_heartbeat = \"300ms\"\n[http]\nallowed_origins = [\"https://app.example\"]\n");
    let ws = b.addr("ws");
    let (s, _) = post(ws, None, r#"{"topic":"dev/1/state","payload":"on","retain":true}"#).await;
    assert_eq!(s, 202);
    let (status, _, _) = events(ws, "topic=dev/%23", "Origin: https://evil.example\r\n").await;
    assert_eq!(status, 403, "an Origin outside http.allowed_origins is refused");
    let (status, _, _) = events(ws, "nothing=1", "").await;
    assert_eq!(status, 400);
    let (status, mut s, head) = events(ws, "topic=dev/%23&topic=other/%2B", "Origin: https://app.example\r\n").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    let mut seen = String::new();
    assert!(read_until(&mut s, &mut seen, "\"topic\":\"dev/1/state\"").await, "{seen}");
    assert!(seen.contains("event: message\nid: "), "{seen}");
    assert!(seen.contains("\"retain\":true"), "retained first: {seen}");
    let mut publisher = mqtt(b.addr("mqtt"), "pub", None).await;
    let mut p = mqtt_string("other/x");
    p.extend_from_slice(b"{\"t\":21}");
    publisher.write_all(&packet(0x30, &p)).await.unwrap();
    assert!(read_until(&mut s, &mut seen, "other/x").await, "{seen}");
    assert!(seen.contains(r#""payload":"{\"t\":21}""#), "{seen}");
    assert!(read_until(&mut s, &mut seen, ": heartbeat").await, "{seen}");
    let metrics = metric(ws, "ferry_sse_streams").await;
    assert_eq!(metrics, Some(1.0));
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(ws, "ferry_sse_streams").await != Some(0.0) {
        assert!(Instant::now() < deadline, "a closed stream unsubscribes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
