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
//!
//! Creating files is what a `COPY` of a large context spends its time on (filesystem latency, not
//! CPU), so the walk stays sequential and does the cheap, order-sensitive work (directories,
//! symlinks, devices, deciding every destination, hardlink groups, the [`Changes`]) while regular
//! files are queued and written by a pool of threads; hardlinks and directory metadata follow the
//! files they depend on (see the `batch` module). The result is the one a sequential copy would give.

mod attributes;
mod batch;
mod file_job;
mod pool;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use thiserror::Error;

use crate::changes::Changes;
use crate::dockerignore::Dockerignore;
use crate::fsroot::{RootFs, clean};
use crate::sources::{self, Entry, Source, Visit};
use attributes::Attributes;
use batch::{Batch, DirMetadata, Link};
#[cfg(test)]
use file_job::CAPABILITY_XATTR;
use file_job::FileJob;

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

/// `--chmod`, as the front end parsed it.
#[derive(Clone, Copy)]
pub enum Chmod<'a> {
    /// Octal: these permission bits.
    Set(u32),
    /// Symbolic (`u+x`): a change of the source entry's mode, told whether the entry is a
    /// directory (`X` sets execute bits on directories and on files that have one).
    Change(&'a (dyn Fn(u32, bool) -> u32 + Sync)),
}

impl Chmod<'_> {
    /// The mode a copied entry gets from its source mode.
    pub fn mode(&self, source_mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Set(mode) => *mode,
            Chmod::Change(change) => change(source_mode & 0o7777, is_dir),
        }
    }
}

impl std::fmt::Debug for Chmod<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chmod::Set(mode) => write!(f, "Set({mode:o})"),
            Chmod::Change(_) => f.write_str("Change(..)"),
        }
    }
}

/// How files are owned and filtered.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions<'a> {
    /// `--chown`, resolved. `None`: context files become `0:0`, `--from` files keep their owner
    /// (see `preserve_owner`).
    pub chown: Option<(u32, u32)>,
    /// `--chmod`: applied to every copied entry, directories included, as BuildKit does since
    /// tonistiigi/fsutil#228 (moby/buildkit#4945): the directories of a copied tree and the
    /// directory a source directory's contents land in, when this copy creates them. Parents
    /// created for the destination (`mkdir -p`) stay `0755`, as in Docker 28 (applying it to them
    /// broke images: moby/moby#49851, osscontainertools/kaniko#80), and existing directories
    /// keep their mode.
    pub chmod: Option<Chmod<'a>>,
    /// `.dockerignore`, only for the build context.
    pub ignore: Option<&'a Dockerignore>,
    /// `--exclude` patterns, matched against paths relative to each selected source (a file
    /// source by its own name).
    pub exclude: Option<&'a Dockerignore>,
    /// `--parents`: each source lands below the destination at its path relative to the
    /// source root, or to the part of its pattern after a `/./` marker.
    pub parents: bool,
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
    let mut selected = Vec::new();
    for pattern in sources {
        let found = sources::expand(src, std::slice::from_ref(pattern), options.ignore)?;
        let pivot = parents_pivot(pattern);
        selected.extend(
            found
                .into_iter()
                .filter(|s| !excluded_by_name(options.exclude, s))
                .map(|s| (s, pivot.clone())),
        );
    }
    let dest_rel = clean(Path::new(dest));
    let into_dir = options.parents
        || dest.ends_with('/')
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
        batch: Batch::default(),
    };
    for (source, pivot) in &selected {
        let is_dir = FileType::from_raw_mode(source.stat.st_mode) == FileType::Directory;
        let base = if options.parents {
            let kept = source
                .selected
                .strip_prefix(pivot)
                .unwrap_or(&source.selected);
            if is_dir {
                dest_rel.join(kept)
            } else {
                let parent = kept.parent().unwrap_or(Path::new(""));
                dest_rel.join(parent).join(&source.name)
            }
        } else if is_dir {
            dest_rel.clone()
        } else if into_dir {
            dest_rel.join(&source.name)
        } else {
            dest_rel.clone()
        };
        writer.copy_source(src, source, &base)?;
    }
    writer.batch.flush(dest_root)?;
    Ok(writer.changes)
}

/// `COPY --parents`: the part of a source pattern before its first `/./` is not recreated below
/// the destination (BuildKit's pivot, `strings.Cut(src, "/./")`); without one the whole relative
/// path is.
fn parents_pivot(pattern: &str) -> PathBuf {
    match pattern.find("/./") {
        Some(at) => clean(Path::new(&pattern[..at])),
        None => PathBuf::new(),
    }
}

