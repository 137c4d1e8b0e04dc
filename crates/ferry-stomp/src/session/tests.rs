//! The session driven in memory: frames in, frames out, time passed by hand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_auth::CoreParts;
use ferry_core::{
    Carrier, CloseRequest, Connection, ConnectionInfo, Delivery, Input, Message, MessageKind, Outbox, OutboxLimits, Output, Properties,
    QoS, Router, SubscribeOptions, Subscriber, Subscription, TopicName, TransportCredentials, Wakeup,
};

use super::StompConnection;
use crate::codec::{Command, Decoded, Decoder, Frame, Limits, Version};
use crate::config::StompConfig;
use crate::shared::StompShared;

mod auth;
mod durable;

struct Client {
    session: StompConnection,
    /// The connection's doorbell, as the transport would hold it.
    wakeup: Wakeup,
    /// Every byte the session wrote, in order.
    raw: Vec<u8>,
    decoder: Decoder,
    buf: BytesMut,
    closed: Option<CloseRequest>,
    heart_beats: usize,
    kinds: Vec<MessageKind>,
    now: Instant,
}

fn broker_with(config: StompConfig) -> Arc<StompShared> {
    Arc::new(StompShared::new(CoreParts::open(), config))
}

fn broker() -> Arc<StompShared> {
    broker_with(StompConfig::default())
}

static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Client {
    fn open_on(broker: &Arc<StompShared>, carrier: Carrier) -> Client {
        Self::open_with(broker, carrier, None)
    }

    fn open_with(broker: &Arc<StompShared>, carrier: Carrier, credentials: Option<Arc<TransportCredentials>>) -> Client {
        let wakeup = Wakeup::new();
        let info = ConnectionInfo {
            id: NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            peer: SocketAddr::from(([127, 0, 0, 1], 5000)),
            listener: "stomp",
            tls: false,
            carrier,
            subprotocol: None,
            wakeup: wakeup.clone(),
            credentials,
            monitor: Default::default(),
        };
        let now = Instant::now();
        Client {
            session: StompConnection::new(broker.clone(), Arc::new(info), now),
            wakeup,
            raw: Vec::new(),
            decoder: Decoder::with_version(Limits::default(), Version::V1_2),
            buf: BytesMut::new(),
            closed: None,
            heart_beats: 0,
            kinds: Vec::new(),
            now,
        }
    }

    fn open(broker: &Arc<StompShared>) -> Client {
        Self::open_on(broker, Carrier::Stream)
    }

    /// Open and CONNECT at STOMP 1.2 without heart-beats.
    fn connected(broker: &Arc<StompShared>) -> Client {
        let mut c = Self::open(broker);
        let f = c.send("CONNECT\naccept-version:1.2\nhost:test\n\n\0");
        assert_eq!(f[0].command, Command::Connected);
        c
    }

    fn collect(&mut self, out: Output) -> Vec<Frame> {
        for w in out.writes {
            self.kinds.push(w.kind);
            self.raw.extend_from_slice(&w.data);
            self.buf.extend_from_slice(&w.data);
        }
        if let Some(close) = out.close {
            self.closed.get_or_insert(close);
        }
        let mut frames = Vec::new();
        while let Some(item) = self.decoder.decode(&mut self.buf).expect("server output decodes") {
            match item {
                Decoded::Frame(f) => frames.push(f),
                Decoded::HeartBeat => self.heart_beats += 1,
            }
        }
        frames
    }

    fn send(&mut self, bytes: &str) -> Vec<Frame> {
        self.send_bytes(bytes.as_bytes())
    }

    fn send_bytes(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Output::default();
        self.session
            .on_input(Input::Stream(Bytes::copy_from_slice(bytes)), self.now, &mut out);
        self.collect(out)
    }

    fn wake(&mut self) -> Vec<Frame> {
        let mut out = Output::default();
        self.session.on_wake(self.now, &mut out);
        self.collect(out)
    }

    fn advance(&mut self, by: Duration) -> Vec<Frame> {
        self.now += by;
        let mut out = Output::default();
        if self.session.poll_timeout().is_some_and(|at| at <= self.now) {
            self.session.on_timeout(self.now, &mut out);
        }
        self.collect(out)
    }

    fn close(&mut self) {
        self.session.on_closed(false, self.now);
    }
}

fn header<'f>(f: &'f Frame, name: &str) -> &'f str {
    f.header(name)
        .unwrap_or_else(|| panic!("{} has no {name}: {:?}", f.command, f.headers))
}

fn assert_error(frames: &[Frame], c: &Client, message: &str, body_has: &str) {
    let e = frames.last().expect("an ERROR frame");
    assert_eq!(e.command, Command::Error, "{frames:?}");
    assert_eq!(header(e, "message"), message);
    let body = String::from_utf8_lossy(&e.body);
    assert!(body.contains(body_has), "body {body:?} should say {body_has:?}");
    assert!(c.closed.is_some(), "the connection closes after ERROR");
}

