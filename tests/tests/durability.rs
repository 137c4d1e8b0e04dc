//! Storage end to end: retained messages survive a restart and kill -9 of the real
//! broker, no acknowledged change is lost, the data directory is locked and private,
//! a full store refuses instead of acknowledging, and the operator's commands work.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_testkit::prelude::*;
use ferry_testkit::stomp::Stomp;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::mpsc;

/// A broker on the data directory `data`.
fn broker_on(data: &Path) -> Broker {
    broker_on_with(data, &[])
}

fn broker_on_with(data: &Path, env: &[(&str, &str)]) -> Broker {
    let dir = data.to_str().unwrap();
    let mut all = vec![("FERRY_STORAGE__DIR", dir), ("FERRY_LOG__LEVEL", "info")];
    all.extend_from_slice(env);
    Broker::start_with("", &all)
}

/// A broker whose store fills up after about 64 KiB (room for the first segment only).
fn small_store_broker(data: &Path) -> Broker {
    broker_on_with(
        data,
        &[
            ("FERRY_STORAGE__SEGMENT_BYTES", "65536"),
            ("FERRY_STORAGE__MAX_DISK_BYTES", "131072"),
        ],
    )
}

fn options(b: &Broker, id: &str) -> MqttOptions {
    let addr = b.addr("mqtt");
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    o
}

/// A client whose incoming packets and outgoing publish ids arrive on channels.
struct Client {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(b: &Broker, id: &str) -> Client {
        let (client, mut eventloop) = AsyncClient::new(options(b, id), 1000);
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
        assert!(matches!(c.next().await, Packet::ConnAck(_)));
        c
    }

    async fn next(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(5), self.incoming.recv())
            .await
            .expect("a packet in time")
            .expect("client running")
    }

    /// The retained messages a subscription to `filter` gets, by topic.
    async fn retained(&mut self, filter: &str) -> HashMap<String, rumqttc::v5::mqttbytes::v5::Publish> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        while !matches!(self.next().await, Packet::SubAck(_)) {}
        let mut out = HashMap::new();
        while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(500), self.incoming.recv()).await {
            if let Packet::Publish(p) = p {
                assert!(p.retain, "only retained messages are expected");
                out.insert(String::from_utf8(p.topic.to_vec()).unwrap(), p);
            }
        }
        out
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn retained_messages_survive_a_restart_with_their_properties_and_remaining_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let b = broker_on(&data);
    let mut c = Client::connect(&b, "setter").await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("application/json".into()),
        response_topic: Some("replies/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        user_properties: vec![("unit".into(), "C".into())],
        ..PublishProperties::default()
    };
    c.client
        .publish_with_properties("sensors/1/temp", QoS::AtLeastOnce, true, "{\"t\":21.5}", props)
        .await
        .unwrap();
    c.client.publish("sensors/2/temp", QoS::ExactlyOnce, true, "19").await.unwrap();
    c.client
        .publish("sensors/3/temp", QoS::AtLeastOnce, true, "gone soon")
        .await
        .unwrap();
    c.client.publish("sensors/3/temp", QoS::AtLeastOnce, true, "").await.unwrap();
    let mut acks = 0;
    while acks < 4 {
        match c.next().await {
            Packet::PubAck(_) | Packet::PubComp(_) => acks += 1,
            _ => {}
        }
    }
    drop(c);
    b.signal_term();
    let mut b = b;
    assert!(b.wait_exit(Duration::from_secs(15)).is_some_and(|s| s.success()));
    assert!(b.logs().iter().any(|l| l.contains("storage: everything on disk")));

    let b = broker_on(&data);
    assert!(
        b.logs()
            .iter()
            .any(|l| l.contains("storage: restored") && l.contains("\"retained\":2")),
        "{:?}",
        b.logs()
    );
    let mut reader = Client::connect(&b, "reader").await;
    let got = reader.retained("sensors/#").await;
    assert_eq!(got.len(), 2, "{got:?}");
    let one = &got["sensors/1/temp"];
    assert_eq!(one.payload, "{\"t\":21.5}");
    assert_eq!(one.qos, QoS::AtLeastOnce);
    let p = one.properties.as_ref().unwrap();
    assert_eq!(p.payload_format_indicator, Some(1));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.response_topic.as_deref(), Some("replies/here"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"\x00\x01"[..]));
    assert_eq!(p.user_properties, vec![("unit".to_owned(), "C".to_owned())]);
    let left = p.message_expiry_interval.unwrap();
    assert!((3590..=3600).contains(&left), "expiry counted down across the restart: {left}");
    assert_eq!(got["sensors/2/temp"].payload, "19");
    assert_eq!(got["sensors/2/temp"].qos, QoS::AtLeastOnce, "QoS min(2, granted 1)");
}

