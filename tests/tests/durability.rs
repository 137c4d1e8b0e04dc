//! Storage end to end: retained messages survive a restart and kill -9 of the real
//! broker, no acknowledged change is lost, the data directory is locked and private,
//! a full store refuses instead of acknowledging, and the operator's commands work.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ferry_testkit::prelude::*;
use ferry_testkit::stomp::Stomp;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;

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

#[tokio::test]
async fn retained_messages_survive_a_restart_with_their_properties_and_remaining_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let b = broker_on(&data);
    let mut c = Client::open(&b, "setter").await;
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
    let mut reader = Client::open(&b, "reader").await;
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

#[tokio::test]
async fn kill_9_at_random_points_loses_no_acknowledged_retained_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut seq = 1_000u64;
    // 20 kills, each followed by a restart and a check.
    const CYCLES: usize = 21;
    for cycle in 0..CYCLES {
        let mut b = broker_on(&data);
        // Everything acknowledged before the last kill is back, and nothing invented.
        {
            let mut reader = Client::open(&b, &format!("reader-{cycle}")).await;
            let got = reader.retained("k/#").await;
            check_retained(&format!("cycle {cycle}"), &got, &ledger.lock().unwrap());
        }
        if cycle == CYCLES - 1 {
            break;
        }
        ledger.lock().unwrap().reset_inflight();
        // A different point in the stream each time: 100 to 400 ms in.
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) % 300);
        let run = Duration::from_millis(100 + jitter);
        let id = format!("pub-{cycle}");
        let publisher = publish_until_killed(&b, &id, (seq, u64::MAX), retained_topic, true, ledger.clone());
        tokio::select! {
            _ = publisher => panic!("the publisher stopped before the kill"),
            _ = tokio::time::sleep(run) => {}
        }
        b.kill_9();
        seq = ledger.lock().unwrap().sent.max(seq) + 1;
    }
    assert!(!ledger.lock().unwrap().acked.is_empty(), "some changes were acknowledged");
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
    let mut c = Client::open(&b, "filler").await;
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
            let mut c = Client::open(&b, "inspected").await;
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
        let mut reader = Client::open(&b, "after-repair").await;
        assert_eq!(reader.retained("i/#").await.len(), 3);
    });
}

#[tokio::test]
async fn storage_off_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let b = broker_on_with(&data, &[("FERRY_STORAGE__ENABLED", "false")]);
    let mut c = Client::open(&b, "volatile").await;
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
    let mut c = Client::open(&b, "steady").await;
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
    let mut reader = Client::open(&b, "after-snapshots").await;
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
    for f in consume_acking(&mut c, Duration::from_secs(1)).await {
        assert!(f.header("redelivered").is_none(), "nothing was delivered before: {f:?}");
        seqs.push(seq_of(&f));
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
