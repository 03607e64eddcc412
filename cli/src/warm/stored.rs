//! Base images kept in the cache directory: the warmer stores them, builds read them back
//! without asking a registry.
//!
//! An image is kept as its manifest, config and layers in the store (an OCI layout, where
//! `index.json` names it so skopeo and umoci can open it) and as a record in the index's
//! `images` family: reference and platform -> manifest digest and when it was fetched. A build
//! trusts a tag's record while it is younger than `--cache-ttl` (tags move; the TTL bounds how
//! stale a base can be), and a digest reference's always (it cannot move).

use std::time::Duration;

use anyhow::Context as _;
use kiln_cas::index::Index;
use kiln_cas::refs::NamedManifest;
use kiln_cas::{ImageRecord, Store};
use kiln_registry::{Platform, Reference, ResolvedImage};
use oci_spec::image::{Digest, ImageConfiguration, ImageManifest};

/// Manifests and configs are small; anything larger is not one.
const SMALL_BLOB_LIMIT: u64 = 8 << 20;

/// The `images` key of `reference` for `platform`.
pub fn image_key(reference: &Reference, platform: &Platform) -> String {
    format!("{reference} {platform}")
}

/// The index of the cache directory holding `store` (`<cache-dir>/store` beside
/// `<cache-dir>/index`).
pub fn index_beside(store: &Store) -> anyhow::Result<Index> {
    let dir = store.root().parent().unwrap_or(store.root()).join("index");
    Index::open(&dir).with_context(|| format!("opening the cache index in {}", dir.display()))
}

/// Whether a record may stand in for asking the registry: a digest reference's always (it
/// cannot move), a tag's while younger than `ttl`.
pub fn fresh(record: &ImageRecord, reference: &Reference, ttl: Duration, now: u64) -> bool {
    reference.digest().is_some() || now.saturating_sub(record.fetched) <= ttl.as_secs()
}

/// `reference` for `platform` as the cache directory holds it, if it holds all of it (manifest,
/// config, every layer) and its record is fresh; `None` means "ask the registry".
pub fn load(
    store: &Store,
    index: &Index,
    reference: &Reference,
    platform: &Platform,
    ttl: Duration,
) -> anyhow::Result<Option<ResolvedImage>> {
    let record = index
        .read()
        .and_then(|session| session.image(&image_key(reference, platform)))
        .context("reading the cache index")?;
    let now = kiln_cas::record::now();
    let manifest = match (record, reference.digest()) {
        (Some(record), _) if fresh(&record, reference, ttl, now) => record.manifest,
        (Some(record), _) => {
            tracing::info!(
                "The cache directory's copy of {reference} was fetched {}s ago, longer than --cache-ttl: asking the registry",
                now.saturating_sub(record.fetched)
            );
            return Ok(None);
        }
        // A pinned manifest needs no record: its digest says what it is.
        (None, Some(digest)) => match digest.parse::<Digest>() {
            Ok(digest) => digest,
            Err(_) => return Ok(None),
        },
        (None, None) => return Ok(None),
    };
    Ok(read_image(store, reference, &manifest))
}

/// The image whose manifest is `digest`, from the store alone; `None` unless it is a
/// single-platform manifest whose config and layers are all present.
fn read_image(store: &Store, reference: &Reference, digest: &Digest) -> Option<ResolvedImage> {
    let manifest_bytes = store.read_small(digest, SMALL_BLOB_LIMIT).ok()?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)
        .ok()?
        .get("mediaType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_owned();
    if media_type.contains("index") || media_type.contains("manifest.list") {
        return None;
    }
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).ok()?;
    let config_digest = manifest.config().digest();
    let config_bytes = store.read_small(config_digest, SMALL_BLOB_LIMIT).ok()?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).ok()?;
    let missing = manifest
        .layers()
        .iter()
        .find(|layer| !store.contains(layer.digest()));
    if let Some(layer) = missing {
        tracing::info!(
            "The cache directory lacks layer {} of {reference}: asking the registry",
            layer.digest()
        );
        return None;
    }
    Some(ResolvedImage {
        reference: reference.clone(),
        source: reference.clone(),
        manifest_digest: digest.to_string(),
        index_digest: None,
        manifest_media_type: media_type,
        manifest,
        manifest_bytes: manifest_bytes.into(),
        config_bytes: config_bytes.into(),
        config,
    })
}

/// Keeps a resolved image whose layers are already in the store: its manifest and config as
/// blobs, its name in the store's `index.json`, then (only once every blob is complete) its
/// record in the index.
pub fn keep(
    store: &Store,
    index: &Index,
    reference: &Reference,
    platform: &Platform,
    resolved: &ResolvedImage,
) -> anyhow::Result<Digest> {
    let manifest: Digest = resolved
        .manifest_digest
        .parse()
        .with_context(|| format!("{reference}: bad manifest digest"))?;
    put_expecting(store, &resolved.manifest_bytes, &manifest)?;
    let config = resolved.manifest.config().digest();
    put_expecting(store, &resolved.config_bytes, config)?;
    store
        .set_ref(
            &reference.to_string(),
            &NamedManifest {
                media_type: resolved.manifest_media_type.clone(),
                digest: manifest.clone(),
                size: resolved.manifest_bytes.len() as u64,
                platform: (
                    platform.os.clone(),
                    platform.architecture.clone(),
                    platform.variant.clone(),
                ),
            },
        )
        .context("naming the image in the store's index.json")?;
    let now = kiln_cas::record::now();
    let session = index.write().context("writing the cache index")?;
    session
        .put_image(
            &image_key(reference, platform),
            &ImageRecord {
                manifest: manifest.clone(),
                fetched: now,
            },
        )
        .context("writing the cache index")?;
    let layers = resolved
        .manifest
        .layers()
        .iter()
        .map(|layer| layer.digest());
    session
        .touch_blobs(layers.chain([config, &manifest]), now)
        .context("writing the cache index")?;
    Ok(manifest)
}

fn put_expecting(store: &Store, bytes: &[u8], digest: &Digest) -> anyhow::Result<()> {
    if store.contains(digest) {
        return Ok(());
    }
    let mut writer = store.writer()?;
    std::io::Write::write_all(&mut writer, bytes).context("writing a blob into the store")?;
    writer
        .commit_expecting(digest)
        .with_context(|| format!("storing blob {digest}"))?;
    Ok(())
}
