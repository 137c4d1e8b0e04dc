//! Helpers of the storage tests (durability.rs, durable_sessions.rs, crash_all.rs): a
//! broker on a data directory of the test's, an MQTT client over rumqttc, and the
//! streams a kill -9 test runs until the broker dies, each with the ledger of what it
//! sent and what the broker acknowledged, and the checks of what came back.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_stomp::codec::Frame;
use ferry_testkit::prelude::*;
use ferry_testkit::stomp::Stomp;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::mpsc;

/// A broker on the data directory `data` (logging at info: the storage lines).
pub(crate) fn broker_on(data: &Path) -> Broker {
    broker_on_with(data, &[])
}

/// [`broker_on`] with more `FERRY_*` overrides.
pub(crate) fn broker_on_with(data: &Path, env: &[(&str, &str)]) -> Broker {
    let dir = data.to_str().unwrap();
    let mut all = vec![("FERRY_STORAGE__DIR", dir), ("FERRY_LOG__LEVEL", "info")];
    all.extend_from_slice(env);
    Broker::start_with("", &all)
}

/// Options of a clean MQTT 5 client on the broker's TCP listener.
pub(crate) fn options(b: &Broker, id: &str) -> MqttOptions {
    let addr = b.addr("mqtt");
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    o
}

/// Options of a persistent session (clean start 0, session expiry an hour).
pub(crate) fn persistent(b: &Broker, id: &str) -> MqttOptions {
    let mut o = options(b, id);
    o.set_clean_start(false);
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(3600);
    o.set_connect_properties(props);
    o
}

/// A client whose incoming packets arrive on a channel.
pub(crate) struct Client {
    pub(crate) client: AsyncClient,
    pub(crate) incoming: mpsc::UnboundedReceiver<Packet>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Connects; returns the client and whether the broker had its session.
    pub(crate) async fn connect(options: MqttOptions) -> (Client, bool) {
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (tx, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("client event loop ended: {e}");
                        return;
                    }
                }
            }
        });
        let mut c = Client { client, incoming, task };
        let Packet::ConnAck(ack) = c.next().await else {
            panic!("CONNACK expected")
        };
        (c, ack.session_present)
    }

    /// The persistent session `id` subscribed to `filter` at QoS 1: subscribed now when
    /// `first`, else asserted to have survived (`what` says when).
    pub(crate) async fn persistent_sink(b: &Broker, id: &str, filter: &str, first: bool, what: &str) -> Client {
        let (mut sub, present) = Self::connect(persistent(b, id)).await;
        if first {
            assert!(!present, "{what}: a new session");
            sub.subscribe(filter, QoS::AtLeastOnce).await;
        } else {
            assert!(present, "{what}: the persistent session survived the kill");
        }
        sub
    }

    /// A clean client `id`, connected.
    pub(crate) async fn open(b: &Broker, id: &str) -> Client {
        Self::connect(options(b, id)).await.0
    }

    pub(crate) async fn next(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(10), self.incoming.recv())
            .await
            .expect("a packet in time")
            .expect("client running")
    }

    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        while !matches!(self.next().await, Packet::SubAck(_)) {}
    }

    /// Every PUBLISH that arrives until `quiet` passes without one (at most 60 s).
    pub(crate) async fn drain(&mut self, quiet: Duration) -> Vec<Publish> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match tokio::time::timeout(quiet, self.incoming.recv()).await {
                Ok(Some(Packet::Publish(p))) => out.push(p),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        out
    }

    /// The retained messages a subscription to `filter` gets, by topic.
    pub(crate) async fn retained(&mut self, filter: &str) -> HashMap<String, Publish> {
        self.subscribe(filter, QoS::AtLeastOnce).await;
        let mut out = HashMap::new();
        for p in self.drain(Duration::from_millis(500)).await {
            assert!(p.retain, "only retained messages are expected");
            out.insert(String::from_utf8(p.topic.to_vec()).unwrap(), p);
        }
        out
    }

    pub(crate) async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.task.abort();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A payload's sequence number.
pub(crate) fn seq_of_publish(p: &Publish) -> u64 {
    std::str::from_utf8(&p.payload).unwrap().parse().unwrap()
}

/// What a QoS 1 publisher knows: the sequence numbers it sent (its payloads) and those
/// the broker acknowledged.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Sent and not yet given a packet id, in order.
    unsent: VecDeque<u64>,
    /// Packet id → sequence number.
    inflight: HashMap<u16, u64>,
    /// Acknowledged by the broker.
    pub(crate) acked: BTreeSet<u64>,
    /// The highest sequence number sent (every one from the first on was sent).
    pub(crate) sent: u64,
}

impl Ledger {
    /// Forgets what was in flight on a connection that is gone (its packet ids).
    pub(crate) fn reset_inflight(&mut self) {
        self.unsent.clear();
        self.inflight.clear();
    }
}

