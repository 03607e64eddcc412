//! The cache index: a RocksDB database beside the blob store that maps node keys to step
//! results, file identities to content hashes, image references to manifest digests, and
//! blobs to when they were last used.
//!
//! RocksDB lets one process at a time open a database for writing, and builds that share a
//! cache directory run at once. So nobody keeps the database open: each access is a short
//! [`Session`] that takes a lock file first — shared for reading (a read-only open, which
//! RocksDB allows beside other readers), exclusive for writing — and closes the database when
//! dropped. Builds hold a session for one probe or one batch of writes, never across a step.
//!
//! A cache directory on a read-only mount (a warmer's volume mounted into a build pod) is read
//! without locking or writing anything; [`Index::is_read_only`] tells the caller to keep its
//! new results elsewhere.

mod session;

pub use session::Session;

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Column families, fixed at creation.
pub(crate) const STEPS: &str = "steps";
pub(crate) const ALIASES: &str = "aliases";
pub(crate) const FILES: &str = "files";
pub(crate) const IMAGES: &str = "images";
pub(crate) const BLOBS: &str = "blobs";
/// Step site -> the inputs of that step at its last recorded build (`kiln cache explain`).
pub(crate) const SITES: &str = "sites";
pub(crate) const FAMILIES: [&str; 6] = [STEPS, ALIASES, FILES, IMAGES, BLOBS, SITES];

/// The index of a cache directory. Cheap to clone; holds no open database.
#[derive(Debug, Clone)]
pub struct Index {
    db: PathBuf,
    lock: PathBuf,
    read_only: bool,
}

impl Index {
    /// The index in `dir` (created if missing and the directory is writable).
    pub fn open(dir: &Path) -> Result<Index> {
        let db = dir.join("db");
        let lock = dir.join("lock");
        let read_only = match std::fs::create_dir_all(dir).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)
        }) {
            Ok(_) => false,
            // Also when the directory does not exist there: reads then find nothing.
            Err(err) if is_read_only(&err) => true,
            Err(err) => return Err(Error::io("opening the cache index in", dir)(err)),
        };
        Ok(Index {
            db,
            lock,
            read_only,
        })
    }

    /// Whether the directory cannot be written (a read-only mount): sessions only read.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// A session for lookups; waits while another process writes.
    pub fn read(&self) -> Result<Session> {
        let lock = if self.read_only {
            None
        } else {
            let file = File::open(&self.lock).map_err(Error::io("opening", &self.lock))?;
            file.lock_shared()
                .map_err(Error::io("locking", &self.lock))?;
            Some(file)
        };
        Session::read(&self.db, lock)
    }

    /// A session for lookups and writes; waits while any other process uses the index.
    pub fn write(&self) -> Result<Session> {
        if self.read_only {
            return Err(Error::ReadOnly(self.db.clone()));
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&self.lock)
            .map_err(Error::io("opening", &self.lock))?;
        file.lock().map_err(Error::io("locking", &self.lock))?;
        Session::write(&self.db, file)
    }
}

/// Errors that mean "this filesystem cannot be written" rather than "something is wrong".
fn is_read_only(err: &std::io::Error) -> bool {
    err.kind() == ErrorKind::ReadOnlyFilesystem || err.kind() == ErrorKind::PermissionDenied
}
