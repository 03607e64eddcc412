//! A cache scope in a registry repository: its tag, fetched as manifest + records blob, and
//! published as layers (HEAD first, mounted when another repository of the registry has them),
//! records blob, then manifest.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_cas::{LayerRecord, Store};
use kiln_registry::{Access, BlobUpload, Client, Pushed, Reference};

use super::format::{self, EMPTY_BLOB, Manifest, ScopeRecords};

/// Blobs uploaded at once, as for destinations.
const PARALLEL_UPLOADS: usize = 3;

/// Reads the records `tag` points at. A tag (or repository) that does not exist is an empty
/// scope; any other failure is an error naming the repository, tag and status.
pub async fn fetch(client: &Client, repo: &Reference, tag: &str) -> anyhow::Result<ScopeRecords> {
    let reference = repo.with_tag(tag);
    let manifest = match client.fetch_image_manifest(&reference).await {
        Ok(manifest) => manifest,
        Err(error) if error.status() == Some(404) => return Ok(ScopeRecords::default()),
        Err(error) => {
            return Err(error).with_context(|| format!("reading the cache records {reference}"));
        }
    };
    let source = reference.to_string();
    let Some(parsed) = Manifest::parse(&manifest.bytes, &source) else {
        return Ok(ScopeRecords::default());
    };
    if parsed.config.size > format::MAX_BLOB_BYTES {
        tracing::warn!(
            "{source}: a {}-byte records blob is too large: ignored",
            parsed.config.size
        );
        return Ok(ScopeRecords::default());
    }
    // The client verifies the blob's size and digest against the manifest's descriptor.
    let config = client
        .fetch_config_blob(repo, &parsed.config.digest, parsed.config.size)
        .await
        .with_context(|| format!("reading the cache records {reference}"))?;
    match ScopeRecords::decode(&parsed, &config) {
        Ok(records) => Ok(records),
        Err(error) => {
            tracing::warn!(
                "{source}: unreadable cache records ({error:#}): ignored, the next publish replaces them"
            );
            Ok(ScopeRecords::default())
        }
    }
}

/// Streams a layer into `store`; the client verifies size and digest and retries into a fresh
/// writer, and a writer dropped uncommitted leaves nothing behind.
pub async fn pull_layer(
    client: &Client,
    repo: &Reference,
    store: &Store,
    layer: &LayerRecord,
) -> anyhow::Result<()> {
    let digest = layer.digest.to_string();
    tracing::info!(
        "Pulling cached layer {digest} ({} bytes) from {}",
        layer.size,
        repo.repo_ref()
    );
    let writer = client
        .pull_blob(repo, &digest, layer.size, || {
            store.writer().map_err(std::io::Error::other)
        })
        .await
        .with_context(|| format!("pulling cached layer {digest} from {}", repo.repo_ref()))?;
    writer
        .commit_expecting(&layer.digest)
        .with_context(|| format!("cached layer {digest} from {}", repo.repo_ref()))?;
    Ok(())
}

/// What a publish needs besides the records.
#[derive(Debug)]
pub struct Push<'a> {
    /// The registry client.
    pub client: &'a Client,
    /// The cache repository.
    pub repo: &'a Reference,
    /// The local store holding the layers and receiving the records blob.
    pub store: &'a Store,
    /// Repositories of the same registry known to hold a layer, by digest.
    pub mounts: &'a HashMap<String, String>,
}

impl Push<'_> {
    /// Puts every layer in `layers` into the repository unless it is there already.
    pub async fn layers(&self, layers: &[LayerRecord]) -> anyhow::Result<()> {
        let unique: BTreeMap<String, LayerRecord> = layers
            .iter()
            .map(|layer| (layer.digest.to_string(), layer.clone()))
            .collect();
        futures_util::stream::iter(unique)
            .map(|(digest, layer)| self.layer(digest, layer))
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// One layer from the local store. (A method rather than an `async` closure, so the
    /// publish future stays `Send` for any lifetime and can be spawned.)
    async fn layer(&self, digest: String, layer: LayerRecord) -> anyhow::Result<()> {
        let path = self.store.blob_path(&layer.digest);
        if !path.is_file() {
            bail!(
                "cached layer {digest} is not in the local store {}",
                self.store.root().display()
            );
        }
        self.blob(&digest, layer.size, &path).await
    }

    /// Puts the records blob and the manifest on `tag`.
    pub async fn records(&self, tag: &str, encoded: &format::Encoded) -> anyhow::Result<()> {
        let config = self
            .store
            .put(&encoded.config)
            .context("writing the cache records to the local store")?;
        self.blob(
            config.digest.as_ref(),
            config.size,
            &self.store.blob_path(&config.digest),
        )
        .await?;
        if encoded.empty_layer {
            let empty = self
                .store
                .put(EMPTY_BLOB)
                .context("writing the empty blob to the local store")?;
            self.blob(
                empty.digest.as_ref(),
                empty.size,
                &self.store.blob_path(&empty.digest),
            )
            .await?;
        }
        let reference = self.repo.with_tag(tag);
        self.client
            .push_manifest(
                &reference,
                format::MANIFEST_MEDIA_TYPE,
                Bytes::copy_from_slice(&encoded.manifest),
            )
            .await
            .with_context(|| format!("pushing the cache records {reference}"))?;
        Ok(())
    }

    /// One blob: nothing if the repository has it (HEAD), else mounted or uploaded.
    async fn blob(&self, digest: &str, size: u64, path: &std::path::Path) -> anyhow::Result<()> {
        let context = || {
            format!(
                "pushing {digest} to the cache repository {}",
                self.repo.repo_ref()
            )
        };
        if self
            .client
            .blob_exists(self.repo, digest, Access::Push)
            .await
            .with_context(context)?
        {
            tracing::debug!("{digest} is already in {}", self.repo.repo_ref());
            return Ok(());
        }
        let mount_from = self
            .mounts
            .get(digest)
            .map(String::as_str)
            .filter(|from| *from != self.repo.repository());
        let pushed = self
            .client
            .upload_blob(
                self.repo,
                &BlobUpload {
                    digest,
                    size,
                    path,
                    mount_from,
                },
            )
            .await
            .with_context(context)?;
        tracing::debug!(
            "{digest} {} {}",
            if pushed == Pushed::Mounted {
                "mounted into"
            } else {
                "uploaded to"
            },
            self.repo.repo_ref()
        );
        Ok(())
    }
}
