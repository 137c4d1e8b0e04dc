//! `ferry storage inspect DIR`: what a data directory holds, read-only and without the
//! lock (so it can look at a running broker's directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Lsn, Result};
use crate::frame::RECORD_HEADER_LEN;
use crate::io::{StdIo, StorageIo};
use crate::recovery;
use crate::segment::{self, Ending, FileHeader, FILE_HEADER_LEN, SEGMENT_MAGIC};
use crate::session_records::{self, SessionRecord};
use crate::sessions::{SessionCounts, StoredSessions};
use crate::{records, snapshot};

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The file.
    pub file: PathBuf,
    /// Its base LSN (from its name).
    pub base_lsn: Lsn,
    /// Its size on disk (preallocated).
    pub bytes: u64,
    /// Bytes up to the end of its last valid record.
    pub used_bytes: u64,
    /// Valid records in it.
    pub records: u64,
    /// Its last record's LSN.
    pub last_lsn: Option<Lsn>,
    /// When it was created (from its header).
    pub created_unix_ms: Option<u64>,
    /// What is wrong with it, if anything.
    pub problem: Option<String>,
}

/// The snapshot recovery would load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The file.
    pub file: PathBuf,
    /// The LSN it stands for.
    pub lsn: Lsn,
    /// Its size.
    pub bytes: u64,
    /// Records in it.
    pub records: u64,
    /// Those records by kind.
    pub records_by_kind: BTreeMap<u8, u64>,
    /// When it was written.
    pub created_unix_ms: u64,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// The store's id, from the first file header read.
    pub store_id: Option<u128>,
    /// Segments, by base LSN.
    pub segments: Vec<SegmentSummary>,
    /// The newest snapshot, if it is readable.
    pub snapshot: Option<SnapshotSummary>,
    /// Bytes of every file of the store (segments, snapshots, leftovers).
    pub total_bytes: u64,
    /// Valid records in the segments.
    pub log_records: u64,
    /// Those records by kind.
    pub records_by_kind: BTreeMap<u8, u64>,
    /// The LSN the next record would get, if the directory opens.
    pub next_lsn: Option<Lsn>,
    /// Bytes a torn tail would lose on the next open.
    pub torn_tail_bytes: u64,
    /// Files that are not the store's.
    pub foreign_files: Vec<PathBuf>,
    /// Leftovers of an interrupted file creation.
    pub temp_files: Vec<PathBuf>,
    /// Why the directory would not open (what `open` would say), if it would not.
    pub problem: Option<String>,
    /// Retained messages the broker would restore (expired ones included).
    pub retained: usize,
    /// What the persistent sessions hold (as the log says, before expiry at start).
    pub sessions: SessionCounts,
    /// STOMP's durable queues as a start would restore them: name and messages held.
    pub stomp_queues: Vec<(String, usize)>,
    /// The live state's size: the bytes a snapshot of what the records describe would
    /// take now (retained messages, expired ones included, sessions, STOMP queues).
    pub live_bytes: u64,
}

