//! One build, end to end: Dockerfile -> plan with node keys -> base images pulled -> stages
//! executed into layers -> image config and manifest -> outputs and pushes.
//!
//! Nothing is written to any destination (registry, tarball, layout, digest files) until the
//! whole image exists in the store, so a failed build leaves every destination as it was.

pub(crate) mod bases;
pub(crate) mod blobs;
mod cache_dir;
pub(crate) mod compat;
pub(crate) mod contexts;
pub(crate) mod downloads;
mod git;
pub(crate) mod isolation;
pub(crate) mod keys;
pub(crate) mod loaded;
mod mounts;
pub(crate) mod references;
mod schedule;
mod secrets;
pub(crate) mod settings;
mod stage;
mod work;

pub use blobs::Blobs;
pub use settings::Settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use kiln_cas::Store;
use kiln_cas::export::StoredImage;
use kiln_exec::run::Isolation;
use kiln_exec::snapshot::ScanMode;
use kiln_exec::snapshotter::Strategy;
use kiln_registry::{Client, Reference};
use oci_spec::image::Digest;

use crate::args::BuildOptions;
use crate::cache::{Cache, RemoteCache, Scope};
use crate::image::config::{NewConfig, render};
use crate::image::format::ImageFormat;
use crate::image::{Layer, manifest};
use crate::output;
use work::WorkDir;

