//! Injected I/O failures poison the store: no record after the failure is acknowledged,
//! every record acknowledged before it survives.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ferry_store::io::FaultyIo;
use ferry_store::{StoreConfig, StoreError};

/// Appends and acknowledges records until one fails; returns the acknowledged count and
/// the first error.
fn run_until_failure(store: &ferry_store::Store, start: u64) -> (u64, StoreError) {
    let mut acked = start;
    for i in start + 1..start + 10_000 {
        match store.append(kind(i), &body(i)) {
            Err(e) => return (acked, e),
            Ok(lsn) => match store.wait_durable_timeout(lsn, Duration::from_secs(10)) {
                Some(Ok(())) => acked = lsn,
                Some(Err(p)) => return (acked, StoreError::Poisoned(p)),
                None => panic!("wait for {lsn} timed out"),
            },
        }
    }
    panic!("no failure was injected")
}

fn check_poisoned(store: &ferry_store::Store, needle: &str) {
    let reason = store.poison_reason().expect("poisoned");
    assert!(reason.contains(needle), "{reason}");
    assert!(store.health().is_err());
    assert!(matches!(store.append(1, b"late"), Err(StoreError::Poisoned(_))));
    // Waiting for anything not yet durable fails at once, and for ever.
    let next = store.last_lsn() + 1;
    assert!(matches!(store.wait_durable_timeout(next, Duration::from_secs(1)), Some(Err(_))));
    assert!(matches!(store.begin_snapshot(1), Err(StoreError::Poisoned(_))));
}

fn reopen_has(cfg: StoreConfig, acked: u64) {
    let (_, _, seen) = open(cfg).unwrap();
    assert!(seen.len() as u64 >= acked, "acked {acked}, recovered {}", seen.len());
    assert_history(&seen[..acked as usize], acked);
    // Nothing invented: whatever else came back is the history too (written, never acked).
    assert_history(&seen, seen.len() as u64);
}

#[test]
fn a_failed_write_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let (store, _, _) = open_with(config(dir.path()), Arc::new(io.clone())).unwrap();
    for i in 1..=20 {
        store.wait_durable(store.append(kind(i), &body(i)).unwrap()).unwrap();
    }
    io.faults().fail_write(3);
    let (acked, err) = run_until_failure(&store, 20);
    assert!(acked >= 21, "two more writes went through: {acked}");
    assert!(err.to_string().contains("write"), "{err}");
    check_poisoned(&store, "Input/output error");
    drop(store);
    reopen_has(config(dir.path()), acked);
}

#[test]
fn a_failed_fsync_poisons_and_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let faults = io.faults();
    let (store, _, _) = open_with(config(dir.path()), Arc::new(io)).unwrap();
    faults.fail_sync(5);
    let (acked, _) = run_until_failure(&store, 0);
    assert!(acked >= 4);
    check_poisoned(&store, "fdatasync");
    let syncs = faults.syncs();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(faults.syncs(), syncs, "no retry");
    drop(store);
    reopen_has(config(dir.path()), acked);
}

#[test]
fn a_full_disk_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let (store, _, _) = open_with(config(dir.path()), Arc::new(io.clone())).unwrap();
    io.faults().enospc(10);
    let (acked, _) = run_until_failure(&store, 0);
    check_poisoned(&store, "No space left on device");
    drop(store);
    reopen_has(config(dir.path()), acked);
}

#[test]
fn max_disk_bytes_poisons_like_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_disk_bytes: 3 * 8192,
        ..config(dir.path())
    };
    let (store, _, _) = open(cfg.clone()).unwrap();
    let (acked, _) = run_until_failure(&store, 0);
    check_poisoned(&store, "max_disk_bytes");
    assert_eq!(segments(dir.path()).len(), 3);
    assert!(store.stats().disk_bytes <= 3 * 8192);
    drop(store);
    reopen_has(cfg, acked);
}

#[test]
fn a_failed_segment_creation_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let (store, _, _) = open_with(config(dir.path()), Arc::new(io.clone())).unwrap();
    // The next directory sync is the one that makes a new segment's name durable.
    io.faults().fail_dir_sync(1);
    let (acked, err) = run_until_failure(&store, 0);
    assert!(err.to_string().contains("fsync directory"), "{err}");
    check_poisoned(&store, "fsync directory");
    assert_eq!(
        segments(dir.path()).len(),
        2,
        "the new segment was renamed into place, its sync failed"
    );
    drop(store);
    reopen_has(config(dir.path()), acked);
}

#[test]
fn a_failed_snapshot_write_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let (store, _, _) = open_with(config(dir.path()), Arc::new(io.clone())).unwrap();
    for i in 1..=10 {
        store.wait_durable(store.append(kind(i), &body(i)).unwrap()).unwrap();
    }
    io.faults().fail_write(1);
    let err = store.snapshot(10, [(1u8, b"state".to_vec())]).unwrap_err();
    assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
    check_poisoned(&store, "write");
    drop(store);
    // The failed snapshot left nothing behind; the log is whole.
    let (_, rec, seen) = open(config(dir.path())).unwrap();
    assert_eq!(rec.snapshot_lsn, None);
    assert_history(&seen, 10);
}
