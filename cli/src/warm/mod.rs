//! `kiln warm`: fills the cache directory with base images before builds need them (Kaniko's
//! `/kaniko/warmer`), so builds pointed at that directory start without asking a registry.
//!
//! Warmers may share a directory (a volume several CI jobs mount): blobs land by rename, the
//! store's `index.json` is updated under a lock, and index records are written in locked
//! sessions, so concurrent warmers of the same or different images all succeed. As Kaniko's,
//! the warmer fails only when every image failed.

pub mod stored;

use std::time::Duration;

use anyhow::{Context as _, bail};
use kiln_cas::Store;
use kiln_cas::index::Index;
use kiln_registry::{Client, ClientOptions, Platform, Reference, RetryPolicy};

use crate::args::{PullRegistryArgs, WarmArgs};
use crate::build::settings;

/// One image to warm.
#[derive(Debug, Clone)]
struct Wanted {
    reference: Reference,
    platform: Platform,
}

/// Runs `kiln warm`.
pub async fn run(args: WarmArgs) -> anyhow::Result<()> {
    let cache_dir = match &args.cache_dir {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("--cache-dir {}", dir.display()))?
        }
        None => settings::default_cache_dir()?,
    };
    let platform = settings::target_platform(args.custom_platform.as_deref())?;
    let platform = Platform {
        os: platform.os,
        architecture: platform.architecture,
        variant: platform.variant,
    };
    let wanted = wanted_images(&args, &platform)?;
    if wanted.is_empty() {
        bail!("nothing to warm: name images with --image, or a Dockerfile with --dockerfile");
    }
    let store = Store::open(&cache_dir.join("store"))
        .with_context(|| format!("opening the store in {}", cache_dir.display()))?;
    let index = Index::open(&cache_dir.join("index"))
        .with_context(|| format!("opening the cache index in {}", cache_dir.display()))?;
    if index.is_read_only() {
        bail!(
            "the cache directory {} is read-only: the warmer must be able to write it",
            cache_dir.display()
        );
    }
    let client =
        Client::new(client_options(&args.registry)?).context("setting up the registry client")?;
    let warmer = Warmer {
        client: &client,
        store: &store,
        index: &index,
        ttl: args.cache_ttl,
        force: args.force,
    };
    let results =
        futures_util::future::join_all(wanted.iter().map(|image| warmer.warm(image))).await;
    let mut failures = Vec::new();
    for (image, result) in wanted.iter().zip(results) {
        if let Err(err) = result {
            let message = format!(
                "{:#}",
                err.context(format!("cannot warm {}", image.reference))
            );
            tracing::warn!("{message}");
            failures.push(message);
        }
    }
    if failures.len() == wanted.len() {
        bail!("no image could be warmed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

/// `--image`s, then the bases of `--dockerfile`, each once.
fn wanted_images(args: &WarmArgs, platform: &Platform) -> anyhow::Result<Vec<Wanted>> {
    let mut wanted: Vec<Wanted> = Vec::new();
    for name in &args.images {
        let reference = name
            .parse()
            .with_context(|| format!("--image {name:?} is not a valid image name"))?;
        wanted.push(Wanted {
            reference,
            platform: platform.clone(),
        });
    }
    if let Some(path) = &args.dockerfile {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {label}"))?;
        let dockerfile = kiln_graph::parse(&text, &label)?;
        let build_args = args
            .build_args
            .iter()
            .map(|arg| settings::build_arg(arg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let planner = kiln_graph::Planner::new(
            &dockerfile,
            kiln_graph::PlanOptions {
                build_args,
                target: None,
                platform: kiln_graph::Platform {
                    os: platform.os.clone(),
                    architecture: platform.architecture.clone(),
                    variant: platform.variant.clone(),
                },
                build_platform: settings::host_platform(),
            },
        )?;
        for pull in planner.image_pulls() {
            let reference = pull.reference.parse().with_context(|| {
                format!("{label}: {:?} is not a valid image name", pull.reference)
            })?;
            wanted.push(Wanted {
                reference,
                platform: Platform {
                    os: pull.platform.os,
                    architecture: pull.platform.architecture,
                    variant: pull.platform.variant,
                },
            });
        }
    }
    let mut unique: Vec<Wanted> = Vec::new();
    for image in wanted {
        let seen = unique
            .iter()
            .any(|other| other.reference == image.reference && other.platform == image.platform);
        if !seen {
            unique.push(image);
        }
    }
    Ok(unique)
}

/// The pull flags as registry client settings.
fn client_options(flags: &PullRegistryArgs) -> anyhow::Result<ClientOptions> {
    let registry_maps =
        settings::registry_maps(&flags.registry_maps, &flags.registry_mirrors, |name| {
            std::env::var(name).ok()
        })?;
    Ok(ClientOptions {
        insecure_pull: flags.insecure_pull,
        insecure_registries: flags.insecure_registries.clone(),
        skip_tls_verify_pull: flags.skip_tls_verify_pull,
        skip_tls_verify_registries: flags.skip_tls_verify_registries.clone(),
        registry_certificates: flags.registry_certificates.clone(),
        client_certificates: flags.registry_client_certs.clone(),
        registry_maps,
        skip_default_registry_fallback: flags.skip_default_registry_fallback,
        user_agent: format!("kiln/{}", env!("CARGO_PKG_VERSION")),
        pull_retry: RetryPolicy::with_retries(flags.image_download_retry),
        progress: Some(crate::progress::renderer()),
        ..ClientOptions::default()
    })
}

/// What every image's warming shares.
struct Warmer<'a> {
    client: &'a Client,
    store: &'a Store,
    index: &'a Index,
    ttl: Duration,
    force: bool,
}

impl Warmer<'_> {
    /// Stores one image unless a fresh, complete copy is already there (or `--force`).
    async fn warm(&self, image: &Wanted) -> anyhow::Result<()> {
        let Wanted {
            reference,
            platform,
        } = image;
        if !self.force
            && let Some(kept) = stored::load(self.store, self.index, reference, platform, self.ttl)?
        {
            tracing::info!(
                "{reference} ({platform}) is already in the cache directory as {}; pass --force to fetch it again",
                kept.manifest_digest
            );
            return Ok(());
        }
        tracing::info!("Retrieving image manifest {reference} ({platform})");
        let resolved = self.client.resolve_pull(reference, platform).await?;
        let config = crate::image::config::parse_base(&resolved.config_bytes)
            .context("unreadable config")?;
        let layers = crate::build::bases::layers_of(&resolved, &config)?;
        crate::build::bases::pull_layers(self.client, self.store, &resolved.source, &layers)
            .await?;
        let manifest = stored::keep(self.store, self.index, reference, platform, &resolved)?;
        tracing::info!("Warmed {reference} ({platform}): {manifest}");
        Ok(())
    }
}
