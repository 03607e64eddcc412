//! The ignore list: paths of a root filesystem that a build never writes, deletes or snapshots.
//!
//! In a sandboxed build the root is a private directory and nothing in it needs protecting. When
//! kiln builds in its own container's root (`--isolation=none`, Kaniko's model), the root also
//! holds kiln itself (`/kaniko`), the kernel's filesystems (`/proc`, `/sys`, `/dev`) and whatever
//! the runtime mounted (the workspace, secrets, `/etc/hosts`): those must survive base-image
//! extraction, whiteouts and the reset between stages, and never end up in a layer. Kaniko keeps
//! the same list (`pkg/util/fs_util.go`): its own directory, `/etc/mtab`, `/var/run` unless
//! `--ignore-var-run=false`, `--ignore-path`s and every mount point of `/proc/self/mountinfo`.
//!
//! Matching is by whole path components: `/var/run` ignores `/var/run/x` but not `/var/runner`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::fsroot::{self, RootFs};

/// Root-relative paths never touched; empty for a private root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreList {
    /// Cleaned, root-relative, never empty (ignoring the root itself would ignore everything).
    paths: Vec<PathBuf>,
}

impl IgnoreList {
    /// A list of absolute or root-relative paths; `/` itself is dropped.
    pub fn new<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> IgnoreList {
        let mut list = IgnoreList::default();
        list.extend(paths);
        list
    }

    /// Adds paths; `/` itself is dropped.
    pub fn extend<P: AsRef<Path>>(&mut self, paths: impl IntoIterator<Item = P>) {
        for path in paths {
            let clean = fsroot::clean(path.as_ref());
            if !clean.as_os_str().is_empty() && !self.paths.contains(&clean) {
                self.paths.push(clean);
            }
        }
        self.paths.sort();
    }

    /// The paths, root-relative.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether nothing is ignored.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether `path` (root-relative or absolute) is ignored: it is, or is below, a listed path.
    pub fn ignores(&self, path: &Path) -> bool {
        if self.paths.is_empty() {
            return false; // the sandbox's case, on every extracted entry: no work at all
        }
        let path = fsroot::clean(path);
        self.paths.iter().any(|ignored| path.starts_with(ignored))
    }

    /// Whether a listed path lies strictly below `path`: deleting `path` wholesale would delete it.
    pub fn holds_ignored(&self, path: &Path) -> bool {
        if self.paths.is_empty() {
            return false;
        }
        let path = fsroot::clean(path);
        self.paths
            .iter()
            .any(|ignored| ignored != &path && ignored.starts_with(&path))
    }

    /// Deletes everything in `root` except ignored paths and the directories leading to them:
    /// Kaniko's `DeleteFilesystem`, run between stages so the next one starts from its own base.
    pub fn reset(&self, root: &RootFs) -> io::Result<()> {
        let dir = root.open_path(
            Path::new(""),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        self.prune_dir(dir.as_fd(), Path::new(""))
    }

    /// `rm -rf` of `name` in `parent` (at root-relative `rel`), sparing ignored paths: an
    /// ignored path is left alone, a directory holding one is emptied of everything else.
    pub fn remove(&self, parent: BorrowedFd<'_>, name: &OsStr, rel: &Path) -> io::Result<()> {
        if self.ignores(rel) {
            return Ok(());
        }
        if !self.holds_ignored(rel) {
            return remove_all(parent, name);
        }
        let dir = match rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir) => dir,
            // A symlink or file where an ignored directory's parent was expected: it holds
            // nothing ignored on this filesystem, so it goes.
            Err(Errno::NOTDIR | Errno::LOOP) => return remove_all(parent, name),
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.prune_dir(dir.as_fd(), rel)
    }

    fn prune_dir(&self, dir: BorrowedFd<'_>, rel: &Path) -> io::Result<()> {
        for name in list_dir(dir)? {
            let child = rel.join(&name);
            self.remove(dir, &name, &child)
                .map_err(|e| io::Error::new(e.kind(), format!("/{}: {e}", child.display())))?;
        }
        Ok(())
    }
}

/// The mount points listed in a `/proc/self/mountinfo` text (field 5, octal escapes decoded),
/// except `/`: where a container runtime or Kubernetes put something kiln must not touch.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|path| path != Path::new("/"))
        .collect()
}

/// Decodes mountinfo's `\040`-style escapes (space, tab, newline, backslash).
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// Names in a directory, without `.` and `..`.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// `rm -rf` of `name` in `parent` (nothing there is fine), never following a symlink (a
/// symlink is unlinked, not its target; directories are descended through descriptors opened
/// with `O_NOFOLLOW`) and never crossing into another filesystem (a mount point the ignore list
/// missed fails the removal rather than being emptied).
pub(crate) fn remove_all(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let parent_dev = rustix::fs::fstat(parent)?.st_dev;
    let stat = rustix::fs::fstat(&dir)?;
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory && stat.st_dev != parent_dev {
        return Err(io::Error::other(
            "is a mount point; add it to --ignore-path or unmount it",
        ));
    }
    for child in list_dir(dir.as_fd())? {
        remove_all(dir.as_fd(), &child)?;
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(Into::into)
}

#[cfg(test)]
mod tests;
