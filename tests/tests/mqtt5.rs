//! MQTT 5 semantics end to end with rumqttc's v5 client, over TCP and WebSocket:
//! subscription identifiers, retain handling, message expiry, will delay, session
//! expiry, take-over reason codes, the client's maximum packet size, topic aliases.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_testkit::prelude::*;
use rumqttc::v5::mqttbytes::v5::{
    Filter, LastWill, LastWillProperties, Packet, Publish, PublishProperties, RetainForwardRule, SubscribeProperties,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Transport;
use tokio::sync::mpsc;

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

async fn start(o: MqttOptions) -> (Client, rumqttc::v5::mqttbytes::v5::ConnAck) {
    let (client, mut eventloop) = AsyncClient::new(o, 100);
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
    let mut c = Client { client, incoming, task };
    match c.next().await {
        Packet::ConnAck(ack) => (c, ack),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn connect(b: &Broker, id: &str, ws: bool) -> Client {
    start(options(b, id, ws)).await.0
}

impl Client {
    async fn next(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(5), self.incoming.recv())
            .await
            .expect("a packet in time")
            .expect("client running")
    }

    async fn publish(&mut self) -> Publish {
        loop {
            if let Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    async fn suback(&mut self) {
        while !matches!(self.next().await, Packet::SubAck(_)) {}
    }

    async fn quiet(&mut self, wait: Duration) -> bool {
        loop {
            match tokio::time::timeout(wait, self.incoming.recv()).await {
                Err(_) | Ok(None) => return true,
                Ok(Some(Packet::Publish(p))) => panic!("unexpected PUBLISH {p:?}"),
                Ok(Some(_)) => continue,
            }
        }
    }
}

fn broker() -> Broker {
    Broker::start_with("", &[("FERRY_LOG__LEVEL", "info")])
}

#[tokio::test]
async fn properties_and_subscription_identifiers_over_tcp_and_websocket() {
    let b = broker();
    for ws in [false, true] {
        let mut sub = connect(&b, &format!("v5sub-{ws}"), ws).await;
        let props = SubscribeProperties {
            id: Some(42),
            user_properties: vec![],
        };
        sub.client
            .subscribe_with_properties("v5/+/x", QoS::AtLeastOnce, props)
            .await
            .unwrap();
        sub.suback().await;
        let publisher = connect(&b, &format!("v5pub-{ws}"), ws).await;
        let props = PublishProperties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            ..Default::default()
        };
        publisher
            .client
            .publish_with_properties("v5/a/x", QoS::AtLeastOnce, false, "hello", props)
            .await
            .unwrap();
        let got = sub.publish().await;
        let p = got.properties.expect("properties");
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            p.user_properties,
            [("k".to_string(), "v".to_string()), ("k".to_string(), "w".to_string())],
            "order and repeats kept"
        );
        assert_eq!(p.subscription_identifiers, [42]);
    }
}

#[tokio::test]
async fn retain_handling_never_and_on_new_subscribe() {
    let b = broker();
    let publisher = connect(&b, "rh-pub", false).await;
    publisher.client.publish("rh/t", QoS::AtLeastOnce, true, "kept").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut never = connect(&b, "rh-never", false).await;
    let mut f = Filter::new("rh/t", QoS::AtLeastOnce);
    f.retain_forward_rule = RetainForwardRule::Never;
    never.client.subscribe_many([f]).await.unwrap();
    never.suback().await;
    assert!(never.quiet(Duration::from_millis(300)).await, "retain handling 2 sends nothing");
    let mut once = connect(&b, "rh-once", true).await;
    for round in 0..2 {
        let mut f = Filter::new("rh/t", QoS::AtLeastOnce);
        f.retain_forward_rule = RetainForwardRule::OnNewSubscribe;
        once.client.subscribe_many([f]).await.unwrap();
        once.suback().await;
        if round == 0 {
            assert!(once.publish().await.retain);
        } else {
            assert!(
                once.quiet(Duration::from_millis(300)).await,
                "not again for an existing subscription"
            );
        }
    }
}

#[tokio::test]
async fn expired_messages_are_not_delivered_and_the_remaining_interval_is_forwarded() {
    let b = broker();
    let publisher = connect(&b, "exp-pub", false).await;
    let short = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("exp/r", QoS::AtLeastOnce, true, "soon gone", short)
        .await
        .unwrap();
    let mut sub = connect(&b, "exp-sub", false).await;
    sub.client.subscribe("exp/live", QoS::AtLeastOnce).await.unwrap();
    sub.suback().await;
    let long = PublishProperties {
        message_expiry_interval: Some(100),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("exp/live", QoS::AtLeastOnce, false, "x", long)
        .await
        .unwrap();
    let left = sub.publish().await.properties.and_then(|p| p.message_expiry_interval);
    assert!(left.is_some_and(|s| (98..=100).contains(&s)), "{left:?}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut late = connect(&b, "exp-late", false).await;
    late.client.subscribe("exp/r", QoS::AtLeastOnce).await.unwrap();
    late.suback().await;
    assert!(late.quiet(Duration::from_millis(300)).await, "the expired retained message is gone");
}

#[tokio::test]
async fn will_delay_holds_the_will_and_a_quick_return_cancels_it() {
    let b = broker();
    let mut watcher = connect(&b, "wd-watch", false).await;
    watcher.client.subscribe("wd/#", QoS::AtLeastOnce).await.unwrap();
    watcher.suback().await;
    let will = |id: &str| {
        let props = LastWillProperties {
            delay_interval: Some(1),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
        };
        LastWill::new(format!("wd/{id}"), "gone", QoS::AtLeastOnce, false, Some(props))
    };
    for id in ["late", "back"] {
        let mut o = options(&b, id, false);
        o.set_last_will(will(id));
        o.set_session_expiry_interval(Some(60));
        let (c, _) = start(o).await;
        c.task.abort();
    }
    let dropped = Instant::now();
    // "back" returns before its delay is over: its will is cancelled.
    let mut o = options(&b, "back", false);
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(60));
    let (_back, ack) = start(o).await;
    assert!(ack.session_present);
    let will = watcher.publish().await;
    assert_eq!(will.topic, Bytes::from_static(b"wd/late"));
    assert!(
        dropped.elapsed() >= Duration::from_millis(900),
        "published after the delay, not at once"
    );
    assert!(
        watcher.quiet(Duration::from_millis(1500)).await,
        "no will for the client that came back"
    );
}

#[tokio::test]
async fn session_expiry_keeps_then_forgets_a_session() {
    let b = broker();
    for (expiry, present) in [(60, true), (1, false)] {
        let id = format!("se-{expiry}");
        let mut o = options(&b, &id, false);
        o.set_session_expiry_interval(Some(expiry));
        let (mut c, _) = start(o).await;
        c.client.subscribe("se/t", QoS::AtLeastOnce).await.unwrap();
        c.suback().await;
        c.client.disconnect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        c.task.abort();
        let mut o = options(&b, &id, true);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(expiry));
        let (_again, ack) = start(o).await;
        assert_eq!(ack.session_present, present, "expiry {expiry}s");
    }
}

#[tokio::test]
async fn take_over_sends_disconnect_0x8e_to_the_old_connection() {
    let b = broker();
    // rumqttc reports a server DISCONNECT as the error that ends its event loop.
    let (client, mut eventloop) = AsyncClient::new(options(&b, "v5twin", false), 10);
    let first = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Disconnect(d))) => return format!("{:?}", d.reason_code),
                Ok(_) => continue,
                Err(e) => return format!("{e:?}"),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _second = connect(&b, "v5twin", true).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), first).await.unwrap().unwrap();
    assert!(ended.contains("SessionTakenOver"), "{ended}");
    drop(client);
}

