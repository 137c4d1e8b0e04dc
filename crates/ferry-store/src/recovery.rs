//! Reading a data directory back: the newest snapshot, then every segment in LSN order,
//! with the rules that tell a torn tail (truncated, nothing acknowledged was in it) from
//! corruption (refused, with the file and offset named).
//!
//! Rules:
//! * Names: `<20 digits>.wal` segments, `<20 digits>.snap` snapshots, `*.tmp` leftovers
//!   of an interrupted create (ignored, removed on open), `LOCK`, `quarantine/`. Anything
//!   else is a foreign file: refused.
//! * A file header with another magic or store id is foreign; a newer version is refused;
//!   a bad header CRC is corruption.
//! * Within a segment, records follow each other with consecutive LSNs from the base;
//!   zeros end them. Segments follow each other without a gap, except where the snapshot
//!   covers the gap; the first segment starts at or before the snapshot's LSN + 1.
//! * A bad record (short, CRC mismatch, out of sequence, non-zero bytes after the end):
//!   if a valid record that could follow it is found further on, in this segment or a
//!   later one, it is corruption; otherwise it is the torn tail of the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Lsn, Result, StoreError, VisitError};
use crate::frame::{self, Decoded};
use crate::io::StorageIo;
use crate::segment::{self, Ending, FileHeader, FileName, FILE_HEADER_LEN, SEGMENT_MAGIC};
use crate::snapshot;

/// Where a replayed record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The snapshot: live state as of its LSN; all of these come first.
    Snapshot,
    /// The log, after the snapshot, in LSN order.
    Log,
}

/// A record handed to the recovery visitor. The body borrows the store's read buffer:
/// copy what you keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed<'a> {
    /// The record's LSN (the snapshot's LSN for snapshot records).
    pub lsn: Lsn,
    /// Its kind.
    pub kind: u8,
    /// Its body.
    pub body: &'a [u8],
    /// Snapshot or log.
    pub source: Source,
}

/// A segment as recovery found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScannedSegment {
    pub(crate) path: PathBuf,
    pub(crate) header: FileHeader,
    pub(crate) file_len: u64,
    /// The offset after its last valid record.
    pub(crate) end: u64,
    /// Its last LSN, `base - 1` when empty.
    pub(crate) last_lsn: Lsn,
    pub(crate) records: u64,
}

/// The snapshot recovery loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScannedSnapshot {
    pub(crate) path: PathBuf,
    pub(crate) header: FileHeader,
    pub(crate) bytes: u64,
    pub(crate) records: u64,
    pub(crate) kinds: BTreeMap<u8, u64>,
}

/// A torn tail found at the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Torn {
    /// Index into `segments` of the segment it is in.
    pub(crate) segment: usize,
    pub(crate) offset: u64,
    pub(crate) dirty_end: u64,
    pub(crate) reason: &'static str,
    /// Later segments that hold no record, to be removed with the tail.
    pub(crate) empty_after: Vec<PathBuf>,
}

/// What a data directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scanned {
    pub(crate) store_id: Option<u128>,
    pub(crate) snapshot: Option<ScannedSnapshot>,
    pub(crate) older_snapshots: Vec<PathBuf>,
    pub(crate) temps: Vec<PathBuf>,
    pub(crate) segments: Vec<ScannedSegment>,
    pub(crate) torn: Option<Torn>,
    /// The LSN the next record gets.
    pub(crate) next_lsn: Lsn,
    pub(crate) log_records: u64,
    pub(crate) replayed: u64,
    pub(crate) log_kinds: BTreeMap<u8, u64>,
}

impl Scanned {
    pub(crate) fn snapshot_lsn(&self) -> Lsn {
        self.snapshot.as_ref().map_or(0, |s| s.header.lsn)
    }
}

/// The store's files in `dir`, sorted: segments by base, snapshots by LSN.
pub(crate) struct Listing {
    pub(crate) segments: Vec<(Lsn, PathBuf)>,
    pub(crate) snapshots: Vec<(Lsn, PathBuf)>,
    pub(crate) temps: Vec<PathBuf>,
    pub(crate) foreign: Vec<PathBuf>,
}

pub(crate) fn list(io: &dyn StorageIo, dir: &Path) -> Result<Listing> {
    let mut entries = io.list(dir).map_err(|e| StoreError::io("list", dir, e))?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut l = Listing {
        segments: Vec::new(),
        snapshots: Vec::new(),
        temps: Vec::new(),
        foreign: Vec::new(),
    };
    for e in entries {
        let path = dir.join(&e.name);
        match segment::classify(&e.name, e.is_dir) {
            FileName::Segment(lsn) => l.segments.push((lsn, path)),
            FileName::Snapshot(lsn) => l.snapshots.push((lsn, path)),
            FileName::Temp => l.temps.push(path),
            FileName::Lock | FileName::Quarantine => {}
            FileName::Other => l.foreign.push(path),
        }
    }
    Ok(l)
}

fn check_store(id: &mut Option<u128>, header: &FileHeader, path: &Path) -> Result<()> {
    match id {
        Some(id) if *id != header.store_id => Err(StoreError::Foreign {
            file: path.to_path_buf(),
            reason: format!("belongs to another store (id {:032x}, this store is {id:032x})", header.store_id),
        }),
        Some(_) => Ok(()),
        None => {
            *id = Some(header.store_id);
            Ok(())
        }
    }
}