// --- CONNECT ---

#[test]
fn connect_negotiates_the_highest_common_version() {
    let b = broker();
    let mut c = Client::open(&b);
    let f = c.send("CONNECT\naccept-version:1.0,1.1,2.0\nhost:h\nlogin:alice\npasscode:secret\nheart-beat:0,0\n\n\0");
    assert_eq!(f.len(), 1);
    assert_eq!(header(&f[0], "version"), "1.1");
    assert!(header(&f[0], "server").starts_with("Ferry/"));
    assert!(header(&f[0], "session").starts_with("ferry-"));
    assert_eq!(header(&f[0], "heart-beat"), "10000,10000");
    let creds = c.session.connect_headers().unwrap();
    assert_eq!((creds.host.as_deref(), creds.login.as_deref()), (Some("h"), Some("alice")));
    assert!(!format!("{creds:?}").contains("secret"), "the passcode is never printed");
    let mut old = Client::open(&b);
    let f = old.send("STOMP\n\n\0");
    assert_eq!(header(&f[0], "version"), "1.0", "no accept-version means 1.0");
    assert!(f[0].header("heart-beat").is_none(), "1.0 has no heart-beats");
}

#[test]
fn no_common_version_is_an_error_listing_ours() {
    let mut c = Client::open(&broker());
    let f = c.send("CONNECT\naccept-version:2.0\n\n\0");
    assert_error(&f, &c, "supported protocol versions are 1.0,1.1,1.2", "2.0");
    assert_eq!(header(&f[0], "version"), "1.0,1.1,1.2");
}

#[test]
fn a_frame_before_connect_is_an_error() {
    let mut c = Client::open(&broker());
    let f = c.send("SEND\ndestination:/topic/a\nreceipt:r1\n\nx\0");
    assert_error(&f, &c, "not connected", "SEND received before CONNECT");
    assert_eq!(header(&f[0], "receipt-id"), "r1");
    assert!(c.send("CONNECT\n\n\0").is_empty(), "nothing is read after ERROR");
}

#[test]
fn no_connect_in_time_is_an_error() {
    let mut c = Client::open(&broker());
    let f = c.advance(Duration::from_secs(11));
    assert_error(&f, &c, "connect timeout", "no CONNECT frame");
}

// --- SEND, SUBSCRIBE, receipts ---

#[test]
fn topic_wildcards_match_and_messages_carry_their_headers() {
    let b = broker();
    let mut sub = Client::connected(&b);
    let f = sub.send(
        "SUBSCRIBE\nid:1\ndestination:/topic/sensors.*.temp\nreceipt:s1\n\n\0\
         SUBSCRIBE\nid:2\ndestination:/topic/sensors.#\n\n\0",
    );
    assert_eq!(f[0].command, Command::Receipt);
    assert_eq!(header(&f[0], "receipt-id"), "s1");
    let mut publisher = Client::connected(&b);
    let f = publisher.send("SEND\ndestination:/topic/sensors.room1.temp\ncontent-type:text/plain\nx-unit:C\nreceipt:p1\n\n21.5\0");
    assert_eq!(header(&f[0], "receipt-id"), "p1");
    let got = sub.wake();
    assert_eq!(got.len(), 2, "each matching subscription gets its MESSAGE");
    let mut subs: Vec<&str> = got.iter().map(|m| header(m, "subscription")).collect();
    subs.sort();
    assert_eq!(subs, ["1", "2"]);
    for m in &got {
        assert_eq!(m.command, Command::Message);
        assert_eq!(header(m, "destination"), "/topic/sensors.room1.temp");
        assert_eq!(header(m, "content-type"), "text/plain");
        assert_eq!(header(m, "content-length"), "4");
        assert_eq!(header(m, "x-unit"), "C");
        assert!(m.header("ack").is_none(), "auto subscriptions need no ack");
        assert_eq!(&m.body[..], b"21.5");
    }
    assert_ne!(header(&got[0], "message-id"), header(&got[1], "message-id"));
}

#[test]
fn each_message_names_its_own_topic_when_the_topic_changes() {
    let b = broker();
    let mut sub = Client::connected(&b);
    sub.send("SUBSCRIBE\nid:1\ndestination:/topic/sensors.#\n\n\0");
    let mut publisher = Client::connected(&b);
    for topic in ["sensors.a", "sensors.b", "sensors.b", "sensors.a"] {
        publisher.send(&format!("SEND\ndestination:/topic/{topic}\n\nx\0"));
        let got = sub.wake();
        assert_eq!(got.len(), 1);
        assert_eq!(header(&got[0], "destination"), format!("/topic/{topic}"));
    }
}

