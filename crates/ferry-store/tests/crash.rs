//! Crash consistency, in the spirit of redb's: a known history is written and made
//! durable, the directory is copied, the copy is damaged the way a crash (or a disk) would
//! damage it, and recovery must give back every acknowledged record before the damage and
//! nothing invented. Damage in the middle of the log must be refused, never skipped.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ferry_store::frame::{self, Decoded};
use ferry_store::{segment, StoreError};

const HISTORY: u64 = 300;

/// Writes the test history into `dir`, every record acknowledged (durable).
fn write_history(dir: &Path) {
    let (store, _, _) = open(config(dir)).unwrap();
    for i in 1..=HISTORY {
        let lsn = store.append(kind(i), &body(i)).unwrap();
        if i % 7 == 0 {
            store.wait_durable(lsn).unwrap();
        }
    }
    store.wait_durable(HISTORY).unwrap();
    store.close().unwrap();
    assert!(segments(dir).len() >= 3, "the history spans several segments");
}

/// `(offset, len, lsn)` of every record in segment `path`.
fn records_of(path: &Path) -> Vec<(usize, usize, u64)> {
    let buf = std::fs::read(path).unwrap();
    let mut pos = segment::FILE_HEADER_LEN;
    let mut out = Vec::new();
    while let Decoded::Record(f) = frame::decode(&buf[pos..]) {
        out.push((pos, f.len, f.lsn));
        pos += f.len;
    }
    out
}

fn scratch(base: &Path, name: &str, from: &Path) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    copy_dir(from, &d);
    d
}

#[test]
fn cut_at_every_byte_of_the_last_records() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    write_history(&original);
    let last_seg = segments(&original).pop().unwrap();
    let recs = records_of(&last_seg);
    assert!(recs.len() >= 8);
    let (_, _, last_lsn) = *recs.last().unwrap();
    assert_eq!(last_lsn, HISTORY);
    let tail = &recs[recs.len() - 6..];
    let from = tail[0].0;
    let to = tail[5].0 + tail[5].1;
    let mut checked = 0;
    for cut in from..=to {
        // Records wholly before the cut survive; the one it falls in (and later) do not.
        let survivors = recs.iter().filter(|(off, len, _)| off + len <= cut).map(|r| r.2).max().unwrap_or(0);
        for zeroed in [false, true] {
            let dir = scratch(tmp.path(), "cut", &original);
            let seg = dir.join(last_seg.file_name().unwrap());
            if zeroed {
                // Unsynced pages lost in a preallocated file: zeros from the cut on.
                let mut bytes = std::fs::read(&seg).unwrap();
                bytes[cut..].fill(0);
                std::fs::write(&seg, bytes).unwrap();
            } else {
                // A file cut short.
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&seg)
                    .unwrap()
                    .set_len(cut as u64)
                    .unwrap();
            }
            let (store, rec, seen) = open(config(&dir)).unwrap_or_else(|e| panic!("cut at {cut} (zeroed {zeroed}): {e}"));
            assert_history(&seen, survivors);
            assert_eq!(rec.next_lsn, survivors + 1);
            if cut % 5 == 0 || cut == to {
                // The store goes on from the cut, and what it writes next survives too.
                let lsn = store.append(kind(survivors + 1), &body(survivors + 1)).unwrap();
                assert_eq!(lsn, survivors + 1);
                store.wait_durable(lsn).unwrap();
                store.close().unwrap();
                let (_, rec, seen) = open(config(&dir)).unwrap();
                assert_history(&seen, survivors + 1);
                assert_eq!(rec.truncated_bytes, 0, "the tail was cut for good");
            }
            checked += 1;
        }
    }
    eprintln!("{checked} cuts, each recovered exactly");
    assert!(checked > 500, "{checked} cuts");
}

