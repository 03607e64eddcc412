//! Checking that a cache directory is consistent: whatever a failed, interrupted or killed build
//! left, every step record must name a layer that is in the store whole, and every blob in the
//! store must hold the bytes its name says.
//!
//! The store and index are built so that this always holds (blobs appear by rename once
//! hashed, records are written after their blob); the fault, signal and concurrency tests check
//! it after every run rather than trusting the design.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::{Index, Store};

/// One thing wrong with a cache directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A step record names a layer the store does not have.
    #[error("the step record {key} names the layer {digest}, which is not in the store")]
    MissingLayer {
        /// The record's key, hex.
        key: String,
        /// The layer's digest.
        digest: String,
    },
    /// A step record names a layer whose size in the store differs from the recorded one.
    #[error(
        "the step record {key} names the layer {digest} of {recorded} bytes; the store holds {stored}"
    )]
    WrongSize {
        /// The record's key, hex.
        key: String,
        /// The layer's digest.
        digest: String,
        /// The size in the record.
        recorded: u64,
        /// The size of the file in the store.
        stored: u64,
    },
    /// A blob whose content does not hash to its name.
    #[error("the blob {path} hashes to sha256:{actual}")]
    Corrupt {
        /// The blob's file.
        path: PathBuf,
        /// The hex sha256 of its content.
        actual: String,
    },
    /// The store or the index could not be read.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// What a check looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Step records in the index.
    pub steps: usize,
    /// Step records that name a layer.
    pub layers: usize,
    /// Blobs in the store.
    pub blobs: usize,
    /// Blobs hashed by this check (the others were verified by an earlier one).
    pub hashed: usize,
}

/// Checks a cache directory again and again, hashing each blob once: a named blob never
/// changes, so one that verified stays verified.
#[derive(Debug, Default)]
pub struct Verifier {
    verified: HashSet<String>,
}

impl Verifier {
    /// A verifier that has hashed nothing yet.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Checks `store` and `index`: every step record's layer is in the store with the
    /// recorded size, and every blob of the store (not of a store it reads through to) hashes
    /// to its name. Returns the first problem found.
    pub fn check(&mut self, store: &Store, index: &Index) -> Result<Summary, Problem> {
        let steps = index.read()?.steps()?;
        let mut summary = Summary {
            steps: steps.len(),
            ..Summary::default()
        };
        for (key, record) in &steps {
            let Some(layer) = &record.layer else {
                continue;
            };
            summary.layers += 1;
            let key: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
            let digest = layer.digest.to_string();
            let path = store.blob_path(&layer.digest);
            let Ok(metadata) = std::fs::metadata(&path) else {
                return Err(Problem::MissingLayer { key, digest });
            };
            if metadata.len() != layer.size {
                return Err(Problem::WrongSize {
                    key,
                    digest,
                    recorded: layer.size,
                    stored: metadata.len(),
                });
            }
        }
        for blob in store.list()? {
            summary.blobs += 1;
            let hex = blob.digest.digest().to_owned();
            if self.verified.contains(&hex) {
                continue;
            }
            let path = store.blob_path(&blob.digest);
            let actual = sha256_hex(&path)?;
            if actual != hex {
                return Err(Problem::Corrupt { path, actual });
            }
            summary.hashed += 1;
            self.verified.insert(hex);
        }
        Ok(summary)
    }
}

/// The hex sha256 of a file, streamed.
fn sha256_hex(path: &Path) -> Result<String, crate::Error> {
    let mut file = std::fs::File::open(path).map_err(crate::Error::io("reading blob", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(crate::Error::io("reading blob", path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(crate::writer::to_hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LayerRecord, StepRecord};

    fn directory() -> (tempfile::TempDir, Store, Index) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let index = Index::open(&dir.path().join("index")).unwrap();
        (dir, store, index)
    }

    fn record(store: &Store, bytes: &[u8]) -> StepRecord {
        let blob = store.put(bytes).unwrap();
        StepRecord {
            layer: Some(LayerRecord {
                digest: blob.digest.clone(),
                size: blob.size,
                diff_id: blob.digest.to_string(),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }),
            recorded: 1,
        }
    }

    #[test]
    fn a_consistent_directory_passes_and_each_blob_is_hashed_once() {
        let (_dir, store, index) = directory();
        let step = record(&store, b"layer");
        index.write().unwrap().put_step(&[1; 32], &step).unwrap();
        index
            .write()
            .unwrap()
            .put_step(
                &[2; 32],
                &StepRecord {
                    layer: None,
                    recorded: 1,
                },
            )
            .unwrap();
        let mut verifier = Verifier::new();
        let first = verifier.check(&store, &index).unwrap();
        assert_eq!(
            first,
            Summary {
                steps: 2,
                layers: 1,
                blobs: 1,
                hashed: 1
            }
        );
        assert_eq!(verifier.check(&store, &index).unwrap().hashed, 0);
    }

    #[test]
    fn a_record_naming_a_missing_or_short_layer_is_reported() {
        let (_dir, store, index) = directory();
        let step = record(&store, b"layer");
        index.write().unwrap().put_step(&[1; 32], &step).unwrap();
        let layer = step.layer.clone().unwrap();
        let path = store.blob_path(&layer.digest);
        std::fs::write(&path, b"lay").unwrap();
        let problem = Verifier::new().check(&store, &index).unwrap_err();
        assert!(
            matches!(problem, Problem::WrongSize { stored: 3, .. }),
            "{problem}"
        );
        std::fs::remove_file(&path).unwrap();
        let problem = Verifier::new().check(&store, &index).unwrap_err();
        assert!(matches!(problem, Problem::MissingLayer { .. }), "{problem}");
        assert!(problem.to_string().contains(&layer.digest.to_string()));
    }

    #[test]
    fn a_blob_whose_bytes_changed_is_reported_corrupt() {
        let (_dir, store, index) = directory();
        let blob = store.put(b"config").unwrap();
        std::fs::write(store.blob_path(&blob.digest), b"CONFIG").unwrap();
        let problem = Verifier::new().check(&store, &index).unwrap_err();
        assert!(matches!(problem, Problem::Corrupt { .. }), "{problem}");
    }
}