#[test]
fn bad_destinations_are_errors_naming_the_accepted_prefixes() {
    let mut c = Client::connected(&broker());
    let f = c.send("SEND\ndestination:/exchange/x\n\n\0");
    assert_error(&f, &c, "invalid destination", "/topic/, /queue/, /temp-queue/");
    let mut c = Client::connected(&broker());
    let f = c.send("SEND\ndestination:/topic/a.*\n\n\0");
    assert_error(&f, &c, "invalid destination", "wildcards");
}

#[test]
fn missing_required_headers_are_errors() {
    for (frame, header_name) in [
        ("SEND\n\nx\0", "destination"),
        ("SUBSCRIBE\ndestination:/topic/a\n\n\0", "id"),
        ("SUBSCRIBE\nid:1\n\n\0", "destination"),
        ("UNSUBSCRIBE\n\n\0", "id"),
        ("ACK\n\n\0", "id"),
        ("BEGIN\n\n\0", "transaction"),
    ] {
        let mut c = Client::connected(&broker());
        let f = c.send(frame);
        assert_error(&f, &c, "missing required header", &format!("{header_name:?}"));
    }
}

#[test]
fn codec_errors_end_the_session_with_their_text() {
    let mut c = Client::connected(&broker());
    let f = c.send("SEND\ndestination:/topic/a\nbad:\\t\n\n\0");
    assert_error(&f, &c, "malformed frame received", "undefined escape");
    let mut c = Client::connected(&broker());
    let f = c.send("FLY\n\n\0");
    assert_error(&f, &c, "malformed frame received", "unknown command");
    let config = StompConfig {
        max_body: 4,
        ..Default::default()
    };
    let mut c = Client::connected(&broker_with(config));
    let f = c.send("SEND\ndestination:/topic/a\ncontent-length:5\n\n12345\0");
    assert_error(&f, &c, "frame too large", "exceeds the body limit of 4");
    assert_eq!(c.closed.as_ref().map(|r| r.code.0), Some(1009));
}

#[test]
fn server_frames_and_a_second_connect_are_errors() {
    let mut c = Client::connected(&broker());
    let f = c.send("MESSAGE\n\n\0");
    assert_error(&f, &c, "unexpected frame", "MESSAGE is a server frame");
    let mut c = Client::connected(&broker());
    let f = c.send("CONNECT\naccept-version:1.2\n\n\0");
    assert_error(&f, &c, "already connected", "CONNECT");
}

#[test]
fn disconnect_with_receipt_is_answered_before_close() {
    let mut c = Client::connected(&broker());
    let f = c.send("DISCONNECT\nreceipt:bye\n\n\0");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].command, Command::Receipt);
    assert_eq!(header(&f[0], "receipt-id"), "bye");
    assert_eq!(c.closed.as_ref().map(|r| r.code.0), Some(1000));
}

#[test]
fn too_many_subscriptions_and_duplicate_ids_are_refused() {
    let b = broker_with(StompConfig {
        max_subscriptions: 1,
        ..Default::default()
    });
    let mut c = Client::connected(&b);
    let f = c.send("SUBSCRIBE\nid:a\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:a\ndestination:/topic/b\n\n\0");
    assert_error(&f, &c, "duplicate subscription id", "\"a\"");
    let mut c = Client::connected(&b);
    let f = c.send("SUBSCRIBE\nid:a\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:b\ndestination:/topic/b\n\n\0");
    assert_error(&f, &c, "too many subscriptions", "more than 1");
}

#[test]
fn unsubscribe_stops_delivery_and_unknown_ids_are_errors() {
    let b = broker();
    let mut c = Client::connected(&b);
    c.send("SUBSCRIBE\nid:a\ndestination:/topic/u\n\n\0UNSUBSCRIBE\nid:a\n\n\0");
    let mut p = Client::connected(&b);
    p.send("SEND\ndestination:/topic/u\n\nx\0");
    assert!(c.wake().is_empty());
    assert_eq!(b.router.subscription_count(), 0);
    let f = c.send("UNSUBSCRIBE\nid:a\n\n\0");
    assert_error(&f, &c, "unknown subscription", "\"a\"");
}

// --- ACK modes ---

fn publish(b: &Arc<StompShared>, destination: &str, bodies: &[&str]) {
    let mut p = Client::connected(b);
    for body in bodies {
        p.send(&format!("SEND\ndestination:{destination}\n\n{body}\0"));
    }
}

fn bodies(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(|f| String::from_utf8_lossy(&f.body).into_owned()).collect()
}

#[test]
fn client_ack_is_cumulative_and_the_window_holds_the_rest() {
    let b = broker();
    let mut c = Client::connected(&b);
    c.send("SUBSCRIBE\nid:s\ndestination:/topic/w\nack:client\nprefetch-count:2\n\n\0");
    publish(&b, "/topic/w", &["1", "2", "3", "4"]);
    let got = c.wake();
    assert_eq!(bodies(&got), ["1", "2"], "the window is 2");
    assert_eq!(header(&got[0], "ack"), header(&got[0], "message-id"));
    // ACK of the second covers the first too.
    let got = c.send(&format!("ACK\nid:{}\n\n\0", header(&got[1], "ack")));
    assert_eq!(bodies(&got), ["3", "4"]);
}

