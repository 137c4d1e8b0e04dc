//! Appending, reopening, the lock, and the directory's refusals.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::*;
use ferry_store::{segment, Record, Source, StoreError, SyncMode};

#[test]
fn append_reopen_round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rec, seen) = open(config(dir.path())).unwrap();
    assert!(seen.is_empty());
    assert_eq!(rec.next_lsn, 1);
    let mut last = 0;
    for i in 1..=400 {
        last = store.append(kind(i), &body(i)).unwrap();
        assert_eq!(last, i);
    }
    store.wait_durable(last).unwrap();
    assert_eq!(store.durable_lsn(), 400);
    assert!(store.stats().segments > 2, "8 KiB segments roll over: {:?}", store.stats());
    store.close().unwrap();
    // The segment preallocated ahead of the next roll is not left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n == "LOCK" || n.ends_with(".wal")), "{names:?}");

    let (store, rec, seen) = open(config(dir.path())).unwrap();
    assert_history(&seen, 400);
    assert_eq!((rec.next_lsn, rec.truncated_bytes, rec.log_records), (401, 0, 400));
    assert_eq!(store.append(1, b"more").unwrap(), 401);
    drop(store);
    let (_, _, seen) = open(config(dir.path())).unwrap();
    assert_eq!(seen.len(), 401);
    assert_eq!(seen[400].body, b"more");
}

#[test]
fn os_mode_and_append_all_and_record_trait() {
    struct Hello(u32);
    impl Record for Hello {
        fn kind(&self) -> u8 {
            9
        }
        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_be_bytes());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = ferry_store::StoreConfig {
        sync: SyncMode::Os,
        ..config(dir.path())
    };
    let (store, _, _) = open(cfg.clone()).unwrap();
    assert_eq!(store.append_all([(1u8, &b"a"[..]), (2, b"bb"), (3, b"ccc")]).unwrap(), Some(3));
    assert_eq!(store.append_all(std::iter::empty()).unwrap(), None);
    assert_eq!(store.append_record(&Hello(7)).unwrap(), 4);
    store.wait_durable(4).unwrap();
    assert_eq!(store.stats().syncs, 0, "Os mode does not fdatasync per batch");
    store.close().unwrap();
    let (_, _, seen) = open(cfg).unwrap();
    let got: Vec<_> = seen.iter().map(|r| (r.lsn, r.kind, r.body.clone())).collect();
    assert_eq!(
        got,
        vec![
            (1, 1, b"a".to_vec()),
            (2, 2, b"bb".to_vec()),
            (3, 3, b"ccc".to_vec()),
            (4, 9, vec![0, 0, 0, 7])
        ]
    );
}

struct Flag(std::sync::atomic::AtomicBool, std::thread::Thread);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        self.1.unpark();
    }
}

