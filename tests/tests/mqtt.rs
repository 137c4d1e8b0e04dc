//! MQTT end to end with an independent client (rumqttc, v4 = 3.1.1 and v5) against
//! the real broker, over TCP and WebSocket, plus raw bytes where a well-behaved client
//! cannot express the case. Each test names the behaviour it checks.

use std::time::Duration;

use ferry_testkit::prelude::*;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A rumqttc v4 client whose incoming packets arrive on a channel.
struct Client {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
    task: tokio::task::JoinHandle<()>,
}

fn options(b: &Broker, id: &str, ws: bool) -> MqttOptions {
    let mut o = if ws {
        let addr = b.addr("ws");
        let mut o = MqttOptions::new(id, format!("ws://{addr}/mqtt"), addr.port());
        o.set_transport(Transport::Ws);
        o
    } else {
        let addr = b.addr("mqtt");
        MqttOptions::new(id, addr.ip().to_string(), addr.port())
    };
    o.set_keep_alive(Duration::from_secs(10));
    o
}

fn spawn(client: AsyncClient, mut eventloop: EventLoop) -> Client {
    let (tx, incoming) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(p) = event {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    Client { client, incoming, task }
}

async fn connect(b: &Broker, id: &str, ws: bool, clean: bool) -> Client {
    let mut o = options(b, id, ws);
    o.set_clean_session(clean);
    let (client, eventloop) = AsyncClient::new(o, 100);
    let mut c = spawn(client, eventloop);
    match c.next().await {
        Packet::ConnAck(ack) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    c
}

impl Client {
    async fn next(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(5), self.incoming.recv())
            .await
            .expect("a packet in time")
            .expect("client running")
    }

    /// The next PUBLISH, skipping acks.
    async fn publish(&mut self) -> rumqttc::Publish {
        loop {
            if let Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        loop {
            if let Packet::SubAck(ack) = self.next().await {
                return ack.return_codes;
            }
        }
    }

    /// Nothing arrives for a while.
    async fn quiet(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_millis(300), self.incoming.recv()).await {
                Err(_) => return true,
                Ok(Some(Packet::Publish(p))) => panic!("unexpected PUBLISH {p:?}"),
                Ok(Some(_)) => continue,
                Ok(None) => return true,
            }
        }
    }
}

fn broker() -> Broker {
    Broker::start_with("", &[("FERRY_LOG__LEVEL", "info")])
}

#[tokio::test]
async fn qos_0_1_2_round_trip_over_tcp_and_websocket_with_qos_min_of_published_and_granted() {
    let b = broker();
    for ws in [false, true] {
        let mut sub = connect(&b, &format!("sub-{ws}"), ws, true).await;
        let codes = sub.subscribe("room/+/temp", QoS::ExactlyOnce).await;
        assert_eq!(codes, [rumqttc::SubscribeReasonCode::Success(QoS::ExactlyOnce)]);
        let mut low = connect(&b, &format!("low-{ws}"), ws, true).await;
        low.subscribe("room/#", QoS::AtMostOnce).await;
        let publisher = connect(&b, &format!("pub-{ws}"), ws, true).await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            publisher
                .client
                .publish("room/1/temp", qos, false, format!("{qos:?}"))
                .await
                .unwrap();
            let got = sub.publish().await;
            assert_eq!(
                (got.topic.as_str(), got.qos, got.payload.as_ref()),
                ("room/1/temp", qos, format!("{qos:?}").as_bytes())
            );
            assert_eq!(low.publish().await.qos, QoS::AtMostOnce, "granted QoS 0 caps the delivery");
        }
    }
}

#[tokio::test]
async fn messages_from_one_publisher_arrive_in_order() {
    let b = broker();
    let mut sub = connect(&b, "order-sub", false, true).await;
    sub.subscribe("seq", QoS::AtLeastOnce).await;
    let publisher = connect(&b, "order-pub", true, true).await;
    let p = publisher.client.clone();
    tokio::spawn(async move {
        for i in 0..500u32 {
            p.publish("seq", QoS::AtLeastOnce, false, i.to_be_bytes().to_vec()).await.unwrap();
        }
    });
    for i in 0..500u32 {
        assert_eq!(sub.publish().await.payload.as_ref(), i.to_be_bytes());
    }
}

