//! Resolving the images a build starts from and pulling their layers into the store.
//!
//! Every layer is streamed from the registry into the store and named only once its bytes hash
//! to the digest the manifest promised; a layer already in the store is not fetched again.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_cas::Store;
use kiln_graph::ImagePull;
use kiln_registry::{Client, Platform, Reference, ResolvedImage};

use crate::image::Layer;
use crate::image::config::{BaseConfig, parse_base};
use crate::image::manifest::oci_layer_media_type;

/// How many layers are downloaded at once.
const PARALLEL_PULLS: usize = 3;

/// An external image, resolved: its manifest, config and layer list (the layers themselves
/// are downloaded by [`pull_layers`] when something needs them).
#[derive(Debug)]
pub struct PulledImage {
    /// What the registry answered.
    pub resolved: ResolvedImage,
    /// Its config, as the build uses it.
    pub config: BaseConfig,
    /// Its layers, base first.
    pub layers: Vec<Layer>,
}

/// Resolves each image (reference as written in the Dockerfile, for its platform) to its
/// manifest and config, without downloading any layer; the result is keyed by the plan's image
/// keys. An image the cache directory holds completely (stored by `kiln warm`) with a record
/// younger than `ttl` (any age for a digest reference) is read from the store without asking
/// the registry.
pub async fn resolve_all(
    client: &Client,
    store: &Store,
    ttl: std::time::Duration,
    pulls: &[ImagePull],
) -> anyhow::Result<BTreeMap<String, PulledImage>> {
    let index = crate::warm::stored::index_beside(store)?;
    let mut images = BTreeMap::new();
    for pull in pulls {
        let name = &pull.key;
        let platform = Platform {
            os: pull.platform.os.clone(),
            architecture: pull.platform.architecture.clone(),
            variant: pull.platform.variant.clone(),
        };
        let platform = &platform;
        let reference: Reference = pull
            .reference
            .parse()
            .with_context(|| format!("base image {name:?} is not a valid image name"))?;
        let kept = crate::warm::stored::load(store, &index, &reference, platform, ttl)
            .unwrap_or_else(|err| {
                tracing::warn!("Cannot read {reference} from the cache directory: {err:#}");
                None
            });
        let resolved = match kept {
            Some(resolved) => {
                tracing::info!(
                    "Using {reference} from the cache directory ({})",
                    resolved.manifest_digest
                );
                resolved
            }
            None => {
                tracing::info!("Retrieving image manifest {reference}");
                client
                    .resolve_pull(&reference, platform)
                    .await
                    .with_context(|| format!("cannot pull base image {name}"))?
            }
        };
        let config = parse_base(&resolved.config_bytes)
            .with_context(|| format!("base image {name}: unreadable config"))?;
        let layers = layers_of(&resolved, &config).with_context(|| format!("base image {name}"))?;
        images.insert(
            name.clone(),
            PulledImage {
                resolved,
                config,
                layers,
            },
        );
    }
    Ok(images)
}

/// Pairs each manifest layer with its diff id from the config.
pub(crate) fn layers_of(
    resolved: &ResolvedImage,
    config: &BaseConfig,
) -> anyhow::Result<Vec<Layer>> {
    let descriptors = resolved.manifest.layers();
    if descriptors.len() != config.diff_ids.len() {
        bail!(
            "its manifest lists {} layers but its config {} diff ids",
            descriptors.len(),
            config.diff_ids.len()
        );
    }
    descriptors
        .iter()
        .zip(&config.diff_ids)
        .map(|(descriptor, diff_id)| {
            let media_type = descriptor.media_type().to_string();
            Ok(Layer {
                digest: descriptor.digest().clone(),
                size: descriptor.size(),
                diff_id: diff_id.clone(),
                media_type: oci_layer_media_type(&media_type).to_owned(),
            })
        })
        .collect()
}

/// Downloads the layers the store lacks, a few at once.
pub async fn pull_layers(
    client: &Client,
    store: &Store,
    image: &Reference,
    layers: &[Layer],
) -> anyhow::Result<()> {
    futures_util::stream::iter(layers.iter().filter(|layer| !store.contains(&layer.digest)))
        .map(|layer| pull_layer(client, store, image, layer))
        .buffer_unordered(PARALLEL_PULLS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn pull_layer(
    client: &Client,
    store: &Store,
    image: &Reference,
    layer: &Layer,
) -> anyhow::Result<()> {
    let digest = layer.digest.to_string();
    tracing::info!("Pulling layer {digest} ({} bytes)", layer.size);
    // The client verifies size and digest and retries into a fresh writer; a writer dropped
    // uncommitted leaves nothing in the store.
    let writer = client
        .pull_blob(image, &digest, layer.size, || {
            store.writer().map_err(std::io::Error::other)
        })
        .await?;
    writer
        .commit_expecting(&layer.digest)
        .with_context(|| format!("layer {digest} from {image}"))?;
    Ok(())
}
