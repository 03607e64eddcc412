//! The work area under `<cache-dir>/work`: one directory per build for its root filesystems.
//!
//! Deleting a root filesystem costs one slow unlink per file (about 0.2-3 ms each on the CI
//! disks, so seconds for a 20k-file tree), and nothing waits for the result. A finished build's
//! directory is therefore renamed into `trash/` (instant) and deleted by a background thread;
//! whatever a build leaves there when it exits is swept by the next one, in the background too.
//!
//! A build killed outright (SIGKILL, OOM) never gets to do that. Each work directory therefore
//! has a lock file next to it, locked (`flock`) before the directory exists and for as long as
//! its build runs: a later build that can take the lock knows the owner is gone and moves the
//! directory to the trash. The kernel drops the lock with the process, whatever kills it. (A
//! kill between creating and locking the file leaves an empty `.locking` file: harmless.)

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A build's private work directory; moved to the trash when dropped, on every exit path.
#[derive(Debug)]
pub struct WorkDir {
    dir: PathBuf,
    trash: PathBuf,
    lock: PathBuf,
    /// Held (locked) for the life of the build.
    _lock_file: File,
}

impl WorkDir {
    /// Creates a fresh work directory under `cache_dir/work` and starts sweeping the trash
    /// earlier builds left behind.
    pub fn create(cache_dir: &Path) -> anyhow::Result<WorkDir> {
        let root = cache_dir.join("work");
        let trash = root.join("trash");
        std::fs::create_dir_all(&trash).with_context(|| format!("creating {}", trash.display()))?;
        reclaim_abandoned(&root, &trash);
        // Locked under a name the sweep ignores, then renamed (the lock stays with the open
        // file): a `.lock` file is never seen unlocked while its build lives, so no other build
        // can take it for abandoned in between.
        let (lock_file, locking) = tempfile::Builder::new()
            .prefix("build-")
            .suffix(".locking")
            .tempfile_in(&root)
            .with_context(|| format!("creating a work directory in {}", root.display()))?
            .keep()
            .with_context(|| format!("creating a work directory in {}", root.display()))?;
        lock_file
            .lock()
            .with_context(|| format!("locking {}", locking.display()))?;
        let lock = locking.with_extension("lock");
        std::fs::rename(&locking, &lock)
            .with_context(|| format!("renaming {} to {}", locking.display(), lock.display()))?;
        let dir = lock.with_extension("");
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        sweep_in_background(trash.clone());
        Ok(WorkDir {
            dir,
            trash,
            lock,
            _lock_file: lock_file,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let Some(name) = self.dir.file_name() else {
            return;
        };
        let target = self.trash.join(name);
        match std::fs::rename(&self.dir, &target) {
            Ok(()) => sweep_in_background(target),
            // Renaming within one directory tree only fails if something else removed it.
            Err(err) => tracing::debug!("cannot move {} to the trash: {err}", self.dir.display()),
        }
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Moves the work directories of builds that died without cleaning up into the trash: those
/// whose lock file nobody holds any more.
fn reclaim_abandoned(root: &Path, trash: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let lock = entry.path();
        if lock.extension().is_none_or(|ext| ext != "lock") {
            continue;
        }
        let Ok(file) = File::open(&lock) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // its build is still running
        }
        let dir = lock.with_extension("");
        if let Some(name) = dir.file_name() {
            let _ = std::fs::rename(&dir, trash.join(name));
        }
        let _ = std::fs::remove_file(&lock);
    }
}

/// Deletes `path` on a detached thread. If kiln exits first, the next build finishes the job.
fn sweep_in_background(path: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("kiln-sweep".into())
        .spawn(move || {
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) if path.ends_with("trash") => entries,
                _ => {
                    let _ = std::fs::remove_dir_all(&path);
                    return;
                }
            };
            for entry in entries.flatten() {
                // Another build may be sweeping the same entry: losing that race is fine.
                let _ = std::fs::remove_dir_all(entry.path());
            }
        });
    if let Err(err) = spawned {
        tracing::debug!("cannot start the trash sweeper: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_directory_whose_build_died_is_reclaimed_and_a_live_one_is_not() {
        let cache = tempfile::tempdir().unwrap();
        let live = WorkDir::create(cache.path()).unwrap();
        // A build killed with SIGKILL: its directory and unlocked lock file stay behind.
        let work = cache.path().join("work");
        std::fs::create_dir(work.join("build-dead")).unwrap();
        std::fs::write(work.join("build-dead.lock"), "").unwrap();

        let next = WorkDir::create(cache.path()).unwrap();
        assert!(!work.join("build-dead").exists());
        assert!(!work.join("build-dead.lock").exists());
        assert!(
            live.path().is_dir(),
            "a running build's directory must be left alone"
        );
        assert!(next.path().is_dir());
    }

    #[test]
    fn a_finished_work_directory_leaves_the_work_area_at_once() {
        let cache = tempfile::tempdir().unwrap();
        let work = WorkDir::create(cache.path()).unwrap();
        let dir = work.path().to_path_buf();
        std::fs::create_dir_all(dir.join("stage-0/etc")).unwrap();
        drop(work);
        assert!(!dir.exists());
        let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("work"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("trash")],
            "no directory or lock file left"
        );
    }
}
