//! Mount points a `RUN` needs that the image does not have.
//!
//! `/proc`, `/dev`, `/sys`, `/etc/resolv.conf` and `/etc/hosts` must exist in the root to be
//! mounted over. When an image lacks them, empty stand-ins are created before the command and
//! removed after it (from the parent, outside the namespace), and the times of the directories
//! that held them are restored, so the snapshot shows only what the command itself did. Kaniko
//! and early BuildKit leaked such stubs into layers.

use std::io;
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
    /// Directories that received a stub, with their times before it.
    times: Vec<(PathBuf, Timestamps)>,
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
        if !self.times.iter().any(|(path, _)| *path == parent_real) {
            let stat = rustix::fs::fstat(&parent)?;
            let times = timestamps(&stat);
            self.times.push((parent_real.clone(), times));
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
        let real = parent_real.join(&name);
        self.created.push((real.clone(), kind));
        Ok(Some(real))
    }

    /// Removes the stubs (newest first) and restores their parents' times. A stub directory the
    /// command put files into is kept: it is now the command's.
    pub(super) fn remove(self) -> io::Result<()> {
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
        for (path, times) in &self.times {
            // A stub directory that held stubs is itself gone by now.
            match self
                .root
                .open_path(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            {
                Ok(dir) => rustix::fs::futimens(&dir, times)?,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}
