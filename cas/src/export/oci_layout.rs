//! `--oci-layout-path`: an OCI image layout directory holding one image.

use std::fs;
use std::path::Path;

use serde_json::json;

use super::StoredImage;
use crate::{Error, Result, Store};

/// Writes `image` as the single image of an OCI layout at `dir` (created if missing), tagged
/// `ref_name` (the `org.opencontainers.image.ref.name` annotation) when given. As in Kaniko, an
/// existing `index.json` is replaced.
pub fn write_oci_layout(
    store: &Store,
    image: &StoredImage,
    dir: &Path,
    ref_name: Option<&str>,
) -> Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(Error::io("creating", &blobs))?;
    let digests = [&image.manifest, &image.config]
        .into_iter()
        .chain(image.layers.iter());
    for digest in digests {
        link_or_copy(
            &store.blob_path(digest),
            &blobs.join(digest.digest()),
            digest,
        )?;
    }
    let layout = dir.join("oci-layout");
    fs::write(&layout, r#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(Error::io("writing", &layout))?;

    let mut descriptor = json!({
        "mediaType": image.manifest_media_type,
        "digest": image.manifest.to_string(),
        "size": image.manifest_size,
    });
    if let Some(name) = ref_name {
        descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [descriptor],
    });
    let bytes = serde_json::to_vec(&index).map_err(|source| Error::Json {
        action: "encoding index.json",
        source,
    })?;
    replace_file(&dir.join("index.json"), &bytes)
}

/// Hard-links a blob from the store (free on the same filesystem), copying across filesystems.
pub(crate) fn link_or_copy(from: &Path, to: &Path, digest: &oci_spec::image::Digest) -> Result<()> {
    if to.exists() {
        return Ok(());
    }
    if !from.is_file() {
        return Err(Error::Missing(digest.to_string().into()));
    }
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let tmp = to.with_extension("partial");
    fs::copy(from, &tmp).map_err(Error::io("copying blob to", &tmp))?;
    fs::rename(&tmp, to).map_err(Error::io("renaming", to))
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("kiln-partial");
    fs::write(&tmp, bytes).map_err(Error::io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(Error::io("renaming", path))
}
