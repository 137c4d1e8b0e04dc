//! STOMP end to end against the real broker: raw frames over TCP (the 61613 listener)
//! and over WebSocket (tokio-tungstenite), answers read with Ferry's own codec, and
//! MQTT clients (rumqttc v5) on the same broker for the cross-protocol cases. Each test
//! names the behaviour it checks.

use std::time::Duration;

use bytes::Bytes;
use ferry_stomp::codec::{Command, Decoded, Frame, Version};
use ferry_testkit::prelude::*;
use ferry_testkit::stomp::Stomp;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

fn h<'f>(f: &'f Frame, name: &str) -> &'f str {
    f.header(name)
        .unwrap_or_else(|| panic!("{} has no {name}: {:?}", f.command, f.headers))
}

fn body(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

fn broker() -> Broker {
    Broker::start_with("", &[("FERRY_LOG__LEVEL", "info")])
}

async fn connected_tcp(b: &Broker) -> Stomp {
    let mut c = Stomp::tcp(b).await;
    c.connect("1.2").await;
    c
}

/// An error frame, then the connection closes.
async fn expect_error(c: &mut Stomp, message: &str, body_has: &str) -> Frame {
    let frames = c.until_closed().await;
    let e = frames.last().unwrap_or_else(|| panic!("no ERROR frame"));
    assert_eq!(e.command, Command::Error, "{frames:?}");
    assert_eq!(h(e, "message"), message);
    assert!(body(e).contains(body_has), "{:?} should say {body_has:?}", body(e));
    e.clone()
}

#[tokio::test]
async fn tcp_session_connect_subscribe_send_receipt_disconnect() {
    let b = broker();
    let mut sub = Stomp::tcp(&b).await;
    let connected = sub.connect("1.0,1.1,1.2").await;
    assert_eq!(h(&connected, "version"), "1.2");
    assert!(h(&connected, "server").starts_with("Ferry/"));
    assert!(!h(&connected, "session").is_empty());
    assert_eq!(h(&connected, "heart-beat"), "10000,10000");
    sub.with_receipt("SUBSCRIBE\nid:0\ndestination:/topic/news.#", "", "sub-0").await;
    let mut publisher = connected_tcp(&b).await;
    publisher
        .with_receipt(
            "SEND\ndestination:/topic/news.eu.fr\ncontent-type:text/plain\nx-lang:fr",
            "bonjour",
            "send-1",
        )
        .await;
    let m = sub.frame().await;
    assert_eq!(m.command, Command::Message);
    assert_eq!(h(&m, "destination"), "/topic/news.eu.fr");
    assert_eq!(h(&m, "subscription"), "0");
    assert_eq!(h(&m, "content-type"), "text/plain");
    assert_eq!(h(&m, "content-length"), "7");
    assert_eq!(h(&m, "x-lang"), "fr");
    assert_eq!(body(&m), "bonjour");
    sub.send("DISCONNECT\nreceipt:bye\n\n\0").await;
    let rest = sub.until_closed().await;
    assert_eq!(rest.len(), 1);
    assert_eq!(h(&rest[0], "receipt-id"), "bye");
}

#[tokio::test]
async fn stomp_1_0_and_1_1_sessions_work_with_their_own_rules() {
    let b = broker();
    let mut old = Stomp::tcp(&b).await;
    old.send("CONNECT\n\n\0").await;
    let f = old.frame().await;
    assert_eq!(h(&f, "version"), "1.0");
    old.decoder.set_version(Version::V1_0);
    // 1.0: SUBSCRIBE without id; the destination names the subscription.
    old.with_receipt("SUBSCRIBE\ndestination:/queue/old\nack:client", "", "r").await;
    let mut p = connected_tcp(&b).await;
    p.with_receipt("SEND\ndestination:/queue/old", "one", "s").await;
    let m = old.frame().await;
    assert_eq!(h(&m, "subscription"), "/queue/old");
    old.with_receipt(&format!("ACK\nmessage-id:{}", h(&m, "message-id")), "", "a").await;
    let mut v11 = Stomp::tcp(&b).await;
    v11.connect("1.1").await;
    v11.with_receipt("SUBSCRIBE\nid:s\ndestination:/queue/v11\nack:client-individual", "", "r")
        .await;
    p.with_receipt("SEND\ndestination:/queue/v11\nweird:a\\cb", "x", "s2").await;
    let m = v11.frame().await;
    assert_eq!(h(&m, "weird"), "a:b", "1.1 escapes round-trip");
    assert!(m.header("ack").is_none());
    v11.with_receipt(&format!("ACK\nmessage-id:{}\nsubscription:s", h(&m, "message-id")), "", "a")
        .await;
}

#[tokio::test]
async fn websocket_picks_v12_stomp_and_sends_text_or_binary_as_the_body_requires() {
    let b = broker();
    let (mut c, chosen) = Stomp::ws(&b, "v10.stomp, v11.stomp, v12.stomp").await;
    assert_eq!(chosen.as_deref(), Some("v12.stomp"));
    c.connect("1.2").await;
    c.with_receipt("SUBSCRIBE\nid:1\ndestination:/topic/ws.kind", "", "r").await;
    let mut p = connected_tcp(&b).await;
    p.with_receipt("SEND\ndestination:/topic/ws.kind", "héllo", "a").await;
    p.send(&b"SEND\ndestination:/topic/ws.kind\ncontent-length:4\nreceipt:b\n\n\x00\xff\x01\xfe\0"[..])
        .await;
    assert_eq!(p.frame().await.command, Command::Receipt);
    assert_eq!(body(&c.frame().await), "héllo");
    let m = c.frame().await;
    assert_eq!(&m.body[..], b"\x00\xff\x01\xfe", "binary body byte for byte");
    assert_eq!(
        c.binary,
        [false, false, false, true],
        "CONNECTED, RECEIPT, text MESSAGE, binary MESSAGE"
    );
}

#[tokio::test]
async fn a_websocket_without_subprotocol_is_recognised_from_its_connect() {
    let b = broker();
    let (mut c, chosen) = Stomp::ws(&b, "").await;
    assert_eq!(chosen, None);
    c.send("\nCONNECT\naccept-version:1.2\n\n\0").await;
    assert_eq!(c.frame().await.command, Command::Connected);
}

#[tokio::test]
async fn one_frame_split_over_websocket_messages_and_several_frames_in_one() {
    let b = broker();
    let (mut c, _) = Stomp::ws(&b, "v12.stomp").await;
    c.connect("1.2").await;
    c.with_receipt("SUBSCRIBE\nid:1\ndestination:/topic/big", "", "r").await;
    let big = "x".repeat(100_000);
    let frame = format!("SEND\ndestination:/topic/big\nreceipt:big\n\n{big}\0");
    for chunk in frame.as_bytes().chunks(8192) {
        c.send(chunk).await;
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(c.frame().await);
    }
    got.sort_by_key(|f| f.command == Command::Message);
    assert_eq!(got[0].command, Command::Receipt);
    assert_eq!(got[1].body.len(), 100_000);
    c.send("SEND\ndestination:/topic/big\n\na\0SEND\ndestination:/topic/big\n\nb\0")
        .await;
    assert_eq!(body(&c.frame().await), "a");
    assert_eq!(body(&c.frame().await), "b");
}

#[tokio::test]
async fn the_three_ack_modes_and_nack_redelivery() {
    let b = broker();
    let mut c = connected_tcp(&b).await;
    c.with_receipt("SUBSCRIBE\nid:auto\ndestination:/queue/m.auto", "", "1").await;
    c.with_receipt(
        "SUBSCRIBE\nid:cl\ndestination:/queue/m.client\nack:client\nprefetch-count:2",
        "",
        "2",
    )
    .await;
    c.with_receipt(
        "SUBSCRIBE\nid:ind\ndestination:/queue/m.ind\nack:client-individual\nprefetch-count:2",
        "",
        "3",
    )
    .await;
    let mut p = connected_tcp(&b).await;
    for q in ["m.auto", "m.client", "m.ind"] {
        for n in 1..=3 {
            p.send(format!("SEND\ndestination:/queue/{q}\n\n{q}-{n}\0")).await;
        }
    }
    p.with_receipt("SEND\ndestination:/topic/sync", "", "sent").await;
    // auto: all three; client and client-individual: two each (the window).
    let mut got = Vec::new();
    for _ in 0..7 {
        got.push(c.frame().await);
    }
    c.quiet().await;
    let of = |sub: &str| got.iter().filter(|m| h(m, "subscription") == sub).cloned().collect::<Vec<_>>();
    assert_eq!(of("auto").len(), 3);
    assert!(of("auto").iter().all(|m| m.header("ack").is_none()));
    let client = of("cl");
    let individual = of("ind");
    assert_eq!((client.len(), individual.len()), (2, 2));
    // client: ACK of the second acknowledges both: the third comes.
    c.send(format!("ACK\nid:{}\n\n\0", h(&client[1], "ack"))).await;
    assert_eq!(body(&c.frame().await), "m.client-3");
    // client-individual: NACK the first: it comes back redelivered; ACK the second.
    c.send(format!("NACK\nid:{}\n\n\0", h(&individual[0], "ack"))).await;
    let again = c.frame().await;
    assert_eq!(body(&again), "m.ind-1");
    assert_eq!(h(&again, "redelivered"), "true");
    c.send(format!("ACK\nid:{}\n\n\0", h(&individual[1], "ack"))).await;
    assert_eq!(body(&c.frame().await), "m.ind-3");
}

#[tokio::test]
async fn a_queue_shares_round_robin_and_redelivers_what_a_closed_connection_left() {
    let b = broker();
    let mut a = connected_tcp(&b).await;
    let mut c = connected_tcp(&b).await;
    a.with_receipt("SUBSCRIBE\nid:a\ndestination:/queue/work\nack:client\nprefetch-count:1", "", "r")
        .await;
    c.with_receipt("SUBSCRIBE\nid:c\ndestination:/queue/work\nack:client\nprefetch-count:1", "", "r")
        .await;
    let mut p = connected_tcp(&b).await;
    for n in 1..=4 {
        p.with_receipt("SEND\ndestination:/queue/work", &format!("job{n}"), &format!("s{n}"))
            .await;
    }
    let first_a = a.frame().await;
    let first_c = c.frame().await;
    let mut firsts = [body(&first_a), body(&first_c)];
    firsts.sort();
    assert_eq!(firsts, ["job1", "job2"], "one each, round-robin");
    a.quiet().await;
    // c drops without acking: its job goes back, marked redelivered. Whether a gets it
    // before or after job3 depends on when the broker sees c's socket close.
    drop(c);
    let mut ack = h(&first_a, "ack").to_owned();
    let mut seen = Vec::new();
    for _ in 0..3 {
        a.send(format!("ACK\nid:{ack}\n\n\0")).await;
        let next = a.frame().await;
        seen.push(body(&next).to_owned());
        if body(&next) == body(&first_c) {
            assert_eq!(h(&next, "redelivered"), "true");
            return;
        }
        ack = h(&next, "ack").to_owned();
    }
    panic!("c's job never came back: got {seen:?}");
}

#[tokio::test]
async fn queue_messages_wait_for_a_consumer() {
    let b = broker();
    let mut p = connected_tcp(&b).await;
    p.with_receipt("SEND\ndestination:/queue/later", "kept", "s").await;
    p.send("DISCONNECT\n\n\0").await;
    let mut c = connected_tcp(&b).await;
    c.send("SUBSCRIBE\nid:1\ndestination:/queue/later\n\n\0").await;
    assert_eq!(body(&c.frame().await), "kept");
}

#[tokio::test]
async fn request_reply_through_a_temp_queue() {
    let b = broker();
    let mut server = connected_tcp(&b).await;
    server.with_receipt("SUBSCRIBE\nid:rpc\ndestination:/queue/rpc", "", "r").await;
    let mut client = connected_tcp(&b).await;
    client
        .with_receipt("SUBSCRIBE\nid:answers\ndestination:/temp-queue/a", "", "r")
        .await;
    client.send("SEND\ndestination:/queue/rpc\nreply-to:/temp-queue/a\n\n2+2\0").await;
    let req = server.frame().await;
    let reply_to = h(&req, "reply-to").to_owned();
    assert!(reply_to.starts_with("/reply-queue/"), "{reply_to}");
    server.send(format!("SEND\ndestination:{reply_to}\n\n4\0")).await;
    let answer = client.frame().await;
    assert_eq!(body(&answer), "4");
    assert_eq!(h(&answer, "subscription"), "answers");
    server.send(format!("SUBSCRIBE\nid:steal\ndestination:{reply_to}\n\n\0")).await;
    expect_error(&mut server, "invalid destination", "reply queue").await;
}

#[tokio::test]
async fn transactions_take_effect_on_commit_and_abort_drops() {
    let b = broker();
    let mut sub = connected_tcp(&b).await;
    sub.with_receipt("SUBSCRIBE\nid:1\ndestination:/topic/tx", "", "r").await;
    let mut p = connected_tcp(&b).await;
    p.send("BEGIN\ntransaction:t\n\n\0SEND\ndestination:/topic/tx\ntransaction:t\n\nin-tx\0")
        .await;
    p.with_receipt("SEND\ndestination:/topic/tx", "outside", "o").await;
    assert_eq!(body(&sub.frame().await), "outside", "the transactional SEND waits");
    p.with_receipt("COMMIT\ntransaction:t", "", "c").await;
    assert_eq!(body(&sub.frame().await), "in-tx");
    p.send("BEGIN\ntransaction:u\n\n\0SEND\ndestination:/topic/tx\ntransaction:u\n\ndropped\0")
        .await;
    p.with_receipt("ABORT\ntransaction:u", "", "a").await;
    p.with_receipt("SEND\ndestination:/topic/tx", "after", "z").await;
    assert_eq!(body(&sub.frame().await), "after");
}

#[tokio::test]
async fn heart_beats_flow_both_ways_and_a_silent_client_is_closed() {
    let b = Broker::start_with(
        "",
        &[
            ("FERRY_LOG__LEVEL", "info"),
            ("FERRY_STOMP__HEART_BEAT_SEND", "100ms"),
            ("FERRY_STOMP__HEART_BEAT_RECEIVE", "200ms"),
        ],
    );
    // A client that wants heart-beats every 100 ms and sends none.
    let mut c = Stomp::tcp(&b).await;
    c.send("CONNECT\naccept-version:1.2\nheart-beat:0,100\n\n\0").await;
    let f = c.frame().await;
    assert_eq!(h(&f, "heart-beat"), "100,200");
    let mut beats = 0;
    while beats < 3 {
        match c.item().await {
            Some(Decoded::HeartBeat) => beats += 1,
            other => panic!("expected heart-beats, got {other:?}"),
        }
    }
    // A client that promises one every 100 ms and goes silent: closed after 2 × 200 ms.
    let mut silent = Stomp::tcp(&b).await;
    silent.send("CONNECT\naccept-version:1.2\nheart-beat:100,0\n\n\0").await;
    silent.frame().await;
    let started = std::time::Instant::now();
    expect_error(&mut silent, "heart-beat timeout", "400ms").await;
    assert!(started.elapsed() >= Duration::from_millis(350));
    // One that keeps sending EOLs stays.
    let mut alive = Stomp::tcp(&b).await;
    alive.send("CONNECT\naccept-version:1.2\nheart-beat:100,0\n\n\0").await;
    alive.frame().await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive.send("\n").await;
    }
    alive.with_receipt("SEND\ndestination:/topic/hb", "", "still-here").await;
}