#[test]
fn client_individual_ack_covers_one_message_and_nack_redelivers() {
    let b = broker();
    let mut c = Client::connected(&b);
    c.send("SUBSCRIBE\nid:s\ndestination:/topic/i\nack:client-individual\nprefetch-count:2\n\n\0");
    publish(&b, "/topic/i", &["1", "2", "3"]);
    let got = c.wake();
    assert_eq!(bodies(&got), ["1", "2"]);
    let second = header(&got[1], "ack").to_owned();
    let first = header(&got[0], "ack").to_owned();
    let got = c.send(&format!("ACK\nid:{second}\n\n\0"));
    assert_eq!(bodies(&got), ["3"], "only the second was acknowledged: one slot opened");
    let got = c.send(&format!("NACK\nid:{first}\n\n\0"));
    assert_eq!(bodies(&got), ["1"]);
    assert_eq!(header(&got[0], "redelivered"), "true");
    assert_ne!(header(&got[0], "ack"), first, "a redelivery has a new id");
    // An ACK of something no longer pending changes nothing; one never sent is an error.
    assert!(c.send(&format!("ACK\nid:{second}\n\n\0")).is_empty());
    assert!(c.closed.is_none());
    let f = c.send("ACK\nid:nonsense-99\n\n\0");
    assert_error(&f, &c, "unknown message id", "nonsense-99");
}

#[test]
fn stomp_1_1_acks_name_message_id_and_subscription() {
    let b = broker();
    let mut c = Client::open(&b);
    c.send("CONNECT\naccept-version:1.1\n\n\0");
    c.decoder.set_version(Version::V1_1);
    c.send("SUBSCRIBE\nid:s\ndestination:/queue/q11\nack:client\n\n\0");
    publish(&b, "/queue/q11", &["a"]);
    let got = c.wake();
    assert!(got[0].header("ack").is_none(), "no ack header before 1.2");
    let id = header(&got[0], "message-id").to_owned();
    let f = c.send(&format!("ACK\nmessage-id:{id}\n\n\0"));
    assert_error(&f, &c, "missing required header", "subscription");
    let mut c = Client::open(&b);
    c.send("CONNECT\naccept-version:1.1\n\n\0");
    // Only an unknown message id is an error, whatever the subscription says.
    let f = c.send("ACK\nmessage-id:x-1\nsubscription:nope\n\n\0");
    assert_error(&f, &c, "unknown message id", "x-1");
}

#[test]
fn stomp_1_1_acks_settle_by_message_id_whatever_subscription_they_name() {
    // As RabbitMQ and ActiveMQ: the message id is unique per connection and settles the
    // message; the `subscription` header (wrong here, as stomp.py lets a caller write
    // it) does not make an ERROR.
    let b = broker();
    let mut c = Client::open(&b);
    c.send("CONNECT\naccept-version:1.1\n\n\0");
    c.decoder.set_version(Version::V1_1);
    c.send("SUBSCRIBE\nid:s\ndestination:/queue/q11x\nack:client-individual\n\n\0");
    publish(&b, "/queue/q11x", &["a", "b"]);
    let got = c.wake();
    assert_eq!(got.len(), 2);
    let (a, b_id) = (header(&got[0], "message-id").to_owned(), header(&got[1], "message-id").to_owned());
    let f = c.send(&format!("ACK\nmessage-id:{a}\nsubscription:not-s\nreceipt:r1\n\n\0"));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].command, Command::Receipt, "{f:?}");
    let mut f = c.send(&format!("NACK\nmessage-id:{b_id}\nsubscription:other\nreceipt:r2\n\n\0"));
    assert_eq!(f[0].command, Command::Receipt, "{f:?}");
    // The ACKed message is gone; the NACKed one comes again.
    f.extend(c.wake());
    let again: Vec<_> = f.into_iter().filter(|m| m.command == Command::Message).collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(&again[0].body[..], b"b");
    assert_eq!(header(&again[0], "redelivered"), "true");
}

// --- queues ---

#[test]
fn queues_keep_messages_until_a_consumer_comes_and_share_round_robin() {
    let b = broker();
    publish(&b, "/queue/jobs", &["1", "2", "3", "4"]);
    let mut a = Client::connected(&b);
    let mut c = Client::connected(&b);
    let got_a = a.send("SUBSCRIBE\nid:a\ndestination:/queue/jobs\nack:client-individual\nprefetch-count:1\n\n\0");
    let got_c = c.send("SUBSCRIBE\nid:c\ndestination:/queue/jobs\nack:client-individual\nprefetch-count:1\n\n\0");
    assert_eq!(bodies(&got_a), ["1"], "kept until a consumer came; one in flight each");
    assert_eq!(bodies(&got_c), ["2"]);
    assert_eq!(header(&got_a[0], "destination"), "/queue/jobs");
    let more = a.send(&format!("ACK\nid:{}\n\n\0", header(&got_a[0], "ack")));
    assert_eq!(bodies(&more), ["3"]);
    // c goes away without acking "2": it comes back redelivered, to a.
    c.close();
    let got = a.send(&format!("ACK\nid:{}\n\n\0", header(&more[0], "ack")));
    assert_eq!(bodies(&got), ["2"]);
    assert_eq!(header(&got[0], "redelivered"), "true");
}

