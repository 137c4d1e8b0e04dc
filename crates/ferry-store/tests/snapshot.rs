//! Snapshots: live state at an LSN, segments it covers deleted, recovery = snapshot then
//! the later log.

mod common;

use common::*;
use ferry_store::{inspect, Source, StoreError};

#[test]
fn snapshot_then_replay_deletes_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    for i in 1..=400 {
        store.append(kind(i), &body(i)).unwrap();
    }
    store.wait_durable(400).unwrap();
    let before = segments(dir.path()).len();
    assert!(before >= 4);
    assert!(store.snapshot_due(), "the log moved past a segment a snapshot would delete");

    // The live state as of LSN 350: three records.
    let state: Vec<(u8, Vec<u8>)> = vec![(10, b"session a".to_vec()), (11, b"retained x".to_vec()), (10, vec![])];
    let info = store.snapshot(350, state.clone()).unwrap();
    assert_eq!((info.lsn, info.records), (350, 3));
    assert!(info.segments_deleted >= 2, "{info:?}");
    let after = segments(dir.path());
    assert_eq!(after.len(), before - info.segments_deleted);
    assert_eq!(store.stats().snapshot_lsn, Some(350));
    // Snapshots must move forward and stand for LSNs handed out.
    assert!(matches!(store.snapshot(350, state.clone()), Err(StoreError::BadSnapshotLsn { .. })));
    assert!(matches!(store.snapshot(401, state.clone()), Err(StoreError::BadSnapshotLsn { .. })));
    for i in 401..=420 {
        store.append(kind(i), &body(i)).unwrap();
    }
    store.wait_durable(420).unwrap();
    drop(store);

    let (store, rec, seen) = open(config(dir.path())).unwrap();
    assert_eq!((rec.snapshot_lsn, rec.snapshot_records, rec.log_records), (Some(350), 3, 70));
    let snap: Vec<_> = seen
        .iter()
        .filter(|r| r.source == Source::Snapshot)
        .map(|r| (r.lsn, r.kind, r.body.clone()))
        .collect();
    assert_eq!(snap, state.iter().map(|(k, b)| (350, *k, b.clone())).collect::<Vec<_>>());
    assert!(
        seen[..3].iter().all(|r| r.source == Source::Snapshot),
        "snapshot records come first"
    );
    let log: Vec<_> = seen[3..].iter().map(|r| r.lsn).collect();
    assert_eq!(log, (351..=420).collect::<Vec<_>>());
    for r in &seen[3..] {
        assert_eq!((r.kind, &r.body), (kind(r.lsn), &body(r.lsn)));
    }

    // A second snapshot replaces the first.
    let info2 = store.begin_snapshot(420).and_then(|mut w| {
        w.push(12, b"only")?;
        w.finish()
    });
    assert_eq!(info2.unwrap().records, 1);
    drop(store);
    let snaps: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    assert_eq!(snaps, vec![ferry_store::segment::snapshot_name(420)]);
    let (_, rec, seen) = open(config(dir.path())).unwrap();
    assert_eq!((rec.snapshot_lsn, seen.len()), (Some(420), 1));
    assert_eq!(rec.next_lsn, 421);
}

#[test]
fn a_snapshot_ahead_of_the_durable_log_stands_for_it() {
    // The snapshot may be taken at an LSN not yet synced; after a crash that lost those
    // records, recovery resumes after the snapshot.
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    for i in 1..=5 {
        store.append(kind(i), &body(i)).unwrap();
    }
    store.wait_durable(5).unwrap();
    store.snapshot(5, [(1u8, b"s")]).unwrap();
    drop(store);
    // Pretend the snapshot stood for LSN 9 whose records never reached the disk.
    let name5 = dir.path().join(ferry_store::segment::snapshot_name(5));
    let bytes = std::fs::read(&name5).unwrap();
    let mut header = ferry_store::segment::FileHeader::decode(&bytes, ferry_store::segment::SNAPSHOT_MAGIC, &name5).unwrap();
    header.lsn = 9;
    let mut out = header.encode().to_vec();
    ferry_store::frame::encode(&mut out, 9, 1, b"s");
    ferry_store::frame::encode(&mut out, u64::MAX, 0, &1u64.to_le_bytes());
    std::fs::remove_file(&name5).unwrap();
    std::fs::write(dir.path().join(ferry_store::segment::snapshot_name(9)), out).unwrap();

    let (store, rec, seen) = open(config(dir.path())).unwrap();
    assert_eq!((rec.snapshot_lsn, rec.next_lsn, seen.len()), (Some(9), 10, 1));
    assert_eq!(store.append(1, b"ten").unwrap(), 10);
    store.wait_durable(10).unwrap();
    drop(store);
    let (_, _, seen) = open(config(dir.path())).unwrap();
    assert_eq!(
        seen.iter().map(|r| (r.lsn, r.source)).collect::<Vec<_>>(),
        vec![(9, Source::Snapshot), (10, Source::Log)]
    );
}

