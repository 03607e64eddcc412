//! A build loaded and planned but not run: what `kiln build` executes and `kiln cache explain`
//! judges, set up the same way for both so that explain sees exactly the keys a build would.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use kiln_cas::Store;
use kiln_exec::context::BuildContext;
use kiln_graph::{Plan, PlanOptions, Planner};
use kiln_registry::Client;

use super::bases::{self, PulledImage};
use super::contexts::{self, ContextSource, Materialized};
use super::downloads::Downloads;
use super::keys;
use super::settings::{self, Settings};
use crate::cache::Cache;
use crate::cache::file_hashes::FileHashes;

/// The Dockerfile, context, base images and plan of one build.
#[derive(Debug)]
pub struct LoadedBuild {
    /// The context directory: an unpacked archive or checkout lives as long as this.
    _materialized: Materialized,
    /// The Dockerfile as messages name it.
    pub label: String,
    /// The Dockerfile's path relative to the context: cache scopes and explain sites.
    pub scope_file: String,
    /// The opened context, hashing through [`LoadedBuild::file_hashes`].
    pub context: BuildContext,
    /// Base and `--from` images by reference: manifests and configs, no layers.
    pub images: BTreeMap<String, PulledImage>,
    /// The plan; keys once [`LoadedBuild::assign_keys`] ran.
    pub plan: Plan,
    /// Context file hashes by identity.
    pub file_hashes: Arc<FileHashes>,
    /// Whether the context is a directory of the user's (not unpacked for this build), whose
    /// file identities are worth looking up in the cache index.
    persistent_context: bool,
}

impl LoadedBuild {
    /// Materializes the context (unpacked under `contexts_dir` when it is not a directory),
    /// parses the Dockerfile, resolves its images (from `store` when fresh there, else the
    /// registry) and plans the build.
    pub async fn load(
        settings: &Settings,
        client: &Client,
        store: &Store,
        contexts_dir: &Path,
    ) -> anyhow::Result<LoadedBuild> {
        let materialized = contexts::materialize(
            &settings.context,
            settings.context_sub_path.as_deref(),
            client,
            contexts_dir,
        )
        .await?;
        let context_dir = &materialized.dir;
        let dockerfile_file = settings::dockerfile_path(&settings.dockerfile, context_dir)?;
        let label = dockerfile_file.display().to_string();
        let text = std::fs::read_to_string(&dockerfile_file)
            .with_context(|| format!("reading {label}"))?;
        let dockerfile = kiln_graph::parse(&text, &label)?;
        let planner = Planner::new(
            &dockerfile,
            PlanOptions {
                build_args: settings.build_args.clone(),
                target: settings.target.clone(),
                platform: settings.platform.clone(),
                build_platform: settings::host_platform(),
            },
        )?;
        let file_hashes = Arc::new(FileHashes::default());
        let context = BuildContext::open(context_dir, Some(&dockerfile_file))
            .with_context(|| format!("opening the build context {}", context_dir.display()))?
            .with_memo(file_hashes.clone());
        let images =
            bases::resolve_all(client, store, settings.cache.ttl, &planner.image_pulls()).await?;
        let states: BTreeMap<String, kiln_graph::ImageState> = images
            .iter()
            .map(|(name, image)| (name.clone(), image.config.state.clone()))
            .collect();
        let plan = planner.plan(&states)?;
        let scope_file = super::scope_file(&dockerfile_file, context_dir);
        Ok(LoadedBuild {
            persistent_context: matches!(settings.context, ContextSource::Dir(_)),
            _materialized: materialized,
            label,
            scope_file,
            context,
            images,
            plan,
            file_hashes,
        })
    }

    /// Assigns every node key. Reads the context files COPY steps select (blocking work),
    /// except those whose identity `cache`'s index vouches for, looked up in one session.
    pub fn assign_keys(&mut self, cache: &Cache, downloads: &Downloads) -> anyhow::Result<()> {
        if self.persistent_context
            && let Some(index) = cache.index()
        {
            self.file_hashes.preload(index, &self.context, &self.plan)?;
        }
        self.plan.assign_keys(&keys::Inputs {
            images: &self.images,
            context: &self.context,
            cache: Some(cache),
            downloads,
        })?;
        Ok(())
    }

    /// Context file hashes the next build may trust, for the index (none for a context that
    /// was unpacked for this build: its identities never come back).
    pub fn settled_file_hashes(&self) -> Vec<(kiln_cas::FileIdentity, [u8; 32])> {
        if self.persistent_context {
            self.file_hashes.settled()
        } else {
            Vec::new()
        }
    }
}
