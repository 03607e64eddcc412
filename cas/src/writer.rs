//! Writing a blob: hash while writing into a temporary file, then rename it into place.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::store::parse_digest;
use crate::{Blob, Error, Result};

/// A blob being written. Dropping it without [`commit`](Self::commit) discards the bytes.
#[derive(Debug)]
pub struct BlobWriter {
    file: NamedTempFile,
    hasher: Sha256,
    size: u64,
    blobs: PathBuf,
}

impl BlobWriter {
    pub(crate) fn new(ingest: &Path, blobs: &Path) -> Result<BlobWriter> {
        let file = NamedTempFile::new_in(ingest).map_err(Error::io("creating blob in", ingest))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            size: 0,
            blobs: blobs.to_path_buf(),
        })
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Names the blob by the digest of what was written and moves it into the store.
    pub fn commit(self) -> Result<Blob> {
        let hex = to_hex(&self.hasher.clone().finalize());
        let digest = parse_digest(&format!("sha256:{hex}"))?;
        self.persist(digest)
    }

    /// Like [`commit`](Self::commit), but refuses (and discards) the blob unless its bytes hash to
    /// `expected`: this is where every pulled blob is verified.
    pub fn commit_expecting(self, expected: &Digest) -> Result<Blob> {
        let hex = to_hex(&self.hasher.clone().finalize());
        if expected.algorithm().as_ref() != "sha256" || expected.digest() != hex {
            return Err(Error::DigestMismatch {
                expected: expected.to_string().into(),
                actual: format!("sha256:{hex}").into(),
            });
        }
        self.persist(expected.clone())
    }

    fn persist(self, digest: Digest) -> Result<Blob> {
        let target = self.blobs.join(digest.digest());
        let size = self.size;
        if !target.exists() {
            // Same directory tree, so this is an atomic rename: readers see all or nothing.
            self.file.persist(&target).map_err(|err| Error::Io {
                action: "storing blob",
                path: target.clone(),
                source: err.error,
            })?;
        }
        Ok(Blob { digest, size })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Lower-case hex of a digest.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
