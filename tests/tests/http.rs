//! The HTTP listener and the WebSocket opening handshake (RFC 6455 §4.2), spoken as
//! raw HTTP/1.1 over TCP to the real broker.

use std::time::Duration;

use ferry_testkit::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const ECHO: &str = "[websocket]\necho_path = \"/echo\"\n";

#[tokio::test]
async fn healthz_answers_200_and_other_paths_404() {
    let b = Broker::start("");
    let ok = http_request(b.addr("ws"), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, "ok\n");
    let missing = http_request(b.addr("ws"), "GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(missing.status, 404);
    let metrics = http_request(b.addr("ws"), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("ferry_runtime_alive_tasks"), "{}", metrics.body);
}

#[tokio::test]
async fn malformed_handshakes_get_400_with_a_one_line_reason() {
    let b = Broker::start(ECHO);
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        ("no Upgrade", format!("GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"), "Upgrade"),
        ("wrong Upgrade", format!("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"), "Upgrade"),
        ("no Connection", format!("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"), "Connection"),
        ("no key", "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".to_string(), "Sec-WebSocket-Key"),
        ("short key", "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n".to_string(), "Sec-WebSocket-Key"),
        ("POST", format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"), "GET"),
    ];
    for (name, request, mentions) in cases {
        let resp = http_request(b.addr("ws"), &request).await;
        assert_eq!(resp.status, 400, "{name}: {resp:?}");
        assert_eq!(resp.body.trim_end().lines().count(), 1, "{name}: {resp:?}");
        assert!(resp.body.contains(mentions), "{name}: {resp:?}");
    }
    assert!(b.wait_log("WebSocket handshake refused", Duration::from_secs(2)));
    assert!(
        b.logs().iter().any(|l| l.contains("\"peer\":\"127.0.0.1:")),
        "refusals are logged with the peer"
    );
}

#[tokio::test]
async fn other_versions_get_426_naming_13() {
    let b = Broker::start(ECHO);
    for version in ["8", "14"] {
        let req = upgrade_request("/echo", "").replace("Sec-WebSocket-Version: 13", &format!("Sec-WebSocket-Version: {version}"));
        let resp = http_request(b.addr("ws"), &req).await;
        assert_eq!(resp.status, 426);
        assert_eq!(resp.header("sec-websocket-version"), Some("13"));
    }
}

#[tokio::test]
async fn rfc_sample_handshake_gets_the_rfc_accept_value() {
    let b = Broker::start(ECHO);
    let mut s = TcpStream::connect(b.addr("ws")).await.unwrap();
    let resp = http_raw(&mut s, &upgrade_request("/echo", "")).await;
    assert_eq!(resp.status, 101);
    // RFC 6455 §1.3: key "dGhlIHNhbXBsZSBub25jZQ==" → accept "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
    assert_eq!(resp.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_eq!(resp.header("upgrade").map(str::to_ascii_lowercase).as_deref(), Some("websocket"));
    assert_eq!(resp.header("sec-websocket-protocol"), None, "nothing offered, nothing echoed");
}

#[tokio::test]
async fn unserved_subprotocols_get_400_naming_the_served_ones() {
    let b = Broker::start("");
    let resp = http_request(b.addr("ws"), &upgrade_request("/", "Sec-WebSocket-Protocol: foo\r\n")).await;
    assert_eq!(resp.status, 400);
    assert!(resp.body.contains("accepts:"), "{resp:?}");
    assert_eq!(resp.header("sec-websocket-protocol"), None);
}

#[tokio::test]
async fn origins_outside_the_allow_list_get_403() {
    let b = Broker::start_with(
        ECHO,
        &[("FERRY_HTTP__ALLOWED_ORIGINS", "https://app.example,https://*.ferry.example")],
    );
    for (origin, status) in [
        ("Origin: https://evil.example\r\n", 403),
        ("Origin: https://app.example\r\n", 101),
        ("Origin: https://dash.ferry.example\r\n", 101),
        ("", 101),
    ] {
        let mut s = TcpStream::connect(b.addr("ws")).await.unwrap();
        let resp = http_raw(&mut s, &upgrade_request("/echo", origin)).await;
        assert_eq!(resp.status, status, "{origin:?}: {resp:?}");
    }
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let b = Broker::start("");
    let big = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let resp = http_request(b.addr("ws"), &big).await;
    assert_eq!(resp.status, 431);
}

#[tokio::test]
async fn stalled_handshakes_are_dropped_after_the_timeout() {
    let b = Broker::start_with("", &[("FERRY_HTTP__HANDSHAKE_TIMEOUT", "1s")]);
    // Connects and says nothing.
    let mut silent = TcpStream::connect(b.addr("ws")).await.unwrap();
    // Sends half a request head and stalls (slow-loris).
    let mut half = TcpStream::connect(b.addr("ws")).await.unwrap();
    half.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgr").await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "silent connection kept open"
    );
    assert!(closed_within(&mut half, Duration::from_secs(5)).await, "half-sent head kept open");
}
