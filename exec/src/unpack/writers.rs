//! Small files of a layer written on worker threads while the tar stream is still being read.
//!
//! Creating a file is a handful of syscalls (create, write, chown, chmod, set times, close), and
//! an image holds tens or hundreds of thousands of small ones: written one after another, a
//! 200,000-file base takes 12 s on one core while the other idles. Here the reading thread
//! hands each small file, its content already read, to a worker; all files of one directory go
//! to the same worker, in tar order, so a name written twice ends as the tar says and workers
//! do not contend for one directory's lock.
//!
//! Everything else stays on the reading thread, which first waits for the workers
//! ([`Writers::barrier`]) whenever an entry could touch what they are writing: see
//! [`Pending`]. Memory is bounded by [`MAX_IN_FLIGHT`] bytes of queued content.

use std::collections::HashSet;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Scope;

use super::{EntryMeta, UnpackError, write_file};

/// Files up to this size are read whole and written by a worker; larger ones are streamed by
/// the reading thread (their cost is bytes, not syscalls).
pub(super) const SMALL_FILE: u64 = 256 * 1024;
/// Content queued for the workers at most, so a layer of small files never sits in memory.
const MAX_IN_FLIGHT: usize = 8 * 1024 * 1024;
/// Workers at most: file creation stops scaling well before this on one disk.
const MAX_WORKERS: usize = 4;

/// One small file for a worker to write.
pub(super) struct Job {
    /// Its directory, already resolved inside the root.
    pub(super) parent: Arc<OwnedFd>,
    pub(super) name: OsString,
    pub(super) content: Vec<u8>,
    pub(super) meta: EntryMeta,
    /// The entry's name in the tar, for errors.
    pub(super) entry: PathBuf,
}

/// What the workers owe: queued jobs and their bytes, and the first error one of them hit.
#[derive(Default)]
struct Progress {
    jobs: usize,
    bytes: usize,
    failed: Option<UnpackError>,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        // A worker panicking while holding the lock leaves counts that are still right.
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The worker threads of one layer. Dropping it closes their queues, so they end once the
/// queued files are written (the scope that spawned them then joins them).
pub(super) struct Writers {
    queues: Vec<Sender<Job>>,
    shared: Arc<Shared>,
    layer: String,
}

impl Writers {
    /// Starts the workers for `layer` (which labels their errors) in `scope`.
    pub(super) fn start<'scope>(scope: &'scope Scope<'scope, '_>, layer: &'scope str) -> Writers {
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .clamp(1, MAX_WORKERS);
        let shared = Arc::new(Shared::default());
        let queues = (0..workers)
            .map(|_| {
                let (sender, receiver) = channel();
                let shared = Arc::clone(&shared);
                scope.spawn(move || work(&receiver, &shared, layer));
                sender
            })
            .collect();
        Writers {
            queues,
            shared,
            layer: layer.to_owned(),
        }
    }

    /// Queues `job`, waiting while too much content is queued. Returns whether the workers were
    /// idle (every earlier job written), or the error a worker hit.
    pub(super) fn write(&self, job: Job, dir: &Path) -> Result<bool, UnpackError> {
        let len = job.content.len();
        let mut progress = self.shared.lock();
        while progress.jobs > 0 && progress.bytes + len > MAX_IN_FLIGHT && progress.failed.is_none()
        {
            progress = self.wait(progress);
        }
        if let Some(err) = progress.failed.take() {
            return Err(err);
        }
        let idle = progress.jobs == 0;
        progress.jobs += 1;
        progress.bytes += len;
        drop(progress);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dir.hash(&mut hasher);
        let queue = &self.queues[(hasher.finish() % self.queues.len() as u64) as usize];
        if queue.send(job).is_err() {
            // Only a worker that panicked drops its queue.
            let mut progress = self.shared.lock();
            progress.jobs -= 1;
            progress.bytes -= len;
            return Err(progress
                .failed
                .take()
                .unwrap_or_else(|| worker_lost(&self.layer)));
        }
        Ok(idle)
    }

