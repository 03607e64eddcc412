//! `--image-format`: which family of media types the built image is labelled with.
//!
//! OCI is the default and the only family with a zstd layer type. Docker schema 2 is for
//! registries and runtimes that still refuse OCI manifests (old Artifactory, ECR pull-through
//! caches, docker 1.x): the bytes of config and layers are the same, only the labels differ, so
//! base layers are relabelled, never recompressed.

use anyhow::bail;
use clap::ValueEnum;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The media-type family of the image kiln writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ImageFormat {
    /// OCI image spec media types.
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2 media types.
    Docker,
}

impl ImageFormat {
    /// The manifest's media type.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => OCI_MANIFEST,
            ImageFormat::Docker => DOCKER_MANIFEST,
        }
    }

    /// The config's media type.
    pub fn config_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => OCI_CONFIG,
            ImageFormat::Docker => DOCKER_CONFIG,
        }
    }

    /// The media type, in this family, of a layer labelled `media_type` (layers are held with
    /// OCI labels); zstd has no Docker schema 2 type, so it is refused there, naming the layer.
    pub fn layer_media_type<'a>(
        self,
        media_type: &'a str,
        digest: &str,
    ) -> anyhow::Result<&'a str> {
        if self == ImageFormat::Oci {
            return Ok(media_type);
        }
        Ok(match media_type {
            "application/vnd.oci.image.layer.v1.tar+gzip" => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            "application/vnd.oci.image.layer.v1.tar" => {
                "application/vnd.docker.image.rootfs.diff.tar"
            }
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            }
            "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
                "application/vnd.docker.image.rootfs.foreign.diff.tar"
            }
            other if other.starts_with("application/vnd.docker.") => other,
            other => bail!(
                "layer {digest} has media type {other}, which a Docker schema 2 image cannot \
                 carry: use --image-format oci, or a base image with gzip layers"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_format_relabels_gzip_and_refuses_zstd_naming_the_layer() {
        let docker = ImageFormat::Docker;
        assert_eq!(
            docker
                .layer_media_type("application/vnd.oci.image.layer.v1.tar+gzip", "sha256:a")
                .unwrap(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let err = docker
            .layer_media_type("application/vnd.oci.image.layer.v1.tar+zstd", "sha256:a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha256:a") && err.contains("zstd"), "{err}");
        assert_eq!(
            ImageFormat::Oci
                .layer_media_type("application/vnd.oci.image.layer.v1.tar+zstd", "sha256:a")
                .unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
}
