//! `COPY --link` / `ADD --link`: the copy runs on an empty tree, the layer is that tree, and the
//! stage gets it the way an image consumer does, by extracting the layer over its root.
//!
//! As in BuildKit (a FileOp on scratch, merged with a MergeOp), nothing of the parent is read:
//! destination parents are created `0755` (owned by the `--chown` owner, else root) instead of
//! being resolved through the parent's symlinks, and existing directories such as a 1777 `/tmp`
//! are not consulted, so the layer records the directories it created as created. A layer
//! that depends only on its inputs is what lets a changed base reuse it (see
//! `kiln_graph::CopyStep::rebases` for the key).

use anyhow::Context as _;
use kiln_exec::RootFs;
use kiln_exec::snapshotter::Snapshotter;
use kiln_exec::users::resolve_chown;
use kiln_graph::{CopyStep, Step, StepKind};

use super::{Executor, StageImage, create_rootfs};
use crate::build::schedule::Progress;
use crate::image::Layer;

impl Executor<'_> {
    /// Executes a `--link` copy: builds its layer in a scratch tree, stores it, and extracts it
    /// over `root`. `None` when the copy wrote nothing.
    pub(super) fn linked(
        &self,
        root: &RootFs,
        id: crate::events::StepId,
        step: &Step,
        copy: &CopyStep,
        built: &dyn Progress<StageImage>,
        snapshotter: &mut Snapshotter,
    ) -> anyhow::Result<Option<Layer>> {
        let scratch_dir = tempfile::Builder::new()
            .prefix("link-")
            .tempdir_in(self.work)
            .with_context(|| format!("creating a scratch tree in {}", self.work.display()))?;
        let tree = scratch_dir.path().join("rootfs");
        create_rootfs(&tree)?;
        let scratch = RootFs::open(&tree)
            .with_context(|| format!("opening the scratch tree {}", tree.display()))?;
        // Names in `--chown` are looked up in the image being built, the only thing read from it.
        let mut owned = step.clone();
        if let (Some(spec), StepKind::Copy(target)) = (&copy.chown, &mut owned.kind) {
            let (uid, gid) = resolve_chown(root, spec)?;
            target.chown = Some(format!("{uid}:{gid}"));
        }
        let mut changes = self.apply(&scratch, id, &owned, built, snapshotter, false)?;
        snapshotter.filter(&mut changes);
        if changes.is_empty() {
            return Ok(None);
        }
        let layer = self.snapshot(&scratch, id, &changes)?;
        self.apply_cached(root, &layer)
            .context("extracting the --link layer over the stage")?;
        snapshotter.invalidate();
        Ok(Some(layer))
    }
}