/// Publishes QoS 1 messages with payloads `first`, `first + 1`, ... (at most `max`), on
/// `topic_of(seq)`, retained if `retain`, as fast as the broker acknowledges them (64 in
/// flight) until the connection breaks or 30 s pass, recording everything in `ledger`.
pub(crate) async fn publish_until_killed(
    b: &Broker,
    id: &str,
    (first, max): (u64, u64),
    topic_of: fn(u64) -> String,
    retain: bool,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut o = options(b, id);
    o.set_outgoing_inflight_upper_limit(64);
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    let feeder_ledger = ledger.clone();
    let feeder = tokio::spawn(async move {
        for seq in (first..).take(max as usize) {
            {
                let mut l = feeder_ledger.lock().unwrap();
                l.unsent.push_back(seq);
                l.sent = l.sent.max(seq);
            }
            if client
                .publish(topic_of(seq), QoS::AtLeastOnce, retain, seq.to_string())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline.into(), eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                let mut l = ledger.lock().unwrap();
                if let Some(seq) = l.unsent.pop_front() {
                    l.inflight.insert(pkid, seq);
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                let mut l = ledger.lock().unwrap();
                if let Some(seq) = l.inflight.remove(&ack.pkid) {
                    l.acked.insert(seq);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    feeder.abort();
}

/// What a consumer received of one producer's stream of sequence numbers, over the
/// cycles: an MQTT publisher's at a persistent session, a STOMP producer's from a queue.
#[derive(Default)]
pub(crate) struct Stream {
    received: BTreeSet<u64>,
    last_new: u64,
}

impl Stream {
    /// Checks one connection's deliveries of `ledger`'s stream: nothing never sent; a
    /// message seen for the first time comes after every earlier first-seen one
    /// (per-publisher order); a repeat is a redelivery of one an earlier connection got
    /// (the broker logs deliveries and acknowledgements lazily) or carries DUP; and by
    /// now every acknowledged message has arrived. Returns how many were new.
    pub(crate) fn check(&mut self, what: &str, got: &[Publish], ledger: &Ledger) -> usize {
        let got = got.iter().map(|p| (seq_of_publish(p), p.dup));
        self.check_seqs(what, got, ledger.sent, &ledger.acked)
    }

    /// [`check`](Self::check) for a STOMP queue's MESSAGEs (`redelivered:true` for DUP)
    /// against the receipted SENDs.
    pub(crate) fn check_queue(&mut self, what: &str, got: &[Frame], ledger: &StompLedger) -> usize {
        let got = got.iter().map(|f| (seq_of(f), f.header("redelivered") == Some("true")));
        self.check_seqs(what, got, ledger.sent, &ledger.receipted)
    }

    /// `got`: (sequence number, marked as a redelivery) in the order they came.
    fn check_seqs(&mut self, what: &str, got: impl Iterator<Item = (u64, bool)>, sent: u64, acked: &BTreeSet<u64>) -> usize {
        let before = self.received.clone();
        let mut this = BTreeSet::new();
        let mut new = 0;
        for (n, redelivery) in got {
            assert!(n <= sent, "{what}: {n} was never sent");
            if self.received.insert(n) {
                assert!(n > self.last_new, "{what}: {n} arrived after {}", self.last_new);
                self.last_new = n;
                new += 1;
            } else {
                assert!(
                    redelivery || (before.contains(&n) && !this.contains(&n)),
                    "{what}: {n} came twice on one connection, not marked as a redelivery"
                );
            }
            this.insert(n);
        }
        let lost: Vec<_> = acked.difference(&self.received).collect();
        assert!(
            lost.is_empty(),
            "{what}: acknowledged and lost: {} ({:?} .. {:?}); this connection got {} ({:?} .. {:?}), the highest acknowledged is {:?}, sent {sent}",
            lost.len(),
            lost.first(),
            lost.last(),
            this.len(),
            this.first(),
            this.last(),
            acked.last()
        );
        new
    }
}

/// The retained topics of the retained streams: `k/{seq % RETAINED_TOPICS}`.
pub(crate) const RETAINED_TOPICS: u64 = 40;

/// The retained topic of sequence number `seq`.
pub(crate) fn retained_topic(seq: u64) -> String {
    format!("k/{}", seq % RETAINED_TOPICS)
}

/// Checks what a subscription to `k/#` got against a retained stream's `ledger`: each
/// topic holds its last acknowledged value or a later one that was sent (its PUBACK lost
/// in the kill), never an older one, another topic's or one never sent.
pub(crate) fn check_retained(what: &str, got: &HashMap<String, Publish>, ledger: &Ledger) {
    let mut last_acked: HashMap<String, u64> = HashMap::new();
    for &seq in &ledger.acked {
        last_acked.insert(retained_topic(seq), seq);
    }
    for (topic, acked) in &last_acked {
        let p = got
            .get(topic)
            .unwrap_or_else(|| panic!("{what}: {topic} (acknowledged {acked}) lost"));
        let value = seq_of_publish(p);
        assert!(value >= *acked, "{what}: {topic} went back from {acked} to {value}");
        assert!(value <= ledger.sent, "{what}: {topic} holds {value}, never sent");
        assert_eq!(retained_topic(value), *topic, "{what}: {topic} holds another topic's value");
    }
    assert!(got.len() <= RETAINED_TOPICS as usize);
}

// --- STOMP queues ---

/// What a STOMP producer knows: the sequence numbers it sent and those receipted.
#[derive(Default)]
pub(crate) struct StompLedger {
    pub(crate) sent: u64,
    pub(crate) receipted: BTreeSet<u64>,
}

/// SENDs `/queue/durable` messages (the body is the sequence number, each with a
/// receipt), at most 64 unreceipted at a time, from `first_seq` on, until the broker
/// goes away; records everything in `ledger`.
pub(crate) async fn send_to_queue_until_killed(b: &Broker, first_seq: u64, ledger: Arc<Mutex<StompLedger>>) {
    use ferry_stomp::codec::{Command, Decoded, Decoder, Limits, Version};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(stream) = tokio::net::TcpStream::connect(b.addr("stomp")).await else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    if wr.write_all(b"CONNECT\naccept-version:1.2\nhost:ferry\n\n\0").await.is_err() {
        return;
    }
    let window = Arc::new(tokio::sync::Semaphore::new(64));
    let permits = window.clone();
    let feeder_ledger = ledger.clone();
    let feeder = tokio::spawn(async move {
        for seq in first_seq.. {
            let Ok(permit) = permits.acquire().await else { return };
            permit.forget();
            feeder_ledger.lock().unwrap().sent = seq;
            let frame = format!("SEND\ndestination:/queue/durable\nreceipt:{seq}\n\n{seq}\0");
            if wr.write_all(frame.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut decoder = Decoder::with_version(Limits::default(), Version::V1_2);
    let mut buf = bytes::BytesMut::new();
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Decoded::Frame(f))) if f.command == Command::Receipt => {
                    let seq: u64 = f.header("receipt-id").and_then(|r| r.parse().ok()).expect("our receipt ids");
                    ledger.lock().unwrap().receipted.insert(seq);
                    window.add_permits(1);
                }
                Ok(Some(Decoded::Frame(f))) => assert_eq!(f.command, Command::Connected, "{f:?}"),
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(None) => break,
                Err(e) => panic!("the broker writes valid frames: {e}"),
            }
        }
        buf.reserve(16 * 1024);
        match rd.read_buf(&mut buf).await {
            Ok(n) if n > 0 => {}
            _ => break 'read,
        }
    }
    feeder.abort();
}

/// The `"name":N` field of the broker's `storage: restored` log line.
pub(crate) fn restored_count(b: &Broker, name: &str) -> u64 {
    let line = b
        .logs()
        .into_iter()
        .find(|l| l.contains("storage: restored"))
        .expect("a storage: restored line");
    let needle = format!("\"{name}\":");
    let at = line.find(&needle).unwrap_or_else(|| panic!("no {name} in {line}")) + needle.len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// A STOMP 1.2 client subscribed to `/queue/{queue}` with `ack:client-individual`.
pub(crate) async fn queue_consumer(b: &Broker, queue: &str) -> Stomp {
    let mut c = Stomp::tcp(b).await;
    c.connect("1.2").await;
    c.send(format!("SUBSCRIBE\nid:s\ndestination:/queue/{queue}\nack:client-individual\n\n\0"))
        .await;
    c
}

/// Every MESSAGE that arrives until the broker has been quiet for a second.
pub(crate) async fn drain_messages(c: &mut Stomp) -> Vec<Frame> {
    let mut all = Vec::new();
    loop {
        let got = c.frames_within(Duration::from_secs(1)).await;
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// Every MESSAGE that arrives until the broker has been quiet for `quiet`, each
/// acknowledged (ACK of its `ack` header) as it comes, so the window never fills.
pub(crate) async fn consume_acking(c: &mut Stomp, quiet: Duration) -> Vec<Frame> {
    let mut all = Vec::new();
    while let Ok(f) = tokio::time::timeout(quiet, c.frame()).await {
        c.send(format!("ACK\nid:{}\n\n\0", f.header("ack").unwrap())).await;
        all.push(f);
    }
    all
}

/// A STOMP message's sequence number (its body).
pub(crate) fn seq_of(f: &Frame) -> u64 {
    std::str::from_utf8(&f.body).unwrap().parse().unwrap()
}
