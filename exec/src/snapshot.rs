//! Metadata snapshots of a root filesystem, compared to find what a `RUN` step changed.
//!
//! Kaniko hashes the content of every file before and after each `RUN`, which makes every step
//! cost O(bytes in the image). kiln compares `lstat` results instead, and that is exact rather
//! than a heuristic because the comparison includes the inode change time (`ctime`):
//!
//! * every way of changing a file's content or metadata (write, truncate, chmod, chown, rename,
//!   link/unlink, xattr changes) makes the kernel set `ctime` to the current time;
//! * unlike `mtime`, `ctime` cannot be set from user space (`utimensat` itself bumps it), so a
//!   step that rewrites a file and then restores its size and `mtime` is still caught;
//! * a file replaced by another one (`mv new old`, an editor's save) has a different inode.
//!
//! The one way to defeat it is to change the clock, which a build step cannot do, and the
//! filesystem's timestamp granularity, which [`Snapshot::scan`] guards against by never
//! finishing within the same clock tick as the newest change it recorded.
//!
//! That comparison is [`ScanMode::Redo`], the default; between RUNs it also hashes what changed,
//! so that a later rewrite with identical bytes and metadata is recognised as no change
//! ([`Snapshot::observe`]): the reading it does is proportional to the change. Kaniko's other two
//! modes exist for
//! pipelines that ask for them by name: [`ScanMode::Full`] also hashes every regular file with
//! blake3 and reports a path only when what a layer would hold (type, mode, owner, size, mtime,
//! link target, content) differs, at the price of reading every byte of the image twice per
//! `RUN`; [`ScanMode::Time`] compares modification times alone, which misses any change that
//! keeps or restores the mtime and is documented as unsafe.
//!
//! A directory that exists before and after but is a different directory (its inode or birth
//! time differ: `rm -rf d && mkdir d`) is reported as opaque, with everything in it, rather than
//! as one deletion per old child; the overlay strategy reports the same thing from the overlay's
//! opaque marker, so both give the same layer.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::iter::{IntoParallelRefIterator, IntoParallelRefMutIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;

use crate::changes::Changes;
use crate::fsroot;

/// How long after the newest change time a scan waits before returning, so that any later change
/// gets a strictly newer `ctime` than the one recorded. Linux stamps inode times from a clock that
/// advances once per scheduler tick (at most 10 ms with `HZ=100`); twice that leaves a margin.
const RACY_WINDOW: Duration = Duration::from_millis(20);

/// What a scan compares to decide that a path changed (Kaniko's `--snapshot-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScanMode {
    /// Metadata plus a blake3 hash of every regular file: a path is changed only if its type,
    /// mode, owner, size, mtime, link count, link target or content differ. Reads every byte.
    Full,
    /// Metadata, including `ctime`, inode and birth time, which no build step can forge: exact
    /// without reading the image. Only candidates are hashed: a file whose metadata moved but
    /// would look the same in a layer is compared by content when an earlier step hashed it
    /// ([`Snapshot::observe`]). The default.
    #[default]
    Redo,
    /// Modification time (and type) only. Unsafe: a change that keeps or restores the mtime, or
    /// lands within the filesystem's timestamp granularity, is missed.
    Time,
}

/// The metadata of every path under a root directory at one moment.
pub struct Snapshot {
    /// Root-relative paths (no leading `/`, the root itself excluded), sorted component-wise so
    /// that every directory is immediately followed by its subtree.
    entries: Vec<Entry>,
    /// What was recorded, and so what [`Snapshot::diff`] compares.
    mode: ScanMode,
    /// The directory scanned, to hash files of it later ([`Snapshot::observe`]).
    root: PathBuf,
}

/// One path of a snapshot with its metadata.
type Entry = (PathBuf, Meta);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("paths", &self.entries.len())
            .field("mode", &self.mode)
            .finish()
    }
}

/// What kind of file a path is; a symlink carries its target, since retargeting a symlink is a
/// change even when nothing else about it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Regular,
    Directory,
    Symlink(OsString),
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

