//! Writes deferred by the walk, and the order they must run in.
//!
//! The walk creates directories and cheap entries itself and queues the rest here. A flush runs,
//! in this order: every queued file in parallel; then hardlinks, which need their targets written;
//! then the metadata of the directories this copy created, deepest first, which must come after
//! everything written into them or their mtimes would be clobbered.
//!
//! The result must be the one a sequential copy gives, so the walk calls [`Batch::touch`] before
//! it acts on any destination path: if a queued write involves that path (two sources with the
//! same name, a directory replacing a file, a hardlink's target being replaced), the queue is
//! flushed first. A batch also flushes itself when it holds too many directory descriptors, which
//! keeps a copy of a tree with many small directories under `ulimit -n` (often 1024).

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use rustix::fs::AtFlags;

use super::attributes::Attributes;
use super::file_job::FileJob;
use super::{CopyError, pool, replace_non_directory};
use crate::fsroot::RootFs;

/// Directory descriptors a batch may keep open (each directory holding queued files costs one
/// for the source and one for the destination).
const MAX_DIRS: usize = 256;

/// Files per batch: bounds memory; large enough that the pause at each flush is negligible.
const MAX_FILES: usize = 8192;

/// `dest_dir/dest_name` becomes a hardlink to `target`, a file written earlier by this copy.
#[derive(Debug)]
pub(super) struct Link {
    /// Root-relative real path of the first copy of the file.
    pub(super) target: PathBuf,
    pub(super) dest_dir: Arc<OwnedFd>,
    pub(super) dest_name: OsString,
    /// Root-relative real path of the link, for errors.
    pub(super) dest: PathBuf,
}

impl Link {
    fn run(&self, root: &RootFs) -> Result<(), CopyError> {
        let dest_dir = self.dest_dir.as_fd();
        replace_non_directory(dest_dir, &self.dest_name, &self.dest)?;
        let (target_dir, target_name) = root
            .parent(&self.target)
            .map_err(|err| CopyError::in_dest("open parent of", &self.target, err))?;
        rustix::fs::linkat(
            &target_dir,
            &target_name,
            dest_dir,
            &self.dest_name,
            AtFlags::empty(),
        )
        .map_err(|err| CopyError::in_dest("hardlink", &self.dest, err.into()))
    }
}

/// A directory created by this copy, to be given the source directory's metadata.
#[derive(Debug)]
pub(super) struct DirMetadata {
    pub(super) parent: Arc<OwnedFd>,
    pub(super) name: OsString,
    /// Root-relative real path of the directory.
    pub(super) dest: PathBuf,
    pub(super) attributes: Attributes,
}

/// Queued writes, in the order the walk produced them.
#[derive(Debug, Default)]
pub(super) struct Batch {
    files: Vec<FileJob>,
    links: Vec<Link>,
    dirs: Vec<DirMetadata>,
    /// Every destination path a queued write creates, replaces or links to.
    pending: HashSet<PathBuf>,
    /// Directory descriptors opened since the last flush, which queued writes may keep alive.
    held_dirs: usize,
}

impl Batch {
    /// Called before the walk acts on `path` itself (not on its contents): flushes if a queued
    /// write involves it.
    pub(super) fn touch(&mut self, path: &Path, root: &RootFs) -> Result<(), CopyError> {
        if self.pending.contains(path) {
            self.flush(root)?;
        }
        Ok(())
    }

    /// Counts a directory descriptor the walk opened, which queued writes may share.
    pub(super) fn hold_dir(&mut self) {
        self.held_dirs += 1;
    }

    /// Queues a regular file.
    pub(super) fn push_file(&mut self, job: FileJob, root: &RootFs) -> Result<(), CopyError> {
        self.make_room(root)?;
        self.pending.insert(job.dest.clone());
        self.files.push(job);
        Ok(())
    }

    /// Queues a hardlink; it runs after the files of the same flush, its target among them.
    pub(super) fn push_link(&mut self, link: Link, root: &RootFs) -> Result<(), CopyError> {
        self.make_room(root)?;
        self.pending.insert(link.target.clone());
        self.pending.insert(link.dest.clone());
        self.links.push(link);
        Ok(())
    }

    /// Queues a finished directory's metadata; directories are given theirs in queue order,
    /// which the walk makes deepest first.
    pub(super) fn push_dir(&mut self, dir: DirMetadata, root: &RootFs) -> Result<(), CopyError> {
        self.make_room(root)?;
        self.pending.insert(dir.dest.clone());
        self.dirs.push(dir);
        Ok(())
    }

    /// Flushes a batch that holds as many files or descriptors as it may. Always safe: whatever
    /// is queued, a sequential copy would already have written.
    fn make_room(&mut self, root: &RootFs) -> Result<(), CopyError> {
        if self.files.len() >= MAX_FILES || self.held_dirs >= MAX_DIRS {
            self.flush(root)?;
        }
        Ok(())
    }

    /// Runs everything queued: files in parallel, then hardlinks, then directory metadata.
    ///
    /// On failure, the error is the one of the earliest failing file in walk order, whichever
    /// thread met it first.
    pub(super) fn flush(&mut self, root: &RootFs) -> Result<(), CopyError> {
        let files = std::mem::take(&mut self.files);
        let links = std::mem::take(&mut self.links);
        let dirs = std::mem::take(&mut self.dirs);
        self.pending.clear();
        self.held_dirs = 0;
        if let Some(err) = write_files(&files) {
            return Err(err);
        }
        drop(files);
        for link in &links {
            link.run(root)?;
        }
        for dir in &dirs {
            dir.attributes
                .apply_at(dir.parent.as_fd(), &dir.name, &dir.dest)?;
        }
        Ok(())
    }
}

/// Writes `files` on the writer pool; the error of the first failing one in slice order.
///
/// After a failure, files later in the slice are skipped, but earlier ones still run, so which
/// error is returned does not depend on thread timing.
fn write_files(files: &[FileJob]) -> Option<CopyError> {
    if files.is_empty() {
        return None;
    }
    let first_failure = AtomicUsize::new(usize::MAX);
    pool::install(|| {
        files
            .par_iter()
            .enumerate()
            .filter_map(|(index, job)| {
                if index > first_failure.load(Ordering::Relaxed) {
                    return None;
                }
                let err = job.run().err()?;
                first_failure.fetch_min(index, Ordering::Relaxed);
                Some((index, err))
            })
            .min_by_key(|(index, _)| *index)
            .map(|(_, err)| err)
    })
}
