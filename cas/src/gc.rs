//! Garbage collection of a cache directory: least recently used blobs go first, until the store
//! is within the age and size limits asked for.
//!
//! A blob's last use is the later of what the index's `blobs` family says (builds mark the
//! blobs of every image they finish) and its file's modification time (when it was written or
//! downloaded: a base layer pulled by a build still running has no index entry yet). Blobs used
//! within [`KEEP_RECENT`] are never removed, whatever the limits, since a running build may be
//! about to use them.
//!
//! Everything happens in one write session, so no build records a result while blobs go. The
//! index entries go first (the `blobs` entries, every step record whose layer is removed, every
//! image record whose manifest is removed), in one atomic batch, and the files after: a
//! collection killed half way leaves files no entry names, which the next one removes, and never
//! an entry naming a missing blob.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use oci_spec::image::Digest;

use crate::{Error, Index, Result, Store};

/// Blobs used this recently stay, whatever the limits: a running build may need them.
pub const KEEP_RECENT: Duration = Duration::from_secs(60 * 60);

/// What to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Remove blobs not used for longer than this.
    pub max_age: Option<Duration>,
    /// Remove least recently used blobs until the store holds at most this many bytes.
    pub max_size: Option<u64>,
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Blobs removed.
    pub removed: usize,
    /// Bytes they held.
    pub freed: u64,
    /// Blobs left.
    pub kept: usize,
    /// Bytes left.
    pub kept_bytes: u64,
    /// Step and image records forgotten because they named a removed blob.
    pub records_forgotten: usize,
}

/// A blob file and when it was last used.
#[derive(Debug)]
struct Candidate {
    digest: Digest,
    size: u64,
    used: u64,
}

/// Removes blobs from `store` until `limits` hold (see the module documentation), as of `now`.
pub fn collect(store: &Store, index: &Index, limits: Limits, now: SystemTime) -> Result<Report> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let session = index.write()?;
    let recorded: HashMap<Digest, u64> = session.blobs()?.into_iter().collect();
    let mut candidates = Vec::new();
    for blob in store.list()? {
        let used = recorded
            .get(&blob.digest)
            .copied()
            .unwrap_or(0)
            .max(blob.modified);
        candidates.push(Candidate {
            digest: blob.digest,
            size: blob.size,
            used,
        });
    }
    // Least recently used first; the digest breaks ties so that runs are repeatable.
    candidates.sort_by(|a, b| (a.used, a.digest.as_ref()).cmp(&(b.used, b.digest.as_ref())));
    let protected_since = now.saturating_sub(KEEP_RECENT.as_secs());
    let too_old = limits.max_age.map(|age| now.saturating_sub(age.as_secs()));
    let mut total: u64 = candidates.iter().map(|c| c.size).sum();
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for candidate in candidates {
        let removable = candidate.used < protected_since;
        let expired = too_old.is_some_and(|oldest| candidate.used < oldest);
        let over = limits.max_size.is_some_and(|max| total > max);
        if removable && (expired || over) {
            total -= candidate.size;
            removed.push(candidate);
        } else {
            kept.push(candidate);
        }
    }
    let gone: HashSet<Digest> = removed.iter().map(|c| c.digest.clone()).collect();
    let records_forgotten = session.forget_blobs_and_records(&gone)?;
    for candidate in &removed {
        let path = store.blob_path(&candidate.digest);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("removing blob", path)(err)),
        }
    }
    drop(session);
    Ok(Report {
        removed: removed.len(),
        freed: removed.iter().map(|c| c.size).sum(),
        kept: kept.len(),
        kept_bytes: kept.iter().map(|c| c.size).sum(),
        records_forgotten,
    })
}
