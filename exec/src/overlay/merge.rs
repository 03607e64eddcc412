//! Moving an overlay upper directory into the root it was mounted on.
//!
//! Walking the upper directory: a whiteout removes the root's entry; a directory the root also
//! has as a directory (and that is not opaque) is merged into it, then given the upper
//! directory's mode, owner, xattrs and times, since it is what the command left; anything else
//! replaces the root's entry by a rename, which keeps inodes, so hardlinks made by the command
//! stay hardlinks. Overlayfs' own xattrs (`trusted.overlay.*`: opaque, origin, impure) are
//! stripped from what moves, so the root stays a plain tree that can be the lower layer of the
//! next step's overlay.
//!
//! The root side is only reached through descriptors opened beneath the root, and only through
//! entries checked to be real directories: nothing the command created can redirect the merge.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{OverlayError, io_error};
use crate::fsroot::{RootFs, timestamps};

/// Xattr name prefixes that belong to overlayfs, not to the files.
const OVERLAY_XATTRS: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// Moves everything in `upper` into `root`.
pub(super) fn merge(upper: &Path, root: &RootFs) -> Result<(), OverlayError> {
    let root_dir = root
        .open_path(Path::new(""), dir_flags(), Mode::empty())
        .map_err(io_error("opening", root.path()))?;
    let st = lstat(upper)?;
    merge_dir(upper, Path::new(""), &root_dir)?;
    apply_dir_attributes(upper, &st, &root_dir, root.path())
}

