//! Blobs the build needs but the store may lack: base image layers, fetched from the image's
//! repository, and cached layers, fetched from the remote cache. Nothing is downloaded before
//! something must unpack or export it, so a fully cached build downloads no layer.

use std::collections::HashMap;

use anyhow::bail;
use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_cas::Store;
use kiln_registry::{Client, Reference};
use oci_spec::image::Digest;

use crate::cache::RemoteCache;
use crate::image::Layer;

/// How many layers are downloaded at once.
const PARALLEL_PULLS: usize = 3;

/// Where each blob of the build can be downloaded from.
#[derive(Debug, Clone)]
pub struct Blobs {
    client: Client,
    store: Store,
    remote: Option<RemoteCache>,
    /// Base image layers: the repository each came from.
    bases: HashMap<Digest, Reference>,
    runtime: tokio::runtime::Handle,
}

impl Blobs {
    /// Blobs of the base images (`bases`) and of the remote cache, landing in `store`.
    pub fn new(
        client: Client,
        store: Store,
        remote: Option<RemoteCache>,
        bases: HashMap<Digest, Reference>,
    ) -> Blobs {
        Blobs {
            client,
            store,
            remote,
            bases,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Downloads whichever of `layers` the store lacks, a few at once.
    pub async fn ensure(&self, layers: &[Layer]) -> anyhow::Result<()> {
        let mut missing: Vec<&Layer> = layers
            .iter()
            .filter(|layer| !self.store.contains(&layer.digest))
            .collect();
        missing.dedup_by(|a, b| a.digest == b.digest);
        futures_util::stream::iter(missing)
            .map(|layer| self.fetch(layer))
            .buffer_unordered(PARALLEL_PULLS)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// [`ensure`](Self::ensure) from a blocking thread (the executor's).
    pub fn ensure_blocking(&self, layers: &[Layer]) -> anyhow::Result<()> {
        self.runtime.block_on(self.ensure(layers))
    }

    async fn fetch(&self, layer: &Layer) -> anyhow::Result<()> {
        if let Some(image) = self.bases.get(&layer.digest) {
            return super::bases::pull_layers(
                &self.client,
                &self.store,
                image,
                std::slice::from_ref(layer),
            )
            .await;
        }
        if let Some(remote) = &self.remote {
            return remote.pull_layer(&self.store, &layer.clone().into()).await;
        }
        bail!(
            "layer {} is not in the store and no repository is known to hold it",
            layer.digest
        )
    }
}
