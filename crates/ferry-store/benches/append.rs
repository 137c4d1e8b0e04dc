//! Append + fdatasync throughput of 64-byte records from N threads, each waiting for its
//! record to be durable before appending the next (as a connection holds its PUBACK), and
//! a pipelined variant where each thread appends 64 records per turn and waits for the
//! last. Real files, real `fdatasync`, in a temporary directory (put `TMPDIR` on the disk
//! you want to measure: tmpfs makes fdatasync free).
#![allow(missing_docs, reason = "criterion_group! defines an undocumented public function")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_store::{Store, StoreConfig, SyncMode};

const RECORD: [u8; 64] = [0x5a; 64];

fn run(store: &Arc<Store>, threads: u64, per_turn: u64, iters: u64) -> Duration {
    let each = iters.div_ceil(threads).div_ceil(per_turn).max(1);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..each {
                    let mut last = 0;
                    for _ in 0..per_turn {
                        last = store.append(1, &RECORD).expect("append");
                    }
                    store.wait_durable(last).expect("durable");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("bench thread");
    }
    start.elapsed()
}

fn append_fsync(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        segment_bytes: 256 << 20,
        ..StoreConfig::new(dir.path())
    };
    let (store, _) = Store::open(config, |_| Ok(())).expect("open");
    let store = Arc::new(store);
    let mut group = c.benchmark_group("append_64B_fsync");
    group.throughput(Throughput::Elements(1));
    for threads in [1u64, 4, 16, 64] {
        group.bench_with_input(BenchmarkId::new("wait_each", threads), &threads, |b, &t| {
            b.iter_custom(|iters| run(&store, t, 1, iters))
        });
    }
    for threads in [1u64, 16] {
        group.bench_with_input(BenchmarkId::new("turn_of_64", threads), &threads, |b, &t| {
            b.iter_custom(|iters| run(&store, t, 64, iters))
        });
    }
    group.finish();
    let s = store.stats();
    eprintln!(
        "store: {} records in {} batches ({} fdatasync), largest batch {}",
        s.records, s.batches, s.syncs, s.max_batch_records
    );
}

/// The same in `sync = "os"` mode (no fdatasync): the CPU cost of the append path.
fn append_os(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        segment_bytes: 256 << 20,
        sync: SyncMode::Os,
        ..StoreConfig::new(dir.path())
    };
    let (store, _) = Store::open(config, |_| Ok(())).expect("open");
    let store = Arc::new(store);
    let mut group = c.benchmark_group("append_64B_os");
    group.throughput(Throughput::Elements(1));
    for (threads, per_turn) in [(1u64, 1u64), (16, 1), (16, 64)] {
        group.bench_with_input(BenchmarkId::new(format!("turn_of_{per_turn}"), threads), &threads, |b, &t| {
            b.iter_custom(|iters| run(&store, t, per_turn, iters))
        });
    }
    group.finish();
}

/// Opening a store that holds 1,000,000 records of 64 bytes (81 MB of log): read, check
/// and hand every record to a visitor that counts them.
fn recover_1m(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        sync: SyncMode::Os,
        ..StoreConfig::new(dir.path())
    };
    {
        let (store, _) = Store::open(config.clone(), |_| Ok(())).expect("open");
        let batch: Vec<(u8, &[u8])> = (0..1000).map(|_| (1u8, &RECORD[..])).collect();
        let mut last = 0;
        for _ in 0..1000 {
            last = store.append_all(batch.iter().copied()).expect("append").unwrap_or(0);
        }
        store.wait_durable(last).expect("durable");
    }
    let mut group = c.benchmark_group("recover");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("1M_records_64B", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let (store, rec) = Store::open(config.clone(), |_| {
                n += 1;
                Ok(())
            })
            .expect("open");
            assert_eq!((n, rec.log_records), (1_000_000, 1_000_000));
            drop(store);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = append_fsync, append_os, recover_1m
}
criterion_main!(benches);
