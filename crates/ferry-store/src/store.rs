//! [`Store`]: opening a data directory (lock, recovery, clean-up), appending, waiting for
//! durability, snapshots, health.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing::{info, warn};

use crate::config::{StoreConfig, MIN_SEGMENT_BYTES};
use crate::durable::{Durability, Durable, DurableCallback};
use crate::error::{Lsn, Poisoned, Result, StoreError, VisitError};
use crate::frame::{self, RECORD_HEADER_LEN};
use crate::io::{StdIo, StorageIo};
use crate::lock::DirLock;
use crate::recovery::{self, Replayed};
use crate::segment::{self, FILE_HEADER_LEN};
use crate::snapshot::{SnapshotInfo, SnapshotMeta, SnapshotWriter};
use crate::writer::{Counters, Current, Queue, SegmentMeta, Shared, Writer};

/// A record type the caller defines: its kind byte and its body's encoding. The store
/// never looks inside a body.
pub trait Record {
    /// The record's kind, stored beside the body and handed back on recovery.
    fn kind(&self) -> u8;
    /// Appends the record's body to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

/// What [`Store::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The snapshot loaded, if any.
    pub snapshot_lsn: Option<Lsn>,
    /// Records read from it.
    pub snapshot_records: u64,
    /// Log records replayed after it.
    pub log_records: u64,
    /// The LSN the next record gets.
    pub next_lsn: Lsn,
    /// Bytes of a torn tail cut off the end of the log (0 when the log ended cleanly).
    pub truncated_bytes: u64,
    /// Segments on disk after opening.
    pub segments: usize,
}

/// Counters of a running store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The last LSN handed out.
    pub last_lsn: Lsn,
    /// Bytes queued for the writer and not yet taken (the next batch so far). The queue
    /// has no bound of its own: a caller that must bound its memory watches this.
    pub queued_bytes: u64,
    /// The last durable LSN.
    pub durable_lsn: Lsn,
    /// Batches written (each one write per segment touched and one sync).
    pub batches: u64,
    /// Records written.
    pub records: u64,
    /// Log bytes written.
    pub bytes: u64,
    /// `fdatasync` calls on segments.
    pub syncs: u64,
    /// The most records one batch held.
    pub max_batch_records: u64,
    /// Bytes the store holds on disk (segments, preallocated, and the snapshot).
    pub disk_bytes: u64,
    /// Segments on disk.
    pub segments: usize,
    /// The current snapshot's LSN.
    pub snapshot_lsn: Option<Lsn>,
    /// Log bytes appended since the last snapshot.
    pub bytes_since_snapshot: u64,
}

/// Ferry's durable store: an append-only log of `(kind, body)` records with group commit,
/// snapshots and recovery. See the crate documentation.
///
/// Share it behind an `Arc`; every method takes `&self`. Dropping it (or
/// [`close`](Self::close)) writes what is queued and stops the writer thread.
pub struct Store {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    _lock: DirLock,
}

