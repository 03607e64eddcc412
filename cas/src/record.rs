//! What the index remembers, as plain values shared by the local index and the remote cache.

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

/// A layer a cached step produced: enough to append it to an image without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// `sha256:` digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: String,
    /// The layer's media type (gzip or zstd, OCI or Docker).
    pub media_type: String,
}

/// The result of a step, recorded under its node key once its layer is complete in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The layer the step produced, or `None` when it changed no file (an empty history entry).
    pub layer: Option<LayerRecord>,
    /// When it was recorded, in seconds since the Unix epoch (for `--cache-ttl`).
    pub recorded: u64,
}

/// A base image as last resolved: what a tag pointed at, and when that was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Digest of the platform manifest the reference resolved to.
    pub manifest: Digest,
    /// When the registry was asked (or the warmer stored it), seconds since the Unix epoch.
    pub fetched: u64,
}

/// A step's inputs as named fields at its last recorded build, under its site (Dockerfile,
/// stage, position): what `kiln cache explain` compares to name the input that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRecord {
    /// The step's cache key in that build.
    pub key: [u8; 32],
    /// (name, value) pairs, as `Plan::key_inputs` and the build describe them.
    pub inputs: Vec<(String, String)>,
    /// When it was recorded, in seconds since the Unix epoch.
    pub recorded: u64,
}

/// What identifies a file's content without reading it: if none of these changed, neither did
/// the bytes (the ctime catches writes that restore the mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time in nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// File type and permission bits.
    pub mode: u32,
}

impl FileIdentity {
    /// The fixed-width big-endian key this identity is stored under.
    pub fn to_key(&self) -> [u8; 44] {
        let mut key = [0u8; 44];
        key[0..8].copy_from_slice(&self.dev.to_be_bytes());
        key[8..16].copy_from_slice(&self.ino.to_be_bytes());
        key[16..24].copy_from_slice(&self.size.to_be_bytes());
        key[24..32].copy_from_slice(&self.mtime_ns.to_be_bytes());
        key[32..40].copy_from_slice(&self.ctime_ns.to_be_bytes());
        key[40..44].copy_from_slice(&self.mode.to_be_bytes());
        key
    }
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differing_in_any_field_have_different_keys() {
        let base = FileIdentity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
            mode: 0o100644,
        };
        let variants = [
            FileIdentity { dev: 9, ..base },
            FileIdentity { ino: 9, ..base },
            FileIdentity { size: 9, ..base },
            FileIdentity {
                mtime_ns: 9,
                ..base
            },
            FileIdentity {
                ctime_ns: 9,
                ..base
            },
            FileIdentity {
                mode: 0o100755,
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(variant.to_key(), base.to_key(), "{variant:?}");
        }
    }
}