#[test]
fn a_damaged_snapshot_is_refused_and_repair_keeps_its_readable_part() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    for i in 1..=300 {
        store.append(kind(i), &body(i)).unwrap();
    }
    store.wait_durable(300).unwrap();
    let state: Vec<(u8, Vec<u8>)> = (0..50).map(|i| (20, format!("state {i}").into_bytes())).collect();
    store.snapshot(300, state).unwrap();
    for i in 301..=310 {
        store.append(kind(i), &body(i)).unwrap();
    }
    store.wait_durable(310).unwrap();
    drop(store);
    let snap = dir.path().join(ferry_store::segment::snapshot_name(300));
    let mut bytes = std::fs::read(&snap).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&snap, bytes).unwrap();
    match open_err(config(dir.path())) {
        StoreError::Corrupt { file, .. } => assert_eq!(file, snap),
        e => panic!("{e}"),
    }
    let report = ferry_store::repair(dir.path()).unwrap();
    assert!(report.actions.iter().any(|a| a.contains("rewritten")), "{report:?}");
    let (_, rec, seen) = open(config(dir.path())).unwrap();
    let kept = rec.snapshot_records;
    assert!(kept > 0 && kept < 50, "{kept}");
    for (i, r) in seen[..kept as usize].iter().enumerate() {
        assert_eq!(r.body, format!("state {i}").into_bytes());
    }
    assert_eq!(
        seen[kept as usize..].iter().map(|r| r.lsn).collect::<Vec<_>>(),
        (301..=310).collect::<Vec<_>>()
    );
}

#[test]
fn inspect_describes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    for i in 1..=400 {
        store.append(kind(i), &body(i)).unwrap();
    }
    store.wait_durable(400).unwrap();
    store.snapshot(200, [(7u8, b"a"), (7, b"b")]).unwrap();
    let live = inspect(dir.path()).unwrap();
    drop(store);
    let ins = inspect(dir.path()).unwrap();
    assert_eq!(live.log_records, ins.log_records, "inspect reads a running store's directory too");
    assert_eq!(ins.problem, None);
    assert_eq!(ins.next_lsn, Some(401));
    let snap = ins.snapshot.as_ref().unwrap();
    assert_eq!((snap.lsn, snap.records, snap.records_by_kind.get(&7)), (200, 2, Some(&2)));
    assert!(snap.created_unix_ms > 0);
    let first = ins.segments[0].base_lsn;
    assert!(first > 1 && first <= 201, "segments before the snapshot were deleted: {first}");
    assert_eq!(ins.log_records, 400 - first + 1);
    let by_kind: u64 = ins.records_by_kind.values().sum();
    assert_eq!(by_kind, ins.log_records);
    assert_eq!(ins.segments.last().unwrap().last_lsn, Some(400));
    let files: u64 = ins.segments.iter().map(|s| s.bytes).sum::<u64>() + snap.bytes;
    assert_eq!(ins.total_bytes, files);
    assert!(ins.store_id.is_some());

    std::fs::write(dir.path().join("junk"), b"x").unwrap();
    let ins = inspect(dir.path()).unwrap();
    assert_eq!(ins.foreign_files, vec![dir.path().join("junk")]);
    assert!(ins.problem.unwrap().contains("junk"));
}