/// Everything `lstat` says about a path that a change could alter (atime excluded: reading is
/// not a change).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: i64,
    mtime: (i64, u64),
    ctime: (i64, u64),
    /// Birth time where the filesystem records one: with the inode number, what tells a
    /// directory recreated under a recycled inode number from the original.
    btime: Option<(i64, u32)>,
    ino: u64,
    dev: u64,
    rdev: u64,
    nlink: u64,
    /// blake3 of a regular file's content, in [`ScanMode::Full`] only.
    hash: Option<[u8; 32]>,
}

impl Meta {
    /// Whether the same file is still there (not deleted and recreated in between).
    fn same_file(&self, other: &Meta) -> bool {
        (self.dev, self.ino, self.btime) == (other.dev, other.ino, other.btime)
    }

    /// Whether what a layer entry would record for the path is the same.
    fn same_in_layer(&self, other: &Meta) -> bool {
        (
            &self.kind, self.mode, self.uid, self.gid, self.size, self.mtime, self.rdev, self.nlink,
        ) == (
            &other.kind,
            other.mode,
            other.uid,
            other.gid,
            other.size,
            other.mtime,
            other.rdev,
            other.nlink,
        )
    }

    /// Whether every recorded field but the content hash (which only some entries carry) is equal.
    fn same_metadata(&self, old: &Meta) -> bool {
        self.same_in_layer(old)
            && (self.ctime, self.btime, self.dev, self.ino)
                == (old.ctime, old.btime, old.dev, old.ino)
    }

    /// Whether `mode` counts the path as unchanged from `old` to `self`.
    fn unchanged_since(&self, old: &Meta, mode: ScanMode) -> bool {
        match mode {
            ScanMode::Full => self.same_in_layer(old) && self.hash == old.hash,
            ScanMode::Redo => self.same_metadata(old),
            ScanMode::Time => self.kind == old.kind && self.mtime == old.mtime,
        }
    }
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A directory could not be read or a path could not be inspected.
    #[error("snapshot of {}: {op} {}: {source}", root.display(), path.display())]
    Io {
        /// The root being scanned.
        root: PathBuf,
        /// The root-relative path at fault.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Shared state of one parallel walk.
struct Walk<'a> {
    root: &'a Path,
    root_fd: OwnedFd,
    exclude: std::collections::HashSet<PathBuf>,
    found: Mutex<Vec<Vec<Entry>>>,
    error: Mutex<Option<SnapshotError>>,
}

impl Snapshot {
    /// [`Snapshot::scan_with`] in the default mode, [`ScanMode::Redo`].
    pub fn scan(root: &Path, exclude: &[PathBuf]) -> Result<Snapshot, SnapshotError> {
        Self::scan_with(root, ScanMode::Redo, exclude)
    }

    /// Metadata of every path under `root` (parallel walk with rayon), skipping `exclude`d
    /// root-relative paths (`/proc` and `proc` alike) and everything below them, with content
    /// hashes in [`ScanMode::Full`]. Nothing is followed: symlinks are recorded, not traversed.
    pub fn scan_with(
        root: &Path,
        mode: ScanMode,
        exclude: &[PathBuf],
    ) -> Result<Snapshot, SnapshotError> {
        let root_fd = fsroot::open_dir(root).map_err(|source| SnapshotError::Io {
            root: root.to_path_buf(),
            path: PathBuf::new(),
            op: "opening",
            source,
        })?;
        let walk = Walk {
            root,
            root_fd,
            exclude: exclude
                .iter()
                .map(|p| fsroot::clean(p))
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            found: Mutex::new(Vec::new()),
            error: Mutex::new(None),
        };
        rayon::scope(|scope| walk_dir(scope, &walk, PathBuf::new()));

        if let Some(err) = walk.error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(err);
        }
        let mut entries: Vec<Entry> = walk
            .found
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .flatten()
            .collect();
        entries.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if mode == ScanMode::Full {
            hash_contents(root, &walk.root_fd, &mut entries)?;
        }
        settle_clock(entries.iter().map(|(_, meta)| meta.ctime).max());
        Ok(Snapshot {
            entries,
            mode,
            root: root.to_path_buf(),
        })
    }

