//! Persistent MQTT sessions survive restarts and kill -9: subscriptions, queued and
//! in-flight QoS 1/2 messages, with the real broker and rumqttc. Every broker runs on a
//! data directory of its own (a temporary directory).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ferry_testkit::prelude::*;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, LastWill, LastWillProperties, Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

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

#[tokio::test]
async fn kill_9_at_random_points_loses_no_message_acknowledged_for_an_offline_session() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut stream = Stream::default();
    let mut seq = 1u64;
    const CYCLES: usize = 21;
    for cycle in 0..CYCLES {
        let mut b = broker_on(&data);
        let mut sub = Client::persistent_sink(&b, "sink", "s/#", cycle == 0, &format!("cycle {cycle}")).await;
        let got = sub.drain(Duration::from_millis(1000)).await;
        stream.check(&format!("cycle {cycle}"), &got, &ledger.lock().unwrap());
        sub.disconnect().await;
        if cycle == CYCLES - 1 {
            break;
        }
        ledger.lock().unwrap().reset_inflight();
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) % 300);
        let id = format!("pub-{seq}");
        let publisher = publish_until_killed(&b, &id, (seq, 3000), |_| "s/t".into(), false, ledger.clone());
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