fn lstat(host: &Path) -> Result<Stat, OverlayError> {
    rustix::fs::lstat(host).map_err(|e| io_error("inspecting", host)(e.into()))
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Merges the upper directory `upper/rel` into the open root directory `target`.
fn merge_dir(upper: &Path, rel: &Path, target: &OwnedFd) -> Result<(), OverlayError> {
    let source_path = upper.join(rel);
    let source = rustix::fs::open(&source_path, dir_flags(), Mode::empty())
        .map_err(|e| io_error("opening", &source_path)(e.into()))?;
    for name in names(&source, &source_path)? {
        let path = rel.join(&name);
        let host = upper.join(&path);
        let st = rustix::fs::statat(&source, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_error("inspecting", &host)(e.into()))?;
        let existing = match rustix::fs::statat(target, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
        {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(io_error("inspecting", &path)(e.into())),
        };
        let file_type = FileType::from_raw_mode(st.st_mode);
        if file_type == FileType::CharacterDevice && st.st_rdev == 0 {
            if existing.is_some() {
                remove_all(target.as_fd(), &name).map_err(io_error("removing", &path))?;
            }
            continue;
        }
        if file_type == FileType::Directory
            && existing == Some(FileType::Directory)
            && !is_opaque(&host)?
        {
            let child = rustix::fs::openat(target, name.as_os_str(), dir_flags(), Mode::empty())
                .map_err(|e| io_error("opening", &path)(e.into()))?;
            merge_dir(upper, &path, &child)?;
            apply_dir_attributes(&host, &st, &child, &path)?;
            continue;
        }
        if existing.is_some() {
            remove_all(target.as_fd(), &name).map_err(io_error("removing", &path))?;
        }
        strip_tree(&host)?;
        rustix::fs::renameat(&source, name.as_os_str(), target, name.as_os_str())
            .map_err(|e| io_error("moving into the root", &path)(e.into()))?;
        if file_type == FileType::Directory {
            // Moving a directory rewrites its `..` entry; keep the times the command left.
            rustix::fs::utimensat(
                target,
                name.as_os_str(),
                &timestamps(&st),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_error("setting the times of", &path)(e.into()))?;
        }
    }
    Ok(())
}

fn names(dir: &OwnedFd, path: &Path) -> Result<Vec<OsString>, OverlayError> {
    let fd = rustix::io::dup(dir).map_err(|e| io_error("reading", path)(e.into()))?;
    let mut listing = rustix::fs::Dir::new(fd).map_err(|e| io_error("reading", path)(e.into()))?;
    let mut names = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry.map_err(|e| io_error("reading", path)(e.into()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

fn is_opaque(host: &Path) -> Result<bool, OverlayError> {
    super::upper::is_opaque(host)
}

/// Gives the root directory `target` the mode, owner, xattrs and times of the upper directory
/// `host` (xattrs of overlayfs excepted); `st` is `host`'s status from before its entries moved
/// out, which changed its mtime.
fn apply_dir_attributes(
    host: &Path,
    st: &Stat,
    target: &OwnedFd,
    path: &Path,
) -> Result<(), OverlayError> {
    let fail = |op: &'static str| move |e: Errno| io_error(op, path)(e.into());
    rustix::fs::fchown(
        target,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )
    .map_err(fail("changing the owner of"))?;
    rustix::fs::fchmod(target, Mode::from_raw_mode(st.st_mode & 0o7777))
        .map_err(fail("changing the mode of"))?;
    let wanted = xattr_names(host)?;
    let present = flist(target).map_err(fail("listing xattrs of"))?;
    for name in present {
        if !wanted.contains(&name) && !is_overlay_xattr(&name) {
            rustix::fs::fremovexattr(target, name.as_slice())
                .map_err(fail("removing an xattr of"))?;
        }
    }
    for name in wanted {
        let mut value = vec![0u8; 1 << 16];
        let len = rustix::fs::lgetxattr(host, name.as_slice(), &mut value[..])
            .map_err(|e| io_error("reading xattrs of", host)(e.into()))?;
        rustix::fs::fsetxattr(
            target,
            name.as_slice(),
            &value[..len],
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(fail("setting an xattr of"))?;
    }
    rustix::fs::futimens(target, &timestamps(st)).map_err(fail("setting the times of"))
}

/// The xattr names of `path` (not followed) that belong to the file, not to overlayfs.
fn xattr_names(path: &Path) -> Result<Vec<Vec<u8>>, OverlayError> {
    let mut buf = vec![0u8; 1 << 16];
    let len = match rustix::fs::llistxattr(path, &mut buf[..]) {
        Ok(len) => len,
        Err(Errno::NOTSUP) => 0,
        Err(e) => return Err(io_error("listing xattrs of", path)(e.into())),
    };
    Ok(split_names(&buf[..len])
        .filter(|name| !is_overlay_xattr(name))
        .collect())
}

fn flist(fd: &OwnedFd) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1 << 16];
    let len = match rustix::fs::flistxattr(fd, &mut buf[..]) {
        Ok(len) => len,
        Err(Errno::NOTSUP) => 0,
        Err(e) => return Err(e),
    };
    Ok(split_names(&buf[..len]).collect())
}

fn split_names(list: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    list.split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(<[u8]>::to_vec)
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    OVERLAY_XATTRS.iter().any(|prefix| name.starts_with(prefix))
}

/// Removes overlayfs' xattrs from `host` and, for a directory, from everything below it.
fn strip_tree(host: &Path) -> Result<(), OverlayError> {
    let mut buf = vec![0u8; 1 << 16];
    let len = match rustix::fs::llistxattr(host, &mut buf[..]) {
        Ok(len) => len,
        Err(Errno::NOTSUP) => 0,
        Err(e) => return Err(io_error("listing xattrs of", host)(e.into())),
    };
    for name in split_names(&buf[..len]).filter(|name| is_overlay_xattr(name)) {
        rustix::fs::lremovexattr(host, name.as_slice())
            .map_err(|e| io_error("removing an xattr of", host)(e.into()))?;
    }
    let meta = std::fs::symlink_metadata(host).map_err(io_error("inspecting", host))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(host).map_err(io_error("reading", host))? {
            let entry = entry.map_err(io_error("reading", host))?;
            strip_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Sets the owner and permission bits of `st` on the directory `path`.
pub(super) fn copy_owner_mode(st: &Stat, path: &Path) -> Result<(), OverlayError> {
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| io_error("changing the owner of", path)(e.into()))?;
    rustix::fs::chmod(path, Mode::from_raw_mode(st.st_mode & 0o7777))
        .map_err(|e| io_error("changing the mode of", path)(e.into()))
}

/// `rm -rf parent/name`, never following a symlink.
fn remove_all(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = rustix::fs::openat(parent, name, dir_flags(), Mode::empty())?;
    let dup = rustix::io::dup(&dir)?;
    let mut listing = rustix::fs::Dir::new(dup)?;
    let mut children = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let child = entry.file_name().to_bytes();
        if child != b"." && child != b".." {
            children.push(OsStr::from_bytes(child).to_os_string());
        }
    }
    for child in children {
        remove_all(dir.as_fd(), &child)?;
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(Into::into)
}