/// A selected source that `--exclude` names itself (a wildcard match, say).
fn excluded_by_name(exclude: Option<&Dockerignore>, source: &Source) -> bool {
    exclude
        .is_some_and(|e| !source.name.is_empty() && e.is_excluded(&source.name.to_string_lossy()))
}

/// Whether an image path is a directory, following symlinks inside the root.
fn is_dir(root: &RootFs, rel: &Path) -> bool {
    root.open_path(rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .is_ok()
}

/// A destination directory being filled.
struct DestDir {
    /// Shared with the queued writes into it, which may outlive the walk's visit.
    fd: Arc<OwnedFd>,
    /// Root-relative real path.
    real: PathBuf,
    /// Created by this copy: gets the source directory's metadata once its contents are written.
    created: bool,
    /// The source directory whose files land here, duplicated from the walker (which closes its
    /// own when it leaves) on the first file queued.
    source: Option<Arc<OwnedFd>>,
}

impl DestDir {
    fn new(fd: OwnedFd, real: PathBuf, created: bool, batch: &mut Batch) -> Self {
        batch.hold_dir();
        DestDir {
            fd: Arc::new(fd),
            real,
            created,
            source: None,
        }
    }

    /// The source directory `entry` is in, as a descriptor queued writes can keep.
    fn source_dir(
        &mut self,
        entry: &Entry<'_>,
        batch: &mut Batch,
    ) -> Result<Arc<OwnedFd>, CopyError> {
        if let Some(source) = &self.source {
            return Ok(Arc::clone(source));
        }
        let fd = entry
            .parent
            .try_clone_to_owned()
            .map_err(|err| CopyError::in_source("duplicate directory of", entry.root_path, err))?;
        batch.hold_dir();
        let fd = Arc::new(fd);
        self.source = Some(Arc::clone(&fd));
        Ok(fd)
    }
}

/// State of one `COPY`.
struct Writer<'r, 'o> {
    root: &'r RootFs,
    options: &'o CopyOptions<'o>,
    changes: Changes,
    /// Source `(dev, inode)` of multiply-linked files to the first destination written for them.
    links: HashMap<(u64, u64), PathBuf>,
    /// Writes queued by the walk.
    batch: Batch,
}

impl Writer<'_, '_> {
    /// Copies one selected source to `base` (the destination of the source itself).
    fn copy_source(&mut self, src: &RootFs, source: &Source, base: &Path) -> Result<(), CopyError> {
        let mut top = self.open_parent(base)?;
        let ignore = self.options.ignore;
        let exclude = self.options.exclude;
        let mut stack: Vec<DestDir> = Vec::new();
        sources::walk_excluding(src, source, ignore, exclude, &mut |visit| match visit {
            Visit::Enter(entry) => {
                let dir = if entry.rel.as_os_str().is_empty() {
                    self.enter_top(top.as_ref(), base)?
                } else {
                    let parent = parent_of(&mut stack, top.as_mut())?;
                    self.enter(parent, entry.name)?
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
                let parent = parent_of(&mut stack, top.as_mut())?;
                let name = dir.real.file_name().unwrap_or(entry.name).to_os_string();
                let metadata = DirMetadata {
                    parent: Arc::clone(&parent.fd),
                    name,
                    attributes: Attributes::new(
                        entry.stat,
                        self.owner(entry.stat),
                        Some(self.options.chmod.map_or(entry.stat.st_mode, |chmod| {
                            chmod.mode(entry.stat.st_mode, true)
                        })),
                    ),
                    dest: dir.real,
                };
                self.batch.push_dir(metadata, self.root)
            }
            Visit::Leaf(entry) => {
                if entry.rel.as_os_str().is_empty() {
                    let parent = top.as_mut().ok_or_else(|| root_is_not_a_file(base))?;
                    let name = base.file_name().ok_or_else(|| root_is_not_a_file(base))?;
                    self.leaf(parent, name, &entry)
                } else {
                    let parent = parent_of(&mut stack, top.as_mut())?;
                    self.leaf(parent, entry.name, &entry)
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
        // Queued directory metadata for it must land before new files clobber its mtime, as
        // it would have in a sequential copy.
        self.batch.touch(&real, self.root)?;
        Ok(Some(DestDir::new(fd, real, false, &mut self.batch)))
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
            self.batch.touch(&real, self.root)?;
            return Ok(DestDir::new(fd, real, false, &mut self.batch));
        }
        match (parent, base.file_name()) {
            (Some(parent), Some(name)) => self.enter(parent, name),
            _ => Err(CopyError::in_dest(
                "open directory",
                base,
                io::Error::from(io::ErrorKind::NotFound),
            )),
        }
    }

    /// A directory inside the copied tree: kept if it exists as a directory (never followed if it
    /// is a symlink: that is replaced), created otherwise.
    fn enter(&mut self, parent: &DestDir, name: &OsStr) -> Result<DestDir, CopyError> {
        let real = parent.real.join(name);
        self.batch.touch(&real, self.root)?;
        let dir = parent.fd.as_fd();
        let existing = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
            Err(rustix::io::Errno::NOENT) => None,
            Err(err) => return Err(CopyError::in_dest("stat", &real, err.into())),
        };
        let created = match existing {
            Some(FileType::Directory) => false,
            other => {
                if other.is_some() {
                    rustix::fs::unlinkat(dir, name, AtFlags::empty())
                        .map_err(|err| CopyError::in_dest("remove", &real, err.into()))?;
                }
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                    .map_err(|err| CopyError::in_dest("create directory", &real, err.into()))?;
                self.changes.add_changed(&real);
                true
            }
        };
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| CopyError::in_dest("open directory", &real, err.into()))?;
        Ok(DestDir::new(fd, real, created, &mut self.batch))
    }

    /// Copies a non-directory to `parent/name`, replacing whatever non-directory is there:
    /// regular files and hardlinks are queued, the rest is created at once.
    fn leaf(
        &mut self,
        parent: &mut DestDir,
        name: &OsStr,
        entry: &Entry<'_>,
    ) -> Result<(), CopyError> {
        let real = parent.real.join(name);
        self.batch.touch(&real, self.root)?;
        let stat = entry.stat;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        let key = (stat.st_dev, stat.st_ino);
        if let Some(first) = self.links.get(&key).filter(|_| stat.st_nlink > 1) {
            let link = Link {
                target: first.clone(),
                dest_dir: Arc::clone(&parent.fd),
                dest_name: name.to_os_string(),
                dest: real.clone(),
            };
            self.batch.push_link(link, self.root)?;
            self.changes.add_changed(real);
            return Ok(());
        }
        let dir = parent.fd.as_fd();
        match file_type {
            FileType::RegularFile => {
                let job = FileJob {
                    source_dir: parent.source_dir(entry, &mut self.batch)?,
                    source_name: entry.name.to_os_string(),
                    source_path: entry.root_path.to_path_buf(),
                    dest_dir: Arc::clone(&parent.fd),
                    dest_name: name.to_os_string(),
                    dest: real.clone(),
                    attributes: Attributes::new(
                        stat,
                        self.owner(stat),
                        Some(
                            self.options
                                .chmod
                                .map_or(stat.st_mode, |chmod| chmod.mode(stat.st_mode, false)),
                        ),
                    ),
                    capabilities: self.options.preserve_owner,
                };
                self.batch.push_file(job, self.root)?;
            }
            FileType::Symlink => {
                replace_non_directory(dir, name, &real)?;
                let target = rustix::fs::readlinkat(entry.parent, entry.name, Vec::new()).map_err(
                    |err| CopyError::in_source("read link", entry.root_path, err.into()),
                )?;
                rustix::fs::symlinkat(target.as_c_str(), dir, name)
                    .map_err(|err| CopyError::in_dest("create symlink", &real, err.into()))?;
                Attributes::new(stat, self.owner(stat), None).apply_at(dir, name, &real)?;
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                replace_non_directory(dir, name, &real)?;
                rustix::fs::mknodat(
                    dir,
                    name,
                    file_type,
                    Mode::from_raw_mode(0o600),
                    stat.st_rdev,
                )
                .map_err(|err| CopyError::in_dest("create node", &real, err.into()))?;
                Attributes::new(stat, self.owner(stat), Some(stat.st_mode))
                    .apply_at(dir, name, &real)?;
            }
            _ => return replace_non_directory(dir, name, &real),
        }
        if stat.st_nlink > 1 {
            self.links.insert(key, real.clone());
        }
        self.changes.add_changed(real);
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

/// Makes room for a non-directory at `dir/name`: removes any non-directory there (a symlink is
/// removed, never followed), refuses to replace a directory.
fn replace_non_directory(dir: BorrowedFd<'_>, name: &OsStr, real: &Path) -> Result<(), CopyError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
            Err(CopyError::ReplaceDirectory {
                path: real.to_path_buf(),
            })
        }
        Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty())
            .map_err(|err| CopyError::in_dest("remove", real, err.into())),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(err) => Err(CopyError::in_dest("stat", real, err.into())),
    }
}

/// The directory that receives the next entry: the innermost open one, else the top's parent.
fn parent_of<'s>(
    stack: &'s mut [DestDir],
    top: Option<&'s mut DestDir>,
) -> Result<&'s mut DestDir, CopyError> {
    stack.last_mut().or(top).ok_or_else(|| {
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

#[cfg(test)]
mod tests;