#[test]
fn a_full_queue_refuses_the_send_with_an_error() {
    let b = broker_with(StompConfig {
        max_queue_length: 1,
        ..Default::default()
    });
    let mut p = Client::connected(&b);
    p.send("SEND\ndestination:/queue/small\n\n1\0");
    let f = p.send("SEND\ndestination:/queue/small\nreceipt:r\n\n2\0");
    assert_error(&f, &p, "queue refused the message", "full");
    assert_eq!(header(&f[0], "receipt-id"), "r");
}

#[test]
fn temp_queues_carry_replies_back_to_their_connection_only() {
    let b = broker();
    let mut server = Client::connected(&b);
    server.send("SUBSCRIBE\nid:req\ndestination:/queue/rpc\n\n\0");
    let mut requester = Client::connected(&b);
    requester.send("SEND\ndestination:/queue/rpc\nreply-to:/temp-queue/answers\n\nping\0");
    let req = server.wake();
    let reply_to = header(&req[0], "reply-to").to_owned();
    assert!(reply_to.starts_with("/reply-queue/"), "{reply_to}");
    server.send(&format!("SEND\ndestination:{reply_to}\n\npong\0"));
    let got = requester.wake();
    assert_eq!(bodies(&got), ["pong"]);
    assert_eq!(header(&got[0], "subscription"), "/temp-queue/answers");
    assert_eq!(header(&got[0], "destination"), "/temp-queue/answers");
    // Nobody else can subscribe to it, and /temp-queue/answers elsewhere is another queue.
    let f = server.send(&format!("SUBSCRIBE\nid:x\ndestination:{reply_to}\n\n\0"));
    assert_error(&f, &server, "invalid destination", "reply queue");
    // An explicit SUBSCRIBE takes over from the implicit one.
    requester.send("SUBSCRIBE\nid:mine\ndestination:/temp-queue/answers\n\n\0");
    let mut other = Client::connected(&b);
    other.send(&format!("SEND\ndestination:{reply_to}\n\npong2\0"));
    let got = requester.wake();
    assert_eq!(header(&got[0], "subscription"), "mine");
    requester.close();
    other.send(&format!("SEND\ndestination:{reply_to}\n\nlate\0"));
    assert!(other.closed.is_none(), "a reply to a gone connection is dropped quietly");
}

// --- transactions ---

#[test]
fn transactions_apply_sends_and_acks_on_commit_only() {
    let b = broker();
    let mut sub = Client::connected(&b);
    sub.send("SUBSCRIBE\nid:s\ndestination:/queue/tx\nack:client\nprefetch-count:1\n\n\0");
    let mut p = Client::connected(&b);
    p.send(
        "BEGIN\ntransaction:t1\n\n\0SEND\ndestination:/queue/tx\ntransaction:t1\n\n1\0SEND\ndestination:/queue/tx\ntransaction:t1\n\n2\0",
    );
    assert!(sub.wake().is_empty(), "nothing before COMMIT");
    let f = p.send("COMMIT\ntransaction:t1\nreceipt:c\n\n\0");
    assert_eq!(header(&f[0], "receipt-id"), "c");
    let got = sub.wake();
    assert_eq!(bodies(&got), ["1"]);
    // ACK inside a transaction: the window stays full until COMMIT.
    let ack = header(&got[0], "ack").to_owned();
    assert!(sub
        .send(&format!("BEGIN\ntransaction:a\n\n\0ACK\nid:{ack}\ntransaction:a\n\n\0"))
        .is_empty());
    assert_eq!(bodies(&sub.send("COMMIT\ntransaction:a\n\n\0")), ["2"]);
    // ABORT drops what the transaction held.
    p.send("BEGIN\ntransaction:t2\n\n\0SEND\ndestination:/topic/none\ntransaction:t2\n\nx\0ABORT\ntransaction:t2\n\n\0");
    let f = p.send("COMMIT\ntransaction:t2\n\n\0");
    assert_error(&f, &p, "unknown transaction", "t2");
}

// --- heart-beats ---