/// A minimal executor: polls `fut` on this thread, parking between wake-ups.
fn block_on<F: Future>(fut: F) -> F::Output {
    let flag = Arc::new(Flag(Default::default(), std::thread::current()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        while !flag.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "future never woke");
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}

#[test]
fn durable_future_and_callback() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    let lsn = store.append(1, b"x").unwrap();
    block_on(store.durable(lsn)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let lsn = store.append(1, b"y").unwrap();
    store.on_durable(lsn, move |r| tx.send(r).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(()));
    assert_eq!(store.wait_durable_timeout(lsn, Duration::from_secs(1)), Some(Ok(())));
    assert!(store.health().is_ok());
    assert_eq!(store.poison_reason(), None);
}

#[test]
fn second_store_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    match open(config(dir.path())) {
        Err(StoreError::Locked { dir: d, holder }) => {
            assert_eq!(d, dir.path());
            assert_eq!(holder, format!(" (pid {})", std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = open_err(config(dir.path())).to_string();
    assert!(msg.contains("in use by another process"), "{msg}");
    assert!(matches!(ferry_store::repair(dir.path()), Err(StoreError::Locked { .. })));
    drop(store);
    open(config(dir.path())).unwrap();
}

#[test]
fn data_dir_is_created_0700() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a/data");
    let _store = open(config(&data)).unwrap();
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn record_too_large_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    let room = 8192 - segment::FILE_HEADER_LEN - ferry_store::frame::RECORD_HEADER_LEN;
    assert!(matches!(
        store.append(1, &vec![0; room + 1]),
        Err(StoreError::RecordTooLarge { .. })
    ));
    let lsn = store.append(1, &vec![7; room]).unwrap();
    store.wait_durable(lsn).unwrap();
    store.close().unwrap();
    let (_, _, seen) = open(config(dir.path())).unwrap();
    assert_eq!(seen[0].body.len(), room);
}

#[test]
fn foreign_file_and_newer_version_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    store.wait_durable(store.append(1, b"x").unwrap()).unwrap();
    drop(store);
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    match open(config(dir.path())) {
        Err(StoreError::Foreign { file, .. }) => assert!(file.ends_with("notes.txt")),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(dir.path().join("notes.txt")).unwrap();

    // A segment name holding something else.
    let fake = dir.path().join(segment::segment_name(1000));
    std::fs::write(&fake, vec![b'x'; 100]).unwrap();
    let err = open_err(config(dir.path()));
    assert!(matches!(&err, StoreError::Foreign { file, .. } if *file == fake), "{err:?}");
    std::fs::remove_file(&fake).unwrap();

    // A newer format version.
    let seg = &segments(dir.path())[0];
    let mut bytes = std::fs::read(seg).unwrap();
    let mut header = segment::FileHeader::decode(&bytes, segment::SEGMENT_MAGIC, seg).unwrap();
    header.version = 2;
    bytes[..64].copy_from_slice(&header.encode());
    std::fs::write(seg, &bytes).unwrap();
    let err = open_err(config(dir.path()));
    assert!(
        matches!(
            err,
            StoreError::NewerVersion {
                version: 2,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade Ferry"));
    assert!(matches!(ferry_store::repair(dir.path()), Err(StoreError::NewerVersion { .. })));
}

#[test]
fn another_stores_segment_is_foreign() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (dir, n) in [(a.path(), 100), (b.path(), 400)] {
        let (s, _, _) = open(config(dir)).unwrap();
        for i in 1..=n {
            s.append(1, &body(i)).unwrap();
        }
        s.wait_durable(n).unwrap();
    }
    assert_eq!(segments(a.path()).len(), 1);
    let from_b = segments(b.path()).pop().unwrap();
    std::fs::copy(&from_b, a.path().join(from_b.file_name().unwrap())).unwrap();
    let err = open_err(config(a.path()));
    assert!(err.to_string().contains("belongs to another store"), "{err}");
    let _ = Source::Log;
}

#[test]
fn close_releases_waiters_of_lsns_never_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    let lsn = store.append(1, b"x").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    store.on_durable(lsn + 100, move |r| tx.send(r).unwrap());
    let fut = store.durable(lsn + 100);
    store.close().unwrap();
    let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(r.unwrap_err().reason.contains("closed"));
    assert!(block_on(fut).is_err());
}

#[test]
fn a_visitor_error_aborts_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = open(config(dir.path())).unwrap();
    for i in 1..=5 {
        store.append(1, &body(i)).unwrap();
    }
    store.wait_durable(5).unwrap();
    drop(store);
    let err = ferry_store::Store::open(config(dir.path()), |r| if r.lsn == 3 { Err("bad record".into()) } else { Ok(()) }).unwrap_err();
    assert!(matches!(err, StoreError::Visitor { lsn: 3, .. }), "{err}");
    // The refused open changed nothing.
    let (_, _, seen) = open(config(dir.path())).unwrap();
    assert_eq!(seen.len(), 5);
}

#[test]
fn bad_config_is_refused_and_snapshot_due_follows_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = ferry_store::StoreConfig {
        segment_bytes: 100,
        ..config(dir.path())
    };
    assert!(matches!(open_err(tiny), StoreError::Config(_)));
    let small_disk = ferry_store::StoreConfig {
        max_disk_bytes: 4096,
        ..config(dir.path())
    };
    assert!(matches!(open_err(small_disk), StoreError::Config(_)));
    let cfg = ferry_store::StoreConfig {
        snapshot_after_bytes: 1000,
        ..config(dir.path())
    };
    let (store, _, _) = open(cfg).unwrap();
    for i in 1..=10 {
        store.append(1, &[0; 100]).unwrap();
        assert_eq!(store.snapshot_due(), i * 117 >= 1000, "after {i} records");
    }
    store.wait_durable(10).unwrap();
    store.snapshot(10, [(1u8, b"s")]).unwrap();
    assert!(!store.snapshot_due());
}