/// What a publisher knows: every change it sent, and which the broker acknowledged.
#[derive(Default)]
struct Ledger {
    /// Sent and not yet given a packet id, in order.
    unsent: VecDeque<(usize, u64)>,
    /// Packet id → (topic index, sequence number).
    inflight: HashMap<u16, (usize, u64)>,
    /// Per topic: the highest sequence number acknowledged.
    acked: HashMap<usize, u64>,
    /// Per topic: the highest sequence number sent.
    sent: HashMap<usize, u64>,
}

const TOPICS: usize = 40;

/// Publishes retained QoS 1 changes as fast as the broker acknowledges them until the
/// connection breaks, recording everything in `ledger`. Payloads are the sequence
/// number; topic `k/{seq % TOPICS}`.
async fn publish_until_killed(b: &Broker, id: &str, first_seq: u64, ledger: Arc<Mutex<Ledger>>) {
    let mut o = options(b, id);
    o.set_outgoing_inflight_upper_limit(64);
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    let feeder_ledger = ledger.clone();
    let feeder = tokio::spawn(async move {
        for seq in first_seq.. {
            let topic = (seq % TOPICS as u64) as usize;
            {
                let mut l = feeder_ledger.lock().unwrap();
                l.unsent.push_back((topic, seq));
                let s = l.sent.entry(topic).or_default();
                *s = (*s).max(seq);
            }
            if client
                .publish(format!("k/{topic}"), QoS::AtLeastOnce, true, seq.to_string())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut l = ledger.lock().unwrap();
                if let Some(change) = l.unsent.pop_front() {
                    l.inflight.insert(pkid, change);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let mut l = ledger.lock().unwrap();
                if let Some((topic, seq)) = l.inflight.remove(&ack.pkid) {
                    let a = l.acked.entry(topic).or_default();
                    *a = (*a).max(seq);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    feeder.abort();
}

#[tokio::test]
async fn kill_9_at_random_points_loses_no_acknowledged_retained_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut seq = 1_000u64;
    let mut total_acked = 0usize;
    // 20 kills, each followed by a restart and a check.
    const CYCLES: usize = 21;
    for cycle in 0..CYCLES {
        let mut b = broker_on(&data);
        // Everything acknowledged before the last kill is back, and nothing invented.
        {
            let mut reader = Client::connect(&b, &format!("reader-{cycle}")).await;
            let got = reader.retained("k/#").await;
            let l = ledger.lock().unwrap();
            for (topic, acked) in &l.acked {
                let p = got
                    .get(&format!("k/{topic}"))
                    .unwrap_or_else(|| panic!("cycle {cycle}: k/{topic} (acked {acked}) lost"));
                let value: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                assert!(value >= *acked, "cycle {cycle}: k/{topic} went back from {acked} to {value}");
                assert!(value <= l.sent[topic], "cycle {cycle}: k/{topic} holds {value}, never sent");
                assert_eq!(
                    value % TOPICS as u64,
                    *topic as u64,
                    "cycle {cycle}: k/{topic} holds another topic's value"
                );
            }
            assert!(got.len() <= TOPICS);
        }
        if cycle == CYCLES - 1 {
            break;
        }
        l_reset_inflight(&ledger);
        // A different point in the stream each time: 100 to 400 ms in.
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) % 300);
        let run = Duration::from_millis(100 + jitter);
        let id = format!("pub-{cycle}");
        let publisher = publish_until_killed(&b, &id, seq, ledger.clone());
        tokio::select! {
            _ = publisher => panic!("the publisher stopped before the kill"),
            _ = tokio::time::sleep(run) => {}
        }
        b.kill_9();
        let l = ledger.lock().unwrap();
        total_acked = l.acked.len().max(total_acked);
        seq = l.sent.values().copied().max().unwrap_or(seq) + 1;
    }
    assert!(total_acked > 0, "some changes were acknowledged");
}

fn l_reset_inflight(ledger: &Arc<Mutex<Ledger>>) {
    let mut l = ledger.lock().unwrap();
    l.unsent.clear();
    l.inflight.clear();
}

#[tokio::test]
async fn a_second_broker_on_the_same_directory_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _first = broker_on(&data);
    let dir = data.to_str().unwrap();
    let config = write_file(tmp.path(), "ferry.toml", LOOPBACK);
    let (status, _, stderr) = ferry_command(&["--config", config.to_str().unwrap()], &[("FERRY_STORAGE__DIR", dir)]);
    assert!(!status.success());
    assert!(stderr.contains("cannot open storage in"), "{stderr}");
    assert!(stderr.contains(dir), "{stderr}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory is private");
}

#[tokio::test]
async fn a_full_store_refuses_retained_publishes_and_says_so_on_healthz() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let b = small_store_broker(&data);
    let mut c = Client::connect(&b, "filler").await;
    let big = "x".repeat(8 * 1024);
    let mut refused = None;
    for i in 0..64 {
        c.client
            .publish(format!("fill/{i}"), QoS::AtLeastOnce, true, big.clone())
            .await
            .unwrap();
        match c.next().await {
            Packet::PubAck(a) if a.reason == rumqttc::v5::mqttbytes::v5::PubAckReason::Success => {}
            Packet::PubAck(a) if a.reason == rumqttc::v5::mqttbytes::v5::PubAckReason::NoMatchingSubscribers => {}
            Packet::PubAck(a) => {
                refused = Some(a);
                break;
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let refused = refused.expect("the store fills up");
    assert_eq!(refused.reason, rumqttc::v5::mqttbytes::v5::PubAckReason::QuotaExceeded);
    // What needs no disk still goes: a plain QoS 1 publish is acknowledged.
    c.client.publish("live/1", QoS::AtLeastOnce, false, "ok").await.unwrap();
    assert!(matches!(c.next().await, Packet::PubAck(a) if a.reason == rumqttc::v5::mqttbytes::v5::PubAckReason::NoMatchingSubscribers));
    let health = http_request(b.addr("ws"), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(health.body.contains("max_disk_bytes"), "{}", health.body);
    assert_eq!(metric(b.addr("ws"), "ferry_storage_poisoned").await, Some(1.0));
    assert!(metric(b.addr("ws"), "ferry_mqtt_publishes_refused_storage_total").await.unwrap() >= 1.0);
}

#[tokio::test]
async fn an_mqtt_3_client_is_disconnected_instead_of_acknowledged_when_storage_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let b = small_store_broker(&data);
    let addr = b.addr("mqtt");
    let mut o = rumqttc::MqttOptions::new("v3-filler", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 10);
    let big = "x".repeat(8 * 1024);
    let mut acked = 0;
    let mut closed = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    client
        .publish("fill/0", rumqttc::QoS::AtLeastOnce, true, big.clone())
        .await
        .unwrap();
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => {
                acked += 1;
                client
                    .publish(format!("fill/{acked}"), rumqttc::QoS::AtLeastOnce, true, big.clone())
                    .await
                    .unwrap();
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                closed = true;
                break;
            }
            Err(_) => panic!("neither an ack nor a close"),
        }
    }
    assert!(closed, "the connection is closed once storage is full");
    assert!((1..20).contains(&acked), "{acked} acknowledged before the store filled up");
    assert!(b.wait_log("publish refused: storage unavailable", Duration::from_secs(5)));
}

#[test]
fn storage_inspect_and_repair_describe_and_fix_a_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = data.to_str().unwrap().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    {
        let b = broker_on(&data);
        rt.block_on(async {
            let mut c = Client::connect(&b, "inspected").await;
            for i in 0..3 {
                c.client.publish(format!("i/{i}"), QoS::AtLeastOnce, true, "v").await.unwrap();
                assert!(matches!(c.next().await, Packet::PubAck(_)));
            }
        });
    }
    let (status, out, err) = ferry_command(&["storage", "inspect", &dir], &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("3  retained message set"), "{out}");
    assert!(out.contains("opens cleanly"), "{out}");
    // A foreign file in the directory: the broker refuses, inspect says why, repair
    // moves it aside, and the broker starts again with everything.
    std::fs::write(data.join("notes.txt"), "hello").unwrap();
    let (status, out, err) = ferry_command(&["storage", "inspect", &dir], &[]);
    assert!(!status.success(), "{out}");
    assert!(err.contains("would refuse to start") && err.contains("storage repair"), "{err}");
    let (status, out, err) = ferry_command(&["storage", "repair", &dir], &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("notes.txt"), "{out}");
    assert!(data.join("quarantine").exists());
    let b = broker_on(&data);
    rt.block_on(async {
        let mut reader = Client::connect(&b, "after-repair").await;
        assert_eq!(reader.retained("i/#").await.len(), 3);
    });
}

