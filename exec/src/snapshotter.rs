//! Running a `RUN` and observing what it changed, by either snapshot strategy.
//!
//! [`Strategy::Overlay`] runs the command on an overlay and reads the upper directory
//! ([`crate::overlay`]): the cost follows what the command wrote. [`Strategy::Scan`] walks the
//! root before and after ([`crate::snapshot`]); the walk after one `RUN` is the walk before the
//! next unless another step changed files in between. Both report the same [`Changes`] for the
//! same change, so they give the same layer.
//!
//! Paths given to `--ignore-path` are left out of every snapshot (Kaniko's semantics: the files
//! stay in the root for later steps, they are just never put in a layer). Declared volumes get
//! Docker's documented semantics: what a `RUN` after `VOLUME` writes under the volume is
//! discarded (an overlay over the volume whose upper directory is thrown away); where overlayfs
//! is unavailable kiln falls back to Kaniko's behaviour, leaving the volume out of snapshots.

use std::path::{Path, PathBuf};

use crate::changes::Changes;
use crate::fsroot::{self, RootFs};
use crate::overlay::{Overlay, OverlayError};
use crate::run::{Isolation, RunError, RunSpec, run_direct, run_with};
use crate::snapshot::{ScanMode, Snapshot, SnapshotError};

/// How a `RUN`'s changes are observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The command writes into an overlay's upper directory, which is its diff.
    Overlay,
    /// The root is walked before and after, and compared as the mode says.
    Scan(ScanMode),
}