#[test]
fn snapshots_taken_while_appends_go_on_across_rolls() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    let store = Arc::new(store);
    // The "live state": every record so far, in LSN order (appended under the same lock,
    // so a snapshot at the last LSN holds exactly the records up to it).
    type State = Arc<Mutex<Vec<(u64, u8, Vec<u8>)>>>;
    let state: State = Arc::default();
    let writer = {
        let (store, state) = (store.clone(), state.clone());
        std::thread::spawn(move || {
            for i in 1..=1500u64 {
                let mut s = state.lock().unwrap();
                let lsn = store.append(kind(i), &body(i)).unwrap();
                s.push((lsn, kind(i), body(i)));
                drop(s);
                if i % 25 == 0 {
                    store.wait_durable(lsn).unwrap();
                }
            }
            store.wait_durable(1500).unwrap();
        })
    };
    let mut snapshots = 0;
    let mut last = 0;
    loop {
        let finished = writer.is_finished();
        let records = state.lock().unwrap().clone();
        let lsn = records.last().map_or(0, |r| r.0);
        if finished && lsn == last {
            break;
        }
        if lsn > last {
            let info = store.snapshot(lsn, records.iter().map(|(_, k, b)| (*k, b.clone()))).unwrap();
            assert_eq!(info.records, lsn);
            last = lsn;
            snapshots += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    writer.join().unwrap();
    assert!(snapshots > 2, "{snapshots} snapshots");
    assert!(store.stats().segments <= 3, "covered segments were deleted: {:?}", store.stats());
    drop(store);
    let (_, rec, seen) = open(config(dir.path())).unwrap();
    assert_eq!(rec.snapshot_lsn, Some(last));
    let bodies: Vec<_> = seen.iter().map(|r| (r.kind, r.body.clone())).collect();
    let history: Vec<_> = (1..=1500).map(|i| (kind(i), body(i))).collect();
    assert_eq!(bodies, history);
}

/// Bytes of the store's files in `dir` whose names end with `suffix` ("" for all of them:
/// segments, the snapshot, a preallocated spare; not the lock file).
fn dir_bytes(dir: &std::path::Path, suffix: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ferry_store::LOCK_FILE && e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| e.metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_steady_load_over_a_small_live_state_keeps_the_disk_at_it_plus_two_segments() {
    // The defaults but for the segment size: snapshot_after_bytes (1 GiB) is never
    // reached, so the snapshots come from the log moving into new segments.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    assert_eq!(cfg.snapshot_after_bytes, ferry_store::StoreConfig::default().snapshot_after_bytes);
    let segment = cfg.segment_bytes;
    let (store, _, _) = open(cfg.clone()).unwrap();
    // The live state: 8 keys, each overwritten over and over.
    let mut live: std::collections::BTreeMap<u8, Vec<u8>> = Default::default();
    let (mut snapshots, mut max_bytes) = (0, 0);
    for i in 1..=4000u64 {
        let key = (i % 8) as u8 + 1;
        let value = body(i);
        let lsn = store.append(key, &value).unwrap();
        live.insert(key, value);
        if i % 20 == 0 {
            store.wait_durable(lsn).unwrap();
            // What the broker's timer does, here every 20 records.
            if store.snapshot_due() {
                store.snapshot(lsn, live.iter().map(|(k, v)| (*k, v.clone()))).unwrap();
                snapshots += 1;
            }
            let stats = store.stats();
            let snapshot = dir_bytes(dir.path(), ferry_store::segment::SNAPSHOT_SUFFIX);
            let on_disk = dir_bytes(dir.path(), "");
            max_bytes = max_bytes.max(on_disk);
            assert!(stats.segments <= 2, "after {i} records: {stats:?}");
            assert!(
                on_disk <= snapshot + 2 * segment,
                "after {i} records: {on_disk} bytes on disk, {stats:?}"
            );
        }
    }
    assert!(snapshots >= 10, "{snapshots} snapshots");
    assert!(store.stats().bytes > 20 * segment, "the log wrote {} bytes", store.stats().bytes);
    drop(store);
    // And what is left replays to the live state.
    let (_, _, seen) = open(cfg).unwrap();
    let mut replayed: std::collections::BTreeMap<u8, Vec<u8>> = Default::default();
    for r in seen {
        replayed.insert(r.kind, r.body);
    }
    assert_eq!(replayed, live);
    eprintln!("{snapshots} snapshots, at most {max_bytes} bytes on disk ({segment}-byte segments)");
}

#[test]
fn a_live_state_bigger_than_a_segment_is_written_again_only_once_the_log_outgrew_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (store, _, _) = open(cfg.clone()).unwrap();
    for i in 1..=10u64 {
        store.append(1, &body(i)).unwrap();
    }
    store.wait_durable(10).unwrap();
    // A snapshot of four segments' worth.
    let big = vec![0u8; 1000];
    let info = store
        .snapshot(10, (0..4 * cfg.segment_bytes / 1000).map(|_| (1u8, big.clone())))
        .unwrap();
    let mut lsn = 10;
    while store.stats().bytes_since_snapshot < info.bytes {
        assert!(
            !store.snapshot_due(),
            "due after {} log bytes, snapshot {}",
            store.stats().bytes_since_snapshot,
            info.bytes
        );
        lsn = store.append(1, &big).unwrap();
    }
    store.wait_durable(lsn).unwrap();
    assert!(store.stats().segments >= 2);
    assert!(store.snapshot_due());
}
