//! The directory lock: a `LOCK` file held with `flock(LOCK_EX | LOCK_NB)` for as long as
//! the store is open, so a second broker on the same directory refuses to start. The OS
//! drops the lock when the process dies, kill -9 included.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{Result, StoreError};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// A held directory lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes `dir`'s lock, or says who holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!(" (pid {pid})"),
                    Err(_) => String::new(),
                };
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            return Err(StoreError::io("flock", &path, e.into()));
        }
        // Name the holder for the next one who finds the lock taken; best effort.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Self { _file: file })
    }
}