/// Describes the store in `dir` without changing anything.
pub fn inspect(dir: &Path) -> Result<Inspection> {
    let io = StdIo;
    let listing = recovery::list(&io, dir)?;
    let sizes: BTreeMap<String, u64> = io
        .list(dir)
        .map_err(|e| crate::StoreError::io("list", dir, e))?
        .into_iter()
        .filter(|e| !e.is_dir)
        .map(|e| (e.name, e.len))
        .collect();
    let size_of = |p: &Path| p.file_name().and_then(|n| sizes.get(&*n.to_string_lossy()).copied()).unwrap_or(0);
    let mut out = Inspection {
        dir: dir.to_path_buf(),
        store_id: None,
        segments: Vec::new(),
        snapshot: None,
        total_bytes: 0,
        log_records: 0,
        records_by_kind: BTreeMap::new(),
        next_lsn: None,
        torn_tail_bytes: 0,
        foreign_files: listing.foreign.clone(),
        temp_files: listing.temps.clone(),
        problem: None,
        retained: 0,
        sessions: SessionCounts::default(),
        stomp_queues: Vec::new(),
        live_bytes: 0,
    };
    out.total_bytes = listing
        .segments
        .iter()
        .chain(listing.snapshots.iter())
        .map(|(_, p)| size_of(p))
        .chain(listing.temps.iter().map(|p| size_of(p)))
        .sum();
    for (base, path) in &listing.segments {
        let mut s = SegmentSummary {
            file: path.clone(),
            base_lsn: *base,
            bytes: size_of(path),
            used_bytes: 0,
            records: 0,
            last_lsn: None,
            created_unix_ms: None,
            problem: None,
        };
        match io.read(path) {
            Err(e) => s.problem = Some(format!("unreadable: {e}")),
            Ok(buf) => match FileHeader::decode(&buf, SEGMENT_MAGIC, path) {
                Err(e) => s.problem = Some(e.to_string()),
                Ok(h) => {
                    s.created_unix_ms = Some(h.created_unix_ms);
                    out.store_id.get_or_insert(h.store_id);
                    let kinds = &mut out.records_by_kind;
                    let scanned = segment::scan(&buf, h.lsn, |_, f| {
                        *kinds.entry(f.kind).or_insert(0) += 1;
                        Ok(())
                    });
                    if let Ok((ending, last)) = scanned {
                        s.records = last + 1 - h.lsn;
                        s.last_lsn = (s.records > 0).then_some(last);
                        match ending {
                            Ending::Clean { end } => s.used_bytes = end as u64,
                            Ending::Bad { offset, reason, .. } => {
                                s.used_bytes = offset as u64;
                                s.problem = Some(format!("bad record at offset {offset}: {reason}"));
                            }
                        }
                    }
                    out.log_records += s.records;
                }
            },
        }
        out.segments.push(s);
    }
    if let Some((_, path)) = listing.snapshots.last() {
        if let Ok(buf) = io.read(path) {
            if let Ok(read) = snapshot::read(&buf, path, |_| Ok(())) {
                out.store_id.get_or_insert(read.header.store_id);
                out.snapshot = Some(SnapshotSummary {
                    file: path.clone(),
                    lsn: read.header.lsn,
                    bytes: buf.len() as u64,
                    records: read.records,
                    records_by_kind: read.kinds,
                    created_unix_ms: read.header.created_unix_ms,
                });
            }
        }
    }
    // The state the records describe, replayed as the broker would (read-only).
    let mut sessions = StoredSessions::default();
    // Each retained topic's record size, as a snapshot would write it again.
    let mut retained = std::collections::HashMap::new();
    let mut queues = crate::queues::StoredQueues::default();
    let scanned = recovery::scan(&io, dir, &mut |r| {
        if crate::queue_records::is_queue_kind(r.kind) {
            // A record this build cannot read is what `open` reports; here it is skipped.
            if let Ok(record) = crate::queue_records::decode(r.kind, r.body) {
                queues.apply(record);
            }
        } else if session_records::is_session_kind(r.kind) {
            if let Ok(record) = SessionRecord::decode(r.kind, r.body) {
                sessions.apply(&record);
            }
        } else if let Ok(d) = records::decode(r.kind, r.body) {
            match d {
                records::Decoded::RetainedSet(topic, _) => {
                    retained.insert(topic, r.body.len());
                }
                records::Decoded::RetainedClear(topic) => {
                    retained.remove(&topic);
                }
            }
        }
        Ok(())
    });
    out.sessions = sessions.counts();
    out.retained = retained.len();
    let framed = |len: usize| (RECORD_HEADER_LEN + len) as u64;
    let mut body = Vec::new();
    let session_bytes: u64 = sessions
        .snapshot_records()
        .iter()
        .map(|r| {
            body.clear();
            r.encode(&mut body);
            framed(body.len())
        })
        .sum();
    let mut queue_bytes = 0;
    // Summing cannot fail.
    let _ = queues.copy().write(|_, b| {
        queue_bytes += framed(b.len());
        Ok(())
    });
    // A snapshot file: its header, its records, a trailer holding the record count.
    out.live_bytes =
        FILE_HEADER_LEN as u64 + retained.values().map(|len| framed(*len)).sum::<u64>() + session_bytes + queue_bytes + framed(8);
    out.stomp_queues = queues.restored().into_iter().map(|q| (q.name, q.entries.len())).collect();
    match scanned {
        Ok(scanned) => {
            out.next_lsn = Some(scanned.next_lsn);
            out.torn_tail_bytes = scanned.torn.map_or(0, |t| t.dirty_end - t.offset);
        }
        Err(e) => out.problem = Some(e.to_string()),
    }
    Ok(out)
}