/// Reads `dir`, calling `visit` on the snapshot's records and then on the log's records
/// after the snapshot. Changes nothing on disk.
pub(crate) fn scan(io: &dyn StorageIo, dir: &Path, visit: &mut dyn FnMut(Replayed<'_>) -> Result<(), VisitError>) -> Result<Scanned> {
    let listing = list(io, dir)?;
    if let Some(file) = listing.foreign.first() {
        return Err(StoreError::Foreign {
            file: file.clone(),
            reason: "not a file of the store".into(),
        });
    }
    let mut out = Scanned {
        temps: listing.temps,
        ..Scanned::default()
    };
    let mut snapshots = listing.snapshots;
    if let Some((name_lsn, path)) = snapshots.pop() {
        out.older_snapshots = snapshots.into_iter().map(|(_, p)| p).collect();
        let buf = io.read(&path).map_err(|e| StoreError::io("read", &path, e))?;
        let read = snapshot::read(&buf, &path, |f| {
            visit(Replayed {
                lsn: f.lsn,
                kind: f.kind,
                body: f.body,
                source: Source::Snapshot,
            })
            .map_err(|source| StoreError::Visitor { lsn: f.lsn, source })
        })?;
        if read.header.lsn != name_lsn {
            return Err(StoreError::Corrupt {
                file: path,
                offset: 0,
                reason: format!("snapshot named for LSN {name_lsn} holds LSN {}", read.header.lsn),
            });
        }
        out.store_id = Some(read.header.store_id);
        out.replayed += read.records;
        out.snapshot = Some(ScannedSnapshot {
            path,
            header: read.header,
            bytes: buf.len() as u64,
            records: read.records,
            kinds: read.kinds,
        });
    }
    let snap = out.snapshot_lsn();
    let mut prev_last: Option<Lsn> = None;
    let segments = listing.segments;
    for (i, (name_base, path)) in segments.iter().enumerate() {
        let buf = io.read(path).map_err(|e| StoreError::io("read", path, e))?;
        let header = FileHeader::decode(&buf, SEGMENT_MAGIC, path)?;
        if header.lsn != *name_base {
            return Err(StoreError::Corrupt {
                file: path.clone(),
                offset: 0,
                reason: format!("segment named for LSN {name_base} has base LSN {}", header.lsn),
            });
        }
        check_store(&mut out.store_id, &header, path)?;
        let base = header.lsn;
        if base == 0 {
            return Err(StoreError::Corrupt {
                file: path.clone(),
                offset: 0,
                reason: "segment with base LSN 0".into(),
            });
        }
        match prev_last {
            None if base > snap + 1 => {
                return Err(StoreError::MissingRecords {
                    file: path.clone(),
                    expected: snap + 1,
                    found: base,
                })
            }
            Some(prev) if base <= prev => {
                return Err(StoreError::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    reason: format!("segment base LSN {base} overlaps the previous segment, which ends at {prev}"),
                })
            }
            Some(prev) if base > prev + 1 && base - 1 > snap => {
                return Err(StoreError::MissingRecords {
                    file: path.clone(),
                    expected: prev + 1,
                    found: base,
                })
            }
            _ => {}
        }
        let mut records = 0u64;
        let kinds = &mut out.log_kinds;
        let mut replayed = 0u64;
        let (ending, last) = segment::scan(&buf, base, |_, f| {
            records += 1;
            *kinds.entry(f.kind).or_insert(0) += 1;
            if f.lsn > snap {
                replayed += 1;
                visit(Replayed {
                    lsn: f.lsn,
                    kind: f.kind,
                    body: f.body,
                    source: Source::Log,
                })
                .map_err(|source| StoreError::Visitor { lsn: f.lsn, source })?;
            }
            Ok(())
        })?;
        out.log_records += records;
        out.replayed += replayed;
        let end = match ending {
            Ending::Clean { end } => end,
            Ending::Bad { offset, .. } => offset,
        };
        out.segments.push(ScannedSegment {
            path: path.clone(),
            header,
            file_len: buf.len() as u64,
            end: end as u64,
            last_lsn: last,
            records,
        });
        prev_last = Some(last);
        if let Ending::Bad { offset, reason, dirty_end } = ending {
            let corrupt = |why: String| StoreError::Corrupt {
                file: path.clone(),
                offset: offset as u64,
                reason: why,
            };
            if let Some(at) = segment::valid_record_after(&buf, offset, last) {
                return Err(corrupt(format!(
                    "{reason}, and a valid record follows at offset {at}, so this is not a torn write"
                )));
            }
            let mut empty_after = Vec::new();
            for (_, later) in &segments[i + 1..] {
                let lbuf = io.read(later).map_err(|e| StoreError::io("read", later, e))?;
                let lheader = FileHeader::decode(&lbuf, SEGMENT_MAGIC, later)?;
                check_store(&mut out.store_id, &lheader, later)?;
                if !matches!(frame::decode(&lbuf[FILE_HEADER_LEN..]), Decoded::End) {
                    return Err(corrupt(format!(
                        "{reason}, and later segment {} holds records, so this is not a torn write",
                        later.display()
                    )));
                }
                empty_after.push(later.clone());
            }
            out.torn = Some(Torn {
                segment: i,
                offset: offset as u64,
                dirty_end: dirty_end as u64,
                reason,
                empty_after,
            });
            break;
        }
    }
    let log_next = out.segments.last().map_or(1, |s| s.last_lsn + 1);
    out.next_lsn = log_next.max(snap + 1);
    Ok(out)
}
