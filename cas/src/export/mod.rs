//! Writing a finished image out of the store: an OCI layout directory (`--oci-layout-path`) or a
//! docker-archive tarball (`--tar-path`, what `docker load` and `skopeo docker-archive:` read).
//!
//! Both are written so that a failure leaves the destination as it was: blobs first (extra
//! blobs are harmless), and the file that makes the image visible (`index.json`, the tarball)
//! last, by an atomic rename.

mod docker_archive;
mod oci_layout;

pub use docker_archive::write_docker_archive;
pub use oci_layout::write_oci_layout;

use oci_spec::image::Digest;

/// An image whose manifest, config and layers are all in the store.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Digest of the image manifest.
    pub manifest: Digest,
    /// Size of the image manifest in bytes.
    pub manifest_size: u64,
    /// Media type of the image manifest.
    pub manifest_media_type: String,
    /// Digest of the image config.
    pub config: Digest,
    /// Layer digests, base first.
    pub layers: Vec<Digest>,
}
