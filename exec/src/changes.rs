//! The set of paths one build step changed in a root filesystem.
//!
//! It is the contract between whatever observed a change (the snapshotter for RUN, COPY and
//! WORKDIR themselves, which know what they wrote) and the layer writer, which turns it into a
//! diff layer. Paths are root-relative (`usr/bin/x`, never `/usr/bin/x`) and kept sorted so that
//! layers are deterministic.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// Paths added or modified, paths deleted, and directories made opaque by one step.
///
/// The layer writer emits exactly the `changed` paths (plus their parent directories, which
/// extractors need), a whiteout for each `deleted` path and an opaque whiteout
/// (`dir/.wh..wh..opq`) for each `opaque` directory: it never descends into a changed directory
/// on its own, so whoever records a new directory also records what is inside it.
///
/// An opaque directory is one that was replaced as a whole (`rm -rf d && mkdir d`): everything
/// the layers below had in it is gone, which one opaque whiteout says instead of one whiteout per
/// old child. Deletions below an opaque directory are therefore never recorded, and an opaque
/// directory is always also changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    changed: BTreeSet<PathBuf>,
    deleted: BTreeSet<PathBuf>,
    opaque: BTreeSet<PathBuf>,
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

    /// Records `path` (root-relative) as deleted: it is no longer changed or opaque, and nothing
    /// below it is changed any more. Ignored below an opaque directory, which already hides it.
    pub fn add_deleted(&mut self, path: impl Into<PathBuf>) {
        let path = path.into();
        if path
            .ancestors()
            .skip(1)
            .any(|dir| self.opaque.contains(dir))
        {
            return;
        }
        remove_below(&mut self.changed, &path);
        remove_below(&mut self.opaque, &path);
        remove_below(&mut self.deleted, &path);
        self.changed.remove(&path);
        self.opaque.remove(&path);
        self.deleted.insert(path);
    }

    /// Records the directory `dir` (root-relative) as replaced as a whole: changed, opaque, and
    /// with no deletion recorded below it any more.
    pub fn add_opaque(&mut self, dir: impl Into<PathBuf>) {
        let dir = dir.into();
        remove_below(&mut self.deleted, &dir);
        self.deleted.remove(&dir);
        self.changed.insert(dir.clone());
        self.opaque.insert(dir);
    }

    /// Folds a later step's changes into this one.
    pub fn merge(&mut self, later: Changes) {
        for path in later.deleted {
            self.add_deleted(path);
        }
        for dir in later.opaque {
            self.add_opaque(dir);
        }
        for path in later.changed {
            self.add_changed(path);
        }
    }

    /// Keeps only the paths `keep` accepts (`--ignore-path`, volumes): what it rejects is left
    /// out of the layer as if the step had not touched it.
    pub fn retain(&mut self, keep: impl Fn(&Path) -> bool) {
        self.changed.retain(|path| keep(path));
        self.deleted.retain(|path| keep(path));
        self.opaque.retain(|path| keep(path));
    }

    /// Whether the step changed nothing (Docker then records an empty layer in history only).
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.deleted.is_empty() && self.opaque.is_empty()
    }

    /// Added or modified paths, sorted.
    pub fn changed(&self) -> impl Iterator<Item = &Path> {
        self.changed.iter().map(PathBuf::as_path)
    }

    /// Deleted paths, sorted.
    pub fn deleted(&self) -> impl Iterator<Item = &Path> {
        self.deleted.iter().map(PathBuf::as_path)
    }

    /// Directories replaced as a whole, sorted.
    pub fn opaque(&self) -> impl Iterator<Item = &Path> {
        self.opaque.iter().map(PathBuf::as_path)
    }
}

/// Removes every path strictly below `dir` from `set`. Component-wise ordering keeps a
/// directory's descendants right after it, so this touches only what it removes.
fn remove_below(set: &mut BTreeSet<PathBuf>, dir: &Path) {
    let below: Vec<PathBuf> = set
        .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
        .take_while(|path| path.starts_with(dir))
        .cloned()
        .collect();
    for path in below {
        set.remove(&path);
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

    #[test]
    fn deleting_a_directory_forgets_what_was_changed_inside_it() {
        let mut first = Changes::new();
        first.add_changed("opt/app");
        first.add_changed("opt/app/bin");
        first.add_changed("opt/apps");
        let mut later = Changes::new();
        later.add_deleted("opt/app");
        first.merge(later);
        assert_eq!(
            first.changed().collect::<Vec<_>>(),
            vec![Path::new("opt/apps")]
        );
        assert_eq!(
            first.deleted().collect::<Vec<_>>(),
            vec![Path::new("opt/app")]
        );
    }

    #[test]
    fn an_opaque_directory_replaces_the_deletions_below_it() {
        let mut changes = Changes::new();
        changes.add_deleted("var/cache/a");
        changes.add_deleted("var/cached");
        changes.add_opaque("var/cache");
        changes.add_deleted("var/cache/b");
        assert_eq!(
            changes.deleted().collect::<Vec<_>>(),
            vec![Path::new("var/cached")]
        );
        assert_eq!(
            changes.opaque().collect::<Vec<_>>(),
            vec![Path::new("var/cache")]
        );
        assert_eq!(
            changes.changed().collect::<Vec<_>>(),
            vec![Path::new("var/cache")]
        );
    }

    #[test]
    fn retain_drops_ignored_paths_of_every_kind() {
        let mut changes = Changes::new();
        changes.add_changed("tmp/x");
        changes.add_changed("etc/x");
        changes.add_deleted("tmp/y");
        changes.add_opaque("tmp/z");
        changes.retain(|path| !path.starts_with("tmp"));
        assert_eq!(
            changes.changed().collect::<Vec<_>>(),
            vec![Path::new("etc/x")]
        );
        assert_eq!(changes.deleted().count() + changes.opaque().count(), 0);
    }
}
