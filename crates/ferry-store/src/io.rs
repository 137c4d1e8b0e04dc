//! The store's only file-system calls, behind [`StorageIo`] so tests can fail them.
//!
//! [`StdIo`] is the real thing on `std::fs` (`sync_data` is `fdatasync`). [`FaultyIo`]
//! wraps it and fails the Nth write or sync, or answers ENOSPC, on command: it is for
//! tests (this crate's and the broker's), never for production.
//!
//! The lock file is not behind this trait: `flock` needs a real file (see `lock.rs`).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The file name.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Its length in bytes (0 for directories).
    pub len: u64,
}

/// A file open for writing.
pub trait StorageFile: Send + fmt::Debug {
    /// Writes all of `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes the written data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Reserves `len` bytes from offset 0 without writing them (`fallocate`): the range
    /// reads as zeros and later writes into it need no allocation. Fails with
    /// [`io::ErrorKind::Unsupported`] where the file system has no such call; the caller
    /// then writes the zeros itself.
    fn allocate(&mut self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// The file-system calls the store makes.
pub trait StorageIo: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its missing parents with mode 0700.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Lists `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates a new file (failing if it exists), mode 0600, for writing.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for writing.
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes `dir`'s entries durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

#[derive(Debug)]
struct StdFile(File);

impl StorageFile for StdFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
                Err(io::Error::new(io::ErrorKind::Unsupported, "fallocate is not supported here"))
            }
            Err(e) => Err(io::Error::from_raw_os_error(e.raw_os_error())),
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl StorageIo for StdIo {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            out.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir: meta.is_dir(),
                len: if meta.is_dir() { 0 } else { meta.len() },
            });
        }
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The failures a [`FaultyIo`] has been told to inject. Counts start at 1 with the next
/// call: `fail_write(1)` fails the very next write.
#[derive(Debug, Default)]
pub struct Faults {
    writes: AtomicU64,
    syncs: AtomicU64,
    fail_write_at: AtomicU64,
    fail_sync_at: AtomicU64,
    enospc_write_at: AtomicU64,
    dir_syncs: AtomicU64,
    fail_dir_sync_at: AtomicU64,
}

impl Faults {
    /// Fails the `n`th write from now with EIO (and every write after it).
    pub fn fail_write(&self, n: u64) {
        self.fail_write_at.store(self.writes.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// Fails the `n`th `sync_data` or directory sync from now with EIO (and every one after).
    pub fn fail_sync(&self, n: u64) {
        self.fail_sync_at.store(self.syncs.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// Fails the `n`th directory sync from now with EIO (and every one after): directories
    /// are synced when a segment or snapshot is created, renamed or deleted.
    pub fn fail_dir_sync(&self, n: u64) {
        self.fail_dir_sync_at
            .store(self.dir_syncs.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// Fails the `n`th write from now with ENOSPC (and every write after it).
    pub fn enospc(&self, n: u64) {
        self.enospc_write_at.store(self.writes.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// Writes attempted so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Syncs attempted so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    fn on_write(&self) -> io::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if hit(&self.enospc_write_at, n) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()));
        }
        if hit(&self.fail_write_at, n) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()));
        }
        Ok(())
    }

    fn on_dir_sync(&self) -> io::Result<()> {
        let n = self.dir_syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if hit(&self.fail_dir_sync_at, n) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()));
        }
        self.on_sync()
    }

    fn on_sync(&self) -> io::Result<()> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if hit(&self.fail_sync_at, n) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()));
        }
        Ok(())
    }
}

fn hit(at: &AtomicU64, n: u64) -> bool {
    let at = at.load(Ordering::SeqCst);
    at != 0 && n >= at
}

/// For tests: the real file system, with the failures its [`Faults`] ask for.
#[derive(Debug, Clone, Default)]
pub struct FaultyIo {
    faults: Arc<Faults>,
}

impl FaultyIo {
    /// A wrapper that fails nothing until told to.
    pub fn new() -> Self {
        Self::default()
    }

    /// The switchboard, shared with every clone.
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn StorageFile>,
    faults: Arc<Faults>,
}

impl StorageFile for FaultyFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.on_write()?;
        self.inner.write_at(offset, data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.faults.on_sync()?;
        self.inner.sync_data()
    }

    /// Counts as one write: an injected write failure or ENOSPC can hit a preallocation.
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.faults.on_write()?;
        self.inner.allocate(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl StorageIo for FaultyIo {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdIo.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        StdIo.list(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdIo.read(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FaultyFile {
            inner: StdIo.create_new(path)?,
            faults: self.faults.clone(),
        }))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FaultyFile {
            inner: StdIo.open_write(path)?,
            faults: self.faults.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdIo.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdIo.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.on_dir_sync()?;
        StdIo.sync_dir(dir)
    }
}