#[test]
fn heart_beats_are_sent_when_idle_and_a_silent_client_is_closed() {
    let b = broker();
    let mut c = Client::open(&b);
    let f = c.send("CONNECT\naccept-version:1.2\nheart-beat:5000,1000\n\n\0");
    assert_eq!(header(&f[0], "heart-beat"), "10000,10000");
    // Server → client every max(10000, 1000) ms; client → server every max(5000, 10000).
    let start = c.now;
    assert_eq!(c.session.poll_timeout(), Some(start + Duration::from_secs(10)));
    c.advance(Duration::from_secs(10));
    assert_eq!(c.heart_beats, 1);
    c.send("\n");
    c.advance(Duration::from_secs(10));
    assert_eq!(c.heart_beats, 2);
    assert!(c.closed.is_none(), "the client's EOL kept it alive");
    let f = c.advance(Duration::from_secs(10));
    assert_error(&f, &c, "heart-beat timeout", "20s");
}

#[test]
fn no_heart_beats_when_either_side_says_zero() {
    let mut c = Client::open(&broker());
    c.send("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0");
    assert_eq!(c.session.poll_timeout(), None);
    let mut c = Client::open(&broker());
    let f = c.send("CONNECT\naccept-version:1.2\nheart-beat:x\n\n\0");
    assert_error(&f, &c, "invalid header", "heart-beat");
}

// --- shutdown, WebSocket framing ---

#[test]
fn shutdown_says_so_in_an_error_frame() {
    let mut c = Client::connected(&broker());
    let mut out = Output::default();
    c.session.on_shutdown(c.now, &mut out);
    let f = c.collect(out);
    assert_eq!(header(&f[0], "message"), "server shutting down");
}

#[test]
fn binary_bodies_go_out_as_binary_websocket_messages() {
    let b = broker();
    let mut c = Client::open_on(&b, Carrier::WebSocket);
    c.send("CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/bin\n\n\0");
    let mut p = Client::connected(&b);
    p.send_bytes(b"SEND\ndestination:/topic/bin\ncontent-length:3\n\n\xff\x00\xfe\0");
    p.send("SEND\ndestination:/topic/bin\n\ntext\0");
    let got = c.wake();
    assert_eq!(&got[0].body[..], b"\xff\x00\xfe");
    assert_eq!(c.kinds, [MessageKind::Text, MessageKind::Binary, MessageKind::Text]);
}

// --- across protocols, through the core ---

fn mqtt_subscriber(b: &Arc<StompShared>, filter: &str) -> Arc<Outbox> {
    let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
    b.router.subscribe(
        &Subscription::parse(filter).unwrap(),
        Subscriber {
            durable: None,
            id: ferry_core::next_subscriber_id(),
            outbox: outbox.clone(),
            options: SubscribeOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        },
    );
    outbox
}

#[test]
fn a_stomp_send_reaches_mqtt_filters_with_headers_as_properties() {
    let b = broker();
    let outboxes: Vec<_> = ["sensors/room1/temp", "sensors/+/temp", "sensors/#"]
        .iter()
        .map(|f| mqtt_subscriber(&b, f))
        .collect();
    let mut p = Client::connected(&b);
    p.send("SEND\ndestination:/topic/sensors.room1.temp\ncontent-type:application/json\nx-site:lab\n\n{\"t\":21}\0");
    for o in outboxes {
        let mut got: Vec<Delivery> = Vec::new();
        o.pop_into(10, &mut got);
        assert_eq!(got.len(), 1);
        let m = &got[0].message;
        assert_eq!(m.topic.as_str(), "sensors/room1/temp");
        assert_eq!(&m.payload[..], b"{\"t\":21}");
        assert_eq!(got[0].qos, QoS::AtLeastOnce, "STOMP SENDs are published at QoS 1");
        assert_eq!(m.properties.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.properties.user_properties, [("x-site".to_owned(), "lab".to_owned())]);
    }
}

#[test]
fn an_mqtt_publish_reaches_stomp_with_payload_and_properties_as_headers() {
    let b = broker();
    let mut c = Client::connected(&b);
    c.send("SUBSCRIBE\nid:1\ndestination:/topic/sensors.room1.temp\n\n\0");
    let payload = Bytes::from_static(b"\x00\x01bin\xff");
    let m = Message::new(
        TopicName::new("sensors/room1/temp").unwrap(),
        payload.clone(),
        QoS::AtLeastOnce,
        false,
    )
    .with_properties(Properties {
        content_type: Some("application/octet-stream".into()),
        user_properties: vec![("unit".into(), "C".into())],
        ..Default::default()
    });
    b.router.publish(Arc::new(m), c.now);
    let got = c.wake();
    assert_eq!(got[0].body, payload, "byte for byte");
    assert_eq!(header(&got[0], "content-length"), "6");
    assert_eq!(header(&got[0], "content-type"), "application/octet-stream");
    assert_eq!(header(&got[0], "unit"), "C");
}

