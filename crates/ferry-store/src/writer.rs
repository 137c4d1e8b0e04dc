//! The writer thread and the queue that feeds it.
//!
//! Producers frame their record into the shared queue buffer under a short lock (the LSN
//! is handed out there, so the buffer is always in LSN order) and ring the writer if it
//! was idle. The writer takes the whole buffer, writes it with one call per segment it
//! touches, calls `fdatasync` once (`SyncMode::Fsync`), publishes the durable LSN and
//! wakes the waiters. Whatever is queued meanwhile is the next batch: there is no timer.
//! No lock is held during I/O. A failed write or sync poisons the store for good.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tracing::{debug, error};

use crate::config::{StoreConfig, SyncMode};
use crate::durable::Durability;
use crate::error::{Lsn, Poisoned, Result, StoreError};
use crate::frame;
use crate::io::{StorageFile, StorageIo};
use crate::segment;

/// A segment on disk, as the store tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub(crate) base: Lsn,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
}

/// Records waiting for the writer.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) buf: Vec<u8>,
    pub(crate) next_lsn: Lsn,
    pub(crate) records: u64,
    pub(crate) closing: bool,
}

/// Counters for [`StoreStats`](crate::StoreStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) max_batch: AtomicU64,
}

/// What the store's handles and its writer share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: StoreConfig,
    pub(crate) io: Arc<dyn StorageIo>,
    pub(crate) store_id: u128,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) ring: Condvar,
    pub(crate) durability: Arc<Durability>,
    pub(crate) segments: Mutex<Vec<SegmentMeta>>,
    pub(crate) disk_bytes: AtomicU64,
    pub(crate) since_snapshot: AtomicU64,
    pub(crate) snapshot: Mutex<Option<crate::snapshot::SnapshotMeta>>,
    pub(crate) counters: Counters,
}

impl Shared {
    /// Poisons the store with `err` (logged once) and fails every waiter.
    pub(crate) fn poison(&self, err: &StoreError) -> Poisoned {
        let first = !self.durability.is_poisoned();
        let p = self.durability.set_poison(err.to_string());
        if first {
            error!(reason = %p.reason, "storage poisoned: no more records are accepted");
        }
        p
    }

    /// Fails with [`StoreError::Poisoned`] if `bytes` more would pass `max_disk_bytes`.
    pub(crate) fn reserve_disk(&self, bytes: u64, what: &str) -> Result<()> {
        let used = self.disk_bytes.load(Ordering::Acquire);
        if used.saturating_add(bytes) > self.config.max_disk_bytes {
            let err = StoreError::Config(format!(
                "max_disk_bytes ({}) reached: {used} bytes in use, {bytes} more needed for {what}",
                self.config.max_disk_bytes
            ));
            return Err(StoreError::Poisoned(self.poison(&err)));
        }
        Ok(())
    }
}

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Current {
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn StorageFile>,
    pub(crate) pos: u64,
    pub(crate) capacity: u64,
}

/// A segment file being preallocated by a helper thread, ahead of the next roll.
pub(crate) type SpareJob = JoinHandle<Result<(PathBuf, Box<dyn StorageFile>)>>;

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) current: Current,
    /// The next segment's file, zero-filled in the background once the current segment
    /// is half full, so a roll writes a header instead of a whole segment of zeros.
    pub(crate) spare: Option<SpareJob>,
    pub(crate) spares: u64,
}