#[tokio::test]
async fn storage_off_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let b = broker_on_with(&data, &[("FERRY_STORAGE__ENABLED", "false")]);
    let mut c = Client::connect(&b, "volatile").await;
    c.client.publish("v/1", QoS::AtLeastOnce, true, "x").await.unwrap();
    assert!(matches!(c.next().await, Packet::PubAck(_)));
    drop(b);
    assert!(!data.exists(), "no data directory when storage is off");
}

#[tokio::test]
async fn snapshots_keep_the_disk_bounded_and_restore_the_latest_values() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("FERRY_STORAGE__SEGMENT_BYTES", "65536"),
        ("FERRY_STORAGE__SNAPSHOT_AFTER_BYTES", "131072"),
        ("FERRY_STORAGE__SNAPSHOT_CHECK_INTERVAL", "50ms"),
    ];
    let b = broker_on_with(&data, &env);
    let mut c = Client::connect(&b, "steady").await;
    let pad = "p".repeat(200);
    // About 2.4 MB of log: 37 segments' worth without snapshots.
    for batch in 0..100u32 {
        for i in batch * 100..(batch + 1) * 100 {
            let topic = format!("s/{}", i % 10);
            c.client.publish(topic, QoS::AtLeastOnce, true, format!("{i}:{pad}")).await.unwrap();
        }
        let mut acks = 0;
        while acks < 100 {
            if matches!(c.next().await, Packet::PubAck(_)) {
                acks += 1;
            }
        }
    }
    // Let the last snapshot check run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.logs().iter().any(|l| l.contains("storage: snapshot written")));
    let segments = metric(b.addr("ws"), "ferry_storage_segments").await.unwrap();
    let disk = metric(b.addr("ws"), "ferry_storage_disk_bytes").await.unwrap();
    assert!(segments <= 5.0, "{segments} segments: the snapshots reclaim the log");
    assert!(disk <= 6.0 * 65536.0, "{disk} bytes on disk");
    drop(c);
    drop(b);
    let (status, out, err) = ferry_command(&["storage", "inspect", data.to_str().unwrap()], &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("snapshot          at LSN"), "{out}");
    let b = broker_on(&data);
    let mut reader = Client::connect(&b, "after-snapshots").await;
    let got = reader.retained("s/#").await;
    assert_eq!(got.len(), 10);
    for (topic, p) in got {
        let last = 9_990 + topic.trim_start_matches("s/").parse::<u32>().unwrap();
        assert!(
            p.payload.starts_with(format!("{last}:").as_bytes()),
            "{topic}: the last value is back"
        );
    }
}

