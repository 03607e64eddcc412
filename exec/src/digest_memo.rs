//! Content hashes of build-context files remembered by file identity, so an unchanged file is
//! never read again to compute a cache key.
//!
//! A file's *identity* is what `stat` says about it without reading it: device, inode, size,
//! modification time, status-change time and mode (in nanoseconds where the filesystem has
//! them). An edit changes the ctime even when it restores the size and the mtime (`touch -d`
//! can set the mtime, nothing but the clock sets the ctime), so an identity seen before names
//! the same bytes — with one exception, git's "racy clean" problem: a write that lands within
//! the filesystem's timestamp granularity of the moment the identity was recorded can leave
//! every field as it was. So an identity is only [`settled`](FileIdentity::settled), and only
//! then worth remembering beyond the build, when its mtime and ctime are at least
//! [`RACY_MARGIN`] older than the moment the file was read.
//!
//! The persistent store behind a [`DigestMemo`] (the cache index) lives outside this crate;
//! the build context only asks and tells through the trait.

use std::time::{Duration, SystemTime};

use rustix::fs::Stat;

/// How much older than the read a file's times must be for its identity to be trusted later:
/// more than the coarsest timestamp granularity a context is likely to live on (FAT's 2 s
/// mtimes; ext4, xfs, btrfs and tmpfs stamp with the kernel's coarse clock, a few ms).
pub const RACY_MARGIN: Duration = Duration::from_secs(2);

/// What identifies a file's content without reading it (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time in nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// File type and permission bits.
    pub mode: u32,
}

impl FileIdentity {
    /// The identity `stat` describes.
    pub fn of(stat: &Stat) -> FileIdentity {
        let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        #[allow(clippy::unnecessary_cast)] // the field types differ between architectures
        FileIdentity {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mtime_ns: ns(stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            ctime_ns: ns(stat.st_ctime as i64, stat.st_ctime_nsec as i64),
            mode: stat.st_mode as u32,
        }
    }

    /// Whether this identity, seen by a read that started at `read_at`, can vouch for the
    /// content later: both its times are at least [`RACY_MARGIN`] before the read, so any write
    /// after the read moves the ctime past the recorded one.
    pub fn settled(&self, read_at: SystemTime) -> bool {
        let Some(limit) = read_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|since_epoch| since_epoch.checked_sub(RACY_MARGIN))
        else {
            return false;
        };
        let limit = i128::try_from(limit.as_nanos()).unwrap_or(i128::MAX);
        i128::from(self.mtime_ns.max(self.ctime_ns)) <= limit
    }
}

/// Content hashes (BLAKE3 of the bytes) remembered by identity. Implementations use interior
/// mutability: one memo serves every COPY of a build.
pub trait DigestMemo: Send + Sync + std::fmt::Debug {
    /// The content hash of a file with exactly this identity, if known.
    fn recall(&self, file: &FileIdentity) -> Option<[u8; 32]>;

    /// A content hash just computed for a file whose identity did not change while it was
    /// read. `settled` says whether the identity may vouch for it after this build (see
    /// [`FileIdentity::settled`]); an unsettled one may still serve the rest of the build.
    fn remember(&self, file: FileIdentity, hash: [u8; 32], settled: bool);
}

/// Remembers nothing: every file is read every time.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMemo;

impl DigestMemo for NoMemo {
    fn recall(&self, _: &FileIdentity) -> Option<[u8; 32]> {
        None
    }

    fn remember(&self, _: FileIdentity, _: [u8; 32], _: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(mtime_s: i64, ctime_s: i64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: mtime_s * 1_000_000_000,
            ctime_ns: ctime_s * 1_000_000_000,
            mode: 0o100644,
        }
    }

    #[test]
    fn only_times_safely_older_than_the_read_are_settled() {
        let read_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(identity(990, 990).settled(read_at));
        assert!(identity(998, 998).settled(read_at), "exactly the margin");
        // Modified or changed within the margin of the read: racy.
        assert!(!identity(999, 990).settled(read_at));
        assert!(!identity(990, 999).settled(read_at), "a restored mtime");
        assert!(!identity(1_005, 1_005).settled(read_at), "from the future");
        assert!(!identity(0, 0).settled(SystemTime::UNIX_EPOCH));
    }

    #[test]
    fn an_identity_is_read_from_stat_in_nanoseconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "12345").unwrap();
        let stat = rustix::fs::stat(&path).unwrap();
        let id = FileIdentity::of(&stat);
        assert_eq!(id.size, 5);
        assert_eq!(id.mode & 0o170000, 0o100000);
        let meta = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(id.ino, meta.ino());
        assert_eq!(
            id.mtime_ns,
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
        );
        assert_eq!(
            id.ctime_ns,
            meta.ctime() * 1_000_000_000 + meta.ctime_nsec()
        );
    }
}
