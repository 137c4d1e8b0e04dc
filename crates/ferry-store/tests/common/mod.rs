//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use ferry_store::io::StorageIo;
use ferry_store::{Lsn, Recovery, Replayed, Source, Store, StoreConfig, StoreError};

/// A small-segment configuration in `dir`.
pub(crate) fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        segment_bytes: 8192,
        max_disk_bytes: 1 << 30,
        ..StoreConfig::new(dir)
    }
}

/// One replayed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rec {
    pub lsn: Lsn,
    pub kind: u8,
    pub body: Vec<u8>,
    pub source: Source,
}

/// Opens `config`, collecting what recovery hands over.
pub(crate) fn open(config: StoreConfig) -> Result<(Store, Recovery, Vec<Rec>), StoreError> {
    let mut seen = Vec::new();
    let (store, rec) = Store::open(config, |r: Replayed<'_>| {
        seen.push(Rec {
            lsn: r.lsn,
            kind: r.kind,
            body: r.body.to_vec(),
            source: r.source,
        });
        Ok(())
    })?;
    Ok((store, rec, seen))
}

/// Opens `config` through `io`, collecting what recovery hands over.
pub(crate) fn open_with(config: StoreConfig, io: Arc<dyn StorageIo>) -> Result<(Store, Recovery, Vec<Rec>), StoreError> {
    let mut seen = Vec::new();
    let (store, rec) = Store::open_with(config, io, |r: Replayed<'_>| {
        seen.push(Rec {
            lsn: r.lsn,
            kind: r.kind,
            body: r.body.to_vec(),
            source: r.source,
        });
        Ok(())
    })?;
    Ok((store, rec, seen))
}

/// The body of the `i`th record of a test history: its length varies from 0 to 96.
pub(crate) fn body(i: u64) -> Vec<u8> {
    let len = (i * 37 % 97) as usize;
    (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
}

/// The kind of the `i`th record.
pub(crate) fn kind(i: u64) -> u8 {
    (i % 5) as u8 + 1
}

/// Copies the store's files (not the lock) from `from` into a new directory `to`.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The segment files of `dir`, by name.
pub(crate) fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Asserts `seen` is exactly records `1..=n` of the test history, from the log.
pub(crate) fn assert_history(seen: &[Rec], n: u64) {
    assert_eq!(seen.len() as u64, n, "record count");
    for (i, r) in seen.iter().enumerate() {
        let lsn = i as u64 + 1;
        assert_eq!(
            (r.lsn, r.kind, &r.body, r.source),
            (lsn, kind(lsn), &body(lsn), Source::Log),
            "record {lsn}"
        );
    }
}

/// The error of an open that must fail.
pub(crate) fn open_err(config: StoreConfig) -> StoreError {
    match open(config) {
        Ok((_, rec, seen)) => panic!("open succeeded: {rec:?}, {} records", seen.len()),
        Err(e) => e,
    }
}
