//! Reading the image to push out of an OCI image layout (what `--oci-layout-path`, skopeo's
//! `oci:` and umoci write), without writing into it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_cas::Store;
use kiln_cas::export::StoredImage;
use oci_spec::image::{Digest, ImageIndex, ImageManifest, MediaType};

/// Indexes and manifests are small; anything larger is not one.
const SMALL_BLOB_LIMIT: u64 = 8 << 20;

/// The annotation that names an image in a layout's `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where the image comes from: `oci:<dir>[:<name>]`, or a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSource {
    pub dir: PathBuf,
    /// The `org.opencontainers.image.ref.name` to pick; `None` takes the layout's only image.
    pub name: Option<String>,
}

impl std::str::FromStr for LayoutSource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some(rest) = text.strip_prefix("oci:") else {
            return Ok(LayoutSource {
                dir: PathBuf::from(text),
                name: None,
            });
        };
        // skopeo's syntax: the name follows the last colon, unless that colon is part of the
        // path (a directory that exists as written wins).
        match rest.rsplit_once(':') {
            Some((dir, name)) if !Path::new(rest).is_dir() && !dir.is_empty() => Ok(LayoutSource {
                dir: PathBuf::from(dir),
                name: (!name.is_empty()).then(|| name.to_owned()),
            }),
            _ if rest.is_empty() => Err("oci: needs a directory: oci:<dir>[:<name>]".to_owned()),
            _ => Ok(LayoutSource {
                dir: PathBuf::from(rest),
                name: None,
            }),
        }
    }
}

/// The image `source` names, with `store` reading its blobs from the layout.
pub fn image(store: &Store, source: &LayoutSource) -> anyhow::Result<StoredImage> {
    let index_path = source.dir.join("index.json");
    let bytes = read_bounded(&index_path)?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an OCI image index", index_path.display()))?;
    fn named(d: &oci_spec::image::Descriptor) -> Option<&str> {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .map(String::as_str)
    }
    let candidates: Vec<_> = match &source.name {
        Some(name) => index
            .manifests()
            .iter()
            .filter(|d| named(d) == Some(name.as_str()))
            .collect(),
        None => index.manifests().iter().collect(),
    };
    let descriptor = match (candidates.as_slice(), &source.name) {
        ([one], _) => *one,
        ([], Some(name)) => bail!(
            "the OCI layout {} has no image named {name:?}",
            source.dir.display()
        ),
        ([], None) => bail!("the OCI layout {} holds no image", source.dir.display()),
        (_, _) => {
            let names: Vec<&str> = candidates.iter().filter_map(|d| named(d)).collect();
            bail!(
                "the OCI layout {} holds {} images: name one as oci:{}:<name> (names: {})",
                source.dir.display(),
                candidates.len(),
                source.dir.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )
        }
    };
    let digest = descriptor.digest().clone();
    match descriptor.media_type() {
        MediaType::ImageManifest | MediaType::Other(_) => {}
        other => bail!(
            "{digest} in {} is a {other}, not a single-platform image manifest: kiln push sends one image",
            source.dir.display()
        ),
    }
    let manifest_bytes = store
        .read_small(&digest, SMALL_BLOB_LIMIT)
        .with_context(|| format!("reading manifest {digest} from {}", source.dir.display()))?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).with_context(|| {
        format!(
            "manifest {digest} in {} is not an image manifest",
            source.dir.display()
        )
    })?;
    let image = StoredImage {
        manifest: digest,
        manifest_size: manifest_bytes.len() as u64,
        manifest_media_type: manifest
            .media_type()
            .as_ref()
            .map_or_else(|| descriptor.media_type().to_string(), ToString::to_string),
        config: manifest.config().digest().clone(),
        layers: manifest
            .layers()
            .iter()
            .map(|l| l.digest().clone())
            .collect(),
    };
    let absent: Vec<&Digest> = std::iter::once(&image.config)
        .chain(&image.layers)
        .filter(|d| !store.contains(d))
        .collect();
    if let Some(first) = absent.first() {
        bail!(
            "the OCI layout {} lacks {} blob(s) of image {}, first {first}",
            source.dir.display(),
            absent.len(),
            image.manifest
        );
    }
    Ok(image)
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("{} is not an OCI image layout", path.display()))?
        .len();
    if size > SMALL_BLOB_LIMIT {
        bail!(
            "{} is {size} bytes, over the {SMALL_BLOB_LIMIT}-byte limit for an index",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_a_directory_or_oci_dir_with_an_optional_name() {
        let parse = |s: &str| s.parse::<LayoutSource>().unwrap();
        assert_eq!(
            parse("out/layout"),
            LayoutSource {
                dir: "out/layout".into(),
                name: None
            }
        );
        assert_eq!(
            parse("oci:out/layout"),
            LayoutSource {
                dir: "out/layout".into(),
                name: None
            }
        );
        assert_eq!(
            parse("oci:/tmp/l:v1.2"),
            LayoutSource {
                dir: "/tmp/l".into(),
                name: Some("v1.2".into())
            }
        );
        assert!("oci:".parse::<LayoutSource>().is_err());
    }
}