#[tokio::test]
async fn protocol_errors_get_an_error_frame_then_close() {
    let b = Broker::start_with("", &[("FERRY_LOG__LEVEL", "info"), ("FERRY_STOMP__MAX_BODY", "16")]);
    let cases: [(&str, &[u8], &str, &str); 7] = [
        (
            "before CONNECT",
            b"SEND\ndestination:/topic/a\n\n\0",
            "not connected",
            "before CONNECT",
        ),
        (
            "unknown command",
            b"CONNECT\n\n\0HELLO\n\n\0",
            "malformed frame received",
            "unknown command",
        ),
        (
            "bad escape",
            b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/topic/a\nx:\\q\n\n\0",
            "malformed frame received",
            "undefined escape",
        ),
        (
            "body over the limit",
            b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/topic/a\n\n01234567890123456789\0",
            "frame too large",
            "16 octets",
        ),
        (
            "missing header",
            b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\n\n\0",
            "missing required header",
            "destination",
        ),
        (
            // Settled by message id whatever the subscription says: only the id matters.
            "unknown message id in ACK",
            b"CONNECT\naccept-version:1.1\n\n\0ACK\nmessage-id:m\nsubscription:nope\n\n\0",
            "unknown message id",
            "\"m\"",
        ),
        (
            "bad destination",
            b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/nowhere/x\n\n\0",
            "invalid destination",
            "/topic/, /queue/, /temp-queue/",
        ),
    ];
    for (what, bytes, message, says) in cases {
        let mut c = Stomp::tcp(&b).await;
        c.send(bytes).await;
        let frames = c.until_closed().await;
        let e = frames.last().unwrap_or_else(|| panic!("{what}: no ERROR"));
        assert_eq!(e.command, Command::Error, "{what}: {frames:?}");
        assert_eq!(h(e, "message"), message, "{what}");
        assert!(body(e).contains(says), "{what}: {:?}", body(e));
    }
    let mut c = Stomp::tcp(&b).await;
    c.send("CONNECT\naccept-version:3.0\n\n\0").await;
    let e = expect_error(&mut c, "supported protocol versions are 1.0,1.1,1.2", "3.0").await;
    assert_eq!(h(&e, "version"), "1.0,1.1,1.2");
}

