//! `COPY`: files from a source root (the build context or another stage) into an image root.
//!
//! Docker's rules, which users depend on: a directory source copies its *contents*; a destination
//! ending in `/`, several sources, or an existing directory means "into this directory"; missing
//! parents are created `0755` and owned by the `--chown` owner (Kaniko left them root-owned,
//! #1524); context files become `0:0` unless `--chown`, while `COPY --from` keeps the source
//! owners; modes and mtimes are kept; hardlinks within the copied set stay hardlinks.
//!
//! Every write is an `*at` call on a directory resolved inside the destination [`RootFs`]. An
//! existing destination that is a symlink is *replaced*, never written through, so an image cannot
//! redirect a `COPY` onto the host or elsewhere in itself. Contents are streamed with
//! `copy_file_range` (via `std::io::copy`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid};
use thiserror::Error;

use crate::changes::Changes;
use crate::dockerignore::Dockerignore;
use crate::fsroot::{RootFs, clean};
use crate::sources::{self, Entry, Source, Visit};

/// The only extended attribute kept: file capabilities (`setcap`) must survive `COPY --from`.
const CAPABILITY_XATTR: &str = "security.capability";

/// Why a `COPY` (or `WORKDIR`, or a context digest) failed.
#[derive(Debug, Error)]
pub enum CopyError {
    /// A literal source is missing or excluded (Docker's wording).
    #[error("COPY failed: file not found in build context or excluded by .dockerignore: {path}")]
    NotFound {
        /// The source as written.
        path: String,
    },
    /// A wildcard source matched nothing.
    #[error("COPY failed: no source files were specified: {pattern} matches nothing")]
    NoMatch {
        /// The pattern as written.
        pattern: String,
    },
    /// A wildcard source is malformed.
    #[error("COPY failed: syntax error in pattern {pattern:?}")]
    BadPattern {
        /// The pattern as written.
        pattern: String,
    },
    /// Reading the source failed.
    #[error("COPY failed: {op} {}: {source}", .path.display())]
    Source {
        /// What was being done.
        op: &'static str,
        /// Path relative to the source root.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing the destination failed.
    #[error("{op} /{}: {source}", .path.display())]
    Dest {
        /// What was being done.
        op: &'static str,
        /// Path inside the image.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A non-directory would have to replace a directory.
    #[error("COPY failed: cannot replace directory /{} with a non-directory", .path.display())]
    ReplaceDirectory {
        /// Path inside the image.
        path: PathBuf,
    },
}

impl CopyError {
    pub(crate) fn in_source(op: &'static str, path: &Path, source: io::Error) -> Self {
        CopyError::Source {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn in_dest(op: &'static str, path: &Path, source: io::Error) -> Self {
        CopyError::Dest {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How files are owned and filtered.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions<'a> {
    /// `--chown`, resolved. `None`: context files become `0:0`, `--from` files keep their owner
    /// (see `preserve_owner`).
    pub chown: Option<(u32, u32)>,
    /// `--chmod`: applied to every copied non-directory; directories keep their mode so that
    /// `--chmod=644` cannot make them untraversable (Kaniko #3166).
    pub chmod: Option<u32>,
    /// `.dockerignore`, only for the build context.
    pub ignore: Option<&'a Dockerignore>,
    /// `COPY --from`: keep source owners and file capabilities (BuildKit does).
    pub preserve_owner: bool,
}

/// Copies `sources` (as written, possibly with wildcards) from `src` to `dest` (an absolute image
/// path; a trailing `/` means a directory) inside `dest_root`, and returns every path it created
/// or overwrote, root-relative and with symlinked parents resolved.
pub fn copy(
    src: &RootFs,
    sources: &[String],
    dest_root: &RootFs,
    dest: &str,
    options: &CopyOptions<'_>,
) -> Result<Changes, CopyError> {
    let selected = sources::expand(src, sources, options.ignore)?;
    let dest_rel = clean(Path::new(dest));
    let into_dir = dest.ends_with('/')
        || dest.ends_with("/.")
        || sources.len() > 1
        || selected.len() > 1
        || dest_rel.as_os_str().is_empty()
        || is_dir(dest_root, &dest_rel);
    let mut writer = Writer {
        root: dest_root,
        options,
        changes: Changes::new(),
        links: HashMap::new(),
    };
    for source in &selected {
        let base = if FileType::from_raw_mode(source.stat.st_mode) == FileType::Directory {
            dest_rel.clone()
        } else if into_dir {
            dest_rel.join(&source.name)
        } else {
            dest_rel.clone()
        };
        writer.copy_source(src, source, &base)?;
    }
    Ok(writer.changes)
}

/// Whether an image path is a directory, following symlinks inside the root.
fn is_dir(root: &RootFs, rel: &Path) -> bool {
    root.open_path(rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .is_ok()
}

/// A destination directory being filled.
struct DestDir {
    fd: OwnedFd,
    /// Root-relative real path.
    real: PathBuf,
    /// Created by this copy: gets the source directory's metadata once its contents are written.
    created: bool,
}

/// State of one `COPY`.
struct Writer<'r, 'o> {
    root: &'r RootFs,
    options: &'o CopyOptions<'o>,
    changes: Changes,
    /// Source `(dev, inode)` of multiply-linked files to the first destination written for them.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Writer<'_, '_> {
    /// Copies one selected source to `base` (the destination of the source itself).
    fn copy_source(&mut self, src: &RootFs, source: &Source, base: &Path) -> Result<(), CopyError> {
        let top = self.open_parent(base)?;
        let ignore = self.options.ignore;
        let mut stack: Vec<DestDir> = Vec::new();
        sources::walk(src, source, ignore, &mut |visit| match visit {
            Visit::Enter(entry) => {
                let dir = if entry.rel.as_os_str().is_empty() {
                    self.enter_top(top.as_ref(), base)?
                } else {
                    let parent = parent_of(&stack, top.as_ref())?;
                    self.enter(parent.fd.as_fd(), &parent.real, entry.name)?
                };
                stack.push(dir);
                Ok(())
            }
            Visit::Leave(entry) => {
                let Some(dir) = stack.pop() else {
                    return Ok(());
                };
                if !dir.created {
                    return Ok(());
                }
                let parent = parent_of(&stack, top.as_ref())?;
                let name = dir.real.file_name().unwrap_or(entry.name);
                self.set_metadata(parent.fd.as_fd(), name, &dir.real, entry.stat, false)
            }
            Visit::Leaf(entry) => {
                if entry.rel.as_os_str().is_empty() {
                    let parent = top.as_ref().ok_or_else(|| root_is_not_a_file(base))?;
                    let name = base.file_name().ok_or_else(|| root_is_not_a_file(base))?;
                    self.leaf(parent.fd.as_fd(), &parent.real, name, &entry)
                } else {
                    let parent = parent_of(&stack, top.as_ref())?;
                    self.leaf(parent.fd.as_fd(), &parent.real, entry.name, &entry)
                }
            }
        })
    }

    /// Creates the parents of `base` (`mkdir -p`, following symlinks inside the root); `None` when
    /// `base` is the root itself.
    fn open_parent(&mut self, base: &Path) -> Result<Option<DestDir>, CopyError> {
        let Some(parent) = base.parent().filter(|_| !base.as_os_str().is_empty()) else {
            return Ok(None);
        };
        let (fd, created) = self
            .root
            .create_dir_all(parent, 0o755, self.options.chown)
            .map_err(|err| CopyError::in_dest("create directory", parent, err))?;
        for path in created {
            self.changes.add_changed(path);
        }
        let real = self
            .root
            .real_path(&fd)
            .map_err(|err| CopyError::in_dest("resolve", parent, err))?;
        Ok(Some(DestDir {
            fd,
            real,
            created: false,
        }))
    }

    /// The destination of a directory source: an existing directory (symlinks followed inside the
    /// root) is used as is; otherwise it is created with the source directory's metadata.
    fn enter_top(&mut self, parent: Option<&DestDir>, base: &Path) -> Result<DestDir, CopyError> {
        if let Ok(fd) = self
            .root
            .open_path(base, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        {
            let real = self
                .root
                .real_path(&fd)
                .map_err(|err| CopyError::in_dest("resolve", base, err))?;
            return Ok(DestDir {
                fd,
                real,
                created: false,
            });
        }
        match (parent, base.file_name()) {
            (Some(parent), Some(name)) => self.enter(parent.fd.as_fd(), &parent.real, name),
            _ => Err(CopyError::in_dest(
                "open directory",
                base,
                io::Error::from(io::ErrorKind::NotFound),
            )),
        }
    }

    /// A directory inside the copied tree: kept if it exists as a directory (never followed if it
    /// is a symlink: that is replaced), created otherwise.
    fn enter(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_real: &Path,
        name: &OsStr,
    ) -> Result<DestDir, CopyError> {
        let real = parent_real.join(name);
        let existing = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
            Err(rustix::io::Errno::NOENT) => None,
            Err(err) => return Err(CopyError::in_dest("stat", &real, err.into())),
        };
        let created = match existing {
            Some(FileType::Directory) => false,
            other => {
                if other.is_some() {
                    rustix::fs::unlinkat(parent, name, AtFlags::empty())
                        .map_err(|err| CopyError::in_dest("remove", &real, err.into()))?;
                }
                rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                    .map_err(|err| CopyError::in_dest("create directory", &real, err.into()))?;
                self.changes.add_changed(&real);
                true
            }
        };
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| CopyError::in_dest("open directory", &real, err.into()))?;
        Ok(DestDir { fd, real, created })
    }

    /// Copies a non-directory to `parent/name`, replacing whatever non-directory is there.
    fn leaf(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_real: &Path,
        name: &OsStr,
        entry: &Entry<'_>,
    ) -> Result<(), CopyError> {
        let real = parent_real.join(name);
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Err(CopyError::ReplaceDirectory { path: real });
            }
            Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(|err| CopyError::in_dest("remove", &real, err.into()))?,
            Err(rustix::io::Errno::NOENT) => {}
            Err(err) => return Err(CopyError::in_dest("stat", &real, err.into())),
        }
        let stat = entry.stat;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        let key = (stat.st_dev, stat.st_ino);
        if let Some(first) = self.links.get(&key).filter(|_| stat.st_nlink > 1) {
            let (first_parent, first_name) = self
                .root
                .parent(first)
                .map_err(|err| CopyError::in_dest("open parent of", first, err))?;
            rustix::fs::linkat(&first_parent, &first_name, parent, name, AtFlags::empty())
                .map_err(|err| CopyError::in_dest("hardlink", &real, err.into()))?;
            self.changes.add_changed(&real);
            return Ok(());
        }
        match file_type {
            FileType::RegularFile => self.write_file(parent, name, &real, entry)?,
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(entry.parent, entry.name, Vec::new()).map_err(
                    |err| CopyError::in_source("read link", entry.root_path, err.into()),
                )?;
                rustix::fs::symlinkat(target.as_c_str(), parent, name)
                    .map_err(|err| CopyError::in_dest("create symlink", &real, err.into()))?;
                self.set_metadata(parent, name, &real, stat, true)?;
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                rustix::fs::mknodat(
                    parent,
                    name,
                    file_type,
                    Mode::from_raw_mode(0o600),
                    stat.st_rdev,
                )
                .map_err(|err| CopyError::in_dest("create node", &real, err.into()))?;
                self.set_metadata(parent, name, &real, stat, false)?;
            }
            _ => return Ok(()),
        }
        if stat.st_nlink > 1 {
            self.links.insert(key, real.clone());
        }
        self.changes.add_changed(real);
        Ok(())
    }

    /// Streams a regular file and gives it its owner, mode, capabilities and times.
    fn write_file(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        real: &Path,
        entry: &Entry<'_>,
    ) -> Result<(), CopyError> {
        let source_err = |op, err: io::Error| CopyError::in_source(op, entry.root_path, err);
        let dest_err = |op, err: io::Error| CopyError::in_dest(op, real, err);
        let input = rustix::fs::openat(
            entry.parent,
            entry.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| source_err("open", err.into()))?;
        let output = rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|err| dest_err("create", err.into()))?;
        let mut input = File::from(input);
        let mut output = File::from(output);
        io::copy(&mut input, &mut output).map_err(|err| dest_err("write", err))?;
        let (uid, gid) = self.owner(entry.stat);
        rustix::fs::fchown(&output, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|err| dest_err("chown", err.into()))?;
        let mode = self.options.chmod.unwrap_or(entry.stat.st_mode & 0o7777);
        rustix::fs::fchmod(&output, Mode::from_raw_mode(mode & 0o7777))
            .map_err(|err| dest_err("chmod", err.into()))?;
        if self.options.preserve_owner {
            copy_capabilities(&input, &output).map_err(|err| dest_err("set capabilities", err))?;
        }
        rustix::fs::futimens(&output, &timestamps(entry.stat))
            .map_err(|err| dest_err("set times", err.into()))?;
        Ok(())
    }

    /// Owner, mode (unless a symlink) and times of a freshly created entry, via its parent.
    fn set_metadata(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        real: &Path,
        stat: &Stat,
        symlink: bool,
    ) -> Result<(), CopyError> {
        let dest_err = |op, err: rustix::io::Errno| CopyError::in_dest(op, real, err.into());
        let (uid, gid) = self.owner(stat);
        rustix::fs::chownat(
            parent,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|err| dest_err("chown", err))?;
        if !symlink {
            // The entry was created by this copy a moment ago and is not a symlink, so the
            // path-following `fchmodat` acts on it.
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(stat.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|err| dest_err("chmod", err))?;
        }
        rustix::fs::utimensat(parent, name, &timestamps(stat), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| dest_err("set times", err))?;
        Ok(())
    }

    fn owner(&self, stat: &Stat) -> (u32, u32) {
        match (self.options.chown, self.options.preserve_owner) {
            (Some(owner), _) => owner,
            (None, true) => (stat.st_uid, stat.st_gid),
            (None, false) => (0, 0),
        }
    }
}

/// The directory that receives the next entry: the innermost open one, else the top's parent.
fn parent_of<'s>(stack: &'s [DestDir], top: Option<&'s DestDir>) -> Result<&'s DestDir, CopyError> {
    stack.last().or(top).ok_or_else(|| {
        CopyError::in_dest(
            "open directory",
            Path::new(""),
            io::Error::from(io::ErrorKind::NotFound),
        )
    })
}

fn root_is_not_a_file(base: &Path) -> CopyError {
    CopyError::in_dest(
        "copy a file onto",
        base,
        io::Error::from(io::ErrorKind::IsADirectory),
    )
}

/// Access and modification times of `stat`, for `futimens`/`utimensat`.
fn timestamps(stat: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: stat.st_atime as _,
            tv_nsec: stat.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: stat.st_mtime as _,
            tv_nsec: stat.st_mtime_nsec as _,
        },
    }
}

/// Copies `security.capability` if the source has it (after `fchown`, which clears it).
fn copy_capabilities(input: &File, output: &File) -> io::Result<()> {
    let mut value = [0u8; 64];
    match rustix::fs::fgetxattr(input, CAPABILITY_XATTR, &mut value[..]) {
        Ok(len) => rustix::fs::fsetxattr(
            output,
            CAPABILITY_XATTR,
            &value[..len],
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(Into::into),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests;