impl Store {
    /// Opens (or creates) the store in `config.dir` on the real file system; see
    /// [`open_with`](Self::open_with).
    pub fn open<V>(config: StoreConfig, visitor: V) -> Result<(Self, Recovery)>
    where
        V: FnMut(Replayed<'_>) -> Result<(), VisitError>,
    {
        Self::open_with(config, Arc::new(StdIo), visitor)
    }

    /// Opens (or creates, mode 0700) the store in `config.dir` through `io`: takes the
    /// directory lock, hands the newest snapshot's records and then the log's later
    /// records to `visitor` in order, cuts a torn tail off the log, and starts the writer.
    ///
    /// On error the caller must discard whatever `visitor` built: the open refused the
    /// directory (corruption, a foreign file, a newer format, the lock taken, ...).
    pub fn open_with<V>(config: StoreConfig, io: Arc<dyn StorageIo>, mut visitor: V) -> Result<(Self, Recovery)>
    where
        V: FnMut(Replayed<'_>) -> Result<(), VisitError>,
    {
        if config.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(StoreError::Config(format!("segment_bytes must be at least {MIN_SEGMENT_BYTES}")));
        }
        if config.max_disk_bytes < config.segment_bytes {
            return Err(StoreError::Config("max_disk_bytes must be at least segment_bytes".into()));
        }
        let dir = config.dir.clone();
        io.create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
        let lock = DirLock::acquire(&dir)?;
        let scanned = recovery::scan(io.as_ref(), &dir, &mut visitor)?;
        let snap_lsn = scanned.snapshot_lsn();
        let mut report = Recovery {
            snapshot_lsn: scanned.snapshot.as_ref().map(|s| s.header.lsn),
            snapshot_records: scanned.snapshot.as_ref().map_or(0, |s| s.records),
            log_records: scanned.replayed - scanned.snapshot.as_ref().map_or(0, |s| s.records),
            next_lsn: scanned.next_lsn,
            ..Recovery::default()
        };
        let mut segments = scanned.segments.clone();
        let mut removed = Vec::new();
        if let Some(torn) = &scanned.torn {
            let seg = &mut segments[torn.segment];
            let mut file = io.open_write(&seg.path).map_err(|e| StoreError::io("open", &seg.path, e))?;
            segment::zero_fill(file.as_mut(), &seg.path, torn.offset, torn.dirty_end)?;
            file.sync_data().map_err(|e| StoreError::io("fdatasync", &seg.path, e))?;
            report.truncated_bytes = torn.dirty_end - torn.offset;
            warn!(
                file = %seg.path.display(),
                offset = torn.offset,
                bytes_dropped = report.truncated_bytes,
                reason = torn.reason,
                "storage: truncated a torn record at the end of the log ({} bytes dropped; nothing after the last durable record)",
                report.truncated_bytes
            );
            segments.truncate(torn.segment + 1);
            removed.extend(torn.empty_after.iter().cloned());
        }
        removed.extend(scanned.temps.iter().cloned());
        removed.extend(scanned.older_snapshots.iter().cloned());
        while segments.len() > 1 && segments[1].header.lsn <= snap_lsn + 1 {
            removed.push(segments.remove(0).path);
        }
        for path in &removed {
            io.remove_file(path).map_err(|e| StoreError::io("remove", path, e))?;
            info!(file = %path.display(), "storage: removed a file recovery no longer needs");
        }
        if !removed.is_empty() {
            io.sync_dir(&dir).map_err(|e| StoreError::io("fsync directory", &dir, e))?;
        }

        let store_id = scanned.store_id.unwrap_or_else(|| fastrand::u128(..));
        let next_lsn = scanned.next_lsn;
        let mut disk_bytes: u64 = segments.iter().map(|s| s.file_len).sum::<u64>() + scanned.snapshot.as_ref().map_or(0, |s| s.bytes);
        let resume = segments.last().filter(|s| s.last_lsn + 1 == next_lsn).cloned();
        let current = match resume {
            Some(seg) => {
                let mut file = io.open_write(&seg.path).map_err(|e| StoreError::io("open", &seg.path, e))?;
                let mut capacity = seg.file_len;
                if capacity < config.segment_bytes {
                    // A segment shorter than its preallocation (cut by hand or by a
                    // crash of the file system): give it back its zeros.
                    segment::zero_fill(file.as_mut(), &seg.path, capacity, config.segment_bytes)?;
                    file.sync_data().map_err(|e| StoreError::io("fdatasync", &seg.path, e))?;
                    disk_bytes += config.segment_bytes - capacity;
                    capacity = config.segment_bytes;
                }
                Current {
                    path: seg.path,
                    file,
                    pos: seg.end.max(FILE_HEADER_LEN as u64),
                    capacity,
                }
            }
            None => {
                if disk_bytes.saturating_add(config.segment_bytes) > config.max_disk_bytes {
                    return Err(StoreError::Config(format!(
                        "max_disk_bytes ({}) reached: {disk_bytes} bytes in use",
                        config.max_disk_bytes
                    )));
                }
                let (path, file) = segment::create(io.as_ref(), &dir, next_lsn, store_id, config.segment_bytes)?;
                disk_bytes += config.segment_bytes;
                segments.push(recovery::ScannedSegment {
                    path: path.clone(),
                    header: segment::FileHeader::new(segment::SEGMENT_MAGIC, next_lsn, store_id),
                    file_len: config.segment_bytes,
                    end: FILE_HEADER_LEN as u64,
                    last_lsn: next_lsn - 1,
                    records: 0,
                });
                Current {
                    path,
                    file,
                    pos: FILE_HEADER_LEN as u64,
                    capacity: config.segment_bytes,
                }
            }
        };
        report.segments = segments.len();
        let shared = Arc::new(Shared {
            io,
            store_id,
            queue: Mutex::new(Queue {
                buf: Vec::new(),
                next_lsn,
                records: 0,
                closing: false,
            }),
            ring: Condvar::new(),
            durability: Arc::new(Durability::new(next_lsn - 1)),
            segments: Mutex::new(
                segments
                    .iter()
                    .map(|s| SegmentMeta {
                        base: s.header.lsn,
                        path: s.path.clone(),
                        bytes: s.file_len.max(if s.path == current.path { current.capacity } else { 0 }),
                    })
                    .collect(),
            ),
            disk_bytes: AtomicU64::new(disk_bytes),
            since_snapshot: AtomicU64::new(segments.iter().map(|s| s.end.saturating_sub(FILE_HEADER_LEN as u64)).sum()),
            snapshot: Mutex::new(scanned.snapshot.as_ref().map(|s| SnapshotMeta {
                lsn: s.header.lsn,
                path: s.path.clone(),
                bytes: s.bytes,
            })),
            counters: Counters::default(),
            config,
        });
        let writer = Writer {
            shared: shared.clone(),
            current,
            spare: None,
            spares: 0,
        };
        let handle = std::thread::Builder::new()
            .name("ferry-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io("spawn writer thread for", &dir, e))?;
        info!(
            dir = %dir.display(),
            next_lsn,
            snapshot_lsn = ?report.snapshot_lsn,
            log_records = report.log_records,
            segments = report.segments,
            "storage opened"
        );
        Ok((
            Self {
                shared,
                writer: Some(handle),
                _lock: lock,
            },
            report,
        ))
    }

    /// Queues a record and returns its LSN at once; it is durable when
    /// [`durable_lsn`](Self::durable_lsn) reaches it (wait with [`durable`](Self::durable),
    /// [`on_durable`](Self::on_durable) or [`wait_durable`](Self::wait_durable)). Never
    /// blocks on I/O. Fails when the store is poisoned or closed, or the record does not
    /// fit in a segment.
    pub fn append(&self, kind: u8, body: &[u8]) -> Result<Lsn> {
        self.check_size(body.len())?;
        let crc = crc_ahead(body);
        let mut q = self.shared.queue.lock();
        self.check_open(&q)?;
        let lsn = q.next_lsn;
        q.next_lsn += 1;
        q.records += 1;
        let was_empty = q.buf.is_empty();
        encode(&mut q.buf, lsn, kind, body, crc);
        drop(q);
        self.queued(was_empty, (RECORD_HEADER_LEN + body.len()) as u64);
        Ok(lsn)
    }

    /// Queues several records with consecutive LSNs (one lock, one wake-up) and returns
    /// the last one's LSN (`None` if there were none).
    pub fn append_all<'a, I>(&self, records: I) -> Result<Option<Lsn>>
    where
        I: IntoIterator<Item = (u8, &'a [u8])>,
    {
        let records: Vec<(u8, &[u8], Option<u32>)> = records
            .into_iter()
            .map(|(kind, body)| self.check_size(body.len()).map(|()| (kind, body, crc_ahead(body))))
            .collect::<Result<_>>()?;
        if records.is_empty() {
            return Ok(None);
        }
        let bytes: usize = records.iter().map(|r| RECORD_HEADER_LEN + r.1.len()).sum();
        let mut q = self.shared.queue.lock();
        self.check_open(&q)?;
        let was_empty = q.buf.is_empty();
        for (kind, body, crc) in &records {
            let lsn = q.next_lsn;
            q.next_lsn += 1;
            encode(&mut q.buf, lsn, *kind, body, *crc);
        }
        q.records += records.len() as u64;
        let last = q.next_lsn - 1;
        drop(q);
        self.queued(was_empty, bytes as u64);
        Ok(Some(last))
    }

    /// Queues a record encoded by the [`Record`] trait; see [`append`](Self::append).
    pub fn append_record<R: Record + ?Sized>(&self, record: &R) -> Result<Lsn> {
        let mut body = Vec::new();
        record.encode(&mut body);
        self.append(record.kind(), &body)
    }

    fn check_size(&self, len: usize) -> Result<()> {
        let room = self.shared.config.segment_bytes as usize - FILE_HEADER_LEN - RECORD_HEADER_LEN;
        if len > room.min(frame::MAX_BODY_LEN) {
            return Err(StoreError::RecordTooLarge {
                len,
                segment_bytes: self.shared.config.segment_bytes,
            });
        }
        Ok(())
    }

    fn check_open(&self, q: &Queue) -> Result<()> {
        if self.shared.durability.is_poisoned() {
            return Err(self.shared.durability.poison().map_or(StoreError::Closed, StoreError::Poisoned));
        }
        if q.closing {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    fn queued(&self, was_empty: bool, bytes: u64) {
        self.shared.since_snapshot.fetch_add(bytes, Ordering::Relaxed);
        if was_empty {
            self.shared.ring.notify_one();
        }
    }

    /// The last LSN handed out (0 when the store has never held a record).
    pub fn last_lsn(&self) -> Lsn {
        self.shared.queue.lock().next_lsn - 1
    }

    /// Every record up to this LSN is durable (per the sync mode).
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durability.durable_lsn()
    }

    /// A future that resolves once `lsn` is durable, or with the poison if it never
    /// will be. Blocks no thread; cancel-safe; `'static`.
    pub fn durable(&self, lsn: Lsn) -> Durable {
        Durable {
            state: self.shared.durability.clone(),
            lsn,
            slot: None,
        }
    }

    /// Runs `f` once `lsn` is durable (`Ok`) or the store is poisoned (`Err`); at once if
    /// either already holds. `f` runs on the writer thread: it must be quick and must not
    /// block (ring a connection's doorbell, send on a channel).
    pub fn on_durable(&self, lsn: Lsn, f: impl FnOnce(Result<(), Poisoned>) + Send + 'static) {
        let f: DurableCallback = Box::new(f);
        self.shared.durability.on_durable(lsn, f);
    }

    /// Blocks the calling thread until `lsn` is durable or the store is poisoned. For
    /// tests and tools; async code uses [`durable`](Self::durable).
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), Poisoned> {
        self.shared.durability.wait(lsn, None).unwrap_or(Ok(()))
    }

    /// [`wait_durable`](Self::wait_durable) for at most `timeout`; `None` when it ran out.
    pub fn wait_durable_timeout(&self, lsn: Lsn, timeout: Duration) -> Option<Result<(), Poisoned>> {
        self.shared.durability.wait(lsn, Some(timeout))
    }

    /// `Ok` while the store accepts records; the poison (its reason) once it does not.
    pub fn health(&self) -> Result<(), Poisoned> {
        self.shared.durability.poison().map_or(Ok(()), Err)
    }

    /// Why the store is poisoned, if it is.
    pub fn poison_reason(&self) -> Option<Arc<str>> {
        self.shared.durability.poison().map(|p| p.reason)
    }

    /// Whether a snapshot is due: the log has moved into a new segment since the last
    /// snapshot (so one now would delete at least one segment) and has grown at least as
    /// big as that snapshot (so writing the live state again costs no more than the log
    /// it replaces); or it has grown by `snapshot_after_bytes`, whatever the live state.
    ///
    /// With a live state smaller than a segment, a steady load thus keeps the disk at the
    /// live state plus about two segments (the one being written and the one before it,
    /// or the next one being preallocated); a larger live state is written again only once
    /// the log has outgrown it.
    pub fn snapshot_due(&self) -> bool {
        let since = self.shared.since_snapshot.load(Ordering::Relaxed);
        let (snapshot_lsn, snapshot_bytes) = self.shared.snapshot.lock().as_ref().map_or((0, 0), |s| (s.lsn, s.bytes));
        if self.last_lsn() <= snapshot_lsn {
            return false;
        }
        if since >= self.shared.config.snapshot_after_bytes {
            return true;
        }
        since >= snapshot_bytes && self.shared.segments.lock().len() >= 2
    }

    /// Starts a snapshot standing for every record up to `lsn`: push the whole live
    /// state, then `finish()`. The state pushed must include the effect of every record
    /// up to `lsn` (it may include later ones if replaying them again is harmless, as
    /// with upserts and deletes by key). `lsn` must have been handed out and be newer
    /// than the current snapshot. Appends go on meanwhile.
    pub fn begin_snapshot(&self, lsn: Lsn) -> Result<SnapshotWriter> {
        if let Some(p) = self.shared.durability.poison() {
            return Err(p.into());
        }
        if lsn == 0 || lsn > self.last_lsn() {
            return Err(StoreError::BadSnapshotLsn {
                lsn,
                reason: "no record has this LSN yet",
            });
        }
        if self.shared.snapshot.lock().as_ref().is_some_and(|s| s.lsn >= lsn) {
            return Err(StoreError::BadSnapshotLsn {
                lsn,
                reason: "not newer than the current snapshot",
            });
        }
        SnapshotWriter::create(
            Some(self.shared.clone()),
            self.shared.io.clone(),
            &self.shared.config.dir,
            lsn,
            self.shared.store_id,
        )
    }

    /// Writes a snapshot at `lsn` from `records`; see [`begin_snapshot`](Self::begin_snapshot).
    pub fn snapshot<I, B>(&self, lsn: Lsn, records: I) -> Result<SnapshotInfo>
    where
        I: IntoIterator<Item = (u8, B)>,
        B: AsRef<[u8]>,
    {
        let mut w = self.begin_snapshot(lsn)?;
        for (kind, body) in records {
            w.push(kind, body.as_ref())?;
        }
        w.finish()
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let (last_lsn, queued_bytes) = {
            let q = self.shared.queue.lock();
            (q.next_lsn - 1, q.buf.len() as u64)
        };
        StoreStats {
            last_lsn,
            queued_bytes,
            durable_lsn: self.durable_lsn(),
            batches: c.batches.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            max_batch_records: c.max_batch.load(Ordering::Relaxed),
            disk_bytes: self.shared.disk_bytes.load(Ordering::Relaxed),
            segments: self.shared.segments.lock().len(),
            snapshot_lsn: self.shared.snapshot.lock().as_ref().map(|s| s.lsn),
            bytes_since_snapshot: self.shared.since_snapshot.load(Ordering::Relaxed),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.config.dir
    }

    /// The store's random id, written in every file header.
    pub fn store_id(&self) -> u128 {
        self.shared.store_id
    }

    /// Writes what is queued, stops the writer and releases the lock. `Err` if the store
    /// is poisoned (what was queued then is not durable).
    pub fn close(mut self) -> Result<(), Poisoned> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), Poisoned> {
        self.shared.queue.lock().closing = true;
        self.shared.ring.notify_one();
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                self.shared.poison(&StoreError::Config("the storage writer thread panicked".into()));
            }
        }
        let health = self.health();
        // Whoever still waits (for an LSN never handed out) is told the store is gone.
        self.shared.durability.set_poison("the store is closed".into());
        health
    }
}

/// A large body's CRC, computed before the queue lock is taken.
fn crc_ahead(body: &[u8]) -> Option<u32> {
    (body.len() >= frame::CRC_AHEAD_FROM).then(|| crc32c::crc32c(body))
}

/// Frames a record into the queue: with the CRC computed ahead, or in one pass.
fn encode(buf: &mut Vec<u8>, lsn: Lsn, kind: u8, body: &[u8], crc: Option<u32>) {
    match crc {
        Some(crc) => frame::encode_with_crc(buf, lsn, kind, body, crc),
        None => frame::encode(buf, lsn, kind, body),
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.config.dir)
            .field("durable_lsn", &self.durable_lsn())
            .field("poisoned", &self.poison_reason())
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send + 'static>() {}
        send_sync::<super::Store>();
        send::<super::Durable>();
        send::<super::SnapshotWriter>();
    }
}