#[tokio::test]
async fn websocket_errors_close_with_a_close_frame() {
    let b = broker();
    let (mut c, _) = Stomp::ws(&b, "v12.stomp").await;
    c.send("SEND\ndestination:/topic/a\n\n\0").await;
    expect_error(&mut c, "not connected", "before CONNECT").await;
}

/// Issue 11, item 5: a STOMP 1.0 client over WebSocket whose frames come cut as a
/// TCP-to-WebSocket bridge forwards them (one message per read; no subprotocol, so the
/// broker sniffs; text or binary), auto ack: SUBSCRIBE a queue (with and without `id`),
/// wait 1 s, SEND one message, receive it, UNSUBSCRIBE (by `id`, or by destination as
/// 1.0 allows). Nothing more may arrive: not on this connection within the next seconds,
/// and not for the next consumer of the queue (an auto-acked message is settled once
/// written). The same over TCP, cut the same way.
#[tokio::test]
async fn a_stomp_1_0_queue_message_is_delivered_once_and_nothing_follows_its_unsubscribe() {
    let b = broker();
    let run = |link: &'static str, with_id: bool, chunk: usize, binary: bool| {
        let b = &b;
        async move {
            let queue = format!("/queue/once.{link}.{with_id}.{chunk}.{binary}");
            let mut c = match link {
                "tcp" => Stomp::tcp(b).await,
                _ => Stomp::ws(b, "").await.0,
            };
            c.send_split("CONNECT\nhost:/\n\n\0", chunk, binary).await;
            let connected = c.frame().await;
            assert_eq!(connected.command, Command::Connected, "{connected:?}");
            c.decoder.set_version(Version::V1_0);
            let sub = if with_id {
                format!("SUBSCRIBE\nid:1\ndestination:{queue}\nack:auto\n\n\0")
            } else {
                format!("SUBSCRIBE\ndestination:{queue}\nack:auto\n\n\0")
            };
            c.send_split(sub, chunk, binary).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.send_split(format!("SEND\ndestination:{queue}\n\nonly once\0"), chunk, binary)
                .await;
            let m = c.frame().await;
            assert_eq!((m.command, body(&m).as_str()), (Command::Message, "only once"), "{link} {m:?}");
            let unsub = if with_id {
                "UNSUBSCRIBE\nid:1\nreceipt:u\n\n\0".to_owned()
            } else {
                format!("UNSUBSCRIBE\ndestination:{queue}\nreceipt:u\n\n\0")
            };
            c.send_split(unsub, chunk, binary).await;
            let after = c.frames_within(Duration::from_secs(3)).await;
            let commands: Vec<Command> = after.iter().map(|f| f.command).collect();
            assert_eq!(
                commands,
                [Command::Receipt],
                "{link}, id {with_id}, pieces of {chunk}, binary {binary}: after UNSUBSCRIBE only its RECEIPT: {after:?}"
            );
            c.send_split("DISCONNECT\nreceipt:bye\n\n\0", chunk, binary).await;
            assert_eq!(c.frame().await.command, Command::Receipt);
            // The queue holds nothing: the next consumer gets nothing.
            let mut next = connected_tcp(b).await;
            next.with_receipt(&format!("SUBSCRIBE\nid:n\ndestination:{queue}"), "", "r").await;
            let late = next.frames_within(Duration::from_secs(1)).await;
            assert!(late.is_empty(), "{link}: the queue gave the message again: {late:?}");
        }
    };
    let mut runs = Vec::new();
    for link in ["ws", "tcp"] {
        for with_id in [false, true] {
            for (chunk, binary) in [(1, false), (7, true), (4096, false)] {
                runs.push(run(link, with_id, chunk, binary));
            }
        }
    }
    futures_util::future::join_all(runs).await;
}

