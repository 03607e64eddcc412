//! Mount points a `RUN` needs that the image does not have.
//!
//! `/proc`, `/dev`, `/sys`, `/etc/resolv.conf` and `/etc/hosts` must exist in the root to be
//! mounted over. When an image lacks them, empty stand-ins are created before the command and
//! removed after it (from the parent, outside the namespace), and the times of the directories
//! that held them are restored unless the command itself changed those directories' entries
//! (their mtime moved past the stub's), so the snapshot shows only what the command did. Kaniko
//! and early BuildKit leaked such stubs into layers.
//!
//! A directory's ctime cannot be restored: the scan is told which directories held stubs and
//! judges them on the rest of their metadata. Under the overlay strategy the same rule applies to
//! the copy of such a directory in the upper directory, which overlayfs copied up with the stub's
//! mtime.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};

use crate::fsroot::{RootFs, clean, timestamps};

/// What a mount point must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    File,
}

/// Stubs created in one root, in creation order.
#[derive(Debug)]
pub(super) struct Stubs<'r> {
    root: &'r RootFs,
    created: Vec<(PathBuf, Kind)>,
    /// Directories that received a stub, with their times before it and their mtime after the
    /// last stub went in.
    times: Vec<(PathBuf, Timestamps, (i64, u64))>,
}

impl<'r> Stubs<'r> {
    pub(super) fn new(root: &'r RootFs) -> Self {
        Self {
            root,
            created: Vec::new(),
            times: Vec::new(),
        }
    }

    /// The root-relative real path to mount on for `image_path`, creating an empty stub of `kind`
    /// if nothing is there. `None` when something unusable is there (a file where a directory is
    /// needed, a dangling symlink): that mount is skipped rather than the image modified.
    pub(super) fn prepare(&mut self, image_path: &str, kind: Kind) -> io::Result<Option<PathBuf>> {
        let rel = clean(Path::new(image_path));
        match self.root.open_path(&rel, OFlags::PATH, Mode::empty()) {
            Ok(fd) => {
                let stat = rustix::fs::fstat(&fd)?;
                let wanted = match kind {
                    Kind::Dir => FileType::Directory,
                    Kind::File => FileType::RegularFile,
                };
                if FileType::from_raw_mode(stat.st_mode) != wanted {
                    return Ok(None);
                }
                Ok(Some(self.root.real_path(&fd)?))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => self.create(&rel, kind),
            Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn create(&mut self, rel: &Path, kind: Kind) -> io::Result<Option<PathBuf>> {
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            let parent = parent.to_string_lossy().into_owned();
            if self.prepare(&parent, Kind::Dir)?.is_none() {
                return Ok(None);
            }
        }
        match self.root.symlink_metadata(rel) {
            // Something is there but does not resolve (a dangling symlink): leave it alone.
            Ok(_) => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let (parent, name) = self.root.parent(rel)?;
        let parent_real = self.root.real_path(&parent)?;
        if !self.times.iter().any(|(path, _, _)| *path == parent_real) {
            let stat = rustix::fs::fstat(&parent)?;
            let times = timestamps(&stat);
            self.times.push((parent_real.clone(), times, (0, 0)));
        }
        match kind {
            Kind::Dir => rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o755))?,
            Kind::File => {
                rustix::fs::openat(
                    &parent,
                    &name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )?;
            }
        }
        let stat = rustix::fs::fstat(&parent)?;
        if let Some(entry) = self
            .times
            .iter_mut()
            .find(|(path, _, _)| *path == parent_real)
        {
            entry.2 = (stat.st_mtime, stat.st_mtime_nsec);
        }
        let real = parent_real.join(&name);
        self.created.push((real.clone(), kind));
        Ok(Some(real))
    }

    /// Removes the stubs (newest first) and restores their parents' times: those from before the
    /// stubs where the command did not change the parent, else those the command left, in the
    /// root and, when the command ran on an overlay, in its upper directory `upper`. A stub directory the command put files into is kept: it is now the
    /// command's. Returns the root-relative directories that held stubs.
    pub(super) fn remove(self, upper: Option<&Path>) -> io::Result<Vec<PathBuf>> {
        // Judged before removing: removing a stub moves its parent's mtime too.
        let mut restore = Vec::new();
        for (path, times, stub_mtime) in &self.times {
            // A stub directory that held stubs is itself gone by now.
            match self
                .root
                .open_path(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            {
                Ok(dir) => {
                    // Removing the stub moves the mtime again: put back the original times if the
                    // command left the directory alone, else the times the command left.
                    let stat = rustix::fs::fstat(&dir)?;
                    let wanted = if untouched(&dir, *stub_mtime)? {
                        times.clone()
                    } else {
                        timestamps(&stat)
                    };
                    restore.push((dir, wanted));
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
            if let Some(upper) = upper {
                match rustix::fs::open(
                    upper.join(path),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(dir) => {
                        if untouched(&dir, *stub_mtime)? {
                            restore.push((dir, times.clone()));
                        }
                    }
                    // Gone, or replaced by something else: the command's, left as it is.
                    Err(
                        rustix::io::Errno::NOENT
                        | rustix::io::Errno::LOOP
                        | rustix::io::Errno::NOTDIR,
                    ) => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
        for (path, kind) in self.created.iter().rev() {
            let (parent, name) = self.root.parent(path)?;
            let flags = match kind {
                Kind::Dir => AtFlags::REMOVEDIR,
                Kind::File => AtFlags::empty(),
            };
            let mut attempts = 0;
            loop {
                match rustix::fs::unlinkat(&parent, &name, flags) {
                    Ok(()) | Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTEMPTY) => break,
                    // The namespace's mounts are released asynchronously after its last process.
                    Err(rustix::io::Errno::BUSY) if attempts < 100 => {
                        attempts += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
        for (dir, times) in restore {
            // A stub directory removed as a whole needs nothing restored.
            match rustix::fs::futimens(&dir, &times) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(self.times.iter().map(|(path, _, _)| path.clone()).collect())
    }
}

/// Whether `dir`'s mtime is still the one the stubs left (the command changed no entry in it).
fn untouched(dir: &OwnedFd, stub_mtime: (i64, u64)) -> io::Result<bool> {
    let stat = rustix::fs::fstat(dir)?;
    Ok((stat.st_mtime, stat.st_mtime_nsec) == stub_mtime)
}
