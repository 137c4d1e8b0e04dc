//! Snapshots: the caller's whole live state as records, at an LSN.
//!
//! File: a 64-byte header (magic `FERRYSNP`, the snapshot's LSN), the records framed as in
//! the log with the snapshot's LSN, then a trailer frame with LSN `u64::MAX`, kind 0 and
//! the record count as its body; nothing after it. Written as `<lsn>.snap.tmp`, synced,
//! renamed, directory synced; only then are older snapshots and the segments it covers
//! deleted. A snapshot without a valid trailer is corrupt, never half-loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{info, warn};

use crate::error::{Lsn, Result, StoreError};
use crate::frame::{self, Decoded, Frame};
use crate::io::{StorageFile, StorageIo};
use crate::segment::{self, FileHeader, FILE_HEADER_LEN, SNAPSHOT_MAGIC, TEMP_SUFFIX};
use crate::writer::Shared;
use crate::Record;

/// The trailer's LSN.
pub(crate) const TRAILER_LSN: Lsn = u64::MAX;

const FLUSH_AT: usize = 1 << 20;

/// The snapshot the store currently stands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotMeta {
    pub(crate) lsn: Lsn,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
}

/// A written snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The LSN it stands for.
    pub lsn: Lsn,
    /// Its file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The records in it.
    pub records: u64,
    /// Segments deleted because the snapshot covers them.
    pub segments_deleted: usize,
}

/// A snapshot being written: push every live record, then [`finish`](Self::finish).
/// Dropped unfinished, it removes its temporary file and changes nothing.
#[derive(Debug)]
pub struct SnapshotWriter {
    shared: Option<Arc<Shared>>,
    io: Arc<dyn StorageIo>,
    dir: PathBuf,
    lsn: Lsn,
    tmp: PathBuf,
    path: PathBuf,
    file: Box<dyn StorageFile>,
    buf: Vec<u8>,
    written: u64,
    records: u64,
    done: bool,
}

impl SnapshotWriter {
    pub(crate) fn create(shared: Option<Arc<Shared>>, io: Arc<dyn StorageIo>, dir: &Path, lsn: Lsn, store_id: u128) -> Result<Self> {
        let path = dir.join(segment::snapshot_name(lsn));
        let tmp = dir.join(format!("{}{TEMP_SUFFIX}", segment::snapshot_name(lsn)));
        match io.remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove", &tmp, e)),
        }
        let file = io.create_new(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        let mut w = Self {
            shared,
            io,
            dir: dir.to_path_buf(),
            lsn,
            tmp,
            path,
            file,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            written: 0,
            records: 0,
            done: false,
        };
        w.buf.extend_from_slice(&FileHeader::new(SNAPSHOT_MAGIC, lsn, store_id).encode());
        Ok(w)
    }