    /// How many paths the snapshot holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the root was empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What changed from `self` (before a RUN) to `after`, compared as `after`'s mode says:
    /// paths that changed or are new (with everything under a new directory, which is all new),
    /// directories recreated as a whole as opaque, and deleted paths reduced to the top-most one
    /// (`a`, not `a/b`), omitting those whose parent is no longer a directory, since writing the
    /// parent already replaces them.
    pub fn diff(&self, after: &Snapshot) -> Changes {
        self.diff_with(after, &[])
    }

    /// [`Snapshot::diff`], judging the directories `ctime_moved` (root-relative: those that held
    /// the sandbox's mount-point stubs, whose ctime moved whoever changed them) on everything but
    /// their ctime.
    pub fn diff_with(&self, after: &Snapshot, ctime_moved: &[PathBuf]) -> Changes {
        self.compare(after, ctime_moved, false).0
    }

    /// [`Snapshot::diff_with`] as the snapshotter uses it between RUNs. In [`ScanMode::Redo`] it
    /// also hashes: a candidate (a regular file whose metadata moved) that a layer would record
    /// exactly as before, and whose content was hashed earlier, is hashed again and reported only
    /// if its bytes differ (a rewrite with the same bytes, size, mode and mtime is not a change);
    /// then every changed regular file of `after` is hashed and the others carry the hash they
    /// had, so the next RUN can confirm its candidates the same way. Only what changed is read.
    pub fn observe(
        &self,
        after: &mut Snapshot,
        ctime_moved: &[PathBuf],
    ) -> Result<Changes, SnapshotError> {
        if after.mode != ScanMode::Redo {
            return Ok(self.diff_with(after, ctime_moved));
        }
        let (mut changes, pending) = self.compare(after, ctime_moved, true);
        let root = after.root.clone();
        let root_fd = fsroot::open_dir(&root).map_err(|source| SnapshotError::Io {
            root: root.clone(),
            path: PathBuf::new(),
            op: "opening",
            source,
        })?;
        let rehashed = pending
            .par_iter()
            .map(|&(index, old)| {
                let hash = hash_file(&root, &root_fd, &after.entries[index].0)?;
                Ok((index, old, hash))
            })
            .collect::<Result<Vec<_>, SnapshotError>>()?;
        for (index, old, hash) in rehashed {
            let (path, meta) = &mut after.entries[index];
            meta.hash = hash;
            if hash != Some(old) {
                changes.add_changed(path.clone());
            }
        }
        self.carry_hashes(after);
        let changed: std::collections::HashSet<&Path> = changes.changed().collect();
        after
            .entries
            .par_iter_mut()
            .filter(|(path, meta)| {
                meta.kind == Kind::Regular
                    && meta.hash.is_none()
                    && changed.contains(path.as_path())
            })
            .try_for_each(|(path, meta)| {
                meta.hash = hash_file(&root, &root_fd, path)?;
                Ok::<(), SnapshotError>(())
            })?;
        Ok(changes)
    }

    /// Gives every entry of `after` whose metadata did not move the hash it had here.
    fn carry_hashes(&self, after: &mut Snapshot) {
        let mut old = self.entries.iter().peekable();
        for (path, meta) in &mut after.entries {
            while old.next_if(|(p, _)| p < path).is_some() {}
            if let Some((_, before)) = old.next_if(|(p, _)| p == path)
                && meta.hash.is_none()
                && meta.same_metadata(before)
            {
                meta.hash = before.hash;
            }
        }
    }

