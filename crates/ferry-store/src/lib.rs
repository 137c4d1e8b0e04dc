//! Ferry's durable storage: an append-only write-ahead log with group commit, snapshots
//! and recovery. It knows no protocol, no socket and none of the core's types: a record
//! is a kind byte and a body of bytes, and every record gets a log sequence number (LSN).
//!
//! * [`Store::open`] takes the directory's lock, replays the newest snapshot and then
//!   the log to a visitor, and cuts a torn tail.
//! * [`Store::append`] queues a record and returns its LSN at once; one writer thread
//!   writes what is queued, syncs once and advances [`Store::durable_lsn`]. Wait with
//!   [`Store::durable`] (a future), [`Store::on_durable`] (a callback) or
//!   [`Store::wait_durable`] (blocking).
//! * A failed write or sync, or `max_disk_bytes` reached, poisons the store for good
//!   ([`Store::health`]).
//! * [`Store::begin_snapshot`] writes the caller's live state and deletes the segments
//!   it covers.
//! * [`inspect`] and [`repair`] are for operators.
//!
//! ```
//! use ferry_store::{Source, Store, StoreConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let (store, recovery) = Store::open(StoreConfig::new(dir.path()), |record| {
//!     // Rebuild the in-memory state: snapshot records first, then the log in order.
//!     assert!(record.source == Source::Snapshot || record.source == Source::Log);
//!     Ok(())
//! })?;
//! assert_eq!(recovery.next_lsn, 1);
//! let lsn = store.append(1, b"retained a/b = 42")?;
//! // Hold the acknowledgement until the record is durable: `store.durable(lsn).await`
//! // in a task, `store.on_durable(lsn, |r| ...)` to ring a doorbell, or, in a test:
//! store.wait_durable(lsn)?;
//! assert!(store.durable_lsn() >= lsn);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: `frame` (record framing), `segment` (file headers, segment files), `writer`
//! (the writer thread), `durable` (waiters), `snapshot`, `recovery`, `repair`, `inspect`,
//! `io` (the file-system seam, with a fault-injecting wrapper for tests), `lock`,
//! `config`, `error`; `records`, `session_records`, `queue_records` (STOMP queues, kinds 20–29) and `journal` (the broker's records over the log; `sessions` and `queues` hold their durable state). Lock order: queue → (nothing); segments → (nothing); waiters →
//! (nothing); no lock is held during I/O or while a callback runs.

mod config;
mod durable;
mod error;
pub mod frame;
mod inspect;
pub mod io;
mod journal;
mod lock;
pub mod queue_records;
mod queues;
pub mod records;
mod recovery;
mod repair;
pub mod segment;
pub mod session_records;
mod sessions;
mod snapshot;
mod store;
mod writer;

pub use config::{StoreConfig, SyncMode, MIN_SEGMENT_BYTES};
pub use durable::{Durable, DurableCallback};
pub use error::{Lsn, Poisoned, Result, StoreError, VisitError};
pub use inspect::{inspect, Inspection, SegmentSummary, SnapshotSummary};
pub use journal::{BrokerJournal, Restored};
pub use lock::LOCK_FILE;
pub use recovery::{Replayed, Source};
pub use repair::{repair, RepairReport};
pub use sessions::{Dropped, SessionCounts};
pub use snapshot::{SnapshotInfo, SnapshotWriter};
pub use store::{Record, Recovery, Store, StoreStats};
