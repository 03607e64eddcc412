//! The work area under `<cache-dir>/work`: one directory per build for its root filesystems.
//!
//! Deleting a root filesystem costs one slow unlink per file (about 0.2-3 ms each on the CI
//! disks, so seconds for a 20k-file tree), and nothing waits for the result. A finished build's
//! directory is therefore renamed into `trash/` (instant) and deleted by a background thread;
//! whatever a build leaves there when it exits is swept by the next one, in the background too.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A build's private work directory; moved to the trash when dropped, on every exit path.
#[derive(Debug)]
pub struct WorkDir {
    dir: PathBuf,
    trash: PathBuf,
}

impl WorkDir {
    /// Creates a fresh work directory under `cache_dir/work` and starts sweeping the trash
    /// earlier builds left behind.
    pub fn create(cache_dir: &Path) -> anyhow::Result<WorkDir> {
        let root = cache_dir.join("work");
        let trash = root.join("trash");
        std::fs::create_dir_all(&trash).with_context(|| format!("creating {}", trash.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&root)
            .with_context(|| format!("creating a work directory in {}", root.display()))?
            .keep();
        sweep_in_background(trash.clone());
        Ok(WorkDir { dir, trash })
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
        assert_eq!(leftovers, vec![std::ffi::OsString::from("trash")]);
    }
}