    /// The diff; with `confirm`, redo candidates that only content can judge are returned (index
    /// in `after`, old hash) instead of being reported.
    fn compare(
        &self,
        after: &Snapshot,
        ctime_moved: &[PathBuf],
        confirm: bool,
    ) -> (Changes, Vec<(usize, [u8; 32])>) {
        let mut pending = Vec::new();
        let mut changes = Changes::new();
        let before = &self.entries;
        let now = &after.entries;
        let (mut i, mut j) = (0, 0);
        // The outermost new directory whose subtree we are in: everything below it is new.
        let mut new_dir: Option<&Path> = None;
        while i < before.len() || j < now.len() {
            let order = match (before.get(i), now.get(j)) {
                (Some(old), Some(new)) => old.0.cmp(&new.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, _) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let (path, _) = &before[i];
                    if after.is_directory(path.parent().unwrap_or(Path::new(""))) {
                        changes.add_deleted(path.clone());
                    }
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let (path, meta) = &now[j];
                    let inside_new = new_dir.is_some_and(|dir| path.starts_with(dir));
                    if !inside_new && meta.kind == Kind::Directory {
                        new_dir = Some(path);
                    }
                    changes.add_changed(path.clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (path, meta) = &now[j];
                    let old = &before[i].1;
                    let inside_new = new_dir.is_some_and(|dir| path.starts_with(dir));
                    let unchanged = if ctime_moved.contains(path) {
                        let same_ctime = Meta {
                            ctime: old.ctime,
                            ..meta.clone()
                        };
                        same_ctime.unchanged_since(old, after.mode)
                    } else {
                        meta.unchanged_since(old, after.mode)
                    };
                    let content_decides = confirm
                        && after.mode == ScanMode::Redo
                        && !inside_new
                        && !unchanged
                        && meta.kind == Kind::Regular
                        && meta.same_in_layer(old);
                    match old.hash {
                        Some(hash) if content_decides => pending.push((j, hash)),
                        _ if inside_new || !unchanged => changes.add_changed(path.clone()),
                        _ => {}
                    }
                    let recreated = meta.kind == Kind::Directory
                        && (old.kind != Kind::Directory || !old.same_file(meta));
                    if !inside_new && recreated {
                        new_dir = Some(path);
                        if old.kind == Kind::Directory {
                            changes.add_opaque(path.clone());
                        }
                    }
                    i += 1;
                    j += 1;
                }
            }
            if let Some(dir) = new_dir {
                // Leave the new directory once the merge has moved past its subtree.
                let next = now.get(j).map(|(p, _)| p.as_path());
                if next.is_none_or(|p| !p.starts_with(dir)) {
                    new_dir = None;
                }
            }
        }
        (changes, pending)
    }

    /// Whether `path` (root-relative, empty for the root) is a directory in this snapshot.
    fn is_directory(&self, path: &Path) -> bool {
        if path.as_os_str().is_empty() {
            return true;
        }
        self.entries
            .binary_search_by(|(p, _)| p.as_path().cmp(path))
            .is_ok_and(|idx| self.entries[idx].1.kind == Kind::Directory)
    }
}

/// Reads one directory, records its children, and spawns a task per subdirectory.
fn walk_dir<'s>(scope: &rayon::Scope<'s>, walk: &'s Walk<'_>, dir: PathBuf) {
    if walk.error.lock().is_ok_and(|e| e.is_some()) {
        return;
    }
    match read_dir(walk, &dir) {
        Ok((entries, subdirs)) => {
            if let Ok(mut found) = walk.found.lock() {
                found.push(entries);
            }
            for sub in subdirs {
                scope.spawn(move |scope| walk_dir(scope, walk, sub));
            }
        }
        Err(err) => {
            if let Ok(mut slot) = walk.error.lock() {
                slot.get_or_insert(err);
            }
        }
    }
}

/// The children of `dir` with their metadata, and which of them are directories to descend into.
fn read_dir(walk: &Walk<'_>, dir: &Path) -> Result<(Vec<Entry>, Vec<PathBuf>), SnapshotError> {
    let error = |op: &'static str, path: &Path, source: io::Error| SnapshotError::Io {
        root: walk.root.to_path_buf(),
        path: path.to_path_buf(),
        op,
        source,
    };
    // Opened from the root each time (not from the parent's descriptor) so that pending tasks
    // hold no descriptors; refusing symlinks on the way keeps the walk inside the root.
    let target: &Path = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let fd = match rustix::fs::openat2(
        &walk.root_fd,
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        // Removed while we were walking: it simply is not part of this snapshot.
        Err(Errno::NOENT) => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(error("opening directory", dir, e.into())),
    };
    let mut listing =
        rustix::fs::Dir::new(fd).map_err(|e| error("reading directory", dir, e.into()))?;
    let mut names = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry.map_err(|e| error("reading directory", dir, e.into()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    let dir_fd = listing
        .fd()
        .map_err(|e| error("reading directory", dir, e.into()))?;

    let mut entries = Vec::with_capacity(names.len());
    let mut subdirs = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if walk.exclude.contains(&path) {
            continue;
        }
        let meta = match stat(dir_fd, &name) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(error("inspecting", &path, e)),
        };
        if meta.kind == Kind::Directory {
            subdirs.push(path.clone());
        }
        entries.push((path, meta));
    }
    Ok((entries, subdirs))
}

