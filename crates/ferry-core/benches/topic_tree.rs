//! The cost of routing through the subscription tree, and of the retained store's
//! wildcard lookups.
//!
//! The setting: 10,000 distinct topics `site{0..10}/dev{0..100}/m{0..10}` and 100,000
//! subscriptions on them: 80% exact filters, 10% with `+`, 10% with `#`. Run with
//! `cargo bench -p ferry-core --bench topic_tree -- --quick`.
#![allow(missing_docs, reason = "criterion_group! defines an undocumented public function")]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry_core::topic::matches;
use ferry_core::{MemoryRetained, RetainedStore, SubscriptionTree, TopicFilter, TopicName};

const SITES: u64 = 10;
const DEVICES: u64 = 100;
const METRICS: u64 = 10;
const SUBSCRIPTIONS: u64 = 100_000;

/// A small deterministic generator (xorshift64*), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

fn topic_name(s: u64, d: u64, m: u64) -> String {
    format!("site{s}/dev{d}/m{m}")
}

fn topics() -> Vec<TopicName> {
    let mut out = Vec::new();
    for s in 0..SITES {
        for d in 0..DEVICES {
            for m in 0..METRICS {
                out.extend(TopicName::new(&topic_name(s, d, m)));
            }
        }
    }
    out
}

/// 100,000 filters over the topics: 80% exact, 10% `+`, 10% `#`.
fn filters() -> Vec<TopicFilter> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..SUBSCRIPTIONS)
        .filter_map(|i| {
            let (s, d, m) = (rng.next(SITES), rng.next(DEVICES), rng.next(METRICS));
            let f = match i % 10 {
                0 => format!("site{s}/+/m{m}"),
                1 => match rng.next(4) {
                    0 => format!("site{s}/#"),
                    _ => format!("site{s}/dev{d}/#"),
                },
                _ => topic_name(s, d, m),
            };
            TopicFilter::new(&f).ok()
        })
        .collect()
}

fn tree(filters: &[TopicFilter]) -> SubscriptionTree<u64, u8> {
    let mut tree = SubscriptionTree::new();
    for (key, filter) in filters.iter().enumerate() {
        tree.insert(filter, key as u64, 1);
    }
    tree
}

fn bench_tree(c: &mut Criterion) {
    let topics = topics();
    let filters = filters();
    let tree = tree(&filters);
    let total: usize = topics.iter().map(|t| count(&tree, t)).sum();
    eprintln!(
        "topic_tree: {} subscriptions, {} nodes, {} topics, {:.1} matches per topic on average",
        tree.len(),
        tree.node_count(),
        topics.len(),
        total as f64 / topics.len() as f64
    );

    let mut group = c.benchmark_group("subscription_tree");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("for_each_match/100k_subs", |b| {
        b.iter(|| {
            i = (i + 7919) % topics.len();
            black_box(count(&tree, &topics[i]))
        })
    });
    if let Ok(miss) = TopicName::new("elsewhere/dev42/m7") {
        group.bench_function("for_each_match/no_match", |b| b.iter(|| black_box(count(&tree, &miss))));
    }
    if let Ok(deep) = TopicName::new("site3/dev42/m7/a/b/c/d/e") {
        group.bench_function("for_each_match/8_levels", |b| b.iter(|| black_box(count(&tree, &deep))));
    }
    let mut i = 0;
    group.bench_function("naive_scan/100k_subs", |b| {
        b.iter(|| {
            i = (i + 7919) % topics.len();
            black_box(filters.iter().filter(|f| matches(f.as_str(), topics[i].as_str())).count())
        })
    });

    let mut tree = tree;
    let exact = TopicFilter::new("site3/dev42/new-metric").ok();
    let plus = TopicFilter::new("site3/+/new-metric").ok();
    let hash = TopicFilter::new("site3/dev42/extra/#").ok();
    for (name, filter) in [("exact", exact), ("plus", plus), ("hash", hash)] {
        let Some(filter) = filter else { continue };
        group.bench_function(format!("insert_remove/{name}"), |b| {
            b.iter(|| {
                tree.insert(&filter, u64::MAX, 2);
                black_box(tree.remove(&filter, &u64::MAX))
            })
        });
    }
    let existing = &filters[12_345];
    group.bench_function("insert_remove/existing_node", |b| {
        b.iter(|| {
            tree.insert(existing, u64::MAX, 2);
            black_box(tree.remove(existing, &u64::MAX))
        })
    });
    group.finish();
}

fn count(tree: &SubscriptionTree<u64, u8>, topic: &TopicName) -> usize {
    let mut n = 0;
    tree.for_each_match(topic, |_, _| n += 1);
    n
}

fn bench_retained(c: &mut Criterion) {
    let store = MemoryRetained::new();
    for topic in topics() {
        store.set(topic, Bytes::from_static(b"21.5"));
    }
    let mut group = c.benchmark_group("retained");
    for f in ["site3/dev42/m7", "site3/dev42/+", "site3/+/m7", "site3/#"] {
        let Ok(filter) = TopicFilter::new(f) else { continue };
        let mut n = 0;
        store.for_each_matching(&filter, &mut |_, _| n += 1);
        group.throughput(Throughput::Elements(n));
        group.bench_function(format!("for_each_matching/10k_topics/{f}"), |b| {
            b.iter(|| {
                let mut n = 0u32;
                store.for_each_matching(&filter, &mut |_, _| n += 1);
                black_box(n)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench_tree, bench_retained
}
criterion_main!(benches);
