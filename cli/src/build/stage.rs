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
use kiln_cas::Store;
use kiln_exec::archive::{Kind, detect, extract};
use kiln_exec::compression::{Compression, decompress};
use kiln_exec::context::BuildContext;
use kiln_exec::copy::{Chmod, CopyOptions, copy};
use kiln_exec::dockerignore::Dockerignore;
use kiln_exec::layer::{LayerOptions, write_layer};
use kiln_exec::run::{Network, RunSpec};
use kiln_exec::snapshot::{ScanMode, Snapshot};
use kiln_exec::snapshotter::{Snapshotter, Strategy};
use kiln_exec::sources::expand;
use kiln_exec::unpack::{LayerStream, apply_layers};
use kiln_exec::users::{resolve_chown, resolve_user};
use kiln_exec::workdir::ensure_workdir;
use kiln_exec::{Changes, RootFs};
use kiln_graph::{
    BaseRef, CopyFrom, CopyStep, ImageState, NetworkMode, Plan, RunStep, Stage, Step, StepKind,
};
use serde_json::{Map, Value};

use super::bases::PulledImage;
use super::schedule::{self, Node, Progress};
use crate::image::Layer;
use crate::image::config::history_entry;

/// The image a stage produced, and its root filesystem while later stages may need it.
#[derive(Debug, Clone)]
pub struct StageImage {
    /// The stage's root filesystem.
    pub rootfs: PathBuf,
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
        let rootfs = self.work.join(format!("stage-{}", stage.index));
        let mut image = self.prepare(stage, &rootfs, built).with_context(|| {
            format!(
                "{}:{}: preparing {}",
                self.file(),
                stage.line,
                stage_label(stage)
            )
        })?;
        let root = RootFs::open(&rootfs)
            .with_context(|| format!("opening the root filesystem {}", rootfs.display()))?;
        let in_stage = if self.plan.stages.len() > 1 {
            format!(" ({})", stage_label(stage))
        } else {
            String::new()
        };
        let mut snapshotter = Snapshotter::new(
            self.snapshots.strategy,
            &self.snapshots.ignore_paths,
            self.snapshots.overlay_available,
            self.work.join(format!("stage-{}.snapshot", stage.index)),
        );
        // `--single-snapshot`: one scan now, one after the last step, one layer (Kaniko's).
        let single_exclude = self.single_snapshot_exclusions(stage);
        let single = if self.snapshots.single_snapshot {
            Some(Snapshot::scan_with(
                root.path(),
                self.snapshots.mode,
                &single_exclude,
            )?)
        } else {
            None
        };
        let mut deferred_history = Vec::new();
        for step in &stage.steps {
            if crate::interrupt::requested() {
                anyhow::bail!("interrupted before {}", step.text);
            }
            tracing::info!("{}{in_stage}", step.text);
            let at = || format!("{}:{}: {}{in_stage}", self.file(), step.line, step.text);
            let mut changes = self
                .apply(&root, step, built, &mut snapshotter, single.is_some())
                .with_context(at)?;
            if !step.in_history {
                continue;
            }
            if single.is_some() {
                deferred_history.push(step.created_by.as_str());
                continue;
            }
            snapshotter.filter(&mut changes);
            let makes_layer = !matches!(step.kind, StepKind::Config) && !changes.is_empty();
            if makes_layer {
                let layer = self
                    .snapshot(&root, &changes)
                    .with_context(|| format!("snapshotting {}", at()))?;
                image.layers.push(layer);
            }
            image
                .history
                .push(history_entry(&self.created, &step.created_by, !makes_layer));
        }
        if let Some(before) = single {
            let snapshotting = || format!("snapshotting {}", stage_label(stage));
            let after = Snapshot::scan_with(root.path(), self.snapshots.mode, &single_exclude)
                .with_context(snapshotting)?;
            let mut changes = before.diff(&after);
            snapshotter.filter(&mut changes);
            let layer = if changes.is_empty() {
                None
            } else {
                Some(self.snapshot(&root, &changes).with_context(snapshotting)?)
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
        }
        image.state = stage.final_state().clone();
        Ok(image)
    }

    /// Creates the stage's root filesystem from its base and returns the image it starts as.
    fn prepare(
        &self,
        stage: &Stage,
        rootfs: &Path,
        built: &dyn Progress<StageImage>,
    ) -> anyhow::Result<StageImage> {
        let rootfs = rootfs.to_path_buf();
        let image = match &stage.base {
            BaseRef::Scratch => {
                create_rootfs(&rootfs)?;
                StageImage {
                    rootfs: rootfs.clone(),
                    layers: Vec::new(),
                    history: Vec::new(),
                    platform: platform_fields(&stage.platform),
                    state: stage.base_state.clone(),
                }
            }
            BaseRef::Image(reference) => {
                let pulled = self
                    .images
                    .get(reference)
                    .with_context(|| format!("base image {reference} was not pulled"))?;
                create_rootfs(&rootfs)?;
                tracing::info!("Unpacking rootfs of {reference}");
                self.unpack(&rootfs, &pulled.layers)?;
                StageImage {
                    rootfs: rootfs.clone(),
                    layers: pulled.layers.clone(),
                    history: pulled.config.history.clone(),
                    platform: pulled.config.platform.clone(),
                    state: stage.base_state.clone(),
                }
            }
            BaseRef::Stage(parent) => {
                let needed_later = self.stage_needed_by(*parent, stage, built);
                let source = built
                    .output(*parent)
                    .with_context(|| format!("stage {parent} was not built"))?;
                if needed_later {
                    create_rootfs(&rootfs)?;
                    self.unpack(&rootfs, &source.layers)?;
                } else {
                    // Nobody else reads the parent's tree: take it over instead of rebuilding it.
                    std::fs::rename(&source.rootfs, &rootfs).with_context(|| {
                        format!("moving {} to {}", source.rootfs.display(), rootfs.display())
                    })?;
                }
                StageImage {
                    rootfs: rootfs.clone(),
                    state: stage.base_state.clone(),
                    ..source
                }
            }
        };
        Ok(image)
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
                CopyFrom::Stage(stage) => {
                    built
                        .output(*stage)
                        .with_context(|| format!("stage {stage} was not built"))?
                        .rootfs
                }
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
                let stage = built
                    .output(*index)
                    .with_context(|| format!("stage {index} was not built"))?;
                source_root = RootFs::open(&stage.rootfs)?;
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
        apply_layers(&root, streams)?;
        Ok(())
    }

    /// Writes `changes` as a layer into the store, compressed and timestamped as the flags say.
    fn snapshot(&self, root: &RootFs, changes: &Changes) -> anyhow::Result<Layer> {
        let options = &self.layers;
        let written = write_layer(root, changes, options, self.store.writer()?)?;
        let blob = written.sink.commit()?;
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

/// A step's symbolic `--chmod` as the function exec applies to each source mode.
fn chmod_change(step: &CopyStep) -> impl Fn(u32) -> u32 + Sync + '_ {
    move |mode| step.chmod.as_ref().map_or(mode, |c| c.apply(mode, false))
}

/// A step's `--chmod` in exec's terms: octal as bits, symbolic through `change`.
fn exec_chmod<'a>(step: &CopyStep, change: &'a (dyn Fn(u32) -> u32 + Sync)) -> Option<Chmod<'a>> {
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
