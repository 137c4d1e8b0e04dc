//! Power loss, simulated on real files: a `StorageIo` that keeps an undo log of every
//! write not yet covered by a `sync_data`, and that "loses power" at its k-th operation
//! (every later operation fails). The crash image then undoes the unsynced writes, except
//! for a prefix of them, the first undone one torn part-way: what a disk may hold after a
//! power cut. Recovery must give back every record acknowledged before the cut and
//! nothing invented, for every k.

mod common;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use ferry_store::io::{DirEntry, StdIo, StorageFile, StorageIo};
use parking_lot::Mutex;

/// One unsynced write: where, what was there before, and the file's length before.
#[derive(Debug)]
struct UndoEntry {
    offset: u64,
    old: Vec<u8>,
    old_len: u64,
}

#[derive(Debug, Default)]
struct Disk {
    ops: AtomicU64,
    cut_at: AtomicU64,
    /// Unsynced writes per file id, and each file's current path.
    undo: Mutex<HashMap<u64, (PathBuf, Vec<UndoEntry>)>>,
    next_id: AtomicU64,
}

impl Disk {
    fn op(&self) -> io::Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        let cut = self.cut_at.load(Ordering::SeqCst);
        if cut != 0 && n >= cut {
            return Err(io::Error::from_raw_os_error(5));
        }
        Ok(())
    }

    /// The image after the power cut: each file keeps the first `keep` of its unsynced
    /// writes, the next one torn after `tear` bytes, and loses the rest.
    fn crash(&self, keep: usize, tear: usize) {
        for (path, entries) in self.undo.lock().values() {
            let Ok(file) = OpenOptions::new().write(true).open(path) else {
                continue;
            };
            let kept = keep.min(entries.len());
            for (i, e) in entries.iter().enumerate().skip(kept).rev() {
                // The first undone write is torn: its first `skip` bytes reached the disk.
                let skip = if i == kept { tear.min(e.old.len()) } else { 0 };
                file.write_all_at(&e.old[skip..], e.offset + skip as u64).unwrap();
                let len = file.metadata().unwrap().len();
                let keep_len = e.old_len.max(e.offset + skip as u64);
                if keep_len < len {
                    file.set_len(keep_len).unwrap();
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct PowerCutIo(Arc<Disk>);

#[derive(Debug)]
struct CutFile {
    id: u64,
    file: File,
    disk: Arc<Disk>,
}

impl StorageFile for CutFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.op()?;
        let old_len = self.file.metadata()?.len();
        let mut old = vec![0u8; data.len()];
        if offset < old_len {
            let n = ((old_len - offset) as usize).min(data.len());
            self.file.read_exact_at(&mut old[..n], offset)?;
        }
        self.file.write_all_at(data, offset)?;
        if let Some((_, entries)) = self.disk.undo.lock().get_mut(&self.id) {
            entries.push(UndoEntry { offset, old, old_len });
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.disk.op()?;
        self.file.sync_data()?;
        if let Some((_, entries)) = self.disk.undo.lock().get_mut(&self.id) {
            entries.clear();
        }
        Ok(())
    }

    /// A reservation the power cut undoes unless synced: the file goes back to its length.
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.disk.op()?;
        let old_len = self.file.metadata()?.len();
        if len > old_len {
            self.file.set_len(len)?;
        }
        if let Some((_, entries)) = self.disk.undo.lock().get_mut(&self.id) {
            entries.push(UndoEntry {
                offset: old_len,
                old: Vec::new(),
                old_len,
            });
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

impl PowerCutIo {
    fn track(&self, path: &Path, file: File) -> Box<dyn StorageFile> {
        let id = self.0.next_id.fetch_add(1, Ordering::SeqCst);
        self.0.undo.lock().insert(id, (path.to_path_buf(), Vec::new()));
        Box::new(CutFile {
            id,
            file,
            disk: self.0.clone(),
        })
    }
}

impl StorageIo for PowerCutIo {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdIo.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        StdIo.list(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdIo.read(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.0.op()?;
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(self.track(path, file))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.0.op()?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(self.track(path, file))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.op()?;
        std::fs::rename(from, to)?;
        for (path, _) in self.0.undo.lock().values_mut() {
            if path == from {
                *path = to.to_path_buf();
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.op()?;
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.op()?;
        StdIo.sync_dir(dir)
    }
}

/// The history of `crash.rs`: 300 records acknowledged in bursts of 10, a snapshot of
/// the first 150 after the 150th. Returns how many were acknowledged before the cut.
fn run(dir: &Path, io: PowerCutIo) -> u64 {
    let Ok((store, _, _)) = open_with(config(dir), Arc::new(io)) else {
        return 0;
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
fn a_power_cut_at_any_operation_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cuts = 0;
    let mut lost_unsynced = 0;
    for k in 1..=400u64 {
        let dir = tmp.path().join(format!("run-{k}"));
        let disk = Arc::new(Disk::default());
        disk.cut_at.store(k, Ordering::SeqCst);
        let acked = run(&dir, PowerCutIo(disk.clone()));
        if acked == 300 {
            eprintln!("the history takes fewer than {k} operations");
            break;
        }
        // `run` dropped the store: its writer and preallocation threads are joined, so
        // the files are still while the crash image is made.
        let keep = (k % 3) as usize;
        let tear = ((k * 7919) % 700) as usize;
        disk.crash(keep, tear);
        cuts += 1;
        let (_, rec, seen) = open(config(&dir)).unwrap_or_else(|e| panic!("cut at op {k}: {e}"));
        if rec.truncated_bytes > 0 {
            lost_unsynced += 1;
        }
        let bodies: Vec<(u8, Vec<u8>)> = seen.iter().map(|r| (r.kind, r.body.clone())).collect();
        let n = bodies.len() as u64;
        assert!(n >= acked, "cut at op {k}: acked {acked}, recovered {n} ({rec:?})");
        let history: Vec<(u8, Vec<u8>)> = (1..=n).map(|i| (kind(i), body(i))).collect();
        assert_eq!(bodies, history, "cut at op {k}: not a prefix of the history");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("{cuts} power cuts, {lost_unsynced} of them tore an unsynced tail; every acknowledged record came back");
    assert!(cuts > 50, "{cuts} cuts");
    assert!(lost_unsynced > 0, "some cuts tore a tail");
}