/// `lstat` with the birth time (`statx`), and `readlink` for symlinks, of `name` in `dir`.
fn stat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Meta> {
    let st = rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )?;
    let kind = match FileType::from_raw_mode(u32::from(st.stx_mode)) {
        FileType::RegularFile => Kind::Regular,
        FileType::Directory => Kind::Directory,
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
            Kind::Symlink(OsString::from_vec(target.into_bytes()))
        }
        FileType::CharacterDevice => Kind::CharDevice,
        FileType::BlockDevice => Kind::BlockDevice,
        FileType::Fifo => Kind::Fifo,
        FileType::Socket => Kind::Socket,
        FileType::Unknown => Kind::Unknown,
    };
    let btime = (st.stx_mask & StatxFlags::BTIME.bits() != 0)
        .then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec));
    Ok(Meta {
        kind,
        mode: u32::from(st.stx_mode) & 0o7777,
        uid: st.stx_uid,
        gid: st.stx_gid,
        size: i64::try_from(st.stx_size).unwrap_or(i64::MAX),
        mtime: (st.stx_mtime.tv_sec, u64::from(st.stx_mtime.tv_nsec)),
        ctime: (st.stx_ctime.tv_sec, u64::from(st.stx_ctime.tv_nsec)),
        btime,
        ino: st.stx_ino,
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
        nlink: u64::from(st.stx_nlink),
        hash: None,
    })
}

/// Hashes the content of every regular file of `entries` in parallel ([`ScanMode::Full`]).
fn hash_contents(
    root: &Path,
    root_fd: &OwnedFd,
    entries: &mut [Entry],
) -> Result<(), SnapshotError> {
    entries
        .par_iter_mut()
        .filter(|(_, meta)| meta.kind == Kind::Regular)
        .try_for_each(|(path, meta)| {
            meta.hash = hash_file(root, root_fd, path)?;
            Ok(())
        })
}

/// blake3 of the regular file `path` under the root, streamed; `None` if it is gone.
fn hash_file(
    root: &Path,
    root_fd: &OwnedFd,
    path: &Path,
) -> Result<Option<[u8; 32]>, SnapshotError> {
    let error = |op: &'static str, source: io::Error| SnapshotError::Io {
        root: root.to_path_buf(),
        path: path.to_path_buf(),
        op,
        source,
    };
    let file = match rustix::fs::openat2(
        root_fd,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => std::fs::File::from(fd),
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(error("opening", e.into())),
    };
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(file)
        .map_err(|source| error("hashing", source))?;
    Ok(Some(*hasher.finalize().as_bytes()))
}

/// Waits, if needed, until the clock is past the newest `ctime` recorded by more than one tick,
/// so a change made right after the scan cannot get the same `ctime` and go unnoticed.
fn settle_clock(newest: Option<(i64, u64)>) {
    let Some((secs, nanos)) = newest else { return };
    let Ok(secs) = u64::try_from(secs) else {
        return;
    };
    let newest = UNIX_EPOCH + Duration::new(secs, 0) + Duration::from_nanos(nanos);
    let Some(safe) = newest.checked_add(RACY_WINDOW) else {
        return;
    };
    if let Ok(wait) = safe.duration_since(SystemTime::now()) {
        // Bounded by RACY_WINDOW unless the file's ctime is in the future (clock skew); a skewed
        // file cannot be protected by waiting anyway.
        std::thread::sleep(wait.min(RACY_WINDOW));
    }
}

#[cfg(test)]
mod tests;