/// A WebSocket consumer of a queue whose connection is closing (it sent DISCONNECT; the
/// broker sent its close frame, and the peer never answers it) takes no more of the
/// queue's messages: they go at once, in order, to the consumers left, not after
/// `websocket.close_timeout` when the closing connection finally goes. Over TCP a
/// closing connection goes at once; over WebSocket its session used to live on until
/// the close handshake ended, holding half of the queue's messages.
#[tokio::test]
async fn a_closing_websocket_consumer_leaves_the_queue_to_the_others_at_once() {
    let b = broker();
    let (mut old, _) = Stomp::ws(&b, "v12.stomp").await;
    old.connect("1.2").await;
    old.with_receipt("SUBSCRIBE\nid:o\ndestination:/queue/handover", "", "r").await;
    // DISCONNECT, then read nothing more: the close frame that follows the RECEIPT is
    // never read, so never answered, and the connection stays open on our side.
    old.with_receipt("DISCONNECT", "", "bye").await;
    let mut new = connected_tcp(&b).await;
    new.with_receipt("SUBSCRIBE\nid:n\ndestination:/queue/handover", "", "r").await;
    let mut p = connected_tcp(&b).await;
    for n in 0..4 {
        p.with_receipt("SEND\ndestination:/queue/handover", &format!("job{n}"), &format!("s{n}"))
            .await;
    }
    let got = new.frames_within(Duration::from_secs(2)).await;
    let bodies: Vec<String> = got.iter().map(body).collect();
    assert_eq!(bodies, ["job0", "job1", "job2", "job3"], "all of them, at once and in order");
    drop(old);
}

