//! The set of paths one build step changed in a root filesystem.
//!
//! It is the contract between whatever observed a change (the snapshotter for RUN, COPY and
//! WORKDIR themselves, which know what they wrote) and the layer writer, which turns it into a
//! diff layer. Paths are root-relative (`usr/bin/x`, never `/usr/bin/x`) and kept sorted so that
//! layers are deterministic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Paths added or modified, and paths deleted, by one step.
///
/// The layer writer emits exactly the `changed` paths (plus their parent directories, which
/// extractors need) and a whiteout for each `deleted` path: it never descends into a changed
/// directory on its own, so whoever records a new directory also records what is inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    changed: BTreeSet<PathBuf>,
    deleted: BTreeSet<PathBuf>,
}

impl Changes {
    /// No change at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `path` (root-relative) as added or modified; it is no longer deleted.
    pub fn add_changed(&mut self, path: impl Into<PathBuf>) {
        let path = path.into();
        self.deleted.remove(&path);
        self.changed.insert(path);
    }

    /// Records `path` (root-relative) as deleted; it is no longer changed.
    pub fn add_deleted(&mut self, path: impl Into<PathBuf>) {
        let path = path.into();
        self.changed.remove(&path);
        self.deleted.insert(path);
    }

    /// Folds a later step's changes into this one.
    pub fn merge(&mut self, later: Changes) {
        for path in later.deleted {
            self.add_deleted(path);
        }
        for path in later.changed {
            self.add_changed(path);
        }
    }

    /// Whether the step changed nothing (Docker then records an empty layer in history only).
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.deleted.is_empty()
    }

    /// Added or modified paths, sorted.
    pub fn changed(&self) -> impl Iterator<Item = &Path> {
        self.changed.iter().map(PathBuf::as_path)
    }

    /// Deleted paths, sorted.
    pub fn deleted(&self) -> impl Iterator<Item = &Path> {
        self.deleted.iter().map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_change_resurrects_a_deleted_path() {
        let mut first = Changes::new();
        first.add_deleted("etc/motd");
        let mut later = Changes::new();
        later.add_changed("etc/motd");
        first.merge(later);
        assert_eq!(
            first.changed().collect::<Vec<_>>(),
            vec![Path::new("etc/motd")]
        );
        assert_eq!(first.deleted().count(), 0);
    }
}