#[test]
fn retained_messages_reach_a_new_stomp_subscriber() {
    let b = broker();
    let m = Message::new(
        TopicName::new("state/lamp").unwrap(),
        Bytes::from_static(b"on"),
        QoS::AtLeastOnce,
        true,
    );
    b.router.publish(Arc::new(m), Instant::now());
    let mut c = Client::connected(&b);
    let got = c.send("SUBSCRIBE\nid:1\ndestination:/topic/state.*\n\n\0");
    assert_eq!(bodies(&got), ["on"]);
    assert_eq!(header(&got[0], "destination"), "/topic/state.lamp");
}

#[test]
fn a_client_topic_subscription_redelivers_qos1_messages_until_acked() {
    let b = broker();
    let mut c = Client::connected(&b);
    c.send("SUBSCRIBE\nid:1\ndestination:/topic/q1\nack:client\n\n\0");
    let m = Message::new(TopicName::new("q1").unwrap(), Bytes::from_static(b"x"), QoS::AtLeastOnce, false);
    b.router.publish(Arc::new(m), c.now);
    let m0 = Message::new(TopicName::new("q1").unwrap(), Bytes::from_static(b"y"), QoS::AtMostOnce, false);
    b.router.publish(Arc::new(m0), c.now);
    let got = c.wake();
    assert_eq!(bodies(&got), ["x", "y"]);
    let got = c.send(&format!("NACK\nid:{}\n\n\0", header(&got[1], "ack")));
    assert_eq!(bodies(&got), ["x"], "QoS 1 is sent again; QoS 0 is not");
    assert_eq!(header(&got[0], "redelivered"), "true");
}

#[test]
fn closing_removes_every_subscription_from_the_router() {
    let b = broker();
    let mut c = Client::connected(&b);
    c.send(
        "SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:2\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:3\ndestination:/queue/z\n\n\0",
    );
    assert_eq!(b.router.subscription_count(), 2, "two subscriptions on one filter are two");
    assert_eq!(b.queues.len(), 1);
    c.close();
    assert_eq!(b.router.subscription_count(), 0);
    assert_eq!(b.queues.len(), 0, "an idle queue goes away");
}

#[test]
fn a_long_backlog_goes_out_in_rounds_without_starving_anyone() {
    let b = broker();
    let mut p = Client::connected(&b);
    for n in 0..1500 {
        p.send(&format!("SEND\ndestination:/queue/backlog\n\n{n}\0"));
    }
    let mut c = Client::connected(&b);
    let first = c.send("SUBSCRIBE\nid:1\ndestination:/queue/backlog\n\n\0");
    assert!((1024..1500).contains(&first.len()), "one round is bounded: {}", first.len());
    let rest = c.wake();
    assert_eq!(first.len() + rest.len(), 1500);
    let all: Vec<String> = bodies(&first).into_iter().chain(bodies(&rest)).collect();
    assert!(all.iter().enumerate().all(|(i, b)| *b == i.to_string()), "in order");
}

// --- RabbitMQ's destinations ---

#[test]
fn rabbitmq_exchange_and_amq_queue_destinations_are_served() {
    let b = broker();
    let mut topic = Client::connected(&b);
    topic.send("SUBSCRIBE\nid:t\ndestination:/topic/rmq.key\n\n\0");
    let mut exchange = Client::connected(&b);
    exchange.send("SUBSCRIBE\nid:e\ndestination:/exchange/amq.topic/rmq.*\n\n\0");
    // /exchange/amq.topic/KEY is /topic/KEY: one tree, both subscribers get it.
    publish(&b, "/exchange/amq.topic/rmq.key", &["via exchange"]);
    assert_eq!(bodies(&topic.wake()), ["via exchange"]);
    let got = exchange.wake();
    assert_eq!(bodies(&got), ["via exchange"]);
    assert_eq!(header(&got[0], "destination"), "/topic/rmq.key");
    // /amq/queue/NAME is /queue/NAME.
    publish(&b, "/amq/queue/rmq.jobs", &["job"]);
    let mut worker = Client::connected(&b);
    let got = worker.send("SUBSCRIBE\nid:w\ndestination:/queue/rmq.jobs\n\n\0");
    assert_eq!(bodies(&got), ["job"]);
    // /exchange/amq.fanout, with or without a key, reaches every fan-out subscriber,
    // in a transaction too, and no `#` subscriber.
    let mut all = Client::connected(&b);
    all.send("SUBSCRIBE\nid:all\ndestination:/topic/#\n\n\0");
    let mut fans = [Client::connected(&b), Client::connected(&b)];
    fans[0].send("SUBSCRIBE\nid:f\ndestination:/exchange/amq.fanout\n\n\0");
    fans[1].send("SUBSCRIBE\nid:f\ndestination:/exchange/amq.fanout/ignored.key\n\n\0");
    let mut p = Client::connected(&b);
    p.send("SEND\ndestination:/exchange/amq.fanout\n\none\0");
    p.send("BEGIN\ntransaction:tx\n\n\0");
    p.send("SEND\ndestination:/exchange/amq.fanout/some.key\ntransaction:tx\n\ntwo\0");
    for fan in &mut fans {
        let got = fan.wake();
        assert_eq!(bodies(&got), ["one"], "the transaction's SEND waits for COMMIT");
        assert_eq!(header(&got[0], "destination"), "/exchange/amq.fanout");
    }
    p.send("COMMIT\ntransaction:tx\n\n\0");
    for fan in &mut fans {
        assert_eq!(bodies(&fan.wake()), ["two"]);
    }
    assert!(all.wake().is_empty(), "a wildcard subscriber does not get fan-out messages");
    // Any other exchange: ERROR naming what is served.
    let mut c = Client::connected(&b);
    let f = c.send("SEND\ndestination:/exchange/amq.direct/x\n\nx\0");
    assert_error(&f, &c, "invalid destination", "/exchange/amq.topic/KEY, /exchange/amq.fanout");
}