impl Writer {
    /// The thread's body: batches until the store closes.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            let (records, last) = {
                let mut q = self.shared.queue.lock();
                while q.buf.is_empty() && !q.closing {
                    self.shared.ring.wait(&mut q);
                }
                if q.buf.is_empty() {
                    break;
                }
                std::mem::swap(&mut q.buf, &mut batch);
                (std::mem::take(&mut q.records), q.next_lsn - 1)
            };
            if !self.shared.durability.is_poisoned() {
                match self.write_batch(&batch) {
                    Ok(()) => {
                        let c = &self.shared.counters;
                        c.batches.fetch_add(1, Ordering::Relaxed);
                        c.records.fetch_add(records, Ordering::Relaxed);
                        c.bytes.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        c.max_batch.fetch_max(records, Ordering::Relaxed);
                        self.shared.durability.publish(last);
                        if self.current.pos > self.current.capacity / 2 {
                            self.prepare_spare();
                        }
                    }
                    Err(e) => {
                        self.shared.poison(&e);
                    }
                }
            }
            batch.clear();
            if batch.capacity() > 16 << 20 {
                batch = Vec::new();
            }
        }
        // Closing: in `Os` mode the data reached the page cache only; sync it once now.
        if self.shared.config.sync == SyncMode::Os && !self.shared.durability.is_poisoned() {
            if let Err(e) = self.sync() {
                self.shared.poison(&e);
            }
        }
        if let Some(job) = self.spare.take() {
            if let Ok(Ok((tmp, _file))) = job.join() {
                let _ = self.shared.io.remove_file(&tmp);
            }
            self.shared.disk_bytes.fetch_sub(self.shared.config.segment_bytes, Ordering::AcqRel);
        }
        debug!("storage writer stopped");
    }

    /// Starts preallocating the next segment, if none is and the disk budget allows it.
    fn prepare_spare(&mut self) {
        let bytes = self.shared.config.segment_bytes;
        if self.spare.is_some() || self.shared.disk_bytes.load(Ordering::Acquire).saturating_add(bytes) > self.shared.config.max_disk_bytes
        {
            return;
        }
        self.shared.disk_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.spares += 1;
        let tmp = self
            .shared
            .config
            .dir
            .join(format!("spare-{}{}{}", self.spares, segment::SEGMENT_SUFFIX, segment::TEMP_SUFFIX));
        let io = self.shared.io.clone();
        let job = std::thread::Builder::new()
            .name("ferry-store-prealloc".into())
            .spawn(move || segment::preallocate(io.as_ref(), &tmp, bytes).map(|f| (tmp, f)));
        match job {
            Ok(job) => self.spare = Some(job),
            Err(_) => {
                // No thread: the roll will preallocate in line.
                self.shared.disk_bytes.fetch_sub(bytes, Ordering::AcqRel);
            }
        }
    }

    fn sync(&mut self) -> Result<()> {
        self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.current
            .file
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync", &self.current.path, e))
    }

    /// Writes a batch of whole records (a new segment where one is full), then syncs.
    fn write_batch(&mut self, batch: &[u8]) -> Result<()> {
        let mut off = 0;
        while off < batch.len() {
            let room = self.current.capacity.saturating_sub(self.current.pos) as usize;
            let mut end = off;
            while end < batch.len() {
                let len = frame::encoded_len(&batch[end..]);
                if end + len - off > room {
                    break;
                }
                end += len;
            }
            if end == off {
                let base = frame::encoded_lsn(&batch[off..]);
                let len = frame::encoded_len(&batch[off..]) as u64;
                if len > self.shared.config.segment_bytes - segment::FILE_HEADER_LEN as u64 {
                    return Err(StoreError::RecordTooLarge {
                        len: len as usize,
                        segment_bytes: self.shared.config.segment_bytes,
                    });
                }
                self.roll(base)?;
                continue;
            }
            self.current
                .file
                .write_at(self.current.pos, &batch[off..end])
                .map_err(|e| StoreError::io("write", &self.current.path, e))?;
            self.current.pos += (end - off) as u64;
            off = end;
        }
        if self.shared.config.sync == SyncMode::Fsync {
            self.sync()?;
        }
        Ok(())
    }

    /// Closes the current segment (synced) and starts segment `base`.
    fn roll(&mut self, base: Lsn) -> Result<()> {
        if self.shared.config.sync == SyncMode::Fsync {
            self.sync()?;
        }
        let bytes = self.shared.config.segment_bytes;
        let dir: &Path = &self.shared.config.dir;
        let io = self.shared.io.as_ref();
        let (path, file) = match self.spare.take() {
            Some(job) => {
                let (tmp, mut file) = job
                    .join()
                    .map_err(|_| StoreError::Config("the segment preallocation thread panicked".into()))??;
                let path = segment::install(io, dir, &tmp, file.as_mut(), base, self.shared.store_id)?;
                (path, file)
            }
            None => {
                self.shared.reserve_disk(bytes, "a new segment")?;
                let created = segment::create(io, dir, base, self.shared.store_id, bytes)?;
                self.shared.disk_bytes.fetch_add(bytes, Ordering::AcqRel);
                created
            }
        };
        self.shared.segments.lock().push(SegmentMeta {
            base,
            path: path.clone(),
            bytes,
        });
        debug!(segment = %path.display(), "storage: new segment");
        self.current = Current {
            path,
            file,
            pos: segment::FILE_HEADER_LEN as u64,
            capacity: bytes,
        };
        Ok(())
    }
}
