//! Everything durable at once under kill -9: in every cycle two MQTT QoS 1 publishers
//! (rumqttc) send as fast as the broker acknowledges to topics that an offline
//! persistent session holds, a third publisher overwrites retained topics, and a STOMP
//! client SENDs with receipts to a `/queue/`, all against one broker; it is killed with
//! SIGKILL at a random point after some acknowledgements (seeded: the seed is printed,
//! `CRASH_ALL_SEED=N` repeats it) and restarted on the same data directory. Then every
//! acknowledged message reaches the persistent session, in order per publisher, repeats
//! only as redeliveries; every retained topic holds its last acknowledged value or a
//! later one that was sent; every receipted SEND is consumed from the queue
//! (`ack:client-individual`), repeats only as redeliveries.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A publisher's client id and the topic of each of its messages.
type Publisher = (&'static str, fn(u64) -> String);
/// The two publishers of the persistent session's streams.
const STREAMS: [Publisher; 2] = [("pub-a", |_| "s/a".to_owned()), ("pub-b", |_| "s/b".to_owned())];
const CYCLES: usize = 21;
/// How long a check waits for the next delivery before it takes the stream as drained.
const QUIET: Duration = Duration::from_millis(700);

/// The broker's settings: small segments and a snapshot check every 100 ms, so that
/// snapshots are written while all four streams append (a snapshot taken between a
/// message's body and the queued copy that needs it would lose the copy); and a session
/// queue limit no cycle reaches. At the default (`mqtt.max_queued_qos12` = 10,000) the
/// two publishers can outrun it in a long cycle, and a message past the limit is
/// dropped and counted as the limit says, not lost by the store.
const BROKER: [(&str, &str); 4] = [
    ("FERRY_STORAGE__SEGMENT_BYTES", "4194304"),
    ("FERRY_STORAGE__SNAPSHOT_CHECK_INTERVAL", "100ms"),
    ("FERRY_MQTT__MAX_QUEUED_QOS12", "1000000"),
    ("FERRY_MQTT__MAX_QUEUED_BYTES", "1073741824"),
];

#[tokio::test]
async fn kill_9_at_random_points_under_every_durable_stream_at_once_loses_nothing_acknowledged() {
    let seed: u64 = std::env::var("CRASH_ALL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("crash_all: seed {seed} (CRASH_ALL_SEED={seed} repeats the kill points)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let streams: Vec<Arc<Mutex<Ledger>>> = STREAMS.iter().map(|_| Arc::default()).collect();
    let retained: Arc<Mutex<Ledger>> = Arc::default();
    let queue: Arc<Mutex<StompLedger>> = Arc::default();
    let mut received: Vec<Stream> = STREAMS.iter().map(|_| Stream::default()).collect();
    let mut consumed = Stream::default();
    let mut kill_points = Vec::new();
    let mut snapshots = 0;
    for cycle in 0..CYCLES {
        let mut b = broker_on_with(&data, &BROKER);
        let what = format!("cycle {cycle} (seed {seed})");

        // What came back: the persistent session's queue, the retained topics and the
        // STOMP queue, read at the same time.
        let mut sub = Client::persistent_sink(&b, "offline", "s/#", cycle == 0, &what).await;
        let (got, values, messages) = tokio::join!(
            sub.drain(QUIET),
            async {
                let mut reader = Client::open(&b, &format!("reader-{cycle}")).await;
                reader.retained("k/#").await
            },
            async {
                let mut c = queue_consumer(&b, "durable").await;
                let got = consume_acking(&mut c, QUIET).await;
                c.with_receipt("DISCONNECT", "", "bye").await;
                got
            }
        );
        sub.disconnect().await;
        for (i, (_, topic_of)) in STREAMS.iter().enumerate() {
            let topic = topic_of(0);
            let mine: Vec<_> = got.iter().filter(|p| p.topic == topic.as_bytes()).cloned().collect();
            received[i].check(&format!("{what}, {topic}"), &mine, &streams[i].lock().unwrap());
        }
        assert!(
            got.iter().all(|p| STREAMS.iter().any(|(_, t)| p.topic == t(0).as_bytes())),
            "{what}: only the streams' topics"
        );
        check_retained(&what, &values, &retained.lock().unwrap());
        consumed.check_queue(&format!("{what}, /queue/durable"), &messages, &queue.lock().unwrap());
        if cycle == CYCLES - 1 {
            break;
        }

        // All four at once until a random point after each had an acknowledgement.
        let ledgers: Vec<_> = streams.iter().chain([&retained]).cloned().collect();
        for l in &ledgers {
            l.lock().unwrap().reset_inflight();
        }
        let acked_before: Vec<usize> = ledgers.iter().map(|l| l.lock().unwrap().acked.len()).collect();
        let receipted_before = queue.lock().unwrap().receipted.len();
        let publishers = STREAMS
            .iter()
            .zip(&streams)
            .map(|(&(id, topic_of), l)| (id, topic_of, false, l))
            .chain([("pub-retained", retained_topic as fn(u64) -> String, true, &retained)])
            .map(|(id, topic_of, retain, l)| {
                let first = l.lock().unwrap().sent + 1;
                publish_until_killed(&b, id, (first, u64::MAX), topic_of, retain, l.clone())
            });
        let load = async {
            tokio::join!(
                futures_util::future::join_all(publishers),
                send_to_queue_until_killed(&b, queue.lock().unwrap().sent + 1, queue.clone()),
            )
        };
        let after = Duration::from_millis(rng.u64(0..300));
        let kill_point = async {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let acked = ledgers
                    .iter()
                    .zip(&acked_before)
                    .all(|(l, before)| l.lock().unwrap().acked.len() > *before);
                if acked && queue.lock().unwrap().receipted.len() > receipted_before {
                    break;
                }
                assert!(Instant::now() < deadline, "{what}: a stream had no acknowledgement in 20 s");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(after).await;
        };
        tokio::select! {
            _ = load => panic!("{what}: a stream stopped before the kill"),
            () = kill_point => {}
        }
        snapshots += b.logs().iter().filter(|l| l.contains("storage: snapshot written")).count();
        b.kill_9();
        kill_points.push(after.as_millis());
    }
    let acked: Vec<usize> = streams.iter().chain([&retained]).map(|l| l.lock().unwrap().acked.len()).collect();
    let receipted = queue.lock().unwrap().receipted.len();
    eprintln!(
        "crash_all: {} kills (at {kill_points:?} ms after the first acknowledgements) in {:.1} s, {snapshots} snapshots written under load; acknowledged: streams {:?}, retained {}, receipted {receipted}",
        CYCLES - 1,
        started.elapsed().as_secs_f64(),
        &acked[..2],
        acked[2]
    );
    assert!(
        acked.iter().all(|&n| n > 100) && receipted > 100,
        "real streams: {acked:?}, {receipted}"
    );
    assert!(snapshots > 0, "snapshots were written while the streams ran");
}