/// Why a `RUN` could not be run or observed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotterError {
    /// The command failed or could not be started.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The root could not be scanned.
    #[error(transparent)]
    Scan(#[from] SnapshotError),
    /// The overlay could not be set up, read or merged.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// A volume's directory could not be created or resolved.
    #[error("VOLUME {volume}: {source}")]
    Volume {
        /// The declared volume.
        volume: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Observes the `RUN` steps of one stage.
#[derive(Debug)]
pub struct Snapshotter {
    strategy: Strategy,
    /// `--ignore-path` entries, root-relative.
    ignore: Vec<PathBuf>,
    /// Whether volumes can be given overlays (their writes discarded).
    overlay_volumes: bool,
    /// Where overlay directories go: on the root's filesystem, removed after each step.
    scratch: PathBuf,
    /// The scan strategy's walk of the root as the last `RUN` left it.
    baseline: Option<Snapshot>,
    /// Whether commands run in the sandbox or directly in kiln's own root.
    isolation: Isolation,
}

impl Snapshotter {
    /// A snapshotter for one stage. `overlay_available` says whether overlayfs can be mounted
    /// (see [`crate::overlay::probe`]); `scratch` must not exist yet and be on the filesystem of
    /// the root.
    pub fn new(
        strategy: Strategy,
        ignore: &[PathBuf],
        overlay_available: bool,
        scratch: PathBuf,
    ) -> Snapshotter {
        Snapshotter {
            strategy,
            ignore: ignore
                .iter()
                .map(|path| fsroot::clean(path))
                .filter(|path| !path.as_os_str().is_empty())
                .collect(),
            overlay_volumes: overlay_available,
            scratch,
            baseline: None,
            isolation: Isolation::Chroot,
        }
    }

    /// Runs commands as `isolation` says. [`Isolation::None`] needs the scan strategy (nothing
    /// can be mounted) and a root that is kiln's own `/`.
    pub fn with_isolation(mut self, isolation: Isolation) -> Snapshotter {
        self.isolation = isolation;
        if isolation == Isolation::None {
            self.overlay_volumes = false;
        }
        self
    }

    /// Runs `spec` in the sandbox with `mounts`, or directly.
    fn execute(
        &self,
        root: &RootFs,
        spec: &RunSpec,
        mounts: &[crate::overlay::OverlayMount],
    ) -> Result<Vec<PathBuf>, RunError> {
        match self.isolation {
            Isolation::Chroot => run_with(root, spec, mounts),
            Isolation::None => run_direct(root, spec).map(|()| Vec::new()),
        }
    }

    /// Whether `path` (root-relative) is never snapshotted.
    pub fn ignores(&self, path: &Path) -> bool {
        self.ignore.iter().any(|ignored| path.starts_with(ignored))
    }

    /// Drops from `changes` what is never snapshotted.
    pub fn filter(&self, changes: &mut Changes) {
        if !self.ignore.is_empty() {
            changes.retain(|path| !self.ignores(path));
        }
    }

    /// Another step changed files: the next scan cannot reuse the last one.
    pub fn invalidate(&mut self) {
        self.baseline = None;
    }

    /// Runs `spec` in `root` without observing it (`--single-snapshot` scans the stage once at
    /// the end), `volumes` discarding writes where overlayfs allows.
    pub fn run_unobserved(
        &mut self,
        root: &RootFs,
        spec: &RunSpec,
        volumes: &[String],
    ) -> Result<(), SnapshotterError> {
        self.baseline = None;
        let host_root = canonical_root(root)?;
        let (_, volume_paths) = prepare_volumes(root, volumes)?;
        let overlays = self.volume_overlays(&host_root, &volume_paths)?;
        let mounts = overlays
            .iter()
            .map(Overlay::mount)
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = self.execute(root, spec, &mounts);
        for overlay in overlays {
            overlay.discard()?;
        }
        outcome?;
        Ok(())
    }

    /// Overlays discarding writes under the volumes, where overlayfs can be mounted.
    fn volume_overlays(
        &self,
        host_root: &Path,
        volume_paths: &[PathBuf],
    ) -> Result<Vec<Overlay>, SnapshotterError> {
        if !self.overlay_volumes {
            return Ok(Vec::new());
        }
        let mut overlays = Vec::new();
        for (index, rel) in volume_paths.iter().enumerate() {
            overlays.push(Overlay::create(
                &host_root.join(rel),
                &self.scratch.join(format!("volume-{index}")),
            )?);
        }
        Ok(overlays)
    }

    /// Runs `spec` in `root`, with `volumes` (as declared, absolute) discarding writes, and
    /// returns what it changed, ignored paths excluded.
    pub fn run(
        &mut self,
        root: &RootFs,
        spec: &RunSpec,
        volumes: &[String],
    ) -> Result<Changes, SnapshotterError> {
        let host_root = canonical_root(root)?;
        let (mut changes, volume_paths) = prepare_volumes(root, volumes)?;
        let volume_overlays = self.volume_overlays(&host_root, &volume_paths)?;
        let mut mounts = volume_overlays
            .iter()
            .map(Overlay::mount)
            .collect::<Result<Vec<_>, _>>()?;
        let mut exclude = self.ignore.clone();
        if !self.overlay_volumes {
            exclude.extend(volume_paths.iter().cloned());
        }
        let observed = match self.strategy {
            Strategy::Scan(mode) => {
                let before = match self.baseline.take() {
                    Some(before) => before,
                    None => Snapshot::scan_with(root.path(), mode, &exclude)?,
                };
                let stub_parents = self.execute(root, spec, &mounts)?;
                let mut after = Snapshot::scan_with(root.path(), mode, &exclude)?;
                let diff = before.observe(&mut after, &stub_parents)?;
                // The volumes' exclusions are this step's: the baseline cannot outlive them.
                if volume_paths.is_empty() || self.overlay_volumes {
                    self.baseline = Some(after);
                }
                diff
            }
            Strategy::Overlay if self.isolation == Isolation::None => {
                return Err(SnapshotterError::Run(RunError::Setup {
                    step: "observing the RUN",
                    source: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "the overlay snapshot strategy needs the RUN sandbox; use --snapshot-strategy scan with --isolation=none",
                    ),
                }));
            }
            Strategy::Overlay => {
                let overlay = Overlay::create(&host_root, &self.scratch.join("root"))?;
                mounts.insert(0, overlay.mount()?);
                if let Err(err) = self.execute(root, spec, &mounts) {
                    overlay.discard()?;
                    return Err(err.into());
                }
                let diff = overlay.changes(root)?;
                overlay.merge(root)?;
                diff
            }
        };
        for overlay in volume_overlays {
            overlay.discard()?;
        }
        changes.merge(observed);
        changes.retain(|path| !exclude.iter().any(|ignored| path.starts_with(ignored)));
        Ok(changes)
    }
}

fn canonical_root(root: &RootFs) -> Result<PathBuf, SnapshotterError> {
    std::fs::canonicalize(root.path()).map_err(|source| {
        SnapshotterError::Overlay(OverlayError::Io {
            op: "resolving",
            path: root.path().to_path_buf(),
            source,
        })
    })
}

/// Creates the declared volumes' directories that are missing (Docker creates a volume's mount
/// point, and the step that first runs with it records the new directory) and returns them with
/// each volume's root-relative real path.
fn prepare_volumes(
    root: &RootFs,
    volumes: &[String],
) -> Result<(Changes, Vec<PathBuf>), SnapshotterError> {
    let mut changes = Changes::new();
    let mut paths = Vec::new();
    for volume in volumes {
        let fail = |source| SnapshotterError::Volume {
            volume: volume.clone(),
            source,
        };
        let (dir, created) = root
            .create_dir_all(Path::new(volume), 0o755, Some((0, 0)))
            .map_err(fail)?;
        for path in created {
            changes.add_changed(path);
        }
        let real = root.real_path(&dir).map_err(fail)?;
        if !real.as_os_str().is_empty() {
            paths.push(real);
        }
    }
    Ok((changes, paths))
}

#[cfg(test)]
mod tests;
