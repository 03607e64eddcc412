//! The layer cache of a build: step results found by node key in the local index and in the
//! remote cache repository, and new results recorded in both.
//!
//! The build asks three things of it: before anything runs, [`Cache::probe`] every key at once;
//! while stages run, [`Cache::hit`] for a step and [`Cache::record`] what a step produced; and
//! before any destination is touched, [`Cache::publish`] to the remote.

pub mod explain;
pub mod file_hashes;
pub mod gc;
pub mod remote;
pub mod settings;

pub use remote::{Publication, Records, RemoteCache, Scope};
pub use settings::{CacheRepo, CacheSettings};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use anyhow::Context as _;
use kiln_cas::{Index, StepRecord, Store};
use kiln_registry::Client;

/// The key a step's result is cached under: its node key and how its layer was written
/// (compression, level, timestamp ceiling). The node key says what the filesystem holds; the
/// layer format decides the blob's bytes, so a `--compression zstd` build never reuses a gzip
/// layer nor a `--reproducible` build a layer with real timestamps.
pub fn cache_key(node: &kiln_graph::NodeKey, layers: &kiln_exec::layer::LayerOptions) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("kiln 2025 layer cache key v1");
    hasher.update(&node.0);
    let format = format!(
        "{}\0{:?}\0{:?}",
        layers.compression.oci_layer_media_type(),
        layers.level,
        layers.mtime_ceiling
    );
    hasher.update(format.as_bytes());
    *hasher.finalize().as_bytes()
}

/// The scope a stage's results are published under: the Dockerfile's path relative to the
/// context, the stage's name (else its position among the FROMs) and its platform.
pub fn scope(dockerfile: &str, stage: &kiln_graph::Stage) -> Scope {
    let name = stage
        .name
        .clone()
        .unwrap_or_else(|| stage.dockerfile_index.to_string());
    Scope(format!("{dockerfile}#{name}@{}", stage.platform))
}

/// Where a hit was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The local index, with its layer in the local store.
    Local,
    /// The remote cache; its layer is downloaded only if something must unpack it.
    Remote,
}

/// A step result the probe found.
#[derive(Debug, Clone)]
pub struct Hit {
    /// What the step produced.
    pub record: StepRecord,
    /// Where it was found.
    pub origin: Origin,
}

/// The cache of one build.
#[derive(Debug)]
pub struct Cache {
    settings: CacheSettings,
    index: Option<Index>,
    remote: Option<RemoteCache>,
    hits: HashMap<[u8; 32], Hit>,
    /// What the remote held at the start, for keys only known while building.
    remote_records: Records,
    /// Keys the remote already holds: not published again.
    in_remote: HashSet<[u8; 32]>,
    /// Results of this build to publish, by scope.
    results: Mutex<BTreeMap<Scope, Publication>>,
}

impl Cache {
    /// The cache the flags ask for: nothing without `--cache`.
    pub fn open(
        settings: &CacheSettings,
        cache_dir: &Path,
        client: &Client,
    ) -> anyhow::Result<Cache> {
        let (index, remote) = if settings.enabled {
            let dir = cache_dir.join("index");
            let index = Index::open(&dir)
                .with_context(|| format!("opening the cache index in {}", dir.display()))?;
            if index.is_read_only() {
                tracing::info!(
                    "The cache directory {} is read-only: its results are used, new ones are not recorded there",
                    cache_dir.display()
                );
            }
            let remote = settings
                .repo
                .clone()
                .map(|repo| RemoteCache::new(client.clone(), repo, settings.ttl));
            (Some(index), remote)
        } else {
            (None, None)
        };
        Ok(Cache {
            settings: settings.clone(),
            index,
            remote,
            hits: HashMap::new(),
            remote_records: Records::default(),
            in_remote: HashSet::new(),
            results: Mutex::default(),
        })
    }

