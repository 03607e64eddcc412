//! `--tar-path`: a docker-archive tarball, in the layout go-containerregistry (and so Kaniko)
//! writes: `manifest.json`, the config as `sha256:<hex>`, layers as `<hex>.tar.gz`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::json;

use super::StoredImage;
use crate::{Error, Result, Store};

/// Writes `image` as a docker-archive tarball at `path`, tagged with `repo_tags`
/// (`registry/repo:tag`). The tarball appears only once complete.
pub fn write_docker_archive(
    store: &Store,
    image: &StoredImage,
    path: &Path,
    repo_tags: &[String],
) -> Result<()> {
    let config_name = image.config.to_string();
    let layer_names: Vec<String> = image
        .layers
        .iter()
        .map(|digest| format!("{}.tar.gz", digest.digest()))
        .collect();
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    let manifest = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
        action: "encoding manifest.json",
        source,
    })?;

    let partial = path.with_extension("kiln-partial");
    let file = File::create(&partial).map_err(Error::io("creating", &partial))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let write =
        |tar: &mut tar::Builder<BufWriter<File>>, digest: &oci_spec::image::Digest, name: &str| {
            let source = store.blob_path(digest);
            let mut blob =
                File::open(&source).map_err(|_| Error::Missing(digest.to_string().into()))?;
            let size = blob
                .metadata()
                .map_err(Error::io("reading", &source))?
                .len();
            tar.append_data(&mut header(size), name, &mut blob)
                .map_err(Error::io("writing", &partial))
        };
    write(&mut tar, &image.config, &config_name)?;
    for (digest, name) in image.layers.iter().zip(&layer_names) {
        write(&mut tar, digest, name)?;
    }
    tar.append_data(
        &mut header(manifest.len() as u64),
        "manifest.json",
        manifest.as_slice(),
    )
    .map_err(Error::io("writing", &partial))?;
    let mut out = tar.into_inner().map_err(Error::io("writing", &partial))?;
    out.flush().map_err(Error::io("writing", &partial))?;
    drop(out);
    fs::rename(&partial, path).map_err(Error::io("renaming", path))
}

/// A regular-file header with fixed metadata, so the archive depends only on the image.
fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}
