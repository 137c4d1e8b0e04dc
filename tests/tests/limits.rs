//! Limits under a flood: one source address (127.0.0.2) opens connections as fast as it
//! can, and one connection publishes as fast as it can, while a well-behaved pair on
//! 127.0.0.1 keeps exchanging messages. The flood trips the per-address rate and count
//! limits and the per-connection message rate; the good pair loses nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_testkit::mqtt::packet;
use ferry_testkit::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// An MQTT 3.1.1 (level 4) or 5 CONNECT with a clean session and `id`.
fn connect_packet(id: &str, v5: bool) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', if v5 { 5 } else { 4 }, 0x02, 0, 60];
    if v5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    packet(0x10, &body)
}

fn publish_qos0(topic: &str, payload: &[u8], v5: bool) -> Vec<u8> {
    let mut body = u16::try_from(topic.len()).unwrap().to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

fn subscribe(filter: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    body.extend_from_slice(&u16::try_from(filter.len()).unwrap().to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    body.push(0);
    packet(0x82, &body)
}

/// A TCP connection to `addr` from source address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// Reads until `n` bytes are in or the peer closes; `None` on close or after 5 s.
async fn read_exact_or_close(s: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0; n];
    match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Some(buf),
        _ => None,
    }
}

/// A connected MQTT 3.1.1 client on 127.0.0.1.
async fn good_client(addr: SocketAddr, id: &str) -> TcpStream {
    let mut s = connect_from("127.0.0.1", addr).await.unwrap();
    s.write_all(&connect_packet(id, false)).await.unwrap();
    assert_eq!(read_exact_or_close(&mut s, 4).await.unwrap(), [0x20, 2, 0, 0]);
    s
}

