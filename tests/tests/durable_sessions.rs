//! Persistent MQTT sessions survive restarts and kill -9: subscriptions, queued and
//! in-flight QoS 1/2 messages, with the real broker and rumqttc. Every broker runs on a
//! data directory of its own (a temporary directory).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_testkit::prelude::*;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, LastWill, LastWillProperties, Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::mpsc;

fn broker_on(data: &Path) -> Broker {
    let dir = data.to_str().unwrap();
    Broker::start_with("", &[("FERRY_STORAGE__DIR", dir), ("FERRY_LOG__LEVEL", "info")])
}

/// Options of a persistent session (clean start 0, session expiry an hour).
fn persistent(b: &Broker, id: &str) -> MqttOptions {
    let addr = b.addr("mqtt");
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    o.set_clean_start(false);
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(3600);
    o.set_connect_properties(props);
    o
}

/// A client whose incoming packets arrive on a channel.
struct Client {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Connects; returns the client and whether the broker had its session.
    async fn connect(options: MqttOptions) -> (Client, bool) {
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

    async fn next(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(10), self.incoming.recv())
            .await
            .expect("a packet in time")
            .expect("client running")
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        while !matches!(self.next().await, Packet::SubAck(_)) {}
    }

    /// Every PUBLISH that arrives until `quiet` passes without one (at most 60 s).
    async fn drain(&mut self, quiet: Duration) -> Vec<Publish> {
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

    async fn disconnect(self) {
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

/// Publishes `n` messages at `qos` to `topic` and waits until all are acknowledged.
async fn publish_acknowledged(b: &Broker, topic: &str, qos: QoS, n: usize) {
    let addr = b.addr("mqtt");
    let mut o = MqttOptions::new(format!("pub-{topic}"), addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(o, n + 10);
    for i in 0..n {
        client.publish(topic, qos, false, i.to_string()).await.unwrap();
    }
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked < n && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    assert_eq!(acked, n, "every publish acknowledged");
}

fn payloads(got: &[Publish]) -> Vec<u64> {
    got.iter()
        .map(|p| std::str::from_utf8(&p.payload).unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_persistent_session_keeps_its_subscriptions_and_queued_messages_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut b = broker_on(&data);
    let (mut dev, present) = Client::connect(persistent(&b, "dev")).await;
    assert!(!present);
    dev.subscribe("q1/#", QoS::AtLeastOnce).await;
    dev.subscribe("q2/#", QoS::ExactlyOnce).await;
    dev.disconnect().await;
    // Offline: 100 QoS 1 and 50 QoS 2 messages queued for it, every one acknowledged.
    publish_acknowledged(&b, "q1/a", QoS::AtLeastOnce, 100).await;
    publish_acknowledged(&b, "q2/a", QoS::ExactlyOnce, 50).await;
    b.kill_9();

    let mut b = broker_on(&data);
    assert!(
        b.logs().iter().any(|l| l.contains("persistent MQTT sessions taken back")),
        "the restart says what it took back"
    );
    let (mut dev, present) = Client::connect(persistent(&b, "dev")).await;
    assert!(present, "the session survived");
    let got = dev.drain(Duration::from_millis(1500)).await;
    let q1: Vec<u64> = payloads(&got.iter().filter(|p| p.topic == "q1/a").cloned().collect::<Vec<_>>());
    let q2: Vec<u64> = payloads(&got.iter().filter(|p| p.topic == "q2/a").cloned().collect::<Vec<_>>());
    assert_eq!(q1, (0..100).collect::<Vec<_>>(), "every QoS 1 message, in order");
    assert_eq!(q2, (0..50).collect::<Vec<_>>(), "every QoS 2 message, in order, once");
    assert!(got.iter().filter(|p| p.topic == "q2/a").all(|p| p.qos == QoS::ExactlyOnce));
    // The subscriptions came back too: a new message arrives without a new SUBSCRIBE.
    publish_acknowledged(&b, "q1/b", QoS::AtLeastOnce, 1).await;
    let more = dev.drain(Duration::from_millis(500)).await;
    assert_eq!(more.len(), 1);
    dev.disconnect().await;
    b.kill_9();

    // Everything was acknowledged by the subscriber: nothing comes again (the acks were
    // logged lazily, but the disconnect gave them time).
    let b = broker_on(&data);
    let (mut dev, present) = Client::connect(persistent(&b, "dev")).await;
    assert!(present);
    let again = dev.drain(Duration::from_millis(800)).await;
    assert!(again.is_empty(), "acknowledged messages are not sent again: {} came", again.len());
    dev.disconnect().await;
    // A clean start discards the stored session for good.
    let mut clean = persistent(&b, "dev");
    clean.set_clean_start(true);
    let (c, present) = Client::connect(clean).await;
    assert!(!present);
    c.disconnect().await;
}

#[tokio::test]
async fn a_session_that_expired_while_the_broker_was_down_is_gone_and_a_live_one_keeps_its_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut b = broker_on(&data);
    let short_session = |b: &Broker| {
        let mut o = persistent(b, "short");
        let mut props = ConnectProperties::new();
        props.session_expiry_interval = Some(2);
        o.set_connect_properties(props);
        o
    };
    let (mut c, _) = Client::connect(short_session(&b)).await;
    c.subscribe("e/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (mut long, _) = Client::connect(persistent(&b, "long")).await;
    long.subscribe("e/#", QoS::AtLeastOnce).await;
    long.disconnect().await;
    publish_acknowledged(&b, "e/x", QoS::AtLeastOnce, 3).await;
    b.kill_9();
    // Down for longer than the short session's 2 s expiry.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let b = broker_on(&data);
    let (c, present) = Client::connect(short_session(&b)).await;
    assert!(!present, "its expiry passed while the broker was down");
    c.disconnect().await;
    let (mut long, present) = Client::connect(persistent(&b, "long")).await;
    assert!(present);
    assert_eq!(payloads(&long.drain(Duration::from_millis(800)).await), [0, 1, 2]);
    long.disconnect().await;
}

/// What the publisher of the kill test knows.
#[derive(Default)]
struct Ledger {
    /// Sent and not yet given a packet id, in order.
    unsent: std::collections::VecDeque<u64>,
    /// Packet id → sequence number.
    inflight: std::collections::HashMap<u16, u64>,
    /// Acknowledged by the broker.
    acked: BTreeSet<u64>,
    /// The highest sequence number sent.
    sent: u64,
}

/// Publishes QoS 1 messages (payload: a sequence number from `first`) as fast as the
/// broker takes them, at most `max`, until the connection breaks.
async fn publish_until_killed(b: &Broker, first: u64, max: u64, ledger: Arc<Mutex<Ledger>>) {
    let addr = b.addr("mqtt");
    let mut o = MqttOptions::new(format!("pub-{first}"), addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    o.set_outgoing_inflight_upper_limit(64);
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    let feeder_ledger = ledger.clone();
    let feeder = tokio::spawn(async move {
        for seq in first..first + max {
            {
                let mut l = feeder_ledger.lock().unwrap();
                l.unsent.push_back(seq);
                l.sent = l.sent.max(seq);
            }
            if client.publish("s/t", QoS::AtLeastOnce, false, seq.to_string()).await.is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut l = ledger.lock().unwrap();
                if let Some(seq) = l.unsent.pop_front() {
                    l.inflight.insert(pkid, seq);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let mut l = ledger.lock().unwrap();
                if let Some(seq) = l.inflight.remove(&ack.pkid) {
                    l.acked.insert(seq);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    feeder.abort();
}

#[tokio::test]
async fn kill_9_at_random_points_loses_no_message_acknowledged_for_an_offline_session() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut received = BTreeSet::new();
    let mut last_new = 0u64;
    let mut seq = 1u64;
    const CYCLES: usize = 21;
    for cycle in 0..CYCLES {
        let mut b = broker_on(&data);
        let (mut sub, present) = Client::connect(persistent(&b, "sink")).await;
        if cycle == 0 {
            assert!(!present);
            sub.subscribe("s/#", QoS::AtLeastOnce).await;
        } else {
            assert!(present, "cycle {cycle}: the session survived the kill");
        }
        let got = sub.drain(Duration::from_millis(1000)).await;
        for p in &got {
            let n: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
            let l = ledger.lock().unwrap();
            assert!(n <= l.sent, "cycle {cycle}: {n} was never sent");
            if received.insert(n) {
                // Per-publisher order: a message seen for the first time comes after
                // every earlier first-seen one; repeats are redeliveries.
                assert!(n > last_new, "cycle {cycle}: {n} arrived after {last_new}");
                last_new = n;
            } else {
                assert!(p.dup || p.qos == QoS::AtLeastOnce, "a repeat is a redelivery");
            }
        }
        {
            let l = ledger.lock().unwrap();
            let lost: Vec<_> = l.acked.difference(&received).take(5).collect();
            assert!(lost.is_empty(), "cycle {cycle}: acknowledged and lost: {lost:?}");
        }
        sub.disconnect().await;
        if cycle == CYCLES - 1 {
            break;
        }
        {
            let mut l = ledger.lock().unwrap();
            l.unsent.clear();
            l.inflight.clear();
        }
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) % 300);
        let publisher = publish_until_killed(&b, seq, 3000, ledger.clone());
        tokio::select! {
            _ = publisher => {}
            _ = tokio::time::sleep(Duration::from_millis(100 + jitter)) => {}
        }
        b.kill_9();
        seq = ledger.lock().unwrap().sent + 1;
    }
    let acked = ledger.lock().unwrap().acked.len();
    assert!(acked > 100, "a real stream was acknowledged: {acked}");
}

#[tokio::test]
async fn a_delayed_will_survives_kill_9_and_goes_when_its_delay_is_over() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut b = broker_on(&data);
    let (mut watcher, _) = Client::connect(persistent(&b, "watcher")).await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    watcher.disconnect().await;
    let will = |id: &str| {
        let props = LastWillProperties {
            delay_interval: Some(3),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
        };
        LastWill::new(format!("will/{id}"), "gone", QoS::AtLeastOnce, false, Some(props))
    };
    // Two clients vanish without a DISCONNECT; "back" returns before the kill.
    for id in ["dying", "back"] {
        let mut o = persistent(&b, id);
        o.set_last_will(will(id));
        let (c, _) = Client::connect(o).await;
        c.task.abort();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (back, _) = Client::connect(persistent(&b, "back")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.kill_9();

    let b = broker_on(&data);
    assert!(
        b.logs().iter().any(|l| l.contains("delayed wills scheduled again")),
        "the restart takes the delayed will back"
    );
    let (mut watcher, present) = Client::connect(persistent(&b, "watcher")).await;
    assert!(present);
    let got = watcher.drain(Duration::from_millis(4000)).await;
    let topics: Vec<_> = got.iter().map(|p| String::from_utf8(p.topic.to_vec()).unwrap()).collect();
    assert_eq!(
        topics,
        ["will/dying"],
        "the will of the client that never came back, once; none for the one that did"
    );
    assert_eq!(got[0].payload, "gone");
    watcher.disconnect().await;
    drop(back);
}