    /// Whether `--cache` is on.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Whether the flags cache steps of this kind: RUN unless `--cache-run-layers=false`,
    /// COPY/ADD unless `--cache-copy-layers=false`, WORKDIR always. Metadata steps make no
    /// layer and run nothing: there is nothing to cache.
    pub fn cacheable(&self, kind: &kiln_graph::StepKind) -> bool {
        use kiln_graph::StepKind;
        match kind {
            StepKind::Run(_) => self.settings.run_layers,
            StepKind::Copy(_) => self.settings.copy_layers,
            StepKind::Workdir { .. } => true,
            StepKind::Config => false,
        }
    }

    /// The local index, with `--cache`.
    pub fn index(&self) -> Option<&Index> {
        self.index.as_ref()
    }

    /// The remote cache, if there is one.
    pub fn remote(&self) -> Option<&RemoteCache> {
        self.remote.as_ref()
    }

    /// Fetches the remote records of every stage scope at once (one manifest and one config
    /// blob each), before keys are assigned: they hold the `COPY --from` aliases too.
    pub async fn fetch_remote(&mut self, scopes: &[Scope]) -> anyhow::Result<()> {
        let Some(remote) = self.remote.as_ref().filter(|_| self.settings.enabled) else {
            return Ok(());
        };
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let records = remote.fetch(&scopes).await?;
        self.in_remote.extend(records.steps.keys().copied());
        self.remote_records = records;
        Ok(())
    }

    /// Looks up every key at once: one local index session, then the remote records fetched
    /// by [`fetch_remote`](Self::fetch_remote). A local result counts only while its layer is
    /// in `store`; results older than `--cache-ttl` do not count.
    pub fn probe(&mut self, keys: &[[u8; 32]], store: &Store) -> anyhow::Result<()> {
        if !self.enabled() || keys.is_empty() {
            return Ok(());
        }
        let oldest = kiln_cas::record::now().saturating_sub(self.settings.ttl.as_secs());
        let fresh = |record: &StepRecord| record.recorded >= oldest;
        if let Some(index) = &self.index {
            let session = index.read().context("reading the cache index")?;
            for key in keys {
                let Some(record) = session.step(key).context("reading the cache index")? else {
                    continue;
                };
                let present = record
                    .layer
                    .as_ref()
                    .is_none_or(|layer| store.contains(&layer.digest));
                if fresh(&record) && present {
                    self.hits.insert(
                        *key,
                        Hit {
                            record,
                            origin: Origin::Local,
                        },
                    );
                }
            }
        }
        for key in keys {
            if let Some(record) = self.remote_records.steps.get(key).filter(|r| fresh(r)) {
                self.hits.entry(*key).or_insert_with(|| Hit {
                    record: record.clone(),
                    origin: Origin::Remote,
                });
            }
        }
        let local = self
            .hits
            .values()
            .filter(|hit| hit.origin == Origin::Local)
            .count();
        tracing::info!(
            "Cache: {} of {} steps found ({local} locally, {} in {})",
            self.hits.len(),
            keys.len(),
            self.hits.len() - local,
            self.remote
                .as_ref()
                .map_or_else(|| "no remote cache".to_owned(), RemoteCache::describe),
        );
        Ok(())
    }

    /// The result recorded for `key`, if the probe found one.
    pub fn hit(&self, key: &[u8; 32]) -> Option<&Hit> {
        self.hits.get(key)
    }

    /// Looks up a key only known while building (after a `COPY --from` resolved to its content
    /// key): the probe's hits, the local index, then the remote records fetched at the start.
    pub fn lookup(&self, key: &[u8; 32], store: &Store) -> anyhow::Result<Option<Hit>> {
        if let Some(hit) = self.hits.get(key) {
            return Ok(Some(hit.clone()));
        }
        if !self.enabled() {
            return Ok(None);
        }
        let oldest = kiln_cas::record::now().saturating_sub(self.settings.ttl.as_secs());
        if let Some(index) = &self.index {
            let record = index
                .read()
                .and_then(|session| session.step(key))
                .context("reading the cache index")?;
            if let Some(record) = record.filter(|record| {
                record.recorded >= oldest
                    && record
                        .layer
                        .as_ref()
                        .is_none_or(|layer| store.contains(&layer.digest))
            }) {
                return Ok(Some(Hit {
                    record,
                    origin: Origin::Local,
                }));
            }
        }
        Ok(self
            .remote_records
            .steps
            .get(key)
            .filter(|record| record.recorded >= oldest)
            .map(|record| Hit {
                record: record.clone(),
                origin: Origin::Remote,
            }))
    }

