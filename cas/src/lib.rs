//! kiln's content-addressed store.
//!
//! Blobs (layers, configs, manifests) live as files named by their sha256 digest in an
//! [OCI image layout](https://github.com/opencontainers/image-spec/blob/main/image-layout.md), so
//! the store can be inspected with `skopeo`/`umoci` and copied with plain file tools. A blob only
//! appears under its name once it is complete and its digest has been computed from the bytes
//! written (hash while writing, then an atomic rename), so an interrupted build never leaves a
//! partial or mislabelled blob behind.
//!
//! [`export`] writes finished images out of the store as an OCI layout directory or a
//! docker-archive tarball.

mod error;
pub mod export;
pub mod gc;
pub mod index;
pub mod record;
pub mod refs;
mod store;
pub mod verify;
mod writer;

pub use error::Error;
pub use index::{Index, Session};
pub use record::{FileIdentity, ImageRecord, LayerRecord, SiteRecord, StepRecord};
pub use store::{Blob, Store, StoredBlob};
pub use verify::Verifier;
pub use writer::BlobWriter;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
