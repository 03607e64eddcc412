//! The image manifest of the built image, OCI or Docker schema 2 (`--image-format`).

use serde_json::json;

use super::Layer;
use super::format::ImageFormat;

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

/// Serialises the manifest for a config blob and layers, labelled in `format`'s media types,
/// with `--annotation`s (manifest level, as Chainguard's Kaniko writes them).
pub fn render(
    format: ImageFormat,
    config_digest: &str,
    config_size: u64,
    layers: &[Layer],
    annotations: &[(String, String)],
) -> anyhow::Result<Vec<u8>> {
    let layers = layers
        .iter()
        .map(|layer| {
            let digest = layer.digest.to_string();
            Ok(json!({
                "mediaType": format.layer_media_type(&layer.media_type, &digest)?,
                "digest": digest,
                "size": layer.size,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": format.manifest_media_type(),
        "config": {
            "mediaType": format.config_media_type(),
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layers,
    });
    if !annotations.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(key, value)| (key.clone(), serde_json::Value::from(value.clone())))
            .collect();
        manifest["annotations"] = serde_json::Value::Object(map);
    }
    Ok(serde_json::to_vec(&manifest)?)
}