#[test]
fn a_flipped_bit_mid_log_is_corruption_never_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    write_history(&original);
    let segs = segments(&original);
    let mut flips = 0;
    for seg in &segs {
        for &(off, len, lsn) in &records_of(seg) {
            if lsn == HISTORY {
                continue; // the very last record: a torn tail, tested below
            }
            // A bit in the length, the CRC, the LSN, the kind, and one in the body.
            let mut bits = vec![0, 4 * 8 + 3, 8 * 8 + 1, 16 * 8 + 6];
            if len > frame::RECORD_HEADER_LEN {
                bits.push((frame::RECORD_HEADER_LEN * 8) + (lsn as usize * 7919) % ((len - frame::RECORD_HEADER_LEN) * 8));
            }
            for bit in bits {
                let dir = scratch(tmp.path(), "flip", &original);
                let path = dir.join(seg.file_name().unwrap());
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[off + bit / 8] ^= 1 << (bit % 8);
                std::fs::write(&path, bytes).unwrap();
                match open(config(&dir)) {
                    Err(StoreError::Corrupt { file, offset, .. }) => {
                        assert_eq!((file, offset), (path.clone(), off as u64), "record {lsn} bit {bit}");
                    }
                    Err(e) => panic!("record {lsn} bit {bit}: unexpected error {e}"),
                    Ok((_, _, seen)) => panic!("record {lsn} bit {bit}: flipped bit went unnoticed ({} records)", seen.len()),
                }
                flips += 1;
            }
        }
    }
    eprintln!("{flips} flipped bits, each detected");
    assert!(flips > 1000, "{flips} flips");
}

#[test]
fn a_flipped_bit_in_the_last_record_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    write_history(&original);
    let seg = segments(&original).pop().unwrap();
    let &(off, _, lsn) = records_of(&seg).last().unwrap();
    assert_eq!(lsn, HISTORY);
    let dir = scratch(tmp.path(), "flip", &original);
    let path = dir.join(seg.file_name().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[off + 9] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let (_, rec, seen) = open(config(&dir)).unwrap();
    assert_history(&seen, HISTORY - 1);
    assert!(rec.truncated_bytes > 0);
}

#[test]
fn repair_quarantines_the_damage_and_the_store_opens_from_what_is_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    write_history(&original);
    let segs = segments(&original);
    let (off, _, lsn) = records_of(&segs[1])[10];
    let dir = scratch(tmp.path(), "repair", &original);
    let path = dir.join(segs[1].file_name().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[off + 20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(config(&dir));
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains(&format!("offset {off}")),
        "{msg}"
    );
    assert!(msg.contains("ferry storage repair"), "{msg}");

    let report = ferry_store::repair(&dir).unwrap();
    assert!(!report.quarantined.is_empty());
    // Nothing was deleted: the damaged segment's copy and every later segment are there.
    let quarantined: Vec<_> = std::fs::read_dir(dir.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(quarantined.len(), segs.len() - 1, "{quarantined:?}");
    let copy = std::fs::read(
        dir.join("quarantine")
            .join(format!("{}.damaged-at-{off}", path.file_name().unwrap().to_string_lossy())),
    )
    .unwrap();
    assert_eq!(copy, bytes);

    let (store, _, seen) = open(config(&dir)).unwrap();
    assert_history(&seen, lsn - 1);
    assert_eq!(store.append(1, b"after repair").unwrap(), lsn);
    store.wait_durable(lsn).unwrap();
    drop(store);
    let (_, _, seen) = open(config(&dir)).unwrap();
    assert_eq!(seen.len() as u64, lsn);
    // A clean directory needs no repair.
    assert!(ferry_store::repair(&dir).unwrap().actions.is_empty());
}

#[test]
fn repair_moves_a_foreign_file_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_history(&dir);
    std::fs::write(dir.join("stray"), b"?").unwrap();
    assert!(matches!(open_err(config(&dir)), StoreError::Foreign { .. }));
    let report = ferry_store::repair(&dir).unwrap();
    assert_eq!(report.quarantined, vec![dir.join("quarantine/stray")]);
    let (_, _, seen) = open(config(&dir)).unwrap();
    assert_history(&seen, HISTORY);
}

#[test]
fn a_missing_segment_is_refused_and_repair_keeps_the_part_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_history(&dir);
    let segs = segments(&dir);
    let first_of_third = records_of(&segs[2])[0].2;
    std::fs::remove_file(&segs[1]).unwrap();
    assert!(matches!(open_err(config(&dir)), StoreError::MissingRecords { .. }));
    ferry_store::repair(&dir).unwrap();
    let (_, _, seen) = open(config(&dir)).unwrap();
    let end_of_first = records_of(&segs[0]).last().unwrap().2;
    assert_history(&seen, end_of_first);
    assert!(first_of_third > end_of_first);
}

