//! The image kiln produces: its config (runtime settings, layer diff ids, history) and manifest.

pub mod config;
pub mod format;
pub mod manifest;

/// A layer of the image being built, whether inherited from the base or made by a step.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Digest of the (compressed) blob.
    pub digest: oci_spec::image::Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// `sha256:` digest of the uncompressed tar.
    pub diff_id: String,
    /// The blob's media type as it will appear in the manifest.
    pub media_type: String,
}

impl From<Layer> for kiln_cas::LayerRecord {
    fn from(layer: Layer) -> Self {
        kiln_cas::LayerRecord {
            digest: layer.digest,
            size: layer.size,
            diff_id: layer.diff_id,
            media_type: layer.media_type,
        }
    }
}

impl From<kiln_cas::LayerRecord> for Layer {
    fn from(layer: kiln_cas::LayerRecord) -> Self {
        Layer {
            digest: layer.digest,
            size: layer.size,
            diff_id: layer.diff_id,
            media_type: layer.media_type,
        }
    }
}
