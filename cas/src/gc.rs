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
//! an entry naming a missing blob. With a maximum age, context file hashes recorded before it
//! go too (a hash forgotten too early only costs reading that file once more).

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
    /// Context file hashes forgotten for being older than the maximum age.
    pub file_hashes_forgotten: usize,
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
    let file_hashes_forgotten = match too_old {
        Some(oldest) => session.forget_files_before(oldest)?,
        None => 0,
    };
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
        file_hashes_forgotten,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LayerRecord, StepRecord};

    const DAY: u64 = 24 * 60 * 60;

    fn record(digest: &Digest) -> StepRecord {
        StepRecord {
            layer: Some(LayerRecord {
                digest: digest.clone(),
                size: 1,
                diff_id: digest.to_string(),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }),
            recorded: 0,
        }
    }

    #[test]
    fn least_recently_used_blobs_go_first_recent_ones_stay_and_their_records_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let index = Index::open(&dir.path().join("index")).unwrap();
        let now = SystemTime::now() + Duration::from_secs(30 * DAY);
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let old = store.put(&[1u8; 1000]).unwrap();
        let middle = store.put(&[2u8; 1000]).unwrap();
        let recent = store.put(&[3u8; 1000]).unwrap();
        {
            let session = index.write().unwrap();
            session.touch_blobs([&old.digest], secs - 20 * DAY).unwrap();
            session
                .touch_blobs([&middle.digest], secs - 10 * DAY)
                .unwrap();
            session.touch_blobs([&recent.digest], secs - 60).unwrap();
            session.put_step(&[1; 32], &record(&old.digest)).unwrap();
            session.put_step(&[3; 32], &record(&recent.digest)).unwrap();
        }
        // By age: only the 20-day-old blob, and the step naming it.
        let limits = Limits {
            max_age: Some(Duration::from_secs(15 * DAY)),
            max_size: None,
        };
        let report = collect(&store, &index, limits, now).unwrap();
        assert_eq!(
            (report.removed, report.freed, report.records_forgotten),
            (1, 1000, 1)
        );
        assert!(!store.contains(&old.digest));
        assert!(store.contains(&middle.digest) && store.contains(&recent.digest));
        let session = index.read().unwrap();
        assert_eq!(session.step(&[1; 32]).unwrap(), None);
        assert!(session.step(&[3; 32]).unwrap().is_some());
        drop(session);
        // By size: a zero limit removes everything but the blob used within the hour.
        let limits = Limits {
            max_age: None,
            max_size: Some(0),
        };
        let report = collect(&store, &index, limits, now).unwrap();
        assert_eq!(
            (report.removed, report.kept, report.kept_bytes),
            (1, 1, 1000)
        );
        assert!(!store.contains(&middle.digest));
        assert!(store.contains(&recent.digest));
        let used: Vec<_> = index.read().unwrap().blobs().unwrap();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].0, recent.digest);
    }

    #[test]
    fn file_hashes_recorded_before_the_maximum_age_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let index = Index::open(&dir.path().join("index")).unwrap();
        let identity = |ino| crate::FileIdentity {
            dev: 1,
            ino,
            size: 3,
            mtime_ns: 1,
            ctime_ns: 1,
            mode: 0o100644,
        };
        index
            .write()
            .unwrap()
            .put_files(&[(identity(1), [7; 32]), (identity(2), [8; 32])])
            .unwrap();
        let keep_all = Limits {
            max_age: Some(Duration::from_secs(DAY)),
            max_size: None,
        };
        let report = collect(&store, &index, keep_all, SystemTime::now()).unwrap();
        assert_eq!(report.file_hashes_forgotten, 0);
        assert_eq!(
            index.read().unwrap().files(&[identity(1)]).unwrap(),
            [Some([7; 32])]
        );
        // A day later, both were recorded before the limit.
        let later = SystemTime::now() + Duration::from_secs(2 * DAY);
        let report = collect(&store, &index, keep_all, later).unwrap();
        assert_eq!(report.file_hashes_forgotten, 2);
        assert_eq!(
            index
                .read()
                .unwrap()
                .files(&[identity(1), identity(2)])
                .unwrap(),
            [None, None]
        );
    }
}