#[tokio::test]
async fn shutdown_sends_an_error_frame() {
    let mut b = broker();
    let mut c = connected_tcp(&b).await;
    b.signal_term();
    expect_error(&mut c, "server shutting down", "shutting down").await;
    assert!(b.wait_exit(Duration::from_secs(15)).is_some());
}

// --- across protocols ---

struct Mqtt {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
}

async fn mqtt(b: &Broker, id: &str) -> Mqtt {
    let addr = b.addr("mqtt");
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(p) = event {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    let mut m = Mqtt { client, incoming };
    assert!(matches!(m.next().await, Packet::ConnAck(_)));
    m
}

impl Mqtt {
    async fn next(&mut self) -> Packet {
        tokio::time::timeout(WAIT, self.incoming.recv())
            .await
            .expect("a packet in time")
            .expect("running")
    }

    async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        while !matches!(self.next().await, Packet::SubAck(_)) {}
    }

    async fn publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        loop {
            if let Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }
}

#[tokio::test]
async fn an_mqtt_publish_reaches_stomp_topic_subscribers_byte_for_byte() {
    let b = broker();
    let mut s = connected_tcp(&b).await;
    for (id, dest) in [("exact", "sensors.room1.temp"), ("one", "sensors.*.temp"), ("all", "sensors.#")] {
        s.with_receipt(&format!("SUBSCRIBE\nid:{id}\ndestination:/topic/{dest}"), "", id)
            .await;
    }
    let m = mqtt(&b, "m-pub").await;
    let payload = Bytes::from_static(b"\x00\x01\x02 21.5\xff");
    let props = PublishProperties {
        content_type: Some("application/octet-stream".into()),
        user_properties: vec![("unit".into(), "C".into())],
        ..Default::default()
    };
    m.client
        .publish_with_properties("sensors/room1/temp", QoS::AtLeastOnce, false, payload.clone(), props)
        .await
        .unwrap();
    let mut subs = Vec::new();
    for _ in 0..3 {
        let f = s.frame().await;
        assert_eq!(f.body, payload);
        assert_eq!(h(&f, "destination"), "/topic/sensors.room1.temp");
        assert_eq!(h(&f, "content-length"), payload.len().to_string());
        assert_eq!(h(&f, "content-type"), "application/octet-stream");
        assert_eq!(h(&f, "unit"), "C");
        subs.push(h(&f, "subscription").to_owned());
    }
    subs.sort();
    assert_eq!(subs, ["all", "exact", "one"]);
}

