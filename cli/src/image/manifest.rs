//! The OCI image manifest of the built image.

use serde_json::json;

use super::Layer;

/// Media type of the manifests kiln writes.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the configs kiln writes.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The OCI media type with the same meaning as a (possibly Docker) layer media type: the bytes
/// are identical, only the label differs, so base layers can be reused as they are.
pub fn oci_layer_media_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        }
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        other => other,
    }
}

/// Serialises the manifest for a config blob and layers.
pub fn render(config_digest: &str, config_size: u64, layers: &[Layer]) -> anyhow::Result<Vec<u8>> {
    let layers: Vec<_> = layers
        .iter()
        .map(|layer| {
            json!({
                "mediaType": layer.media_type,
                "digest": layer.digest.to_string(),
                "size": layer.size,
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size },
        "layers": layers,
    });
    Ok(serde_json::to_vec(&manifest)?)
}
