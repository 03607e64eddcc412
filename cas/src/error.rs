//! Errors of the blob store and exports.

use std::path::PathBuf;

/// What went wrong in the store, always naming the file or blob concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What kiln was doing ("writing blob", "reading index").
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A blob's bytes do not hash to the digest it was fetched or referenced by.
    #[error("blob digest mismatch: expected {expected}, the content hashes to {actual}")]
    DigestMismatch {
        /// The digest the blob was supposed to have.
        expected: Box<str>,
        /// The digest of the bytes actually received.
        actual: Box<str>,
    },
    /// A digest string that is not `sha256:<64 hex digits>`.
    #[error("unsupported or malformed digest {0:?} (kiln stores sha256 blobs only)")]
    BadDigest(Box<str>),
    /// A blob needed for an export is not in the store.
    #[error("blob {0} is missing from the store")]
    Missing(Box<str>),
    /// The cache index database failed.
    #[error("cache index: {action}: {message}")]
    Index {
        /// What kiln was doing.
        action: &'static str,
        /// RocksDB's message.
        message: String,
    },
    /// A write was asked of an index on a read-only filesystem.
    #[error("the cache index {0} is on a read-only filesystem")]
    ReadOnly(PathBuf),
    /// A store directory that cannot be written (a read-only mount): open a writable store
    /// elsewhere that reads through to it.
    #[error("the store {0} is on a read-only filesystem")]
    ReadOnlyStore(PathBuf),
    /// A small JSON document (index, manifest) could not be encoded or decoded.
    #[error("{action}: {source}")]
    Json {
        /// What kiln was doing.
        action: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