#[tokio::test]
async fn retained_messages_are_sent_on_subscribe_and_deleted_by_an_empty_payload() {
    let b = broker();
    let publisher = connect(&b, "ret-pub", false, true).await;
    publisher.client.publish("status/a", QoS::AtLeastOnce, true, "up").await.unwrap();
    publisher.client.publish("status/b", QoS::AtMostOnce, true, "down").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sub = connect(&b, "ret-sub", true, true).await;
    sub.subscribe("status/+", QoS::AtLeastOnce).await;
    let mut got = [sub.publish().await, sub.publish().await];
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert!(got.iter().all(|p| p.retain), "retained copies carry the retain flag");
    assert_eq!(got[0].payload.as_ref(), b"up");
    // A live publish with retain set reaches existing subscribers without the flag.
    publisher.client.publish("status/a", QoS::AtMostOnce, true, "").await.unwrap();
    let live = sub.publish().await;
    assert!(!live.retain);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = connect(&b, "ret-late", false, true).await;
    late.subscribe("status/#", QoS::AtMostOnce).await;
    assert_eq!(late.publish().await.topic, "status/b", "status/a was deleted");
    assert!(late.quiet().await);
}

#[tokio::test]
async fn will_is_published_on_socket_loss_not_on_disconnect() {
    let b = broker();
    let mut watcher = connect(&b, "watcher", false, true).await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    for (id, graceful) in [("dies", false), ("leaves", true)] {
        let mut o = options(&b, id, false);
        o.set_last_will(rumqttc::LastWill::new(format!("wills/{id}"), "gone", QoS::AtLeastOnce, false));
        let (client, eventloop) = AsyncClient::new(o, 10);
        let mut c = spawn(client, eventloop);
        assert!(matches!(c.next().await, Packet::ConnAck(_)));
        if graceful {
            c.client.disconnect().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.task.abort();
        } else {
            c.task.abort(); // The socket closes without DISCONNECT.
        }
    }
    let will = watcher.publish().await;
    assert_eq!((will.topic.as_str(), will.payload.as_ref()), ("wills/dies", &b"gone"[..]));
    assert!(watcher.quiet().await, "no will after DISCONNECT");
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_queued_messages_while_away() {
    let b = broker();
    let mut sub = connect(&b, "durable", false, false).await;
    sub.subscribe("jobs", QoS::AtLeastOnce).await;
    sub.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub.task.abort();
    let publisher = connect(&b, "jobs-pub", false, true).await;
    for i in 0..3 {
        publisher
            .client
            .publish("jobs", QoS::AtLeastOnce, false, format!("job {i}"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut o = options(&b, "durable", true);
    o.set_clean_session(false);
    let (client, eventloop) = AsyncClient::new(o, 10);
    let mut back = spawn(client, eventloop);
    match back.next().await {
        Packet::ConnAck(ack) => assert!(ack.session_present, "session present on resume"),
        other => panic!("{other:?}"),
    }
    for i in 0..3 {
        assert_eq!(back.publish().await.payload.as_ref(), format!("job {i}").as_bytes());
    }
    // Clean session discards it.
    let clean = connect(&b, "durable", false, true).await;
    drop(clean);
}

#[tokio::test]
async fn the_same_client_id_takes_the_session_over() {
    let b = broker();
    let mut first = connect(&b, "twin", false, true).await;
    let _second = connect(&b, "twin", true, true).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if first.incoming.recv().await.is_none() {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the first connection was closed");
}

/// An MQTT 3.1.1 CONNECT with `keep_alive` seconds and client id "raw".
fn raw_connect(keep_alive: u16) -> Vec<u8> {
    let mut v = vec![0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02];
    v.extend_from_slice(&keep_alive.to_be_bytes());
    v.extend_from_slice(&[0, 3, b'r', b'a', b'w']);
    v
}

#[tokio::test]
async fn silent_clients_are_closed_after_one_and_a_half_keep_alives() {
    let b = broker();
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    s.write_all(&raw_connect(1)).await.unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    let started = std::time::Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "closed too early: {waited:?}");
}

#[tokio::test]
async fn pingreq_gets_pingresp_and_packets_before_connect_close_the_socket() {
    let b = broker();
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    s.write_all(&raw_connect(30)).await.unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    s.write_all(&[0xC0, 0x00]).await.unwrap();
    let mut pingresp = [0u8; 2];
    s.read_exact(&mut pingresp).await.unwrap();
    assert_eq!(pingresp, [0xD0, 0x00]);
    // A second CONNECT is a protocol violation: the socket closes.
    s.write_all(&raw_connect(30)).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    // PINGREQ before CONNECT.
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    s.write_all(&[0xC0, 0x00]).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn mqtt_3_1_clients_are_accepted_and_unknown_versions_refused() {
    let b = broker();
    // MQTT 3.1: protocol name MQIsdp, level 3.
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    let mut v = vec![0x10, 17, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 30];
    v.extend_from_slice(&[0, 3, b'o', b'l', b'd']);
    s.write_all(&v).await.unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    // Level 2: MQTT 3.1.1's CONNACK 0x01 unacceptable protocol version, then close.
    // Level 6: a newer client gets MQTT 5's CONNACK 0x84 unsupported protocol version.
    for (level, expected) in [(2u8, &[0x20u8, 0x02, 0x00, 0x01][..]), (6, &[0x20, 0x03, 0x00, 0x84, 0x00])] {
        let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
        let mut bad = raw_connect(30);
        bad[8] = level;
        s.write_all(&bad).await.unwrap();
        let mut refused = vec![0u8; expected.len()];
        s.read_exact(&mut refused).await.unwrap();
        assert_eq!(refused, expected, "level {level}");
        assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    }
}

#[tokio::test]
async fn malformed_filters_are_refused_by_closing_the_connection() {
    // `sport+`, `a/#/b`, `sport/tennis#` break MQTT §4.7.1's wildcard rules: a malformed
    // SUBSCRIBE, so the connection closes (as Mosquitto does). rumqttc will not even
    // send them, hence raw packets.
    let b = broker();
    for filter in [&b"sport+"[..], b"a/#/b", b"sport/tennis#"] {
        let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
        s.write_all(&raw_connect(30)).await.unwrap();
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack).await.unwrap();
        let mut sub = vec![0x82, (5 + filter.len()) as u8, 0, 1, 0, filter.len() as u8];
        sub.extend_from_slice(filter);
        sub.push(0);
        s.write_all(&sub).await.unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(3)).await,
            "{}",
            String::from_utf8_lossy(filter)
        );
    }
    // A valid wildcard filter on the same broker is granted.
    let mut c = connect(&b, "good-filter", false, true).await;
    assert_eq!(
        c.subscribe("sport/+/player1/#", QoS::AtLeastOnce).await,
        [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
}

#[tokio::test]
async fn malformed_packets_close_only_their_connection() {
    let b = broker();
    let mut good = connect(&b, "bystander", false, true).await;
    good.subscribe("still/here", QoS::AtLeastOnce).await;
    for garbage in [
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01][..], // remaining length over four bytes
        &[0x36, 0x00],                             // PUBLISH with QoS 3
        &[0x10, 0x02, 0x00, 0x00],                 // truncated CONNECT
    ] {
        let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
        s.write_all(garbage).await.unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(3)).await, "{garbage:?}");
    }
    // After CONNECT: a PUBLISH to a wildcard topic closes the socket (MQTT 3.1.1).
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    s.write_all(&raw_connect(30)).await.unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    s.write_all(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+']).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    let publisher = connect(&b, "after", false, true).await;
    publisher
        .client
        .publish("still/here", QoS::AtLeastOnce, false, "fine")
        .await
        .unwrap();
    assert_eq!(good.publish().await.payload.as_ref(), b"fine");
}

#[tokio::test]
async fn metrics_count_connects_publishes_and_queue_drops() {
    // A queue of one QoS 0 message per session: a subscriber that is not read drops the rest.
    let b = Broker::start_with("", &[("FERRY_LOG__LEVEL", "info"), ("FERRY_MQTT__MAX_QUEUED_QOS0", "1")]);
    let mut sub = connect(&b, "metrics-sub", false, true).await;
    sub.subscribe("m/t", QoS::AtMostOnce).await;
    let publisher = connect(&b, "metrics-pub", false, true).await;
    for _ in 0..20 {
        publisher.client.publish("m/t", QoS::AtMostOnce, false, "x").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ws = b.addr("ws");
    assert!(metric(ws, "ferry_mqtt_connects_total").await.unwrap() >= 2.0);
    assert_eq!(metric(ws, "ferry_messages_published_total").await, Some(20.0));
    assert_eq!(metric(ws, "ferry_subscriptions ").await, Some(1.0));
    let delivered = metric(ws, "ferry_deliveries_total").await.unwrap();
    let dropped = metric(ws, "ferry_deliveries_dropped_total").await.unwrap();
    assert_eq!(delivered + dropped, 20.0);
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_loses_only_its_own_qos0_messages() {
    // 24 MiB of traffic: more than the kernel's socket buffers and the slow session's
    // small QoS 0 queue can hold.
    let b = Broker::start_with("", &[("FERRY_LOG__LEVEL", "info"), ("FERRY_MQTT__MAX_QUEUED_QOS0", "10")]);
    // The slow one: subscribes at QoS 0, then never reads its socket again.
    let mut slow = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    slow.write_all(&raw_connect(0)).await.unwrap();
    let mut connack = [0u8; 4];
    slow.read_exact(&mut connack).await.unwrap();
    slow.write_all(&[0x82, 0x0b, 0, 1, 0, 6, b's', b'l', b'o', b'w', b'/', b't', 0])
        .await
        .unwrap();
    let mut suback = [0u8; 5];
    slow.read_exact(&mut suback).await.unwrap();
    // The good one subscribes at QoS 1 and reads everything.
    let mut good = connect(&b, "fast-reader", false, true).await;
    good.subscribe("slow/t", QoS::AtLeastOnce).await;
    let publisher = connect(&b, "slow-pub", true, true).await;
    let p = publisher.client.clone();
    const N: u32 = 3000;
    tokio::spawn(async move {
        for i in 0..N {
            let mut payload = vec![0u8; 8192];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            p.publish("slow/t", QoS::AtLeastOnce, false, payload).await.unwrap();
        }
    });
    for i in 0..N {
        let got = good.publish().await;
        assert_eq!(&got.payload[..4], i.to_be_bytes(), "in order, none lost");
    }
    let dropped = metric(b.addr("ws"), "ferry_deliveries_dropped_total").await.unwrap();
    assert!(dropped > 0.0, "the slow subscriber's queue overflowed and was counted");
    drop(slow);
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_after_a_reconnect() {
    let b = broker();
    let mut o = options(&b, "dup-sub", false);
    o.set_clean_session(false);
    o.set_manual_acks(true);
    let (client, eventloop) = AsyncClient::new(o.clone(), 10);
    let mut sub = spawn(client, eventloop);
    assert!(matches!(sub.next().await, Packet::ConnAck(_)));
    sub.subscribe("dup/t", QoS::AtLeastOnce).await;
    let publisher = connect(&b, "dup-pub", false, true).await;
    publisher.client.publish("dup/t", QoS::AtLeastOnce, false, "once").await.unwrap();
    let first = sub.publish().await;
    assert!(!first.dup);
    sub.task.abort(); // gone without PUBACK
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (client, eventloop) = AsyncClient::new(o, 10);
    let mut back = spawn(client, eventloop);
    assert!(matches!(back.next().await, Packet::ConnAck(ack) if ack.session_present));
    let again = back.publish().await;
    assert_eq!((again.payload.as_ref(), again.dup, again.pkid), (&b"once"[..], true, first.pkid));
}

#[tokio::test]
async fn a_qos2_publish_sent_twice_before_pubrel_is_delivered_once() {
    let b = broker();
    let mut sub = connect(&b, "q2-sub", false, true).await;
    sub.subscribe("q2/t", QoS::ExactlyOnce).await;
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    s.write_all(&raw_connect(30)).await.unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    let publish = |dup: u8| vec![0x34 | dup, 9, 0, 4, b'q', b'2', b'/', b't', 0, 7, b'x'];
    for dup in [0, 0x08] {
        s.write_all(&publish(dup)).await.unwrap();
        let mut pubrec = [0u8; 4];
        s.read_exact(&mut pubrec).await.unwrap();
        assert_eq!(pubrec, [0x50, 2, 0, 7]);
    }
    s.write_all(&[0x62, 2, 0, 7]).await.unwrap();
    let mut pubcomp = [0u8; 4];
    s.read_exact(&mut pubcomp).await.unwrap();
    assert_eq!(pubcomp, [0x70, 2, 0, 7]);
    assert_eq!(sub.publish().await.payload.as_ref(), b"x");
    assert!(sub.quiet().await, "exactly once");
}

/// An MQTT 5 CONNECT with `keep_alive` seconds and client id "v5r".
fn raw_connect_v5(keep_alive: u16) -> Vec<u8> {
    let mut v = vec![0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02];
    v.extend_from_slice(&keep_alive.to_be_bytes());
    v.extend_from_slice(&[0, 0, 3, b'v', b'5', b'r']);
    v
}

/// Read one packet: (first byte, body).
async fn read_packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
    ferry_testkit::mqtt::read_packet(s).await.expect("a packet within 5 s")
}

#[tokio::test]
async fn mqtt5_server_disconnects_carry_the_reason_code() {
    let b = Broker::start_with("", &[("FERRY_LOG__LEVEL", "info"), ("FERRY_MQTT__MAX_PACKET_SIZE", "100")]);
    // (what the client does, the DISCONNECT reason it gets)
    let qos3 = vec![0x36, 0x00];
    let mut too_large = vec![0x30, 0x80, 0x02, 0, 1, b't', 0];
    too_large.extend(std::iter::repeat_n(b'x', 252));
    for (send, reason, name) in [
        (qos3, 0x81u8, "malformed: QoS 3"),
        (too_large, 0x95, "packet too large"),
        (vec![], 0x8D, "keep alive timeout"),
    ] {
        let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
        s.write_all(&raw_connect_v5(1)).await.unwrap();
        let (kind, connack) = read_packet(&mut s).await;
        assert_eq!((kind, connack[1]), (0x20, 0x00), "{name}: accepted");
        s.write_all(&send).await.unwrap();
        let (kind, disconnect) = read_packet(&mut s).await;
        assert_eq!((kind, disconnect[0]), (0xE0, reason), "{name}");
        assert!(
            closed_within(&mut s, Duration::from_secs(3)).await,
            "{name}: closed after DISCONNECT"
        );
    }
}

#[tokio::test]
async fn a_retained_will_is_kept_for_later_subscribers_at_its_qos() {
    let b = broker();
    let mut o = options(&b, "retained-will", false);
    o.set_last_will(rumqttc::LastWill::new("status/device7", "offline", QoS::AtLeastOnce, true));
    let (client, eventloop) = AsyncClient::new(o, 10);
    let mut c = spawn(client, eventloop);
    assert!(matches!(c.next().await, Packet::ConnAck(_)));
    c.task.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut later = connect(&b, "later", false, true).await;
    later.subscribe("status/+", QoS::AtLeastOnce).await;
    let will = later.publish().await;
    assert_eq!(
        (will.payload.as_ref(), will.retain, will.qos),
        (&b"offline"[..], true, QoS::AtLeastOnce)
    );
}

#[tokio::test]
async fn an_empty_client_id_without_clean_session_gets_connack_0x02() {
    let b = broker();
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    // MQTT 3.1.1 CONNECT, clean session 0, empty client id.
    s.write_all(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x00, 0, 30, 0, 0])
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x02]);
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
}