    /// The content key a `COPY --from` definition key resolved to before, from the local index
    /// or the remote records.
    pub fn alias(&self, definition: &[u8; 32]) -> anyhow::Result<Option<[u8; 32]>> {
        if !self.enabled() {
            return Ok(None);
        }
        if let Some(index) = &self.index {
            let found = index
                .read()
                .and_then(|session| session.alias(definition))
                .context("reading the cache index")?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(self.remote_records.aliases.get(definition).copied())
    }

    /// Records that a `COPY --from` definition key resolved to `content`.
    pub fn record_alias(
        &self,
        scope: &Scope,
        definition: [u8; 32],
        content: [u8; 32],
    ) -> anyhow::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        if let Some(index) = self.index.as_ref().filter(|index| !index.is_read_only()) {
            index
                .write()
                .and_then(|session| session.put_alias(&definition, &content))
                .context("writing the cache index")?;
        }
        if self.remote.is_some()
            && self.settings.push
            && self.remote_records.aliases.get(&definition) != Some(&content)
        {
            self.results
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(scope.clone())
                .or_default()
                .aliases
                .push((definition, content));
        }
        Ok(())
    }

    /// Records what a step produced: in the local index now (its layer is already complete in
    /// the store), and for the remote at [`publish`](Self::publish). A failed write fails the
    /// build: a cache that silently stops recording is worse than none.
    pub fn record(&self, scope: &Scope, key: [u8; 32], record: StepRecord) -> anyhow::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        if let Some(index) = self.index.as_ref().filter(|index| !index.is_read_only()) {
            let session = index.write().context("writing the cache index")?;
            session
                .put_step(&key, &record)
                .context("writing the cache index")?;
            if let Some(layer) = &record.layer {
                session
                    .touch_blobs([&layer.digest], record.recorded)
                    .context("writing the cache index")?;
            }
        }
        self.queue(scope, key, record);
        Ok(())
    }

    /// Marks the blobs of the finished image as used now, so `kiln cache gc` keeps what builds
    /// still use.
    pub fn touch<'a>(
        &self,
        digests: impl IntoIterator<Item = &'a oci_spec::image::Digest>,
    ) -> anyhow::Result<()> {
        if let Some(index) = self.index.as_ref().filter(|index| !index.is_read_only()) {
            index
                .write()
                .and_then(|session| session.touch_blobs(digests, kiln_cas::record::now()))
                .context("writing the cache index")?;
        }
        Ok(())
    }

    /// Notes a hit this build used, so a remote that lacks it receives it at publish time.
    pub fn used(&self, scope: &Scope, key: [u8; 32], hit: &Hit) {
        if hit.origin == Origin::Local {
            self.queue(scope, key, hit.record.clone());
        }
    }

    fn queue(&self, scope: &Scope, key: [u8; 32], record: StepRecord) {
        if self.remote.is_none() || !self.settings.push || self.in_remote.contains(&key) {
            return;
        }
        self.results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(scope.clone())
            .or_default()
            .steps
            .push((key, record));
    }

    /// Pushes this build's new results to the remote cache: layers first, then each scope's
    /// records. Runs before any destination is written; an error names the repository.
    pub async fn publish(&self, store: &Store) -> anyhow::Result<()> {
        let Some(remote) = self.remote.as_ref().filter(|_| self.settings.push) else {
            return Ok(());
        };
        let results =
            std::mem::take(&mut *self.results.lock().unwrap_or_else(PoisonError::into_inner));
        for (scope, publication) in &results {
            if publication.steps.is_empty() && publication.aliases.is_empty() {
                continue;
            }
            remote
                .publish(store, scope, publication)
                .await
                .with_context(|| {
                    format!(
                        "publishing cache results to {} (pass --no-push-cache to build without updating the cache)",
                        remote.describe()
                    )
                })?;
        }
        Ok(())
    }
}
