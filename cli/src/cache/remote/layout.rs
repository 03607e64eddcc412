//! A cache scope in an OCI image layout directory (`--cache-repo oci:/path`): the same manifest
//! and records blob as in a registry, named by the scope's tag in `index.json`
//! (`org.opencontainers.image.ref.name`), blobs in `blobs/sha256`, so skopeo reads it as
//! `oci:/path:<tag>`.
//!
//! Several builds may publish into one layout at once: blobs are content-addressed and appear
//! by rename, and `index.json` is read, merged and replaced (by rename) under an exclusive lock
//! on `index.json.lock`. Readers take no lock: they see the old or the new `index.json`.
//! Everything here blocks; the caller runs it on a blocking thread.

use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_cas::{LayerRecord, Store};
use serde_json::{Value, json};

use super::Publication;
use super::format::{self, EMPTY_BLOB, Manifest, ScopeRecords};

/// The annotation naming a manifest in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where the publishers of one layout take turns.
const LOCK_FILE: &str = "index.json.lock";

/// Reads the records of `tag`; a layout (or tag) that does not exist is an empty scope.
pub fn fetch(dir: &Path, tag: &str) -> anyhow::Result<ScopeRecords> {
    let source = format!("oci:{}:{tag}", dir.display());
    let Some(descriptor) = find(&read_index(dir)?, tag) else {
        return Ok(ScopeRecords::default());
    };
    let manifest = read_blob(dir, &descriptor.digest, descriptor.size)
        .with_context(|| format!("reading the cache records {source}"))?;
    let Some(parsed) = Manifest::parse(&manifest, &source) else {
        return Ok(ScopeRecords::default());
    };
    let config = read_blob(dir, &parsed.config.digest, parsed.config.size)
        .with_context(|| format!("reading the cache records {source}"))?;
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

/// Copies a layer into `store`, hashed as it is written: a damaged blob never enters it.
pub fn pull_layer(dir: &Path, store: &Store, layer: &LayerRecord) -> anyhow::Result<()> {
    let digest = layer.digest.to_string();
    let path = blob_path(dir, &digest)?;
    let context = || format!("copying cached layer {digest} from oci:{}", dir.display());
    let mut file = File::open(&path).with_context(context)?;
    let mut writer = store.writer().with_context(context)?;
    io::copy(&mut file, &mut writer).with_context(context)?;
    if writer.size() != layer.size {
        bail!(
            "cached layer {digest} in oci:{} is {} bytes, its record says {}",
            dir.display(),
            writer.size(),
            layer.size
        );
    }
    writer
        .commit_expecting(&layer.digest)
        .with_context(context)?;
    Ok(())
}

/// Checks that the layout can be published to: creates it and its lock file.
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    prepare(dir)?;
    open_lock(dir)?;
    Ok(())
}

/// Copies the publication's layers in, then, under the lock, merges its records into the
/// scope's and points `tag` at the new manifest.
pub fn publish(
    dir: &Path,
    store: &Store,
    tag: &str,
    publication: &Publication,
    now: u64,
    oldest: u64,
) -> anyhow::Result<()> {
    prepare(dir)?;
    for layer in publication
        .steps
        .iter()
        .filter_map(|(_, step)| step.layer.as_ref())
    {
        let digest = layer.digest.to_string();
        let from = store.blob_path(&layer.digest);
        if !from.is_file() {
            bail!(
                "cached layer {digest} is not in the local store {}",
                store.root().display()
            );
        }
        link_or_copy(&from, &blob_path(dir, &digest)?)
            .with_context(|| format!("copying cached layer {digest} to oci:{}", dir.display()))?;
    }
    let lock = open_lock(dir)?;
    lock.lock()
        .with_context(|| format!("locking {}", dir.join(LOCK_FILE).display()))?;
    let mut records = fetch(dir, tag)?;
    records.merge(publication, now);
    records.expire(oldest);
    records.trim();
    let encoded = records.encode()?;
    write_blob(dir, &encoded.config)?;
    if encoded.empty_layer {
        write_blob(dir, EMPTY_BLOB)?;
    }
    let manifest = write_blob(dir, &encoded.manifest)?;
    let mut index = read_index(dir)?;
    let manifests = index
        .as_object_mut()
        .and_then(|object| object.get_mut("manifests"))
        .and_then(Value::as_array_mut)
        .with_context(|| format!("{} has no manifests list", dir.join("index.json").display()))?;
    manifests.retain(|entry| entry["annotations"][REF_NAME].as_str() != Some(tag));
    manifests.push(json!({
        "mediaType": format::MANIFEST_MEDIA_TYPE,
        "digest": manifest,
        "size": encoded.manifest.len(),
        "annotations": { REF_NAME: tag },
    }));
    let bytes = serde_json::to_vec(&index).context("encoding index.json")?;
    replace(dir, "index.json", &bytes)?;
    drop(lock);
    Ok(())
}

