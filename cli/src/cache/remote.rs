//! The remote cache: step results kept in a registry repository (or an OCI layout) so that
//! builds on other machines reuse them.
//!
//! The format is described in docs/design.md ("Remote cache format"): one tag per stage scope,
//! each an OCI manifest whose config blob lists records (node key -> layer) and whose layers
//! are every layer those records name, so the registry keeps them. [`format`] reads and writes
//! the records; [`registry`] and [`layout`] move them.

mod format;
mod layout;
mod registry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_cas::{LayerRecord, StepRecord, Store};
use kiln_registry::{Client, Reference};

use super::CacheRepo;
use format::ScopeRecords;

pub use format::RECORDS_MEDIA_TYPE;

/// Scopes fetched at once: one manifest and one small blob each.
const PARALLEL_FETCHES: usize = 8;

/// Which records a stage's results belong to: the Dockerfile's path relative to the context,
/// the stage's name (or index) and its platform. Stable across machines and checkouts, and
/// independent of destinations, so pull-request builds (`--no-push`) read what main's builds
/// wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(pub String);

impl Scope {
    /// The tag the scope's records live under: `kiln-` and 32 hex digits of blake3 of the
    /// scope. Fixed length and valid in every registry whatever the Dockerfile's path.
    pub fn tag(&self) -> String {
        let hash = blake3::hash(self.0.as_bytes());
        let hex: String = hash.as_bytes()[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("kiln-{hex}")
    }
}

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
    /// Repositories of the cache's registry known to hold a layer (by digest), to mount from.
    mounts: Arc<Mutex<HashMap<String, String>>>,
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
        RemoteCache {
            client,
            repo,
            ttl,
            mounts: Arc::default(),
        }
    }

    /// Fetches the records of every scope at once. A scope never written is empty; an
    /// unreadable one is an error naming the repository, tag and status. Records older than
    /// the TTL are left out.
    pub async fn fetch(&self, scopes: &[Scope]) -> anyhow::Result<Records> {
        let oldest = self.oldest();
        let found: Vec<ScopeRecords> = futures_util::stream::iter(scopes)
            .map(|scope| self.fetch_scope(scope))
            .buffer_unordered(PARALLEL_FETCHES)
            .try_collect()
            .await?;
        let mut records = Records::default();
        let mut alias_times: HashMap<[u8; 32], u64> = HashMap::new();
        for scope in found {
            for (key, step) in scope.steps {
                if step.recorded < oldest {
                    continue;
                }
                match records.steps.get(&key) {
                    Some(known) if known.recorded >= step.recorded => {}
                    _ => {
                        records.steps.insert(key, step);
                    }
                }
            }
            for (from, alias) in scope.aliases {
                if alias.recorded < oldest
                    || alias_times
                        .get(&from)
                        .is_some_and(|&known| known >= alias.recorded)
                {
                    continue;
                }
                alias_times.insert(from, alias.recorded);
                records.aliases.insert(from, alias.to);
            }
        }
        Ok(records)
    }

    /// Downloads a layer the records name into `store`, verifying its digest.
    pub async fn pull_layer(&self, store: &Store, layer: &LayerRecord) -> anyhow::Result<()> {
        match &self.repo {
            CacheRepo::Registry(repo) => {
                registry::pull_layer(&self.client, repo, store, layer).await
            }
            CacheRepo::Layout(dir) => {
                let (dir, store, layer) = (dir.clone(), store.clone(), layer.clone());
                tokio::task::spawn_blocking(move || layout::pull_layer(&dir, &store, &layer))
                    .await
                    .context("the cache copy thread failed")?
            }
        }
    }

    /// Pushes a scope's new results: their layers (skipping those the repository has), then
    /// the scope's records merged with what is there now (re-fetched, to lose fewer concurrent
    /// updates), without records older than the TTL and keeping the newest
    /// 1,000 steps.
    pub async fn publish(
        &self,
        store: &Store,
        scope: &Scope,
        publication: &Publication,
    ) -> anyhow::Result<()> {
        let tag = scope.tag();
        let now = kiln_cas::record::now();
        let oldest = self.oldest();
        match &self.repo {
            CacheRepo::Registry(repo) => {
                let mounts = self
                    .mounts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let push = registry::Push {
                    client: &self.client,
                    repo,
                    store,
                    mounts: &mounts,
                };
                let layers: Vec<LayerRecord> = publication
                    .steps
                    .iter()
                    .filter_map(|(_, step)| step.layer.clone())
                    .collect();
                push.layers(&layers).await?;
                let mut records = registry::fetch(&self.client, repo, &tag).await?;
                records.merge(publication, now);
                records.expire(oldest);
                records.trim();
                push.records(&tag, &records.encode()?).await
            }
            CacheRepo::Layout(dir) => {
                let (dir, store, publication) = (dir.clone(), store.clone(), publication.clone());
                tokio::task::spawn_blocking(move || {
                    layout::publish(&dir, &store, &tag, &publication, now, oldest)
                })
                .await
                .context("the cache publishing thread failed")?
            }
        }
    }

    /// Fails fast when results could never be published: the registry refuses an upload
    /// session (Kaniko's push-permission check), or the layout cannot be created or locked.
    pub async fn check_access(&self) -> anyhow::Result<()> {
        match &self.repo {
            CacheRepo::Registry(repo) => {
                self.client.check_push_access(repo).await.with_context(|| {
                    format!("the cache repository {} refuses pushes", repo.repo_ref())
                })
            }
            CacheRepo::Layout(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || layout::check_writable(&dir))
                    .await
                    .context("the cache check thread failed")?
            }
        }
    }

    /// Notes that `from` (a base image's repository, say) holds the layer `digest`: a publish
    /// that must put it into the cache repository mounts it from there when both are on the
    /// same registry, instead of uploading it.
    pub fn add_mount_source(&self, digest: &oci_spec::image::Digest, from: &Reference) {
        if let CacheRepo::Registry(repo) = &self.repo
            && repo.registry() == from.registry()
        {
            self.mounts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(digest.to_string(), from.repository().to_owned());
        }
    }

    /// The cache repository, for messages.
    pub fn describe(&self) -> String {
        match &self.repo {
            CacheRepo::Registry(reference) => reference.repo_ref(),
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

    /// Records recorded before this (seconds since the epoch) have expired.
    fn oldest(&self) -> u64 {
        kiln_cas::record::now().saturating_sub(self.ttl.as_secs())
    }

    async fn fetch_scope(&self, scope: &Scope) -> anyhow::Result<ScopeRecords> {
        let tag = scope.tag();
        match &self.repo {
            CacheRepo::Registry(repo) => registry::fetch(&self.client, repo, &tag).await,
            CacheRepo::Layout(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || layout::fetch(&dir, &tag))
                    .await
                    .context("the cache reading thread failed")?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_tag_is_kiln_and_32_hex_digits_of_its_blake3() {
        let scope = Scope("Dockerfile#build@linux/amd64".to_owned());
        let tag = scope.tag();
        let hex = blake3::hash(scope.0.as_bytes()).to_hex();
        assert_eq!(tag, format!("kiln-{}", &hex[..32]));
        assert_ne!(tag, Scope("Dockerfile#build@linux/arm64".to_owned()).tag());
    }
}