/// Runs `kiln build`.
pub async fn run(options: BuildOptions) -> anyhow::Result<()> {
    let mut settings = Settings::new(options)?;
    let cache_dir::CacheDirs { store, writable } = cache_dir::CacheDirs::open(&settings.cache_dir)?;
    cache_dir::keep_out_of_layers(&mut settings, &writable);
    let client =
        Client::new(settings.registry.clone()).context("setting up the registry client")?;
    if settings.check_push_access {
        check_push_access(&client, &settings.destinations).await?;
    }

    let mut loaded =
        loaded::LoadedBuild::load(&settings, &client, &store, &writable.join("contexts")).await?;
    refuse_unsupported(&loaded.plan, &loaded.label, settings.isolation.mode)?;
    // Where each base layer can be mounted from (the image as named) and downloaded from
    // (the mirror that served it).
    let base_layers = |repository: fn(&bases::PulledImage) -> &Reference| {
        loaded
            .images
            .values()
            .flat_map(|image| {
                image
                    .layers
                    .iter()
                    .map(move |layer| (layer.digest.clone(), repository(image).clone()))
            })
            .collect::<HashMap<Digest, Reference>>()
    };
    let mountable = base_layers(|image| &image.resolved.reference);
    let downloadable = base_layers(|image| &image.resolved.source);

    let work = WorkDir::create(&writable)?;
    // Before keys: an ADD <url> step's key holds what was downloaded.
    let downloads = downloads::Downloads::fetch(
        &client,
        &loaded.plan,
        &work.path().join("downloads"),
        &loaded.label,
    )
    .await?;

    let mut cache = Cache::open(&settings.cache, &settings.cache_dir, &client)?;
    let scopes: Vec<Scope> = loaded
        .plan
        .build_order()
        .into_iter()
        .map(|index| crate::cache::scope(&loaded.scope_file, &loaded.plan.stages[index]))
        .collect();
    cache.fetch_remote(&scopes).await?;
    if let Some(remote) = cache.remote() {
        if settings.cache.push && settings.check_push_access {
            // Before anything runs: a build whose cache cannot be written would fail at the end.
            remote.check_access().await.context(
                "pass --no-push-cache to build without updating the cache, or --cache-repo to choose another",
            )?;
        }
        // Base layers the cache records name can be mounted from the base image's repository.
        for (digest, repository) in &mountable {
            remote.add_mount_source(digest, repository);
        }
    }
    let cache = Arc::new(cache);

    // Hashing the context for node keys reads files: blocking work.
    let (loaded, downloads) = {
        let cache = Arc::clone(&cache);
        let _blocking = crate::interrupt::BlockingPhase::enter();
        tokio::task::spawn_blocking(move || {
            loaded
                .assign_keys(&cache, &downloads)
                .map(|()| (loaded, downloads))
        })
        .await
        .context("the key thread failed")??
    };
    log_keys(&loaded.plan, &loaded.label);
    // What `kiln cache explain` compares against later, recorded once the build succeeded.
    let sites = if cache.enabled() {
        crate::cache::explain::sites(&loaded, &settings.layers)?
    } else {
        Vec::new()
    };
    loaded.file_hashes.log_summary();
    let file_hashes = loaded.settled_file_hashes();
    let label = loaded.label.clone();
    let scope_file = loaded.scope_file.clone();

    crate::events::reasons::announce(&crate::events::reasons::Announce {
        build: &loaded,
        layers: &settings.layers,
        cache: cache.as_ref(),
        cache_dir: &settings.cache_dir,
        store: &store,
        ttl: settings.cache.ttl,
    });
    let layers = settings.layers;
    let mut cache = Arc::into_inner(cache).context("the key thread kept the cache")?;
    if cache.enabled() {
        cache.probe(&probe_keys(&loaded.plan, &cache, &layers), &store)?;
    }
    let cache = Arc::new(cache);
    let blobs = Blobs::new(
        client.clone(),
        store.clone(),
        cache.remote().cloned(),
        downloadable,
    );

    let snapshots = snapshot_plan(&settings.snapshot, work.path(), settings.isolation.mode)?;
    let roots = match settings.isolation.mode {
        Isolation::Chroot => stage::Roots::PerStage,
        Isolation::None => stage::Roots::Own(settings.isolation.ignore.clone()),
    };
    if settings.isolation.pre_cleanup {
        reset_own_root(&roots, "--pre-cleanup")?;
    }

    let created_at = match settings.epoch {
        Some(epoch) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch),
        None => std::time::SystemTime::now(),
    };
    let created = humantime::format_rfc3339_seconds(created_at).to_string();
    let built = {
        let store = store.clone();
        let work_dir = work.path().to_path_buf();
        let cache_dir = writable.clone();
        let secrets = settings.secrets.clone();
        let created = created.clone();
        let jobs = settings.jobs;
        let cache = Arc::clone(&cache);
        let blobs = blobs.clone();
        let label = label.clone();
        let roots = roots.clone();
        let _blocking = crate::interrupt::BlockingPhase::enter();
        tokio::task::spawn_blocking(move || {
            stage::Executor {
                plan: &loaded.plan,
                store: &store,
                context: &loaded.context,
                images: &loaded.images,
                downloads: &downloads,
                work: &work_dir,
                created,
                dockerfile: &label,
                jobs,
                image_roots: Mutex::default(),
                snapshots: &snapshots,
                layers,
                roots: &roots,
                mounts: &mounts::MountInputs {
                    cache_dir: &cache_dir,
                    context: &loaded.context,
                    secrets: &secrets,
                    work: &work_dir,
                    overlay_available: snapshots.overlay_available,
                },
                cache: &cache,
                blobs: &blobs,
                scope_file: &scope_file,
                stage_views: Mutex::default(),
            }
            .run()
        })
        .await
        .context("the build thread failed")??
    };

    if crate::interrupt::requested() {
        anyhow::bail!("interrupted: nothing was written to any destination");
    }
    let mut state = built.state;
    for (key, value) in &settings.labels {
        state.labels.insert(key.clone(), value.clone());
    }
    let image = store_image(
        &store,
        settings.image_format,
        &settings.annotations,
        &built.layers,
        &NewConfig {
            state: &state,
            platform: &built.platform,
            diff_ids: built.layers.iter().map(|l| l.diff_id.clone()).collect(),
            history: built.history,
            created: &created,
        },
    )?;
    crate::events::emit(crate::events::Event::Built {
        manifest: image.manifest.as_ref(),
        config: image.config.as_ref(),
    });
    cache.touch(
        built
            .layers
            .iter()
            .map(|layer| &layer.digest)
            .chain([&image.config, &image.manifest]),
    )?;

    crate::cache::explain::record(&settings.cache_dir, &sites, &file_hashes)?;
    // Root filesystems are slow to delete: hand them to the background sweeper now.
    drop(work);
    // The cache first: a destination is only written once everything before it succeeded.
    cache.publish(&store).await?;
    let mut sources = output::MountSources::new(mountable);
    if let Some(repo) = cache.remote().and_then(RemoteCache::mount_source) {
        for layer in &built.layers {
            sources.add(layer.digest.clone(), repo);
        }
    }
    let missing = output::Missing {
        blobs: &blobs,
        layers: &built.layers,
    };
    output::write_all(&settings, &client, &store, &image, sources, missing).await?;
    if settings.isolation.cleanup {
        reset_own_root(&roots, "--cleanup")?;
    }
    Ok(())
}