/// A session that asked to close (DISCONNECT, or an ERROR) takes no more of a queue's
/// messages, though the transport has not reported the connection gone yet (over
/// WebSocket that waits for the close handshake): what it had been given and not sent
/// goes back at once, and new messages go to the consumers left.
#[test]
fn a_closing_session_stops_consuming_before_its_connection_is_gone() {
    for how in ["DISCONNECT\n\n\0", "FOO\n\n\0"] {
        let b = broker();
        let mut leaving = Client::connected(&b);
        let mut staying = Client::connected(&b);
        leaving.send("SUBSCRIBE\nid:l\ndestination:/queue/handover\n\n\0");
        staying.send("SUBSCRIBE\nid:s\ndestination:/queue/handover\n\n\0");
        let closed = leaving.send(how);
        assert!(leaving.closed.is_some(), "{how:?}: the session asked to close ({closed:?})");
        // Not yet `on_closed`: the transport is still finishing the connection.
        publish(&b, "/queue/handover", &["1", "2", "3", "4"]);
        assert_eq!(
            bodies(&staying.wake()),
            ["1", "2", "3", "4"],
            "{how:?}: all to the consumer left, in order"
        );
        assert!(leaving.wake().is_empty());
        leaving.close();
        assert!(staying.wake().is_empty(), "{how:?}: nothing held back comes later");
    }
}

/// Issue 11, item 5, in memory: STOMP 1.0 over WebSocket, every frame cut into one
/// message per few bytes, auto ack. One SEND to a queue is delivered once; after
/// UNSUBSCRIBE (by destination or by id) nothing more comes, and the next consumer
/// of the queue finds it empty.
#[test]
fn a_stomp_1_0_queue_message_split_over_websocket_messages_is_delivered_once() {
    for (with_id, cut) in [(false, 1), (true, 1), (false, 5), (true, 13)] {
        let b = broker();
        let mut c = Client::open_on(&b, Carrier::WebSocket);
        let feed = |c: &mut Client, frame: &str| -> Vec<Frame> {
            let mut got = Vec::new();
            for piece in frame.as_bytes().chunks(cut) {
                let mut out = Output::default();
                let kind = if piece.len() % 2 == 0 {
                    MessageKind::Binary
                } else {
                    MessageKind::Text
                };
                c.session
                    .on_input(Input::Message(kind, Bytes::copy_from_slice(piece)), c.now, &mut out);
                got.extend(c.collect(out));
                got.extend(c.wake());
            }
            got
        };
        let connected = feed(&mut c, "CONNECT\nhost:/\n\n\0");
        assert_eq!(connected[0].command, Command::Connected);
        assert_eq!(header(&connected[0], "version"), "1.0");
        let sub = if with_id {
            "SUBSCRIBE\nid:1\ndestination:/queue/Q\nack:auto\n\n\0"
        } else {
            "SUBSCRIBE\ndestination:/queue/Q\nack:auto\n\n\0"
        };
        assert!(feed(&mut c, sub).is_empty());
        c.now += Duration::from_secs(1);
        let got = feed(&mut c, "SEND\ndestination:/queue/Q\n\nonce\0");
        assert_eq!(bodies(&got), ["once"], "with id {with_id}, cut {cut}");
        let unsub = if with_id {
            "UNSUBSCRIBE\nid:1\nreceipt:u\n\n\0"
        } else {
            "UNSUBSCRIBE\ndestination:/queue/Q\nreceipt:u\n\n\0"
        };
        let after = feed(&mut c, unsub);
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!(after[0].command, Command::Receipt);
        for _ in 0..5 {
            assert!(c.advance(Duration::from_secs(1)).is_empty());
            assert!(c.wake().is_empty());
        }
        feed(&mut c, "DISCONNECT\n\n\0");
        c.close();
        let mut next = Client::connected(&b);
        assert!(
            next.send("SUBSCRIBE\nid:n\ndestination:/queue/Q\n\n\0").is_empty(),
            "the queue holds nothing more"
        );
        assert!(next.wake().is_empty());
    }
}
