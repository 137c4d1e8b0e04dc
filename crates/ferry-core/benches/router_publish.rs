//! The cost of `Router::publish` fanning one message out: matching the topic, sorting
//! and de-duplicating the subscribers, and pushing one delivery onto each outbox (and
//! ringing its connection's doorbell).
//!
//! The setting: 1, 100 or 10,000 subscribers, each a session of its own with an outbox
//! and an attached `Wakeup`, as a connection has. A third of them subscribe to the exact
//! topic `fleet/truck7/position`, a third to `fleet/+/position` and a third to `fleet/#`,
//! so the match visits three nodes of the tree and the subscribers arrive out of order.
//! Each subscriber's QoS is the message's, 0 or 1. A message is 64 bytes, new for every
//! publish. The outboxes are emptied between batches of publishes, outside the timing,
//! so no delivery is dropped. Throughput is in deliveries. Run with
//! `cargo bench -p ferry-core --bench router_publish -- --quick`.
#![allow(missing_docs, reason = "criterion_group! defines an undocumented public function")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_core::{
    next_subscriber_id, Message, Outbox, OutboxLimits, QoS, Router, SubscribeOptions, Subscriber, Subscription, TopicFilter, TopicName,
    Wakeup,
};

const TOPIC: &str = "fleet/truck7/position";
const FILTERS: [&str; 3] = [TOPIC, "fleet/+/position", "fleet/#"];
/// Publishes timed back to back before the outboxes are emptied; under every outbox
/// limit, so that nothing is dropped.
const BATCH: u64 = 100;

/// A router with `n` subscribers at `qos`, and their outboxes (with the doorbells that
/// keep them attached).
fn fan_out(n: usize, qos: QoS) -> (Router, Vec<(Arc<Outbox>, Wakeup)>) {
    let router = Router::default();
    let limits = OutboxLimits {
        max_qos0: 10 * BATCH as usize,
        max_qos12: 10 * BATCH as usize,
        max_bytes: 0,
    };
    let outboxes = (0..n)
        .map(|i| {
            let outbox = Arc::new(Outbox::new(limits));
            let wakeup = Wakeup::new();
            outbox.attach(wakeup.clone());
            let filter = TopicFilter::new(FILTERS[i % FILTERS.len()]).expect("a valid filter");
            let subscriber = Subscriber {
                durable: None,
                id: next_subscriber_id(),
                outbox: outbox.clone(),
                options: SubscribeOptions { qos, ..Default::default() },
            };
            router.subscribe(&Subscription::Plain(filter), subscriber);
            (outbox, wakeup)
        })
        .collect();
    (router, outboxes)
}

fn drain(outboxes: &[(Arc<Outbox>, Wakeup)], scratch: &mut Vec<ferry_core::Delivery>) {
    for (outbox, _) in outboxes {
        outbox.pop_into(usize::MAX, scratch);
        scratch.clear();
    }
}

fn bench_publish(c: &mut Criterion) {
    let topic = TopicName::new(TOPIC).expect("a valid topic");
    let payload = Bytes::from(vec![0x5a; 64]);
    let mut group = c.benchmark_group("router_publish");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        for n in [1usize, 100, 10_000] {
            let (router, outboxes) = fan_out(n, qos);
            let now = Instant::now();
            let probe = router.publish(Arc::new(Message::new(topic.clone(), payload.clone(), qos, false)), now);
            assert_eq!(probe, n, "every subscriber gets one delivery");
            let mut scratch = Vec::new();
            drain(&outboxes, &mut scratch);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(format!("qos{}", qos as u8), n), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let batch = left.min(BATCH);
                        let start = Instant::now();
                        for _ in 0..batch {
                            let message = Arc::new(Message::new(topic.clone(), payload.clone(), qos, false));
                            black_box(router.publish(message, now));
                        }
                        spent += start.elapsed();
                        drain(&outboxes, &mut scratch);
                        left -= batch;
                    }
                    spent
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench_publish
}
criterion_main!(benches);
