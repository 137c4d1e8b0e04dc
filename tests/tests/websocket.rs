//! WebSocket sessions through the echo service: reassembly and its size cap, UTF-8,
//! masking, ping/pong, the idle ping and its timeout, the close handshake and the
//! graceful shutdown. Uses tokio-tungstenite as an independent client and raw frames
//! where a well-behaved client cannot express the case.

use std::time::Duration;

use ferry_testkit::prelude::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const ECHO: &str = "[websocket]\necho_path = \"/echo\"\nmax_message_size = 1024\n";

async fn raw_ws(b: &Broker) -> TcpStream {
    let mut s = TcpStream::connect(b.addr("ws")).await.unwrap();
    let resp = http_raw(&mut s, &upgrade_request("/echo", "")).await;
    assert_eq!(resp.status, 101);
    s
}

#[tokio::test]
async fn echo_returns_text_and_binary_messages() {
    let b = Broker::start(ECHO);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/echo", b.addr("ws")))
        .await
        .unwrap();
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("héllo"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn fragments_are_reassembled_into_one_message() {
    let b = Broker::start(ECHO);
    let mut s = raw_ws(&b).await;
    s.write_all(&client_frame(false, 0x1, b"Hel", true)).await.unwrap();
    s.write_all(&client_frame(true, 0x9, b"ping!", true)).await.unwrap();
    s.write_all(&client_frame(true, 0x0, b"lo", true)).await.unwrap();
    assert_eq!(
        read_server_frame(&mut s).await,
        Some((true, 0xA, b"ping!".to_vec())),
        "pong answers the ping"
    );
    assert_eq!(read_server_frame(&mut s).await, Some((true, 0x1, b"Hello".to_vec())));
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let b = Broker::start(ECHO);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/echo", b.addr("ws")))
        .await
        .unwrap();
    ws.send(Message::binary(vec![7u8; 1025])).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn fragments_adding_up_over_the_limit_close_with_1009() {
    let b = Broker::start(ECHO);
    let mut s = raw_ws(&b).await;
    s.write_all(&client_frame(false, 0x2, &[1u8; 400], true)).await.unwrap();
    for _ in 0..2 {
        s.write_all(&client_frame(false, 0x0, &[1u8; 400], true)).await.unwrap();
    }
    assert_eq!(expect_close(&mut s).await, Some(1009));
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let b = Broker::start(ECHO);
    let mut s = raw_ws(&b).await;
    s.write_all(&client_frame(true, 0x1, &[0xce, 0xba, 0xff, 0xfe], true))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut s).await, Some(1007));
}

#[tokio::test]
async fn unmasked_client_frames_close_with_1002() {
    let b = Broker::start(ECHO);
    let mut s = raw_ws(&b).await;
    s.write_all(&client_frame(true, 0x1, b"plain", false)).await.unwrap();
    assert_eq!(expect_close(&mut s).await, Some(1002));
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn reserved_opcodes_and_bits_close_with_1002() {
    let b = Broker::start(ECHO);
    for frame in [client_frame(true, 0x3, b"", true), {
        let mut f = client_frame(true, 0x1, b"x", true);
        f[0] |= 0x40; // RSV1 without an extension
        f
    }] {
        let mut s = raw_ws(&b).await;
        s.write_all(&frame).await.unwrap();
        assert_eq!(expect_close(&mut s).await, Some(1002));
    }
}

#[tokio::test]
async fn close_handshake_echoes_the_code_once_and_drops_tcp() {
    let b = Broker::start(ECHO);
    let mut s = raw_ws(&b).await;
    s.write_all(&client_frame(true, 0x8, &[0x03, 0xe8, b'b', b'y', b'e'], true))
        .await
        .unwrap();
    assert_eq!(read_server_frame(&mut s).await, Some((true, 0x8, vec![0x03, 0xe8])));
    // One close frame each way, then the server closes the TCP connection.
    assert_eq!(read_server_frame(&mut s).await, None);
}

#[tokio::test]
async fn idle_connections_are_pinged_and_silent_ones_closed() {
    let b = Broker::start_with(
        ECHO,
        &[
            ("FERRY_WEBSOCKET__PING_INTERVAL", "300ms"),
            ("FERRY_WEBSOCKET__PING_TIMEOUT", "500ms"),
        ],
    );
    // A client that keeps talking (and whose library answers pings as it reads) stays.
    let (mut alive, _) = tokio_tungstenite::connect_async(format!("ws://{}/echo", b.addr("ws")))
        .await
        .unwrap();
    let talker = tokio::spawn(async move {
        for _ in 0..6 {
            alive.send(Message::text("still here")).await.unwrap();
            loop {
                match alive.next().await.unwrap().unwrap() {
                    Message::Text(t) => {
                        assert_eq!(t.as_str(), "still here");
                        break;
                    }
                    Message::Ping(_) | Message::Pong(_) => continue,
                    other => panic!("unexpected {other:?}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // A raw client that never answers.
    let mut silent = raw_ws(&b).await;
    let first = tokio::time::timeout(Duration::from_secs(3), read_server_frame(&mut silent))
        .await
        .unwrap();
    assert_eq!(first.map(|f| f.1), Some(0x9), "the server pings after the idle time");
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "the silent client is dropped"
    );
    talker.await.unwrap();
}

#[tokio::test]
async fn sigterm_sends_1001_to_every_websocket_and_exits_0() {
    let mut b = Broker::start(ECHO);
    let url = format!("ws://{}/echo", b.addr("ws"));
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(tokio_tungstenite::connect_async(url.as_str()).await.unwrap().0);
    }
    b.signal_term();
    for ws in clients.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    let status = tokio::task::spawn_blocking(move || b.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
}

#[tokio::test]
async fn shutdown_gives_up_on_silent_peers_after_the_grace_period() {
    let mut b = Broker::start_with(
        ECHO,
        &[("FERRY_SHUTDOWN__GRACE_PERIOD", "1s"), ("FERRY_WEBSOCKET__CLOSE_TIMEOUT", "30s")],
    );
    // A raw client that will never answer the close frame.
    let mut silent = raw_ws(&b).await;
    b.signal_term();
    assert_eq!(expect_close(&mut silent).await, Some(1001));
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || b.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited after the grace period, not the close timeout"
    );
}
