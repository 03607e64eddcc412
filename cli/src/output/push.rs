//! Pushing an image from the store: blobs the registry lacks (checked with HEAD), mounted from
//! another repository of the same registry when one is known to hold them, else uploaded; then
//! the manifest, which is what makes the tag point at the new image.

use std::collections::HashMap;

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_cas::Store;
use kiln_cas::export::StoredImage;
use kiln_registry::{Access, BlobUpload, Client, Pushed, Reference};
use oci_spec::image::Digest;

use crate::build::Blobs;
use crate::image::Layer;

/// How many blobs are uploaded at once.
const PARALLEL_PUSHES: usize = 3;

/// Repositories that already hold some of the image's blobs, so a registry can link them
/// instead of receiving their bytes again.
#[derive(Debug, Default)]
pub struct MountSources {
    /// Base image and cached layers, by digest: a repository that holds each.
    bases: HashMap<Digest, Reference>,
    /// Destinations this build finished pushing: they hold every blob of the image.
    pushed: Vec<Reference>,
}

impl MountSources {
    /// Sources for the layers of the images the build started from.
    pub fn new(bases: HashMap<Digest, Reference>) -> MountSources {
        MountSources {
            bases,
            pushed: Vec::new(),
        }
    }

    /// Records that `repository` (the cache repository) holds the layer `digest`.
    pub fn add(&mut self, digest: Digest, repository: &Reference) {
        self.bases
            .entry(digest)
            .or_insert_with(|| repository.clone());
    }

    /// Records a destination that now holds the whole image.
    pub fn pushed(&mut self, destination: &Reference) {
        self.pushed.push(destination.clone());
    }

    /// A repository on `destination`'s registry, other than its own, that holds `digest`.
    fn source(&self, digest: &Digest, destination: &Reference) -> Option<&Reference> {
        let same_registry = |r: &&Reference| {
            r.registry() == destination.registry() && r.repository() != destination.repository()
        };
        self.pushed
            .iter()
            .find(same_registry)
            .or_else(|| self.bases.get(digest).filter(same_registry))
    }
}

/// What `push` may tolerate.
#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    /// `--push-ignore-immutable-tag-errors`.
    pub ignore_immutable_tags: bool,
}

/// Pushes `image` to `destination`.
pub async fn push(
    client: &Client,
    store: &Store,
    image: &StoredImage,
    destination: &Reference,
    sources: &MountSources,
    options: PushOptions,
    missing: &Missing<'_>,
) -> anyhow::Result<()> {
    tracing::info!("Pushing image to {destination}");
    let blobs: Vec<&Digest> = image.layers.iter().chain([&image.config]).collect();
    futures_util::stream::iter(blobs)
        .map(|digest| push_blob(client, store, destination, digest, sources, missing))
        .buffer_unordered(PARALLEL_PUSHES)
        .try_collect::<Vec<()>>()
        .await?;
    let manifest = std::fs::read(store.blob_path(&image.manifest))
        .with_context(|| format!("reading manifest {} from the store", image.manifest))?;
    match client
        .push_manifest(destination, &image.manifest_media_type, manifest.into())
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if options.ignore_immutable_tags && is_immutable_tag_error(&err) => {
            tracing::warn!(
                "{destination}: the registry keeps the tag's existing image (immutable tag); ignored as --push-ignore-immutable-tag-errors asks: {err}"
            );
            Ok(())
        }
        Err(err) => Err(err).with_context(|| format!("pushing the manifest to {destination}")),
    }
}

/// A registry's refusal to move an immutable tag: ECR answers `TAG_INVALID` ("...cannot be
/// overwritten because the repository is immutable"), Artifact Registry and Harbor a 400, 403
/// or 409 whose message says "immutable".
fn is_immutable_tag_error(err: &kiln_registry::Error) -> bool {
    matches!(err.status(), Some(400 | 403 | 409))
        && (err.registry_codes().contains(&"TAG_INVALID")
            || err.to_string().to_ascii_lowercase().contains("immutable"))
}

async fn push_blob(
    client: &Client,
    store: &Store,
    destination: &Reference,
    digest: &Digest,
    sources: &MountSources,
    missing: &Missing<'_>,
) -> anyhow::Result<()> {
    let name = digest.to_string();
    if client
        .blob_exists(destination, &name, Access::Push)
        .await
        .with_context(|| format!("checking blob {name} in {destination}"))?
    {
        tracing::debug!("{destination} already has {name}");
        return Ok(());
    }
    let source = sources.source(digest, destination);
    if !store.contains(digest) {
        // Never downloaded (a cached layer, a base layer of a stage that never ran): link it
        // from a repository that has it, and only download it when that is refused.
        if let Some(source) = source
            && client
                .mount_blob(destination, &name, source.repository())
                .await
                .with_context(|| format!("mounting blob {name} into {destination}"))?
        {
            tracing::debug!("mounted {name} into {destination} from {source}");
            return Ok(());
        }
        missing.fetch(digest).await?;
    }
    let path = store.blob_path(digest);
    let size = std::fs::metadata(&path)
        .with_context(|| format!("blob {name} is missing from the store"))?
        .len();
    let pushed = client
        .upload_blob(
            destination,
            &BlobUpload {
                digest: &name,
                size,
                path: &path,
                mount_from: source.map(Reference::repository),
            },
        )
        .await
        .with_context(|| format!("pushing blob {name} to {destination}"))?;
    match (pushed, source) {
        (Pushed::Mounted, Some(source)) => {
            tracing::debug!("mounted {name} into {destination} from {source}")
        }
        _ => tracing::debug!("uploaded {name} ({size} bytes) to {destination}"),
    }
    Ok(())
}

/// Layers of the image the store may lack, and where to download them from.
#[derive(Debug, Clone, Copy)]
pub struct Missing<'a> {
    /// Downloads blobs into the store.
    pub blobs: &'a Blobs,
    /// The image's layers.
    pub layers: &'a [Layer],
}

impl Missing<'_> {
    /// Downloads the layer with `digest` into the store.
    pub async fn fetch(&self, digest: &Digest) -> anyhow::Result<()> {
        let layer = self
            .layers
            .iter()
            .find(|layer| &layer.digest == digest)
            .with_context(|| format!("blob {digest} is missing from the store"))?;
        self.blobs.ensure(std::slice::from_ref(layer)).await
    }

    /// Downloads every layer the store lacks.
    pub async fn fetch_all(&self) -> anyhow::Result<()> {
        self.blobs.ensure(self.layers).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> Reference {
        name.parse().unwrap()
    }

    #[test]
    fn mounts_come_from_the_same_registry_and_another_repository() {
        let layer: Digest =
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap();
        let other: Digest =
            "sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap();
        let mut sources = MountSources::new(HashMap::from([(
            layer.clone(),
            reference("reg.io/base/image:1"),
        )]));
        let destination = reference("reg.io/team/app:1");
        assert_eq!(
            sources.source(&layer, &destination),
            Some(&reference("reg.io/base/image:1"))
        );
        assert_eq!(sources.source(&other, &destination), None);
        assert_eq!(
            sources.source(&layer, &reference("other.io/team/app:1")),
            None
        );
        assert_eq!(
            sources.source(&layer, &reference("reg.io/base/image:2")),
            None
        );

        sources.pushed(&reference("reg.io/team/app:1"));
        let second = reference("reg.io/team/mirror:1");
        assert_eq!(
            sources.source(&other, &second),
            Some(&reference("reg.io/team/app:1"))
        );
        assert_eq!(
            sources.source(&other, &reference("reg.io/team/app:2")),
            None
        );
    }
}
