//! Group commit: many threads appending at once share batches, and all their records are
//! durable and come back.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[test]
fn concurrent_appenders_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ferry_store::StoreConfig {
        segment_bytes: 1 << 20,
        ..config(dir.path())
    };
    let (store, _, _) = open(cfg.clone()).unwrap();
    let store = Arc::new(store);
    const THREADS: u64 = 8;
    const EACH: u64 = 200;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..EACH {
                    let body = format!("thread {t} record {i}");
                    let lsn = store.append(t as u8, body.as_bytes()).unwrap();
                    // Like a connection holding its PUBACK until the record is durable.
                    assert_eq!(store.wait_durable_timeout(lsn, Duration::from_secs(20)), Some(Ok(())));
                    assert!(store.durable_lsn() >= lsn);
                    mine.push((lsn, body));
                }
                mine
            })
        })
        .collect();
    let mut expected = BTreeMap::new();
    for h in handles {
        expected.extend(h.join().unwrap());
    }
    let stats = store.stats();
    let total = THREADS * EACH;
    assert_eq!(stats.records, total);
    assert_eq!(stats.durable_lsn, total);
    assert!(stats.max_batch_records > 1, "batches of more than one record: {stats:?}");
    assert!(stats.batches < total, "fewer fsyncs than records: {stats:?}");
    assert_eq!(stats.syncs, stats.batches);
    drop(store);

    let (_, _, seen) = open(cfg).unwrap();
    assert_eq!(seen.len() as u64, total);
    for r in seen {
        assert_eq!(expected.get(&r.lsn).map(|b| b.as_bytes()), Some(&r.body[..]), "record {}", r.lsn);
    }
}