/// `--pre-cleanup` / `--cleanup`: empties kiln's own root but for the ignore list; nothing to do
/// in the sandbox, whose root filesystems are always deleted.
fn reset_own_root(roots: &stage::Roots, flag: &str) -> anyhow::Result<()> {
    let stage::Roots::Own(ignore) = roots else {
        tracing::debug!("{flag}: nothing to clean with --isolation=chroot");
        return Ok(());
    };
    tracing::info!("{flag}: deleting the files in / outside the ignore list");
    let root = kiln_exec::RootFs::open(std::path::Path::new("/")).context("opening /")?;
    ignore
        .reset(&root)
        .with_context(|| format!("{flag}: cleaning /"))
}

/// Every key the build may look up: each cacheable step of each stage the target needs.
fn probe_keys(
    plan: &kiln_graph::Plan,
    cache: &Cache,
    layers: &kiln_exec::layer::LayerOptions,
) -> Vec<[u8; 32]> {
    plan.build_order()
        .into_iter()
        .flat_map(|index| &plan.stages[index].steps)
        .filter(|step| cache.cacheable(&step.kind))
        .filter_map(|step| step.key.as_ref())
        .map(|key| crate::cache::cache_key(key, layers))
        .collect()
}

/// The Dockerfile's path relative to the context (its file name when it lives elsewhere): the
/// part of a cache scope that is the same on every machine and checkout.
pub(crate) fn scope_file(dockerfile: &std::path::Path, context: &std::path::Path) -> String {
    dockerfile
        .strip_prefix(context)
        .ok()
        .or_else(|| dockerfile.file_name().map(std::path::Path::new))
        .unwrap_or(dockerfile)
        .display()
        .to_string()
}

/// Fails before anything is pulled or run when a destination would refuse the push
/// (Kaniko's `CheckPushPermissions`), so a long build is not wasted.
async fn check_push_access(client: &Client, destinations: &[Reference]) -> anyhow::Result<()> {
    for destination in destinations {
        client.check_push_access(destination).await.with_context(|| {
            format!(
                "cannot push to {destination} (pass --skip-push-permission-check to build anyway)"
            )
        })?;
    }
    Ok(())
}

/// Decides the snapshot strategy: probes overlayfs once, where the root filesystems will live.
fn snapshot_plan(
    settings: &settings::SnapshotSettings,
    work: &std::path::Path,
    isolation: Isolation,
) -> anyhow::Result<stage::Snapshots> {
    if isolation == Isolation::None {
        if settings.strategy == Some(Strategy::Overlay) {
            anyhow::bail!(
                "--snapshot-strategy overlay needs --isolation=chroot: nothing can be mounted over the container's own root"
            );
        }
        // Kaniko's model: a walk of `/` before and after each RUN, the ignore list left out.
        return Ok(stage::Snapshots {
            strategy: Strategy::Scan(settings.mode),
            overlay_available: false,
            mode: settings.mode,
            single_snapshot: settings.single_snapshot,
            ignore_paths: settings.ignore_paths.clone(),
        });
    }
    let probe = kiln_exec::overlay::probe(work);
    let strategy = match (settings.strategy, &probe) {
        (Some(Strategy::Overlay), Err(err)) => {
            anyhow::bail!("--snapshot-strategy overlay: {err}")
        }
        (Some(strategy), _) => strategy,
        (None, Ok(())) if settings.mode == ScanMode::Redo => Strategy::Overlay,
        (None, _) => Strategy::Scan(settings.mode),
    };
    if let Err(err) = &probe {
        tracing::info!("Snapshots scan the filesystem: {err}");
    }
    tracing::debug!("snapshot strategy {strategy:?}");
    Ok(stage::Snapshots {
        strategy,
        overlay_available: probe.is_ok(),
        mode: settings.mode,
        single_snapshot: settings.single_snapshot,
        ignore_paths: settings.ignore_paths.clone(),
    })
}