#[tokio::test]
async fn a_stomp_send_reaches_mqtt_subscribers_with_headers_as_user_properties() {
    let b = broker();
    let mut subs = Vec::new();
    for (i, filter) in ["sensors/room1/temp", "sensors/+/temp", "sensors/#"].iter().enumerate() {
        let mut m = mqtt(&b, &format!("m-sub-{i}")).await;
        m.subscribe(filter).await;
        subs.push(m);
    }
    let mut s = connected_tcp(&b).await;
    s.with_receipt(
        "SEND\ndestination:/topic/sensors.room1.temp\ncontent-type:application/json\nx-site:lab",
        "{\"t\":21.5}",
        "s",
    )
    .await;
    for m in &mut subs {
        let p = m.publish().await;
        assert_eq!(&p.topic[..], b"sensors/room1/temp");
        assert_eq!(&p.payload[..], b"{\"t\":21.5}");
        assert_eq!(p.qos, QoS::AtLeastOnce);
        let props = p.properties.expect("MQTT 5 properties");
        assert_eq!(props.content_type.as_deref(), Some("application/json"));
        assert_eq!(props.user_properties, [("x-site".to_owned(), "lab".to_owned())]);
    }
}

#[tokio::test]
async fn retained_mqtt_messages_reach_a_new_stomp_subscriber() {
    let b = broker();
    let mut m = mqtt(&b, "m-ret").await;
    m.client.publish("lamps/kitchen", QoS::AtLeastOnce, true, "on").await.unwrap();
    while !matches!(m.next().await, Packet::PubAck(_)) {}
    let mut s = connected_tcp(&b).await;
    s.with_receipt("SUBSCRIBE\nid:1\ndestination:/topic/lamps.*", "", "r").await;
    let f = s.frame().await;
    assert_eq!(body(&f), "on");
    assert_eq!(h(&f, "destination"), "/topic/lamps.kitchen");
}

#[tokio::test]
async fn a_client_ack_subscription_gets_mqtt_qos1_messages_again_until_acked() {
    let b = broker();
    let mut s = connected_tcp(&b).await;
    s.with_receipt("SUBSCRIBE\nid:1\ndestination:/topic/orders.#\nack:client-individual", "", "r")
        .await;
    let m = mqtt(&b, "m-q1").await;
    m.client.publish("orders/42", QoS::AtLeastOnce, false, "new").await.unwrap();
    let first = s.frame().await;
    s.send(format!("NACK\nid:{}\n\n\0", h(&first, "ack"))).await;
    let again = s.frame().await;
    assert_eq!(body(&again), "new");
    assert_eq!(h(&again, "redelivered"), "true");
    s.with_receipt(&format!("ACK\nid:{}", h(&again, "ack")), "", "done").await;
    s.quiet().await;
}
