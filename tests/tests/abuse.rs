//! Hostile input: 1,000 connections that send garbage, stall mid-handshake or break the
//! WebSocket protocol, while a well-behaved client keeps exchanging messages. The good
//! client must not notice, the broker must drop every bad connection itself, and its
//! task and file-descriptor counts must return to where they were.

use std::time::{Duration, Instant};

use ferry_testkit::prelude::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 1000;

/// How a hostile connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The broker closed it.
    Closed,
    /// It could not connect at all.
    NoConnect,
    /// Still open after the wait.
    StillOpen,
}

/// One hostile connection of kind `i % 6`; returns once the broker has closed it.
async fn hostile(addr: std::net::SocketAddr, i: usize) -> (usize, Outcome) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (i % 6, Outcome::NoConnect);
    };
    match i % 6 {
        // Binary garbage instead of HTTP.
        0 => {
            let _ = s
                .write_all(&[0x16, 0x03, 0x01, 0xff, 0x00, 0xde, 0xad, 0xbe, 0xef, b'\r', b'\n', b'\r', b'\n'])
                .await;
        }
        // Half a request head, then silence (slow-loris).
        1 => {
            let _ = s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: webs").await;
        }
        // Connects and never speaks.
        2 => {}
        // Upgrades, then sends bytes that are no WebSocket frame (unmasked, reserved bits).
        3 => {
            let _ = http_raw(&mut s, &upgrade_request("/echo", "")).await;
            let _ = s.write_all(&[0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).await;
        }
        // Upgrades, announces a frame and stalls in the middle of it.
        4 => {
            let _ = http_raw(&mut s, &upgrade_request("/echo", "")).await;
            let frame = client_frame(true, 0x2, &[0u8; 200], true);
            let _ = s.write_all(&frame[..50]).await;
        }
        // A handshake with a broken key, then garbage.
        _ => {
            let req = upgrade_request("/echo", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "%%%");
            let _ = s.write_all(req.as_bytes()).await;
            let _ = s.write_all(b"\x00\x01\x02").await;
        }
    }
    let outcome = if closed_within(&mut s, Duration::from_secs(20)).await {
        Outcome::Closed
    } else {
        Outcome::StillOpen
    };
    (i % 6, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_bad_connections_leave_a_good_client_and_the_broker_unharmed() {
    let b = Broker::start_with(
        "[websocket]\necho_path = \"/echo\"\n",
        &[
            ("FERRY_LOG__LEVEL", "info"),
            ("FERRY_HTTP__HANDSHAKE_TIMEOUT", "1s"),
            ("FERRY_WEBSOCKET__PING_INTERVAL", "1s"),
            ("FERRY_WEBSOCKET__PING_TIMEOUT", "1s"),
            ("FERRY_WEBSOCKET__CLOSE_TIMEOUT", "1s"),
        ],
    );
    let addr = b.addr("ws");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tasks_before = metric(addr, "ferry_runtime_alive_tasks").await.unwrap();
    let fds_before = b.fd_count();

    // The good client: echo round trips for the whole run, each within a second.
    let (mut good, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo")).await.unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let good_client = tokio::spawn(async move {
        let mut round_trips = 0u32;
        let mut slowest = Duration::ZERO;
        loop {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            let started = Instant::now();
            good.send(Message::text(format!("message {round_trips}"))).await.unwrap();
            let echoed = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    match good.next().await {
                        Some(Ok(Message::Text(t))) => return t.to_string(),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        other => panic!("good client lost its connection: {other:?}"),
                    }
                }
            })
            .await
            .expect("a round trip took over a second");
            assert_eq!(echoed, format!("message {round_trips}"));
            round_trips += 1;
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        good.close(None).await.ok();
        (round_trips, slowest)
    });

    let flood = (0..CONNECTIONS).map(|i| tokio::spawn(hostile(addr, i))).collect::<Vec<_>>();
    let mut closed_by_broker = 0;
    let mut failures = Vec::new();
    for task in flood {
        match task.await.unwrap() {
            (_, Outcome::Closed) => closed_by_broker += 1,
            other => failures.push(other),
        }
    }
    stop_tx.send(()).unwrap();
    let (round_trips, slowest) = good_client.await.unwrap();
    assert_eq!(
        closed_by_broker, CONNECTIONS,
        "the broker drops every bad connection itself; (kind, outcome) of the others: {failures:?}"
    );
    assert!(round_trips > 20, "the good client kept going ({round_trips} round trips)");
    eprintln!("good client: {round_trips} round trips, slowest {slowest:?}");

    // Everything the flood made is gone again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let tasks = metric(addr, "ferry_runtime_alive_tasks").await.unwrap();
        let fds = b.fd_count();
        if tasks == tasks_before && fds == fds_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks {tasks} (before {tasks_before}), fds {fds} (before {fds_before})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!b.logs().iter().any(|l| l.contains("panicked")), "no panic");
}