#[test]
fn leftovers_of_an_interrupted_create_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_history(&dir);
    std::fs::write(dir.join(format!("{}.tmp", segment::segment_name(HISTORY + 1))), vec![1u8; 100]).unwrap();
    std::fs::write(dir.join(format!("{}.tmp", segment::snapshot_name(HISTORY))), vec![1u8; 100]).unwrap();
    let (_, _, seen) = open(config(&dir)).unwrap();
    assert_history(&seen, HISTORY);
    assert!(!std::fs::read_dir(&dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
}

#[test]
fn a_torn_tail_before_an_empty_last_segment_is_cut_and_the_empty_segment_removed() {
    // The shape a crash leaves in `os` mode right after a roll: the previous segment's
    // last batch torn, the new segment created but still empty.
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    write_history(&original);
    let dir = scratch(tmp.path(), "torn", &original);
    let segs = segments(&dir);
    let last = segs.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    bytes[segment::FILE_HEADER_LEN..].fill(0);
    std::fs::write(last, bytes).unwrap();
    let prev = &segs[segs.len() - 2];
    let recs = records_of(prev);
    let &(off, len, lsn) = recs.last().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(prev)
        .unwrap()
        .set_len((off + len / 2) as u64)
        .unwrap();
    let (store, rec, seen) = open(config(&dir)).unwrap();
    assert_history(&seen, lsn - 1);
    assert!(rec.truncated_bytes > 0);
    assert!(!last.exists(), "the empty segment after the torn tail is gone");
    assert_eq!(store.append(kind(lsn), &body(lsn)).unwrap(), lsn);
    store.wait_durable(lsn).unwrap();
    drop(store);
    let (_, _, seen) = open(config(&dir)).unwrap();
    assert_history(&seen, lsn);
}

/// Runs a history of 300 records (acknowledged in bursts of 10, a snapshot after 150)
/// through `io` until the store is poisoned; returns how many were acknowledged.
fn run_history_until_poisoned(dir: &Path, io: ferry_store::io::FaultyIo) -> u64 {
    let Ok((store, _, _)) = open_with(config(dir), std::sync::Arc::new(io)) else {
        return 0; // the fault hit the open itself: nothing was acknowledged
    };
    let mut acked = 0;
    for burst in 0..30u64 {
        let mut last = 0;
        for i in burst * 10 + 1..=burst * 10 + 10 {
            match store.append(kind(i), &body(i)) {
                Ok(lsn) => last = lsn,
                Err(_) => return acked,
            }
        }
        if store.wait_durable(last).is_err() {
            return acked;
        }
        acked = last;
        if acked == 150 {
            let state: Vec<(u8, Vec<u8>)> = (1..=150).map(|i| (kind(i), body(i))).collect();
            if store.snapshot(150, state).is_err() {
                return acked;
            }
        }
    }
    acked
}

#[test]
fn a_crash_after_any_io_operation_loses_nothing_acknowledged() {
    // As redb's countdown backend: every write (or every sync) from the k-th on fails,
    // for each k, so the store stops at every point of its I/O sequence: mid-batch, while
    // preallocating or installing a segment, while writing or installing the snapshot.
    // What reached `write()` stays in the page cache (a kill -9); reopening on the real
    // file system must give back every acknowledged record, in order, and nothing else.
    let tmp = tempfile::tempdir().unwrap();
    let mut stops = 0;
    for fail_sync in [false, true] {
        for k in 1..=200 {
            let dir = tmp.path().join(format!("run-{fail_sync}-{k}"));
            let io = ferry_store::io::FaultyIo::new();
            if fail_sync {
                io.faults().fail_sync(k);
            } else {
                io.faults().fail_write(k);
            }
            let acked = run_history_until_poisoned(&dir, io);
            if acked == 300 {
                eprintln!("sync {fail_sync}: the history takes fewer than {k} operations");
                break; // k is past the last operation of the history
            }
            stops += 1;
            let (_, rec, seen) = open(config(&dir)).unwrap_or_else(|e| panic!("k {k} sync {fail_sync}: {e}"));
            let bodies: Vec<(u8, Vec<u8>)> = seen.iter().map(|r| (r.kind, r.body.clone())).collect();
            let n = bodies.len() as u64;
            assert!(n >= acked, "k {k} sync {fail_sync}: acked {acked}, recovered {n} ({rec:?})");
            let history: Vec<(u8, Vec<u8>)> = (1..=n).map(|i| (kind(i), body(i))).collect();
            assert_eq!(bodies, history, "k {k} sync {fail_sync}: not a prefix of the history");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    eprintln!("{stops} crash points, each recovered exactly");
    assert!(stops > 60, "{stops} stops");
}