#[tokio::test]
async fn messages_over_the_clients_maximum_packet_size_are_not_sent_to_it() {
    let b = broker();
    let mut o = options(&b, "small", false);
    o.set_max_packet_size(Some(200));
    let (mut small, _) = start(o).await;
    small.client.subscribe("mps/t", QoS::AtMostOnce).await.unwrap();
    small.suback().await;
    let publisher = connect(&b, "mps-pub", false).await;
    publisher
        .client
        .publish("mps/t", QoS::AtMostOnce, false, vec![b'x'; 500])
        .await
        .unwrap();
    publisher.client.publish("mps/t", QoS::AtMostOnce, false, "small").await.unwrap();
    assert_eq!(small.publish().await.payload, Bytes::from_static(b"small"));
}

#[tokio::test]
async fn topic_aliases_from_the_client_are_resolved() {
    let b = broker();
    let mut sub = connect(&b, "alias-sub", false).await;
    sub.client.subscribe("alias/t", QoS::AtLeastOnce).await.unwrap();
    sub.suback().await;
    let publisher = connect(&b, "alias-pub", false).await;
    let set = PublishProperties {
        topic_alias: Some(3),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("alias/t", QoS::AtLeastOnce, false, "first", set)
        .await
        .unwrap();
    let used = PublishProperties {
        topic_alias: Some(3),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("", QoS::AtLeastOnce, false, "second", used)
        .await
        .unwrap();
    for expected in ["first", "second"] {
        let p = sub.publish().await;
        assert_eq!((p.topic, p.payload), (Bytes::from_static(b"alias/t"), Bytes::from(expected)));
    }
}

#[tokio::test]
async fn the_broker_uses_topic_aliases_toward_clients_that_accept_them() {
    let b = broker();
    let mut o = options(&b, "alias-in", false);
    o.set_topic_alias_max(Some(1));
    let (mut sub, _) = start(o).await;
    sub.client.subscribe("aliased/#", QoS::AtMostOnce).await.unwrap();
    sub.suback().await;
    let publisher = connect(&b, "alias-src", false).await;
    for topic in ["aliased/a", "aliased/a", "aliased/b"] {
        publisher.client.publish(topic, QoS::AtMostOnce, false, "x").await.unwrap();
    }
    let aliases: Vec<(Bytes, Option<u16>)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let p = sub.publish().await;
            v.push((p.topic, p.properties.and_then(|p| p.topic_alias)));
        }
        v
    };
    assert_eq!(
        aliases,
        [
            (Bytes::from_static(b"aliased/a"), Some(1)),
            (Bytes::new(), Some(1)),                  // the alias alone, no topic on the wire
            (Bytes::from_static(b"aliased/b"), None), // the client's maximum of one is used up
        ]
    );
}

