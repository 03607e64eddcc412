//! Reading an overlay upper directory as [`Changes`].
//!
//! Each entry of the upper directory is one of: a whiteout (a character device 0/0) deleting what
//! the lower tree had there; a directory, opaque when overlayfs marked it so (it replaced a
//! directory of the lower tree as a whole); anything else, new or copied up. A copy-up is not by
//! itself a change (opening a file for writing copies it up even if nothing is written), so an
//! entry whose type, mode, owner, size, mtime, link count, capability and content all equal the
//! lower file's is left out, exactly as the scan strategy would not see it. A `chmod` alone
//! changes the mode, so it is never mistaken for a bare copy-up.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use rustix::fs::{FileType, Stat};

use super::{OverlayError, io_error};
use crate::changes::Changes;
use crate::fsroot::RootFs;

/// Xattrs overlayfs sets to `y` on an opaque directory (`user.` with the `userxattr` option).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// The xattr a layer records besides mode and owner.
const CAPABILITY: &str = "security.capability";

/// What the upper directory `upper` of an overlay on `root` says changed.
pub(super) fn read(upper: &Path, root: &RootFs) -> Result<Changes, OverlayError> {
    let mut changes = Changes::new();
    read_dir(upper, Path::new(""), Some(root), &mut changes)?;
    Ok(changes)
}

/// Reads the upper directory `rel`; `root` is `None` below a directory that hides or has no lower
/// counterpart, where everything is new and the lower tree must not be consulted (the same name
/// there could resolve through a symlink the command replaced).
fn read_dir(
    upper: &Path,
    rel: &Path,
    root: Option<&RootFs>,
    changes: &mut Changes,
) -> Result<(), OverlayError> {
    let dir = upper.join(rel);
    let listing = std::fs::read_dir(&dir).map_err(io_error("reading", &dir))?;
    for entry in listing {
        let entry = entry.map_err(io_error("reading", &dir))?;
        let path = rel.join(entry.file_name());
        let host = entry.path();
        let meta = rustix::fs::lstat(&host).map_err(|e| io_error("inspecting", &host)(e.into()))?;
        let lower = match root.map(|root| root.symlink_metadata(&path)) {
            None => None,
            Some(Ok(st)) => Some(st),
            Some(Err(err)) if is_absent(&err) => None,
            Some(Err(err)) => return Err(io_error("inspecting", &path)(err)),
        };
        let file_type = FileType::from_raw_mode(meta.st_mode);
        if file_type == FileType::CharacterDevice && meta.st_rdev == 0 {
            if lower.is_some() {
                changes.add_deleted(path);
            }
            continue;
        }
        let lower_kind = lower.as_ref().map(|st| FileType::from_raw_mode(st.st_mode));
        if file_type == FileType::Directory {
            let merged_with_lower = lower_kind == Some(FileType::Directory) && !is_opaque(&host)?;
            if lower_kind == Some(FileType::Directory) && !merged_with_lower {
                changes.add_opaque(path.clone());
            } else if !lower.as_ref().is_some_and(|st| same_dir(st, &meta)) {
                // A directory copied up only because something below it changed is not itself a
                // change; the layer writer emits it as a parent of what did.
                changes.add_changed(path.clone());
            }
            read_dir(upper, &path, root.filter(|_| merged_with_lower), changes)?;
            continue;
        }
        let copied_up = match (&lower, root) {
            (Some(st), Some(root)) => bare_copy_up(st, &meta, &host, root, &path)?,
            _ => false,
        };
        if !copied_up {
            changes.add_changed(path);
        }
    }
    Ok(())
}

/// `ENOENT`, or `ENOTDIR` when a parent of the path is no longer a directory in the lower tree.
fn is_absent(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ENOTDIR)
}

pub(super) fn is_opaque(host: &Path) -> Result<bool, OverlayError> {
    for name in OPAQUE_XATTRS {
        if xattr(host, name)?.as_deref() == Some(b"y".as_slice()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An xattr's value, `None` when absent or unsupported.
fn xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, OverlayError> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 16 => buf.resize(1 << 16, 0),
            Err(e) => return Err(io_error("reading xattrs of", path)(e.into())),
        }
    }
}

/// Whether a directory's own attributes are the lower one's.
fn same_dir(lower: &Stat, upper: &Stat) -> bool {
    FileType::from_raw_mode(lower.st_mode) == FileType::Directory
        && lower.st_mode == upper.st_mode
        && (lower.st_uid, lower.st_gid) == (upper.st_uid, upper.st_gid)
        && (lower.st_mtime, lower.st_mtime_nsec) == (upper.st_mtime, upper.st_mtime_nsec)
}

/// Whether the upper entry `host` is an unchanged copy of the lower `path`.
fn bare_copy_up(
    lower: &Stat,
    upper: &Stat,
    host: &Path,
    root: &RootFs,
    path: &Path,
) -> Result<bool, OverlayError> {
    let same_attributes = lower.st_mode == upper.st_mode
        && (lower.st_uid, lower.st_gid) == (upper.st_uid, upper.st_gid)
        && lower.st_size == upper.st_size
        && (lower.st_mtime, lower.st_mtime_nsec) == (upper.st_mtime, upper.st_mtime_nsec)
        && lower.st_nlink == upper.st_nlink
        && lower.st_rdev == upper.st_rdev;
    if !same_attributes {
        return Ok(false);
    }
    let lower_host = root.path().join(path);
    if xattr(host, CAPABILITY)? != xattr(&lower_host, CAPABILITY)? {
        return Ok(false);
    }
    match FileType::from_raw_mode(lower.st_mode) {
        FileType::Symlink => {
            let read = |p: &Path| std::fs::read_link(p).map_err(io_error("reading", p));
            Ok(read(host)? == read_link_in_root(root, path)?)
        }
        FileType::RegularFile => {
            let old = root.open_file(path).map_err(io_error("opening", path))?;
            let new = File::open(host).map_err(io_error("opening", host))?;
            same_content(old, new).map_err(io_error("comparing", path))
        }
        _ => Ok(true),
    }
}

fn read_link_in_root(root: &RootFs, path: &Path) -> Result<std::path::PathBuf, OverlayError> {
    let (parent, name) = root.parent(path).map_err(io_error("opening", path))?;
    let target = rustix::fs::readlinkat(&parent, name.as_os_str(), Vec::new())
        .map_err(|e| io_error("reading", path)(e.into()))?;
    Ok(OsString::from_vec(target.into_bytes()).into())
}

/// Whether two readers yield the same bytes, compared in blocks.
fn same_content(mut a: File, mut b: File) -> io::Result<bool> {
    let mut left = vec![0u8; 64 * 1024];
    let mut right = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut a, &mut left)?;
        let m = read_full(&mut b, &mut right)?;
        if n != m || left[..n] != right[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