    /// Waits until every queued file is written; the first error a worker hit, if any.
    pub(super) fn barrier(&self) -> Result<(), UnpackError> {
        let mut progress = self.shared.lock();
        while progress.jobs > 0 {
            progress = self.wait(progress);
        }
        progress.failed.take().map_or(Ok(()), Err)
    }

    fn wait<'g>(&self, guard: MutexGuard<'g, Progress>) -> MutexGuard<'g, Progress> {
        self.shared
            .changed
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn worker_lost(layer: &str) -> UnpackError {
    UnpackError::Read {
        layer: layer.to_owned(),
        after: None,
        source: std::io::Error::other("a file-writing thread of the extraction stopped"),
    }
}

/// A worker: writes its queue's files in order until the queue closes. After a failure it only
/// drains, since the layer is abandoned.
fn work(queue: &Receiver<Job>, shared: &Shared, layer: &str) {
    for job in queue {
        let failed = shared.lock().failed.is_some();
        let outcome = if failed {
            Ok(())
        } else {
            write_file(job.parent.as_fd(), &job.name, &job.content, &job.meta).map_err(
                |(op, source)| UnpackError::Entry {
                    layer: layer.to_owned(),
                    entry: job.entry.clone(),
                    op,
                    source,
                },
            )
        };
        let mut progress = shared.lock();
        progress.jobs -= 1;
        progress.bytes -= job.content.len();
        if let Err(err) = outcome {
            progress.failed.get_or_insert(err);
        }
        drop(progress);
        shared.changed.notify_all();
    }
}

/// What the queued files occupy, for deciding when an entry on the reading thread must wait for
/// the workers: when it would replace or remove a queued file (its path is queued), or a
/// directory a queued file goes into or one of that directory's ancestors (its path is in
/// `dirs`), and before resolving a directory that a queued file replaces. Creating other things
/// next to queued files needs no wait, and neither does a directory entry over an existing
/// directory, which only changes metadata.
#[derive(Default)]
pub(super) struct Pending {
    files: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
    /// The directory of the last queued file, whose ancestors are already in `dirs`.
    last_dir: Option<PathBuf>,
}

impl Pending {
    /// Records a queued file. `idle` (the workers had nothing queued before it) forgets
    /// everything recorded so far, which is written.
    pub(super) fn queued(&mut self, path: &Path, idle: bool) {
        if idle {
            self.clear();
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        if self.last_dir.as_deref() != Some(dir) {
            let mut ancestor = Some(dir);
            while let Some(d) = ancestor {
                if !self.dirs.insert(d.to_path_buf()) {
                    break;
                }
                ancestor = d.parent();
            }
            self.last_dir = Some(dir.to_path_buf());
        }
        self.files.insert(path.to_path_buf());
    }

    /// Whether a small file at `path` must wait: files of one path go to one worker in order,
    /// so only a queued directory in its way matters.
    pub(super) fn blocks_file(&self, path: &Path) -> bool {
        self.dirs.contains(path)
    }

    /// Whether an entry at `path` that replaces what is there must wait for the workers.
    pub(super) fn blocks(&self, path: &Path) -> bool {
        self.files.contains(path) || self.dirs.contains(path)
    }

    /// Whether a queued file is at `dir` or one of its ancestors: resolving `dir` must then wait
    /// for it, since it replaces what the path leads through.
    pub(super) fn shadows(&self, dir: &Path) -> bool {
        !self.files.is_empty() && dir.ancestors().any(|d| self.files.contains(d))
    }

    /// Whether a directory entry at `path` must wait for the workers.
    pub(super) fn blocks_dir(&self, path: &Path) -> bool {
        self.files.contains(path)
    }

    /// Forgets everything (after a barrier).
    pub(super) fn clear(&mut self) {
        self.files.clear();
        self.dirs.clear();
        self.last_dir = None;
    }
}
