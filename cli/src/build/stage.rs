//! Executing a plan: one root filesystem per stage, each step applied to it, each change
//! snapshotted into a layer in the store.
//!
//! Everything here is blocking filesystem and CPU work; the caller runs it on a blocking thread.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use kiln_cas::{StepRecord, Store};
use kiln_exec::archive::{Kind, detect, extract};
use kiln_exec::compression::{Compression, decompress};
use kiln_exec::context::{BuildContext, Owners, digest_sources};
use kiln_exec::copy::{Chmod, CopyOptions, copy};
use kiln_exec::dockerignore::Dockerignore;
use kiln_exec::ignore::IgnoreList;
use kiln_exec::layer::{LayerOptions, write_layer};
use kiln_exec::run::{Isolation, Network, RunSpec};
use kiln_exec::snapshot::{ScanMode, Snapshot};
use kiln_exec::snapshotter::{Snapshotter, Strategy};
use kiln_exec::sources::expand;
use kiln_exec::unpack::{LayerStream, apply_layers_except};
use kiln_exec::users::{resolve_chown, resolve_user};
use kiln_exec::workdir::ensure_workdir;
use kiln_exec::{Changes, RootFs};
use kiln_graph::{
    BaseRef, CopyFrom, CopyStep, ImageState, NetworkMode, NodeKey, Plan, RunStep, Stage, Step,
    StepKind,
};
use serde_json::{Map, Value};

use super::bases::PulledImage;
use super::blobs::Blobs;
use super::schedule::{self, Node, Progress};
use crate::cache::{Cache, Hit, Scope};
use crate::image::Layer;
use crate::image::config::history_entry;

mod link;

/// The image a stage produced, and its root filesystem while later stages may need it.
#[derive(Debug, Clone)]
pub struct StageImage {
    /// The stage's root filesystem, if it was ever unpacked: a stage whose every step came from
    /// the cache has none until something reads it.
    pub rootfs: Option<PathBuf>,
    /// Every layer, base first.
    pub layers: Vec<Layer>,
    /// History, base first.
    pub history: Vec<Value>,
    /// Platform fields of the config.
    pub platform: Map<String, Value>,
    /// Final runtime settings.
    pub state: ImageState,
}

/// Runs the stages of a plan in order.
#[derive(Debug)]
pub struct Executor<'a> {
    /// The plan, keys assigned.
    pub plan: &'a Plan,
    /// Blob store for layers.
    pub store: &'a Store,
    /// Build context for `COPY`.
    pub context: &'a BuildContext,
    /// Pulled external images.
    pub images: &'a BTreeMap<String, PulledImage>,
    /// What `ADD <url>` steps downloaded (before keys were assigned).
    pub downloads: &'a super::downloads::Downloads,
    /// Scratch directory for root filesystems (removed by the caller).
    pub work: &'a Path,
    /// Creation time stamped on history entries.
    pub created: String,
    /// The Dockerfile's name, for messages.
    pub dockerfile: &'a str,
    /// How many stages may run at once.
    pub jobs: NonZeroUsize,
    /// Root filesystems of external images read by `COPY --from`, by reference.
    pub image_roots: Mutex<BTreeMap<String, PathBuf>>,
    /// How RUN changes are observed and grouped into layers.
    pub snapshots: &'a Snapshots,
    /// How new layers are compressed and timestamped.
    pub layers: LayerOptions,
    /// What `RUN --mount`s resolve against.
    pub mounts: &'a super::mounts::MountInputs<'a>,
    /// Where stages build their root filesystems.
    pub roots: &'a Roots,
    /// The layer cache (disabled without `--cache`).
    pub cache: &'a Cache,
    /// Where layers missing from the store are downloaded from.
    pub blobs: &'a Blobs,
    /// The Dockerfile's path relative to the context: part of each stage's cache scope.
    pub scope_file: &'a str,
    /// Root filesystems unpacked on demand for stages built entirely from the cache.
    pub stage_views: Mutex<BTreeMap<usize, PathBuf>>,
}

/// Where stages build their root filesystems.
#[derive(Debug, Clone)]
pub enum Roots {
    /// Each stage in its own directory of the work area; RUN in the sandbox.
    PerStage,
    /// Every stage in kiln's own `/`, one after another, RUN directly (`--isolation=none`):
    /// the ignore list is never extracted over, deleted or snapshotted.
    Own(IgnoreList),
}

/// The snapshot settings of a build, the strategy decided.
#[derive(Debug, Clone)]
pub struct Snapshots {
    /// How each RUN is observed.
    pub strategy: Strategy,
    /// Whether overlayfs can be mounted (volumes then discard RUN writes, as in Docker).
    pub overlay_available: bool,
    /// What a scan compares (`--single-snapshot` scans whatever the strategy).
    pub mode: ScanMode,
    /// One layer per stage.
    pub single_snapshot: bool,
    /// Absolute paths never snapshotted.
    pub ignore_paths: Vec<PathBuf>,
}