    /// Adds one record of the live state.
    pub fn push(&mut self, kind: u8, body: &[u8]) -> Result<()> {
        frame::encode(&mut self.buf, self.lsn, kind, body);
        self.records += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds one record of the live state, encoded by the [`Record`] trait.
    pub fn push_record<R: Record + ?Sized>(&mut self, record: &R) -> Result<()> {
        let mut body = Vec::new();
        record.encode(&mut body);
        self.push(record.kind(), &body)
    }

    /// Fails like the log does: a write error or `max_disk_bytes` poisons the store.
    fn fail(&self, err: StoreError) -> StoreError {
        match &self.shared {
            Some(shared) => StoreError::Poisoned(shared.poison(&err)),
            None => err,
        }
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(shared) = &self.shared {
            if shared.durability.is_poisoned() {
                return Err(shared.durability.poison().map_or(StoreError::Closed, StoreError::Poisoned));
            }
            shared.reserve_disk(self.written + self.buf.len() as u64, "a snapshot")?;
        }
        if let Err(e) = self.file.write_at(self.written, &self.buf) {
            return Err(self.fail(StoreError::io("write", &self.tmp, e)));
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Seals the snapshot: trailer, sync, rename, directory sync; then deletes the older
    /// snapshot and the segments wholly before this snapshot's LSN.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        frame::encode(&mut self.buf, TRAILER_LSN, 0, &self.records.to_le_bytes());
        self.flush()?;
        if let Err(e) = self.file.sync_data() {
            return Err(self.fail(StoreError::io("fdatasync", &self.tmp, e)));
        }
        if let Err(e) = self.io.rename(&self.tmp, &self.path) {
            return Err(self.fail(StoreError::io("rename", &self.tmp, e)));
        }
        self.done = true;
        if let Err(e) = self.io.sync_dir(&self.dir) {
            return Err(self.fail(StoreError::io("fsync directory", &self.dir, e)));
        }
        let mut info = SnapshotInfo {
            lsn: self.lsn,
            path: self.path.clone(),
            bytes: self.written,
            records: self.records,
            segments_deleted: 0,
        };
        if let Some(shared) = self.shared.clone() {
            info.segments_deleted = compact(&shared, &info).map_err(|e| self.fail(e))?;
        }
        info!(
            lsn = info.lsn,
            bytes = info.bytes,
            records = info.records,
            segments_deleted = info.segments_deleted,
            "storage: snapshot written"
        );
        Ok(info)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.io.remove_file(&self.tmp) {
                warn!(file = %self.tmp.display(), error = %e, "storage: could not remove an unfinished snapshot");
            }
        }
    }
}

/// After snapshot `info`: forget the older snapshot and the segments it covers.
fn compact(shared: &Shared, info: &SnapshotInfo) -> Result<usize> {
    let old = shared.snapshot.lock().replace(SnapshotMeta {
        lsn: info.lsn,
        path: info.path.clone(),
        bytes: info.bytes,
    });
    shared.disk_bytes.fetch_add(info.bytes, Ordering::AcqRel);
    shared.since_snapshot.store(0, Ordering::Release);
    let mut doomed = Vec::new();
    if let Some(old) = old.filter(|o| o.path != info.path) {
        doomed.push((old.path, old.bytes));
    }
    let mut deleted = 0;
    {
        let mut segments = shared.segments.lock();
        // The last segment is the writer's; a segment is covered when the next one
        // starts at or before `lsn + 1`.
        while segments.len() > 1 && segments[1].base <= info.lsn + 1 {
            let s = segments.remove(0);
            doomed.push((s.path, s.bytes));
            deleted += 1;
        }
    }
    for (path, bytes) in &doomed {
        shared.io.remove_file(path).map_err(|e| StoreError::io("remove", path, e))?;
        shared.disk_bytes.fetch_sub(*bytes, Ordering::AcqRel);
    }
    if !doomed.is_empty() {
        shared
            .io
            .sync_dir(&shared.config.dir)
            .map_err(|e| StoreError::io("fsync directory", &shared.config.dir, e))?;
    }
    Ok(deleted)
}

/// A snapshot read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadSnapshot {
    pub(crate) header: FileHeader,
    pub(crate) records: u64,
    pub(crate) kinds: BTreeMap<u8, u64>,
}

/// Reads snapshot `buf` (file `path`), calling `each` on its records; any damage is
/// [`StoreError::Corrupt`] (a snapshot is never torn: it is renamed into place whole).
pub(crate) fn read(buf: &[u8], path: &Path, mut each: impl FnMut(Frame<'_>) -> Result<()>) -> Result<ReadSnapshot> {
    let header = FileHeader::decode(buf, SNAPSHOT_MAGIC, path)?;
    let corrupt = |offset: usize, reason: &str| StoreError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason: format!("snapshot: {reason}"),
    };
    let mut pos = FILE_HEADER_LEN;
    let mut records = 0u64;
    let mut kinds = BTreeMap::new();
    loop {
        match frame::decode(&buf[pos.min(buf.len())..]) {
            Decoded::End => return Err(corrupt(pos, "ends without its trailer")),
            Decoded::Bad(reason) => return Err(corrupt(pos, reason)),
            Decoded::Record(f) if f.lsn == TRAILER_LSN => {
                let count = <[u8; 8]>::try_from(f.body).ok().map(u64::from_le_bytes);
                if count != Some(records) || f.kind != 0 {
                    return Err(corrupt(pos, "trailer does not match the records"));
                }
                if pos + f.len != buf.len() {
                    return Err(corrupt(pos + f.len, "bytes after the trailer"));
                }
                return Ok(ReadSnapshot { header, records, kinds });
            }
            Decoded::Record(f) if f.lsn != header.lsn => return Err(corrupt(pos, "record with another LSN")),
            Decoded::Record(f) => {
                each(f)?;
                records += 1;
                *kinds.entry(f.kind).or_insert(0) += 1;
                pos += f.len;
            }
        }
    }
}