// --- STOMP queues ---

/// What a STOMP producer knows: the sequence numbers it sent and those receipted.
#[derive(Default)]
struct StompLedger {
    sent: u64,
    receipted: std::collections::BTreeSet<u64>,
}

/// SENDs `/queue/durable` messages (the body is the sequence number, each with a
/// receipt), at most 64 unreceipted at a time, from `first_seq` on, until the broker
/// goes away; records everything in `ledger`.
async fn send_to_queue_until_killed(b: &Broker, first_seq: u64, ledger: Arc<Mutex<StompLedger>>) {
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
fn restored_count(b: &Broker, name: &str) -> u64 {
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
async fn queue_consumer(b: &Broker, queue: &str) -> Stomp {
    let mut c = Stomp::tcp(b).await;
    c.connect("1.2").await;
    c.send(format!("SUBSCRIBE\nid:s\ndestination:/queue/{queue}\nack:client-individual\n\n\0"))
        .await;
    c
}

/// Every MESSAGE that arrives until the broker has been quiet for a second.
async fn drain_messages(c: &mut Stomp) -> Vec<ferry_stomp::codec::Frame> {
    let mut all = Vec::new();
    loop {
        let got = c.frames_within(Duration::from_secs(1)).await;
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

fn seq_of(f: &ferry_stomp::codec::Frame) -> u64 {
    std::str::from_utf8(&f.body).unwrap().parse().unwrap()
}

#[tokio::test]
async fn kill_9_loses_no_receipted_queue_message_and_unacknowledged_ones_come_back_redelivered() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ledger = Arc::new(Mutex::new(StompLedger::default()));
    let mut next = 1u64;
    const KILLS: usize = 8;
    for cycle in 0..KILLS {
        let mut b = broker_on(&data);
        let receipted = ledger.lock().unwrap().receipted.len() as u64;
        let held = restored_count(&b, "queue_messages");
        assert!(
            held >= receipted,
            "cycle {cycle}: {held} messages restored, {receipted} were receipted"
        );
        assert!(held <= ledger.lock().unwrap().sent, "cycle {cycle}: more messages than were sent");
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) % 300);
        let producer = send_to_queue_until_killed(&b, next, ledger.clone());
        tokio::select! {
            _ = producer => panic!("the producer stopped before the kill"),
            _ = tokio::time::sleep(Duration::from_millis(100 + jitter)) => {}
        }
        b.kill_9();
        next = ledger.lock().unwrap().sent + 1;
    }
    let receipted = ledger.lock().unwrap().receipted.clone();
    let sent = ledger.lock().unwrap().sent;
    assert!(receipted.len() > 100, "only {} receipted", receipted.len());

    // Every receipted message is there, in order, each once, never sent before; each
    // is acknowledged as it comes (the window is at most 1000).
    let mut b = broker_on(&data);
    let mut c = queue_consumer(&b, "durable").await;
    let mut seqs = Vec::new();
    while let Ok(f) = tokio::time::timeout(Duration::from_secs(1), c.frame()).await {
        assert!(f.header("redelivered").is_none(), "nothing was delivered before: {f:?}");
        seqs.push(seq_of(&f));
        c.send(format!("ACK\nid:{}\n\n\0", f.header("ack").unwrap())).await;
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no duplicates");
    assert!(seqs.last().is_none_or(|&s| s <= sent), "nothing invented");
    let missing: Vec<u64> = receipted.iter().copied().filter(|s| seqs.binary_search(s).is_err()).collect();
    assert!(
        missing.is_empty(),
        "{} receipted and lost, the first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Messages delivered and not acknowledged come back redelivered: 20 put, 10
    // acknowledged. A receipted SEND after the ACKs puts the lazy records before it on
    // disk too.
    for i in 0..20 {
        c.with_receipt("SEND\ndestination:/queue/redo", &i.to_string(), &format!("p{i}"))
            .await;
    }
    let mut r = queue_consumer(&b, "redo").await;
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(r.frame().await);
    }
    for f in &got[..10] {
        r.send(format!("ACK\nid:{}\n\n\0", f.header("ack").unwrap())).await;
    }
    r.with_receipt("SEND\ndestination:/queue/fence", "f", "fence").await;
    b.kill_9();

    let b = broker_on(&data);
    assert_eq!(restored_count(&b, "queue_messages"), 11, "10 unacknowledged and the fence");
    let mut c = queue_consumer(&b, "durable").await;
    c.quiet().await;
    let mut r = queue_consumer(&b, "redo").await;
    let again = drain_messages(&mut r).await;
    let back: Vec<u64> = again.iter().map(seq_of).collect();
    assert_eq!(back, (10..20).collect::<Vec<u64>>(), "the unacknowledged ones, in order");
    assert!(
        again.iter().all(|f| f.header("redelivered") == Some("true")),
        "sent before: redelivered"
    );
    // The operator sees the queues (read-only, beside the running broker).
    let (status, out, err) = ferry_command(&["storage", "inspect", data.to_str().unwrap()], &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("STOMP queues      2 holding 11 messages"), "{out}");
    assert!(out.contains("10  /queue/redo"), "{out}");
}

#[tokio::test]
async fn a_full_store_answers_a_queue_send_with_an_error_instead_of_a_receipt() {
    use ferry_stomp::codec::Command;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let b = small_store_broker(&data);
    let mut c = Stomp::tcp(&b).await;
    c.connect("1.2").await;
    let big = "x".repeat(8 * 1024);
    let mut receipts = 0;
    let error = loop {
        c.send(format!("SEND\ndestination:/queue/fill\nreceipt:r{receipts}\n\n{big}\0"))
            .await;
        let f = c.frame().await;
        match f.command {
            Command::Receipt => receipts += 1,
            _ => break f,
        }
        assert!(receipts < 64, "the store fills up");
    };
    assert_eq!(error.command, Command::Error, "{error:?}");
    assert_eq!(error.header("message"), Some("storage unavailable"));
    assert_eq!(error.header("receipt-id"), Some(format!("r{receipts}").as_str()));
    assert!(receipts >= 1);
    assert!(metric(b.addr("ws"), "ferry_stomp_queue_refused_storage_total").await.is_some());
}