#[tokio::test]
async fn the_clients_receive_maximum_limits_unacknowledged_deliveries() {
    let b = broker();
    let mut o = options(&b, "rm-sub", false);
    o.set_receive_maximum(Some(2));
    o.set_manual_acks(true);
    let (mut sub, _) = start(o).await;
    sub.client.subscribe("rm/t", QoS::AtLeastOnce).await.unwrap();
    sub.suback().await;
    let publisher = connect(&b, "rm-pub", false).await;
    for i in 0..5u8 {
        publisher.client.publish("rm/t", QoS::AtLeastOnce, false, vec![i]).await.unwrap();
    }
    let first = [sub.publish().await, sub.publish().await];
    assert!(
        sub.quiet(Duration::from_millis(400)).await,
        "no third message before an acknowledgement"
    );
    sub.client.ack(&first[0]).await.unwrap();
    assert_eq!(sub.publish().await.payload, Bytes::from(vec![2u8]), "one more after one PUBACK");
}

#[tokio::test]
async fn server_keep_alive_caps_what_the_client_asked_for() {
    let b = Broker::start_with("", &[("FERRY_LOG__LEVEL", "info"), ("FERRY_MQTT__MAX_KEEP_ALIVE", "20s")]);
    let mut o = options(&b, "ska", false);
    o.set_keep_alive(Duration::from_secs(120));
    let (_c, ack) = start(o).await;
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), Some(20));
}

/// An MQTT 5 CONNECT with a will (delay 0) on `will_topic`, clean start, keep-alive
/// `keep_alive` seconds, built byte by byte.
fn connect_with_will(client_id: &str, will_topic: &str, keep_alive: u16) -> Vec<u8> {
    let string = |s: &str| {
        let mut v = u16::try_from(s.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut body = string("MQTT");
    body.push(5);
    body.push(0x02 | 0x04); // clean start, will flag, will QoS 0
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.push(0); // no properties
    body.extend(string(client_id));
    body.push(0); // no will properties
    body.extend(string(will_topic));
    body.extend(string("gone"));
    let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
    packet.extend(body);
    packet
}

/// Issue 11, item 3, over WebSocket: a client with keep-alive 2 s and a will goes
/// silent (it sends nothing, reads nothing, and so never answers the close frame that
/// follows the broker's DISCONNECT 0x8D). Its will goes out when the keep-alive runs
/// out (1.5 × 2 s), not after the close handshake's timeout on top of it.
#[tokio::test]
async fn the_will_of_a_silent_websocket_client_goes_out_when_its_keep_alive_runs_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = broker();
    let mut watcher = connect(&b, "ka-watch", false).await;
    watcher.client.subscribe("ka/#", QoS::AtLeastOnce).await.unwrap();
    watcher.suback().await;
    let mut ws = tokio::net::TcpStream::connect(b.addr("ws")).await.unwrap();
    ws.write_all(upgrade_request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(ws.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    ws.write_all(&client_frame(true, 0x2, &connect_with_will("ka-silent", "ka/silent", 2), true))
        .await
        .unwrap();
    let (_, opcode, connack) = read_server_frame(&mut ws).await.expect("CONNACK");
    assert_eq!((opcode, connack[0]), (0x2, 0x20), "a CONNACK in a binary frame");
    let silent = Instant::now();
    // From here the client neither writes nor reads.
    let will = watcher.publish().await;
    assert_eq!(will.topic, Bytes::from_static(b"ka/silent"));
    assert!(
        silent.elapsed() < Duration::from_millis(4500),
        "the will came {:?} after the client went silent",
        silent.elapsed()
    );
    drop(ws);
}