/// Publishes `n` QoS 0 messages on `topic` from `publisher`, each a 64-byte payload
/// starting with its number, and reads them back from `subscriber`; returns how many
/// arrived (in order) and the time taken.
async fn exchange(publisher: &mut TcpStream, subscriber: &mut TcpStream, topic: &str, n: u32) -> (u32, Duration) {
    let start = Instant::now();
    let expected = publish_qos0(topic, &[0u8; 64], false).len();
    let mut received = 0;
    for i in 0..n {
        let mut payload = [0u8; 64];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        publisher.write_all(&publish_qos0(topic, &payload, false)).await.unwrap();
        // One in flight at a time: the round trip is what the flood could slow down.
        let Some(got) = read_exact_or_close(subscriber, expected).await else {
            break;
        };
        if got[got.len() - 64..][..4] == i.to_be_bytes() {
            received += 1;
        }
    }
    (received, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_address_trips_its_limits_only() {
    let broker = Broker::start("[limits]\nconnection_rate = 50.0\nconnection_burst = 100\nmax_connections_per_address = 50\n");
    let mqtt = broker.addr("mqtt");
    let ws = broker.addr("ws");
    let mut sub = good_client(mqtt, "good-sub").await;
    sub.write_all(&subscribe("good/t")).await.unwrap();
    assert_eq!(read_exact_or_close(&mut sub, 5).await.unwrap()[0], 0x90);
    let mut publisher = good_client(mqtt, "good-pub").await;
    let (before, quiet) = exchange(&mut publisher, &mut sub, "good/t", 500).await;
    assert_eq!(before, 500);

    // The flood: 2,000 connection attempts from 127.0.0.2, each sending CONNECT and
    // holding on, 100 at a time.
    let flood = tokio::spawn(async move {
        let mut held = Vec::new();
        let (mut refused, mut accepted) = (0, 0);
        for round in 0..20 {
            let attempts = (0..100).map(|i| async move {
                let Ok(mut s) = connect_from("127.0.0.2", mqtt).await else {
                    return None;
                };
                let _ = s.write_all(&connect_packet(&format!("flood-{round}-{i}"), false)).await;
                match read_exact_or_close(&mut s, 4).await {
                    Some(ack) if ack == [0x20, 2, 0, 0] => Some(s),
                    _ => None,
                }
            });
            for s in futures_util::future::join_all(attempts).await {
                match s {
                    Some(s) => {
                        accepted += 1;
                        held.push(s);
                    }
                    None => refused += 1,
                }
            }
        }
        (accepted, refused, held)
    });
    let (during, loaded) = exchange(&mut publisher, &mut sub, "good/t", 500).await;
    let (accepted, refused, held) = flood.await.unwrap();
    assert_eq!(during, 500, "the good pair lost messages during the flood");
    assert!(accepted <= 50, "at most max_connections_per_address from one address: {accepted}");
    assert!(refused >= 1900, "{refused}");
    eprintln!("good pair: 500 round trips in {quiet:?} quiet, {loaded:?} during the flood; flood: {accepted} accepted, {refused} refused");
    // Other addresses still get in while 127.0.0.2 is blocked.
    let mut late = good_client(mqtt, "late").await;
    late.write_all(&[0xe0, 0]).await.unwrap();
    drop(held);
    let rate = metric(ws, "ferry_connections_refused_rate_limit_total").await.unwrap_or(0.0);
    let count = metric(ws, "ferry_connections_refused_address_limit_total").await.unwrap_or(0.0);
    assert!(rate + count >= 1900.0, "rate {rate}, count {count}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_over_its_message_rate_is_disconnected_with_0x96() {
    let broker = Broker::start("[limits]\nmessages_per_second = 100.0\nmessage_burst = 200\n");
    let mqtt = broker.addr("mqtt");
    let mut sub = good_client(mqtt, "sub").await;
    sub.write_all(&subscribe("good/t")).await.unwrap();
    assert_eq!(read_exact_or_close(&mut sub, 5).await.unwrap()[0], 0x90);
    let mut publisher = good_client(mqtt, "pub").await;

    let mut flooder = connect_from("127.0.0.2", mqtt).await.unwrap();
    flooder.write_all(&connect_packet("flooder", true)).await.unwrap();
    let mut ack = [0u8; 2];
    flooder.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack[0], 0x20);
    let mut rest = vec![0u8; usize::from(ack[1])];
    flooder.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest[1], 0, "CONNACK success");
    // 5,000 publishes at once: far past the burst of 200.
    let burst: Vec<u8> = (0..5000).flat_map(|_| publish_qos0("flood/t", b"x", true)).collect();
    let _ = flooder.write_all(&burst).await;
    let mut tail = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), flooder.read_to_end(&mut tail)).await;
    assert!(
        tail.windows(3).any(|w| w[0] == 0xe0 && w[2] == 0x96),
        "DISCONNECT 0x96 (message rate too high) before the close: {tail:02x?}"
    );
    // The good pair is untouched: its rate is its own.
    let (got, _) = exchange(&mut publisher, &mut sub, "good/t", 50).await;
    assert_eq!(got, 50);
    let closed = metric(broker.addr("ws"), "ferry_message_rate_exceeded_total").await;
    assert_eq!(closed, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_storm_from_one_address_is_paced_not_refused() {
    // 300 clients reconnecting at once from one address (a carrier NAT, a proxy) against
    // a rate of 100/s with bursts of 50: every one gets in, the last ones after a wait.
    let broker = Broker::start("[limits]\nconnection_rate = 100.0\nconnection_burst = 50\nconnection_max_wait = \"10s\"\n");
    let mqtt = broker.addr("mqtt");
    let attempts = (0..300).map(|i| async move {
        let mut s = connect_from("127.0.0.3", mqtt).await.ok()?;
        s.write_all(&connect_packet(&format!("storm-{i}"), false)).await.ok()?;
        let ack = tokio::time::timeout(Duration::from_secs(20), read_exact_or_close(&mut s, 4))
            .await
            .ok()??;
        (ack == [0x20, 2, 0, 0]).then_some(s)
    });
    let connected = futures_util::future::join_all(attempts).await;
    let accepted = connected.iter().filter(|s| s.is_some()).count();
    assert_eq!(accepted, 300, "every client of the storm is served");
    let ws = broker.addr("ws");
    assert_eq!(metric(ws, "ferry_connections_refused_rate_limit_total").await, Some(0.0));
    let paced = metric(ws, "ferry_connections_paced_total").await.unwrap_or(0.0);
    assert!(paced >= 200.0, "beyond the burst they were paced: {paced}");
}
