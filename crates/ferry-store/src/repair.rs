//! `ferry storage repair DIR`: moves what keeps a directory from opening into
//! `quarantine/` (never deletes), so the next open starts from what is intact.
//!
//! * A segment damaged at offset N: a copy of the whole file goes to quarantine, the
//!   segment keeps its records before N (zeros from N on), and every later segment is
//!   moved to quarantine (the log is a sequence: nothing after a hole can be replayed).
//! * A segment with a bad header, or after missing records: it and every later segment
//!   are moved to quarantine.
//! * A damaged snapshot: moved to quarantine, and rewritten with the records before the
//!   damage (same LSN), so the state it held is kept as far as it can be read.
//! * A foreign file: moved to quarantine.
//! * A file of a newer format version: refused; repair never touches a newer Ferry's data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::error::{Result, StoreError};
use crate::io::{StdIo, StorageIo};
use crate::lock::DirLock;
use crate::recovery;
use crate::segment::{self, FileHeader, FileName, QUARANTINE_DIR, SNAPSHOT_MAGIC};
use crate::snapshot::{self, SnapshotWriter};

/// What [`repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Each step, in words, for the operator.
    pub actions: Vec<String>,
    /// Files now in `quarantine/`.
    pub quarantined: Vec<PathBuf>,
}

/// Repairs the store in `dir` (which must not be open: repair takes the lock) until it
/// opens; see the module documentation for what it moves where.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    let io: Arc<dyn StorageIo> = Arc::new(StdIo);
    let _lock = DirLock::acquire(dir)?;
    let mut report = RepairReport::default();
    let quarantine = dir.join(QUARANTINE_DIR);
    let budget = recovery::list(io.as_ref(), dir)?.segments.len() * 2 + 16;
    for _ in 0..budget {
        let err = match recovery::scan(io.as_ref(), dir, &mut |_| Ok(())) {
            Ok(_) => return Ok(report),
            Err(e) => e,
        };
        io.create_dir_all(&quarantine)
            .map_err(|e| StoreError::io("create directory", &quarantine, e))?;
        warn!(error = %err, "storage repair");
        match &err {
            StoreError::Corrupt { file, offset, .. } => match kind_of(file) {
                FileName::Segment(base) if *offset > 0 => {
                    let name = format!("{}.damaged-at-{offset}", file_name(file));
                    let copy = free_name(&quarantine, &name);
                    copy_file(io.as_ref(), file, &copy)?;
                    let mut f = io.open_write(file).map_err(|e| StoreError::io("open", file, e))?;
                    let len = f.len().map_err(|e| StoreError::io("stat", file, e))?;
                    segment::zero_fill(f.as_mut(), file, *offset, len)?;
                    f.sync_data().map_err(|e| StoreError::io("fdatasync", file, e))?;
                    report.actions.push(format!(
                        "{}: copied to {}, records from offset {offset} on cut",
                        file.display(),
                        copy.display()
                    ));
                    report.quarantined.push(copy);
                    move_later(io.as_ref(), dir, &quarantine, base, &mut report)?;
                }
                FileName::Segment(base) => {
                    move_aside(io.as_ref(), dir, &quarantine, file, &mut report)?;
                    move_later(io.as_ref(), dir, &quarantine, base, &mut report)?;
                }
                FileName::Snapshot(_) => salvage_snapshot(io.clone(), dir, &quarantine, file, &mut report)?,
                _ => move_aside(io.as_ref(), dir, &quarantine, file, &mut report)?,
            },
            StoreError::MissingRecords { file, .. } => {
                move_aside(io.as_ref(), dir, &quarantine, file, &mut report)?;
                if let FileName::Segment(base) = kind_of(file) {
                    move_later(io.as_ref(), dir, &quarantine, base, &mut report)?;
                }
            }
            StoreError::Foreign { file, .. } => {
                if let FileName::Segment(base) = kind_of(file) {
                    move_later(io.as_ref(), dir, &quarantine, base, &mut report)?;
                }
                move_aside(io.as_ref(), dir, &quarantine, file, &mut report)?;
            }
            _ => return Err(err),
        }
    }
    Err(StoreError::Config("storage repair made no progress".into()))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn kind_of(path: &Path) -> FileName {
    segment::classify(&file_name(path), path.is_dir())
}

/// `dir/name`, or `dir/name.N` for the first N free.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let mut candidate = dir.join(name);
    let mut n = 1;
    while candidate.exists() {
        candidate = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    candidate
}

fn copy_file(io: &dyn StorageIo, from: &Path, to: &Path) -> Result<()> {
    let bytes = io.read(from).map_err(|e| StoreError::io("read", from, e))?;
    let mut f = io.create_new(to).map_err(|e| StoreError::io("create", to, e))?;
    f.write_at(0, &bytes).map_err(|e| StoreError::io("write", to, e))?;
    f.sync_data().map_err(|e| StoreError::io("fdatasync", to, e))?;
    let dir = to.parent().unwrap_or(Path::new("."));
    io.sync_dir(dir).map_err(|e| StoreError::io("fsync directory", dir, e))
}

fn move_aside(io: &dyn StorageIo, dir: &Path, quarantine: &Path, file: &Path, report: &mut RepairReport) -> Result<()> {
    let to = free_name(quarantine, &file_name(file));
    io.rename(file, &to).map_err(|e| StoreError::io("rename", file, e))?;
    io.sync_dir(quarantine)
        .map_err(|e| StoreError::io("fsync directory", quarantine, e))?;
    io.sync_dir(dir).map_err(|e| StoreError::io("fsync directory", dir, e))?;
    report.actions.push(format!("{}: moved to {}", file.display(), to.display()));
    report.quarantined.push(to);
    Ok(())
}

fn move_later(io: &dyn StorageIo, dir: &Path, quarantine: &Path, base: u64, report: &mut RepairReport) -> Result<()> {
    for (b, path) in recovery::list(io, dir)?.segments {
        if b > base {
            move_aside(io, dir, quarantine, &path, report)?;
        }
    }
    Ok(())
}

fn salvage_snapshot(io: Arc<dyn StorageIo>, dir: &Path, quarantine: &Path, file: &Path, report: &mut RepairReport) -> Result<()> {
    let buf = io.read(file).map_err(|e| StoreError::io("read", file, e))?;
    let mut kept: Vec<(u8, Vec<u8>)> = Vec::new();
    let _ = snapshot::read(&buf, file, |f| {
        kept.push((f.kind, f.body.to_vec()));
        Ok(())
    });
    let header = FileHeader::decode(&buf, SNAPSHOT_MAGIC, file).ok();
    move_aside(io.as_ref(), dir, quarantine, file, report)?;
    if let Some(h) = header {
        let mut w = SnapshotWriter::create(None, io, dir, h.lsn, h.store_id)?;
        for (kind, body) in &kept {
            w.push(*kind, body)?;
        }
        let info = w.finish()?;
        report.actions.push(format!(
            "{}: rewritten with the {} records read before the damage",
            info.path.display(),
            info.records
        ));
    }
    Ok(())
}
