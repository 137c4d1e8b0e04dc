//! The store's configuration: where it lives, how hard it syncs, how big it may grow.

use std::path::PathBuf;

use serde::Deserialize;

/// When a record counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Durable after `write()` and `fdatasync`: survives kill -9 and power loss (the default).
    #[default]
    Fsync,
    /// Durable after `write()` alone: survives kill -9 (the data is in the OS page cache),
    /// not a power loss.
    Os,
}

/// Configuration of a [`Store`](crate::Store).
///
/// Every field has a default, so `StoreConfig::new(dir)` or an empty `[storage]` table
/// (with `dir` set) is a working configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The data directory, created with mode 0700 if missing. Default `data`.
    pub dir: PathBuf,
    /// When an appended record is durable. Default [`SyncMode::Fsync`].
    pub sync: SyncMode,
    /// The size of each segment file, preallocated when the segment is created.
    /// Default 64 MiB. A record must fit in one segment (less its 64-byte header).
    pub segment_bytes: u64,
    /// The most bytes the store may hold on disk (segments and snapshots). Reaching it
    /// poisons the store as a full disk would. Default 10 GiB.
    pub max_disk_bytes: u64,
    /// Log bytes appended since the last snapshot beyond which
    /// [`Store::snapshot_due`](crate::Store::snapshot_due) says a snapshot is due whatever
    /// the live state's size. Default 1 GiB. A snapshot is due sooner, as soon as the log
    /// has moved into a new segment and grown as big as the last snapshot.
    pub snapshot_after_bytes: u64,
}

/// The smallest segment size accepted: a header and a little room.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

impl StoreConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
            sync: SyncMode::Fsync,
            segment_bytes: 64 << 20,
            max_disk_bytes: 10 << 30,
            snapshot_after_bytes: 1 << 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_toml() {
        let c: StoreConfig = toml::from_str("dir = \"/var/lib/ferry\"\nsync = \"os\"\nsegment_bytes = 1048576\n").unwrap();
        assert_eq!(c.dir, PathBuf::from("/var/lib/ferry"));
        assert_eq!(c.sync, SyncMode::Os);
        assert_eq!(c.segment_bytes, 1 << 20);
        assert_eq!(c.max_disk_bytes, 10 << 30);
        let d: StoreConfig = toml::from_str("").unwrap();
        assert_eq!(d, StoreConfig::default());
        assert_eq!(d.sync, SyncMode::Fsync);
        assert!(toml::from_str::<StoreConfig>("sync = \"never\"").is_err());
    }
}
