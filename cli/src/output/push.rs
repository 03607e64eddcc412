//! Pushing an image from the store: blobs the registry lacks (checked with HEAD), then the
//! manifest, which is what makes the tag point at the new image.

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_cas::Store;
use kiln_cas::export::StoredImage;
use kiln_registry::{Access, Client, Reference};
use oci_spec::image::Digest;

/// How many blobs are uploaded at once.
const PARALLEL_PUSHES: usize = 3;

/// Pushes `image` to `destination`.
pub async fn push(
    client: &Client,
    store: &Store,
    image: &StoredImage,
    destination: &Reference,
) -> anyhow::Result<()> {
    tracing::info!("Pushing image to {destination}");
    let blobs: Vec<&Digest> = image.layers.iter().chain([&image.config]).collect();
    futures_util::stream::iter(blobs)
        .map(|digest| push_blob(client, store, destination, digest))
        .buffer_unordered(PARALLEL_PUSHES)
        .try_collect::<Vec<()>>()
        .await?;
    let manifest = std::fs::read(store.blob_path(&image.manifest))
        .with_context(|| format!("reading manifest {} from the store", image.manifest))?;
    client
        .push_manifest(destination, &image.manifest_media_type, manifest.into())
        .await
        .with_context(|| format!("pushing the manifest to {destination}"))?;
    Ok(())
}

async fn push_blob(
    client: &Client,
    store: &Store,
    destination: &Reference,
    digest: &Digest,
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
    let path = store.blob_path(digest);
    let size = std::fs::metadata(&path)
        .with_context(|| format!("blob {name} is missing from the store"))?
        .len();
    client
        .push_blob(destination, &name, size, &path)
        .await
        .with_context(|| format!("pushing blob {name} to {destination}"))?;
    Ok(())
}