/// A manifest descriptor from `index.json`.
struct Found {
    digest: String,
    size: u64,
}

/// The manifest `index.json` names `tag`.
fn find(index: &Value, tag: &str) -> Option<Found> {
    index["manifests"]
        .as_array()?
        .iter()
        .rev()
        .find(|entry| entry["annotations"][REF_NAME].as_str() == Some(tag))
        .and_then(|entry| {
            Some(Found {
                digest: entry["digest"].as_str()?.to_owned(),
                size: entry["size"].as_u64()?,
            })
        })
}

/// `index.json`, or an empty index when the layout does not exist yet.
fn read_index(dir: &Path) -> anyhow::Result<Value> {
    let path = dir.join("index.json");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid JSON", path.display())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [],
        })),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Creates the layout's directories and `oci-layout` marker.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)
        .with_context(|| format!("creating the cache layout {}", dir.display()))?;
    let marker = dir.join("oci-layout");
    if !marker.exists() {
        replace(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    Ok(())
}

fn open_lock(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join(LOCK_FILE);
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Where the blob `digest` lives; anything but `sha256:<64 hex>` is refused, so a hostile
/// `index.json` cannot name a path outside the layout.
fn blob_path(dir: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .with_context(|| format!("{digest:?} is not a sha256 digest"))?;
    Ok(dir.join("blobs").join("sha256").join(hex))
}

/// Reads a small blob (manifest, records), checking its size and digest.
fn read_blob(dir: &Path, digest: &str, size: u64) -> anyhow::Result<Vec<u8>> {
    let path = blob_path(dir, digest)?;
    if size > format::MAX_BLOB_BYTES {
        bail!(
            "{digest}: {size} bytes is over the {}-byte limit",
            format::MAX_BLOB_BYTES
        );
    }
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|file| file.take(size + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    let actual = format::sha256(&bytes);
    if bytes.len() as u64 != size || actual != digest {
        bail!(
            "{} is damaged: expected {digest} ({size} bytes), found {actual} ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes)
}

/// Writes a small blob under its digest (nothing if it is there); returns the digest.
fn write_blob(dir: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    let digest = format::sha256(bytes);
    let path = blob_path(dir, &digest)?;
    if !path.is_file() {
        let blobs = dir.join("blobs").join("sha256");
        let mut file = tempfile::NamedTempFile::new_in(&blobs)
            .with_context(|| format!("writing a blob in {}", blobs.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing a blob in {}", blobs.display()))?;
        persist(file, &path)?;
    }
    Ok(digest)
}

/// Hard-links a blob (free on the same filesystem), else copies it through a temporary file.
fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.is_file() || fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let parent = to.parent().context("a blob path has a parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    io::copy(&mut File::open(from)?, &mut tmp)?;
    persist(tmp, to)
}

/// Replaces `dir/name` through a temporary sibling and a rename.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    persist(file, &path)
}

/// Renames a finished temporary file into place, readable by everyone as the rest of a layout
/// is (temporary files start at 0600).
fn persist(file: tempfile::NamedTempFile, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