impl Executor<'_> {
    /// Builds every stage the target needs, independent stages in parallel, and returns the
    /// target's image.
    pub fn run(&self) -> anyhow::Result<StageImage> {
        let nodes: Vec<Node> = self
            .plan
            .build_order()
            .into_iter()
            .map(|index| Node {
                index,
                needs: self.plan.stage_dependencies(index).into_iter().collect(),
            })
            .collect();
        let mut built = schedule::run(&nodes, self.jobs, |index, progress| {
            self.run_stage(&self.plan.stages[index], progress)
        })?;
        built
            .remove(&self.plan.target)
            .context("the target stage was not built")
    }

    fn run_stage(
        &self,
        stage: &Stage,
        built: &dyn Progress<StageImage>,
    ) -> anyhow::Result<StageImage> {
        let mut image = self.base_image(stage, built).with_context(|| {
            format!(
                "{}:{}: preparing {}",
                self.file(),
                stage.line,
                stage_label(stage)
            )
        })?;
        let in_stage = if self.plan.stages.len() > 1 {
            format!(" ({})", stage_label(stage))
        } else {
            String::new()
        };
        if self.snapshots.single_snapshot {
            return self.run_single_snapshot(stage, image, built, &in_stage);
        }
        let scope = crate::cache::scope(self.scope_file, stage);
        // Created when the first step that must run needs it, from the layers so far.
        let mut live: Option<(RootFs, Snapshotter)> = None;
        // The last filesystem step's key (configuration steps do not chain), and whether it
        // differs from the plan's (a `COPY --from` resolved to its content key re-keys every
        // step after it).
        let mut prev = stage.key;
        let mut rekeyed = false;
        for (index, step) in stage.steps.iter().enumerate() {
            if crate::interrupt::requested() {
                anyhow::bail!("interrupted before {}", step.text);
            }
            let at = || format!("{}:{}: {}{in_stage}", self.file(), step.line, step.text);
            let mut key = match (rekeyed, &prev) {
                (true, Some(prev)) => Some(
                    self.plan
                        .step_key_after(stage.index, index, prev, &self.key_inputs())
                        .with_context(at)?,
                ),
                _ => step.key,
            };
            let mut hit = self.cached(step, key.as_ref())?;
            if hit.is_none()
                && let Some(definition) = key
                && self.cache.enabled()
                && self.cache.cacheable(&step.kind)
                && self.plan.copies_from_stage(stage.index, index)
                && let Some(content) = self
                    .content_key(stage, index, step, prev.as_ref(), built)
                    .with_context(at)?
                && content != definition
            {
                self.cache
                    .record_alias(&scope, definition.0, content.0)
                    .with_context(at)?;
                key = Some(content);
                hit = self.cached(step, key.as_ref())?;
            }
            rekeyed = rekeyed || key != step.key;
            // Configuration steps do not chain; a rebasing `--link` copy's key ignores the
            // parent, but the next steps must not.
            if self.plan.chains(stage.index, index) {
                prev = match (prev, key) {
                    (Some(prev), Some(key)) => Some(step.after_key(&prev, &key)),
                    _ => key,
                };
            }
            let id = crate::events::StepId::new(stage.index, index);
            if let Some((cache_key, hit)) = hit {
                self.cache.used(&scope, cache_key, &hit);
                let layer = hit.record.layer.clone().map(Layer::from);
                crate::events::emit(crate::events::Event::StepCached {
                    id,
                    layer: layer.as_ref(),
                    remote: hit.origin == crate::cache::Origin::Remote,
                });
                if let (Some(layer), Some((root, snapshotter))) = (&layer, &mut live) {
                    self.apply_cached(root, layer).with_context(at)?;
                    snapshotter.invalidate();
                }
                if step.in_history {
                    image.history.push(history_entry(
                        &self.created,
                        &step.created_by,
                        layer.is_none(),
                    ));
                }
                image.layers.extend(layer);
                continue;
            }
            crate::events::emit(crate::events::Event::StepStarted(id));
            if matches!(step.kind, StepKind::Config) {
                if step.in_history {
                    image
                        .history
                        .push(history_entry(&self.created, &step.created_by, true));
                }
                crate::events::emit(crate::events::Event::StepDone { id, layer: None });
                continue;
            }
            if live.is_none() {
                live = Some(
                    self.materialize(stage, &mut image, built)
                        .with_context(|| {
                            format!(
                                "{}:{}: unpacking {}",
                                self.file(),
                                stage.line,
                                stage_label(stage)
                            )
                        })?,
                );
            }
            let Some((root, snapshotter)) = live.as_mut() else {
                bail!("the root filesystem of {} is missing", stage_label(stage));
            };
            let layer = if let StepKind::Copy(copy) = &step.kind
                && copy.link
                && step.in_history
            {
                crate::events::emit(crate::events::Event::Snapshotting(id));
                self.linked(root, id, step, copy, built, snapshotter)
                    .with_context(at)?
            } else {
                let mut changes = self
                    .apply(root, id, step, built, snapshotter, false)
                    .with_context(at)?;
                if !step.in_history {
                    crate::events::emit(crate::events::Event::StepDone { id, layer: None });
                    continue;
                }
                snapshotter.filter(&mut changes);
                if changes.is_empty() {
                    None
                } else {
                    crate::events::emit(crate::events::Event::Snapshotting(id));
                    Some(
                        self.snapshot(root, id, &changes)
                            .with_context(|| format!("snapshotting {}", at()))?,
                    )
                }
            };
            self.record(&scope, step, key.as_ref(), layer.as_ref())
                .with_context(|| format!("recording {} in the cache", at()))?;
            crate::events::emit(crate::events::Event::StepDone {
                id,
                layer: layer.as_ref(),
            });
            image.history.push(history_entry(
                &self.created,
                &step.created_by,
                layer.is_none(),
            ));
            image.layers.extend(layer);
        }
        image.state = stage.final_state().clone();
        self.keep_own_root(stage, &mut image)?;
        Ok(image)
    }

    /// In kiln's own root (`--isolation=none`), `/` belongs to the next stage: a stage whose
    /// files a later stage reads (`COPY --from`, `RUN --mount=from=`) is saved as a copy (Kaniko
    /// saves the files it knows will be read; a copy of the stage is simpler and exact).
    fn keep_own_root(&self, stage: &Stage, image: &mut StageImage) -> anyhow::Result<()> {
        if !matches!(self.roots, Roots::Own(_)) || image.rootfs.is_none() {
            return Ok(());
        }
        image.rootfs = None;
        if self.read_by_later_stage(stage.index) {
            let saved = self.work.join(format!("stage-{}", stage.index));
            create_rootfs(&saved)?;
            self.blobs.ensure_blocking(&image.layers)?;
            self.unpack(&saved, &image.layers)
                .with_context(|| format!("saving {} for later stages", stage_label(stage)))?;
            image.rootfs = Some(saved);
        }
        Ok(())
    }

    /// Whether a stage reads `index`'s files (`COPY --from`, `RUN --mount=from=`).
    fn read_by_later_stage(&self, index: usize) -> bool {
        self.plan.stages.iter().any(|stage| {
            stage
                .steps
                .iter()
                .any(|step| step.kind.source_stages().contains(&index))
        })
    }

    /// `--single-snapshot`: one scan before the first step, one after the last, one layer
    /// (Kaniko's). Nothing is looked up in or recorded to the cache: the layer belongs to no
    /// single step.
    fn run_single_snapshot(
        &self,
        stage: &Stage,
        mut image: StageImage,
        built: &dyn Progress<StageImage>,
        in_stage: &str,
    ) -> anyhow::Result<StageImage> {
        let (root, mut snapshotter) = self.materialize(stage, &mut image, built)?;
        let exclude = self.single_snapshot_exclusions(stage);
        let before = Snapshot::scan_with(root.path(), self.snapshots.mode, &exclude)?;
        let mut deferred_history = Vec::new();
        for (index, step) in stage.steps.iter().enumerate() {
            if crate::interrupt::requested() {
                anyhow::bail!("interrupted before {}", step.text);
            }
            let id = crate::events::StepId::new(stage.index, index);
            crate::events::emit(crate::events::Event::StepStarted(id));
            let at = || format!("{}:{}: {}{in_stage}", self.file(), step.line, step.text);
            self.apply(&root, id, step, built, &mut snapshotter, true)
                .with_context(at)?;
            crate::events::emit(crate::events::Event::StepDone { id, layer: None });
            if step.in_history {
                deferred_history.push(step.created_by.as_str());
            }
        }
        let snapshotting = || format!("snapshotting {}", stage_label(stage));
        let after = Snapshot::scan_with(root.path(), self.snapshots.mode, &exclude)
            .with_context(snapshotting)?;
        let mut changes = before.diff(&after);
        snapshotter.filter(&mut changes);
        let layer = if changes.is_empty() {
            None
        } else {
            // One layer for the whole stage: its bytes count toward the last step.
            let id = crate::events::StepId::new(stage.index, stage.steps.len().saturating_sub(1));
            Some(
                self.snapshot(&root, id, &changes)
                    .with_context(snapshotting)?,
            )
        };
        // Every instruction keeps its history entry; the last one carries the layer.
        let last = deferred_history.len().saturating_sub(1);
        for (index, created_by) in deferred_history.into_iter().enumerate() {
            let empty = index != last || layer.is_none();
            image
                .history
                .push(history_entry(&self.created, created_by, empty));
        }
        image.layers.extend(layer);
        image.state = stage.final_state().clone();
        self.keep_own_root(stage, &mut image)?;
        Ok(image)
    }

    /// The cached result of `step` under node key `key`, if the cache may serve it: a keyed
    /// step of a kind the flags cache, found by the probe or, for keys only known now, by a
    /// lookup.
    fn cached(
        &self,
        step: &Step,
        key: Option<&NodeKey>,
    ) -> anyhow::Result<Option<([u8; 32], Hit)>> {
        let Some(cache_key) = self.cache_key(step, key) else {
            return Ok(None);
        };
        let hit = match self.cache.hit(&cache_key) {
            Some(hit) => Some(hit.clone()),
            None if key != step.key.as_ref() => self.cache.lookup(&cache_key, self.store)?,
            None => None,
        };
        Ok(hit.map(|hit| (cache_key, hit)))
    }

    /// The key a step's result is cached under, if it is cached at all.
    fn cache_key(&self, step: &Step, key: Option<&NodeKey>) -> Option<[u8; 32]> {
        if !self.cache.enabled() || !self.cache.cacheable(&step.kind) {
            return None;
        }
        key.map(|key| crate::cache::cache_key(key, &self.layers))
    }

    /// The content key of a `COPY --from=<stage>` step: the files it selects in the source
    /// stage's output, digested with their owners (unpacking that output if it never was).
    fn content_key(
        &self,
        stage: &Stage,
        index: usize,
        step: &Step,
        prev: Option<&NodeKey>,
        built: &dyn Progress<StageImage>,
    ) -> anyhow::Result<Option<NodeKey>> {
        let (StepKind::Copy(copy), Some(prev)) = (&step.kind, prev) else {
            return Ok(None);
        };
        let CopyFrom::Stage(source) = copy.from else {
            return Ok(None);
        };
        let root = RootFs::open(&self.stage_root(source, built)?)?;
        let content = digest_sources(&root, &copy.sources, None, Owners::Kept)?;
        Ok(Some(self.plan.copy_content_key(
            stage.index,
            index,
            prev,
            &content,
            &self.key_inputs(),
        )?))
    }

    /// What node keys are computed from, for keys derived while building.
    fn key_inputs(&self) -> super::keys::Inputs<'_> {
        super::keys::Inputs {
            images: self.images,
            context: self.context,
            cache: Some(self.cache),
            downloads: self.downloads,
        }
    }

    /// Records what an executed step produced, once its layer is complete in the store.
    fn record(
        &self,
        scope: &Scope,
        step: &Step,
        key: Option<&NodeKey>,
        layer: Option<&Layer>,
    ) -> anyhow::Result<()> {
        let Some(key) = self.cache_key(step, key) else {
            return Ok(());
        };
        self.cache.record(
            scope,
            key,
            StepRecord {
                layer: layer.cloned().map(Into::into),
                recorded: kiln_cas::record::now(),
            },
        )
    }

    /// Applies a cached layer onto a stage being built, as the step would have changed it.
    fn apply_cached(&self, root: &RootFs, layer: &Layer) -> anyhow::Result<()> {
        self.blobs.ensure_blocking(std::slice::from_ref(layer))?;
        self.unpack(root.path(), std::slice::from_ref(layer))
    }

    /// The image a stage starts as: its base's layers, history and platform. Nothing is
    /// unpacked yet.
    fn base_image(
        &self,
        stage: &Stage,
        built: &dyn Progress<StageImage>,
    ) -> anyhow::Result<StageImage> {
        Ok(match &stage.base {
            BaseRef::Scratch => StageImage {
                rootfs: None,
                layers: Vec::new(),
                history: Vec::new(),
                platform: platform_fields(&stage.platform),
                state: stage.base_state.clone(),
            },
            BaseRef::Image(reference) => {
                let pulled = self
                    .images
                    .get(reference)
                    .with_context(|| format!("base image {reference} was not resolved"))?;
                StageImage {
                    rootfs: None,
                    layers: pulled.layers.clone(),
                    history: pulled.config.history.clone(),
                    platform: pulled.config.platform.clone(),
                    state: stage.base_state.clone(),
                }
            }
            BaseRef::Stage(parent) => {
                let source = built
                    .output(*parent)
                    .with_context(|| format!("stage {parent} was not built"))?;
                StageImage {
                    rootfs: None,
                    state: stage.base_state.clone(),
                    ..source
                }
            }
        })
    }

    /// Creates the stage's root filesystem holding `image`'s layers so far: the parent stage's
    /// tree taken over when nobody else reads it, else unpacked (downloading what the store
    /// lacks).
    fn materialize(
        &self,
        stage: &Stage,
        image: &mut StageImage,
        built: &dyn Progress<StageImage>,
    ) -> anyhow::Result<(RootFs, Snapshotter)> {
        let own = matches!(self.roots, Roots::Own(_));
        let rootfs = if own {
            PathBuf::from("/")
        } else {
            self.work.join(format!("stage-{}", stage.index))
        };
        let mut applied = 0;
        if !own
            && let BaseRef::Stage(parent) = stage.base
            && let Some(source) = built.output(parent)
            && let Some(tree) = &source.rootfs
            && !self.stage_needed_by(parent, stage, built)
        {
            // Nobody else reads the parent's tree: take it over instead of rebuilding it.
            std::fs::rename(tree, &rootfs)
                .with_context(|| format!("moving {} to {}", tree.display(), rootfs.display()))?;
            applied = source.layers.len();
        } else {
            self.fresh_root(&rootfs)?;
            if let BaseRef::Image(reference) = &stage.base {
                tracing::info!("Unpacking rootfs of {reference}");
            }
        }
        let rest = &image.layers[applied.min(image.layers.len())..];
        self.blobs.ensure_blocking(rest)?;
        self.unpack(&rootfs, rest)?;
        image.rootfs = Some(rootfs.clone());
        let root = RootFs::open(&rootfs)
            .with_context(|| format!("opening the root filesystem {}", rootfs.display()))?;
        let snapshotter = Snapshotter::new(
            self.snapshots.strategy,
            &self.snapshots.ignore_paths,
            self.snapshots.overlay_available,
            self.work.join(format!("stage-{}.snapshot", stage.index)),
        )
        .with_isolation(if own {
            Isolation::None
        } else {
            Isolation::Chroot
        });
        Ok((root, snapshotter))
    }

    /// An empty root for a stage: a new directory, or `/` emptied but for the ignore list.
    fn fresh_root(&self, rootfs: &Path) -> anyhow::Result<()> {
        match self.roots {
            Roots::PerStage => create_rootfs(rootfs),
            Roots::Own(ignore) => {
                let root = RootFs::open(rootfs)
                    .with_context(|| format!("opening {}", rootfs.display()))?;
                ignore
                    .reset(&root)
                    .with_context(|| format!("emptying {} for the stage", rootfs.display()))
            }
        }
    }

    /// The root filesystem of a finished stage, for `COPY --from` and `RUN --mount from=`:
    /// its own tree, or, when every step came from the cache, its layers unpacked once on
    /// first use.
    fn stage_root(
        &self,
        index: usize,
        built: &dyn Progress<StageImage>,
    ) -> anyhow::Result<PathBuf> {
        let stage = built
            .output(index)
            .with_context(|| format!("stage {index} was not built"))?;
        if let Some(rootfs) = stage.rootfs {
            return Ok(rootfs);
        }
        let mut views = self
            .stage_views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(dir) = views.get(&index) {
            return Ok(dir.clone());
        }
        let dir = self.work.join(format!("stage-{index}-view"));
        create_rootfs(&dir)?;
        self.blobs.ensure_blocking(&stage.layers)?;
        self.unpack(&dir, &stage.layers)?;
        views.insert(index, dir.clone());
        Ok(dir)
    }

    /// Whether anything but `current`'s base still reads `parent`'s root filesystem: another
    /// stage not finished yet, `current`'s own `COPY --from`, or the export of the target.
    fn stage_needed_by(
        &self,
        parent: usize,
        current: &Stage,
        built: &dyn Progress<StageImage>,
    ) -> bool {
        current
            .steps
            .iter()
            .any(|step| step.kind.source_stages().contains(&parent))
            || built.needed_by_others(parent)
            || self.plan.target == parent
    }

    fn apply(
        &self,
        root: &RootFs,
        id: crate::events::StepId,
        step: &Step,
        built: &dyn Progress<StageImage>,
        snapshotter: &mut Snapshotter,
        unobserved: bool,
    ) -> anyhow::Result<Changes> {
        let changes = match &step.kind {
            StepKind::Config => Changes::new(),
            StepKind::Workdir { path, user } => {
                let ids = resolve_user(root, user.as_deref().unwrap_or(""))?;
                ensure_workdir(root, path, (ids.uid, ids.gid))?
            }
            StepKind::Run(run_step) => {
                let user = run_step.user.clone().unwrap_or_default();
                let ids = resolve_user(root, &user)?;
                let mut changes = ensure_workdir(root, &run_step.workdir, (ids.uid, ids.gid))?;
                let pipes = self.write_script(run_step, step)?;
                let at = format!("{}:{}:{}", self.dockerfile, step.line, step.column);
                // Held until the command is done: cache locks and secret copies.
                let sources = self.mount_sources(run_step, built)?;
                let mounts =
                    self.mounts
                        .resolve(&run_step.mounts, &sources, &run_step.workdir, &at)?;
                let mut env = run_step.env.clone();
                env.extend(run_step.proxy_env.iter().cloned());
                env.extend(mounts.env.iter().cloned());
                let spec = RunSpec {
                    argv: run_step.argv.clone(),
                    env,
                    workdir: run_step.workdir.clone(),
                    user,
                    network: match run_step.network {
                        NetworkMode::None => Network::None,
                        NetworkMode::Default | NetworkMode::Host => Network::Host,
                    },
                    pipes,
                    mounts: mounts.mounts.clone(),
                    output: crate::events::run_output(id),
                };
                let volumes: Vec<String> = step.state.volumes.iter().cloned().collect();
                if unobserved {
                    snapshotter.run_unobserved(root, &spec, &volumes)?;
                    return Ok(Changes::new());
                }
                changes.merge(snapshotter.run(root, &spec, &volumes)?);
                return Ok(changes);
            }
            StepKind::Copy(copy_step) => {
                let mut changes = Changes::new();
                if !copy_step.sources.is_empty() {
                    changes = self.copy(root, copy_step, built)?;
                }
                if !copy_step.contents.is_empty() {
                    changes.merge(self.copy_contents(root, copy_step, step)?);
                }
                changes
            }
        };
        if !changes.is_empty() {
            snapshotter.invalidate();
        }
        Ok(changes)
    }

    /// What `--single-snapshot`'s two scans leave out: ignored paths, and the stage's volumes
    /// when their writes could not be discarded, as each step would have left them out.
    fn single_snapshot_exclusions(&self, stage: &Stage) -> Vec<PathBuf> {
        let mut exclude = self.snapshots.ignore_paths.clone();
        if !self.snapshots.overlay_available {
            exclude.extend(stage.final_state().volumes.iter().map(PathBuf::from));
        }
        exclude
    }

    /// The host root each `from=` mount of `run_step` reads, by mount index: a stage's root
    /// filesystem, an image's (unpacked on first use) or the context's.
    fn mount_sources(
        &self,
        run_step: &RunStep,
        built: &dyn Progress<StageImage>,
    ) -> anyhow::Result<BTreeMap<usize, PathBuf>> {
        let mut sources = BTreeMap::new();
        for (index, from) in &run_step.mount_sources {
            let root = match from {
                CopyFrom::Context => self.context.root().path().to_path_buf(),
                CopyFrom::Stage(stage) => self.stage_root(*stage, built)?,
                CopyFrom::Image(reference) => self.image_root(reference)?,
            };
            sources.insert(*index, root);
        }
        Ok(sources)
    }

    /// Writes the `#!` script of a `RUN <<EOF` into the work area, for `/dev/pipes`.
    fn write_script(&self, run_step: &RunStep, step: &Step) -> anyhow::Result<Option<PathBuf>> {
        let Some(script) = &run_step.script else {
            return Ok(None);
        };
        let dir = self.work.join(format!("pipes-{}", step.line));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(&script.name);
        std::fs::write(&path, &script.data)
            .with_context(|| format!("writing the heredoc script {}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        Ok(Some(dir))
    }

    /// `COPY <<EOF /dest`: each heredoc becomes a file (mode 0644, as BuildKit's `Mkfile`)
    /// named after its delimiter in a scratch directory, copied like a context file.
    fn copy_contents(&self, root: &RootFs, step: &CopyStep, at: &Step) -> anyhow::Result<Changes> {
        let dir = self.work.join(format!("inline-{}-{}", at.line, at.column));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for file in &step.contents {
            let path = dir.join(&file.name);
            std::fs::write(&path, &file.data)
                .with_context(|| format!("writing the heredoc {}", path.display()))?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
        }
        let source = RootFs::open(&dir)?;
        let chown = step
            .chown
            .as_deref()
            .map(|spec| resolve_chown(root, spec))
            .transpose()?;
        let change = chmod_change(step);
        let options = CopyOptions {
            chown,
            chmod: exec_chmod(step, &change),
            ..CopyOptions::default()
        };
        let names: Vec<String> = step.contents.iter().map(|f| f.name.clone()).collect();
        let dest = if step.sources.is_empty() && names.len() == 1 {
            step.dest.clone()
        } else {
            format!("{}/", step.dest.trim_end_matches('/'))
        };
        Ok(copy(&source, &names, root, &dest, &options)?)
    }

    fn copy(
        &self,
        root: &RootFs,
        step: &CopyStep,
        built: &dyn Progress<StageImage>,
    ) -> anyhow::Result<Changes> {
        let chown = step
            .chown
            .as_deref()
            .map(|spec| resolve_chown(root, spec))
            .transpose()?;
        if step.clones() {
            let mut changes = Changes::new();
            let change = chmod_change(step);
            for repository in &step.sources {
                let checkout = self.downloads.checkout(step, repository)?;
                let source = RootFs::open(&checkout.root)?;
                let options = CopyOptions {
                    chown,
                    chmod: exec_chmod(step, &change),
                    ..CopyOptions::default()
                };
                let dest = format!("{}/", step.dest.trim_end_matches('/'));
                changes.merge(copy(&source, &[".".to_owned()], root, &dest, &options)?);
            }
            return Ok(changes);
        }
        if step.downloads() {
            // Copied like context files (never extracted, as Docker does for URLs).
            let (dir, names) = self.downloads.stage_sources(step, self.work)?;
            let source = RootFs::open(dir.path())?;
            let change = chmod_change(step);
            let options = CopyOptions {
                chown,
                chmod: exec_chmod(step, &change),
                ..CopyOptions::default()
            };
            return Ok(copy(&source, &names, root, &step.dest, &options)?);
        }
        if step.add && step.from == CopyFrom::Context {
            let kinds = self.archive_kinds(step)?;
            if kinds.iter().any(|(_, kind)| *kind != Kind::File) {
                return self.add_archives(root, step, kinds);
            }
        }
        let change = chmod_change(step);
        let chmod = exec_chmod(step, &change);
        let exclude = if step.excludes.is_empty() {
            None
        } else {
            let patterns = step.excludes.join("\n");
            Some(
                Dockerignore::parse(&patterns)
                    .with_context(|| format!("--exclude={}", step.excludes.join(" --exclude=")))?,
            )
        };
        let source_root;
        let (source, mut options) = match &step.from {
            CopyFrom::Context => (
                self.context.root(),
                CopyOptions {
                    chown,
                    chmod,
                    ignore: Some(self.context.ignore()),
                    ..CopyOptions::default()
                },
            ),
            CopyFrom::Stage(index) => {
                source_root = RootFs::open(&self.stage_root(*index, built)?)?;
                (&source_root, from_options(chown, chmod))
            }
            CopyFrom::Image(reference) => {
                let dir = self.image_root(reference)?;
                source_root = RootFs::open(&dir)?;
                (&source_root, from_options(chown, chmod))
            }
        };
        options.exclude = exclude.as_ref();
        options.parents = step.parents;
        // Heredoc files are copied into the same destination: it is a directory.
        let dest = if step.contents.is_empty() {
            step.dest.clone()
        } else {
            format!("{}/", step.dest.trim_end_matches('/'))
        };
        Ok(copy(source, &step.sources, root, &dest, &options)?)
    }

    /// The unpacked root filesystem of an external image `COPY --from` reads, unpacked on
    /// first use and shared by every stage (the lock makes concurrent stages wait for one
    /// unpacking rather than race).
    fn image_root(&self, reference: &str) -> anyhow::Result<PathBuf> {
        let mut roots = self
            .image_roots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(dir) = roots.get(reference) {
            return Ok(dir.clone());
        }
        let pulled = self
            .images
            .get(reference)
            .with_context(|| format!("image {reference} was not pulled"))?;
        let dir = self.work.join(format!("image-{}", roots.len()));
        create_rootfs(&dir)?;
        self.blobs.ensure_blocking(&pulled.layers)?;
        self.unpack(&dir, &pulled.layers)?;
        roots.insert(reference.to_owned(), dir.clone());
        Ok(dir)
    }

    /// Each context source of `step` with what kind of file it is.
    fn archive_kinds(&self, step: &CopyStep) -> anyhow::Result<Vec<(PathBuf, Kind)>> {
        let context = self.context.root();
        let sources = expand(context, &step.sources, Some(self.context.ignore()))?;
        sources
            .into_iter()
            .map(|source| {
                let regular = source.stat.st_mode & 0o170000 == 0o100000;
                let kind = if regular {
                    let mut file = context
                        .open_file(&source.path)
                        .with_context(|| format!("opening {}", source.path.display()))?;
                    detect(&mut file)
                        .with_context(|| format!("reading {}", source.path.display()))?
                } else {
                    Kind::File
                };
                Ok((source.path, kind))
            })
            .collect()
    }

    /// `ADD archive.tar.gz /dest/`: extracts each archive into the destination. A mix of
    /// archives and plain files in one instruction is refused rather than half-honoured.
    fn add_archives(
        &self,
        root: &RootFs,
        step: &CopyStep,
        kinds: Vec<(PathBuf, Kind)>,
    ) -> anyhow::Result<Changes> {
        if kinds.iter().any(|(_, kind)| *kind == Kind::File) {
            bail!(
                "ADD mixes local archives with other sources, which kiln does not support yet: split it into one ADD per archive and a COPY for the rest"
            );
        }
        if step.chown.is_some() || step.chmod.is_some() {
            bail!(
                "ADD --chown/--chmod with a local archive is not supported yet: the archive's own owners and modes would be kept"
            );
        }
        let mut changes = Changes::new();
        for (path, kind) in kinds {
            let Kind::Tar(format) = kind else {
                continue;
            };
            tracing::info!("Extracting {} into {}", path.display(), step.dest);
            changes.merge(extract(
                self.context.root(),
                &path,
                format,
                root,
                &step.dest,
            )?);
        }
        Ok(changes)
    }

    /// Applies layers from the store, in order, onto an empty root filesystem, decompressing
    /// ahead of the writes (`exec::unpack::apply_layers`).
    fn unpack(&self, rootfs: &Path, layers: &[Layer]) -> anyhow::Result<()> {
        let root = RootFs::open(rootfs)?;
        let none = IgnoreList::default();
        let ignore = match self.roots {
            Roots::Own(ignore) if rootfs == Path::new("/") => ignore,
            _ => &none,
        };
        let mut streams = Vec::with_capacity(layers.len());
        for layer in layers {
            let path = self.store.blob_path(&layer.digest);
            let file = File::open(&path)
                .with_context(|| format!("layer {} is missing from the store", layer.digest))?;
            let compression = Compression::from_media_type(&layer.media_type)?;
            streams.push(LayerStream {
                label: layer.digest.to_string(),
                tar: decompress(compression, BufReader::with_capacity(1 << 20, file))?,
            });
        }
        apply_layers_except(&root, streams, ignore)?;
        Ok(())
    }

    /// Writes `changes` as a layer into the store, compressed and timestamped as the flags say.
    fn snapshot(
        &self,
        root: &RootFs,
        id: crate::events::StepId,
        changes: &Changes,
    ) -> anyhow::Result<Layer> {
        let options = &self.layers;
        let sink = crate::events::SnapshotProgress::new(id, self.store.writer()?);
        let written = write_layer(root, changes, options, sink)?;
        let blob = written.sink.into_inner().commit()?;
        tracing::debug!(
            "layer {} ({} bytes, {} uncompressed, {:?})",
            blob.digest,
            blob.size,
            written.uncompressed_size,
            options.compression
        );
        Ok(Layer {
            digest: blob.digest,
            size: blob.size,
            diff_id: written.diff_id,
            media_type: options.compression.oci_layer_media_type().to_owned(),
        })
    }

    fn file(&self) -> &str {
        self.dockerfile
    }
}

fn from_options(chown: Option<(u32, u32)>, chmod: Option<Chmod<'_>>) -> CopyOptions<'_> {
    CopyOptions {
        chown,
        chmod,
        preserve_owner: true,
        ..CopyOptions::default()
    }
}

/// A step's symbolic `--chmod` as the function exec applies to each source mode (and whether
/// the entry is a directory, for `X`).
fn chmod_change(step: &CopyStep) -> impl Fn(u32, bool) -> u32 + Sync + '_ {
    move |mode, is_dir| step.chmod.as_ref().map_or(mode, |c| c.apply(mode, is_dir))
}

/// A step's `--chmod` in exec's terms: octal as bits, symbolic through `change`.
fn exec_chmod<'a>(
    step: &CopyStep,
    change: &'a (dyn Fn(u32, bool) -> u32 + Sync),
) -> Option<Chmod<'a>> {
    match step.chmod.as_ref()? {
        kiln_graph::Chmod::Octal(mode) => Some(Chmod::Set(*mode)),
        kiln_graph::Chmod::Symbolic(_) => Some(Chmod::Change(change)),
    }
}

/// Config platform fields for a stage built `FROM scratch`: the stage's platform.
fn platform_fields(platform: &kiln_graph::Platform) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(
        "architecture".into(),
        Value::from(platform.architecture.clone()),
    );
    map.insert("os".into(), Value::from(platform.os.clone()));
    if let Some(variant) = &platform.variant {
        map.insert("variant".into(), Value::from(variant.clone()));
    }
    map
}

fn stage_label(stage: &Stage) -> String {
    match &stage.name {
        Some(name) => format!("stage {name}"),
        None => format!("stage {}", stage.dockerfile_index),
    }
}

/// An empty root filesystem directory with the mode `/` has in images.
fn create_rootfs(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", path.display()))
}
