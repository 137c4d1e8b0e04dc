//! The store's errors.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A log position: every record gets the next one, starting at 1.
pub type Lsn = u64;

/// The error a recovery visitor may return; it aborts the open.
pub type VisitError = Box<dyn std::error::Error + Send + Sync>;

/// Why the store is poisoned: it stopped accepting records after a failed write or sync,
/// or on reaching `max_disk_bytes`, and never recovers until it is reopened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poisoned {
    /// What failed, for logs and the health endpoint.
    pub reason: Arc<str>,
}

impl fmt::Display for Poisoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage is poisoned: {}", self.reason)
    }
}

impl std::error::Error for Poisoned {}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "fdatasync", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another store (another broker) holds the directory's lock.
    #[error("storage directory {} is in use by another process{holder}: its lock file is held", dir.display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// " (pid N)" when the lock file names its holder, else empty.
        holder: String,
    },
    /// The store stopped after a failure; see [`Poisoned`].
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// The store has been closed.
    #[error("storage is closed")]
    Closed,
    /// A record too large for one segment.
    #[error("record of {len} bytes does not fit in a segment of {segment_bytes} bytes")]
    RecordTooLarge {
        /// The body's length.
        len: usize,
        /// The configured segment size.
        segment_bytes: u64,
    },
    /// Damaged data that is not a torn tail: valid records follow it, or it is in a
    /// snapshot. `ferry storage repair` moves it aside.
    #[error("corrupt storage: {} at offset {offset}: {reason} (run `ferry storage repair` to move the damaged part aside)", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// Records are missing between two files (a deleted or lost segment).
    #[error("missing records in storage: {} starts at LSN {found}, expected at most {expected} (run `ferry storage repair` to move what follows the gap aside)", file.display())]
    MissingRecords {
        /// The segment after the gap.
        file: PathBuf,
        /// The LSN expected next.
        expected: Lsn,
        /// The segment's first LSN.
        found: Lsn,
    },
    /// A file that is not the store's: unknown name, bad magic, an unreadable header, or
    /// another store's id.
    #[error("unexpected file in storage directory: {}: {reason} (run `ferry storage repair` to move it aside)", file.display())]
    Foreign {
        /// The file.
        file: PathBuf,
        /// Why it is not ours.
        reason: String,
    },
    /// A file written by a newer Ferry.
    #[error("{} has storage format version {version}, newer than this Ferry's {supported}: upgrade Ferry", file.display())]
    NewerVersion {
        /// The file.
        file: PathBuf,
        /// Its version.
        version: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A snapshot asked for at an LSN that was never handed out or is older than the
    /// current snapshot.
    #[error("snapshot at LSN {lsn} is invalid: {reason}")]
    BadSnapshotLsn {
        /// The LSN asked for.
        lsn: Lsn,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The recovery visitor refused a record.
    #[error("recovery visitor failed at LSN {lsn}: {source}")]
    Visitor {
        /// The record's LSN.
        lsn: Lsn,
        /// The visitor's error.
        #[source]
        source: VisitError,
    },
    /// A bad configuration value.
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for the store's results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