/// Why kiln cannot execute `mount`, if it cannot.
fn unsupported_mount(mount: &kiln_graph::Mount) -> Option<String> {
    use kiln_graph::Mount;
    match mount {
        Mount::Ssh { .. } => Some(format!(
            "RUN --mount={mount} is not supported: kiln does not forward SSH agents; fetch private sources with a secret mount instead"
        )),
        _ => None,
    }
}

/// Refuses, before anything runs, what a plan asks for that kiln cannot honour yet: SSH RUN
/// mounts, `--security=insecure`, and RUN for a platform other than the host's.
fn refuse_unsupported(
    plan: &kiln_graph::Plan,
    dockerfile: &str,
    isolation: Isolation,
) -> anyhow::Result<()> {
    let host = settings::host_platform();
    for stage in &plan.stages {
        let target = &stage.platform;
        for step in &stage.steps {
            let kiln_graph::StepKind::Run(run) = &step.kind else {
                continue;
            };
            let at = format!("{dockerfile}:{}:{}", step.line, step.column);
            if let Some(reason) = run.mounts.iter().find_map(unsupported_mount) {
                anyhow::bail!("{at}: {reason}\n    {} | {}", step.line, step.text);
            }
            if isolation == Isolation::None
                && (!run.mounts.is_empty() || run.network == kiln_graph::NetworkMode::None)
            {
                anyhow::bail!(
                    "{at}: RUN --mount and --network=none need the RUN sandbox, which --isolation=none does not have (use --isolation=chroot where namespaces can be created)\n    {} | {}",
                    step.line,
                    step.text
                );
            }
            if run.security == kiln_graph::SecurityMode::Insecure {
                anyhow::bail!(
                    "{at}: RUN --security=insecure is refused: kiln runs every command in its sandbox and grants no extra privileges\n    {} | {}",
                    step.line,
                    step.text
                );
            }
            if !host.matches(target) {
                anyhow::bail!(
                    "{at}: RUN cannot execute for the stage's platform {target} on a {host} host: kiln does not emulate other platforms (FROM --platform=$BUILDPLATFORM runs a stage natively)\n    {} | {}",
                    step.line,
                    step.text
                );
            }
        }
    }
    Ok(())
}

/// Logs every step's node key, for `--verbosity debug`.
fn log_keys(plan: &kiln_graph::Plan, dockerfile: &str) {
    for stage in &plan.stages {
        for step in &stage.steps {
            if let Some(key) = &step.key {
                tracing::debug!("key {key} for {dockerfile}:{} {}", step.line, step.text);
            }
        }
    }
}

/// Writes the config and manifest into the store.
fn store_image(
    store: &Store,
    format: ImageFormat,
    annotations: &[(String, String)],
    layers: &[Layer],
    config: &NewConfig<'_>,
) -> anyhow::Result<StoredImage> {
    let config_bytes = render(config)?;
    let config_blob = store.put(&config_bytes)?;
    let manifest_bytes = manifest::render(
        format,
        config_blob.digest.as_ref(),
        config_blob.size,
        layers,
        annotations,
    )?;
    let manifest_blob = store.put(&manifest_bytes)?;
    Ok(StoredImage {
        manifest: manifest_blob.digest,
        manifest_size: manifest_blob.size,
        manifest_media_type: format.manifest_media_type().to_owned(),
        config: config_blob.digest,
        layers: layers.iter().map(|layer| layer.digest.clone()).collect(),
    })
}
