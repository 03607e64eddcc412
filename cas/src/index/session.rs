//! One locked use of the index database.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

use oci_spec::image::Digest;
use rocksdb::{ColumnFamilyDescriptor, DB, DBCompressionType, IteratorMode, Options, WriteBatch};

use super::{ALIASES, BLOBS, FAMILIES, FILES, IMAGES, SITES, STEPS};
use crate::record::{FileIdentity, ImageRecord, SiteRecord, StepRecord};
use crate::{Error, Result};

/// An open index, locked for as long as it lives. Reads of a database that does not exist yet
/// find nothing.
pub struct Session {
    db: Option<DB>,
    writable: bool,
    // Released when the session ends, after the database is closed (fields drop in order).
    _lock: Option<File>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("open", &self.db.is_some())
            .field("writable", &self.writable)
            .finish()
    }
}

impl Session {
    pub(super) fn read(path: &Path, lock: Option<File>) -> Result<Session> {
        if !path.join("CURRENT").exists() {
            return Ok(Session {
                db: None,
                writable: false,
                _lock: lock,
            });
        }
        let families = DB::list_cf(&Options::default(), path).map_err(db_error("listing", path))?;
        let db = DB::open_cf_for_read_only(&options(), path, families, false)
            .map_err(db_error("opening", path))?;
        Ok(Session {
            db: Some(db),
            writable: false,
            _lock: lock,
        })
    }

    pub(super) fn write(path: &Path, lock: File) -> Result<Session> {
        let mut opts = options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let families = FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, options()));
        let db =
            DB::open_cf_descriptors(&opts, path, families).map_err(db_error("opening", path))?;
        Ok(Session {
            db: Some(db),
            writable: true,
            _lock: Some(lock),
        })
    }

    /// The recorded result of the step with this node key.
    pub fn step(&self, key: &[u8; 32]) -> Result<Option<StepRecord>> {
        self.get_json(STEPS, key)
    }

    /// The content key a definition key was last resolved to (see the build's re-convergence).
    pub fn alias(&self, key: &[u8; 32]) -> Result<Option<[u8; 32]>> {
        Ok(self
            .get(ALIASES, key)?
            .and_then(|value| <[u8; 32]>::try_from(value.as_slice()).ok()))
    }

    /// The blake3 hash recorded for a file with this identity.
    pub fn file(&self, identity: &FileIdentity) -> Result<Option<[u8; 32]>> {
        Ok(self
            .get(FILES, &identity.to_key())?
            .and_then(|value| file_hash(&value)))
    }

    /// The blake3 hashes recorded for many file identities, in one batched lookup (a
    /// context's files are looked up all at once, never one read per file).
    pub fn files(&self, identities: &[FileIdentity]) -> Result<Vec<Option<[u8; 32]>>> {
        let Some(db) = &self.db else {
            return Ok(vec![None; identities.len()]);
        };
        let Some(cf) = db.cf_handle(FILES) else {
            return Ok(vec![None; identities.len()]);
        };
        let keys: Vec<[u8; 44]> = identities.iter().map(FileIdentity::to_key).collect();
        db.batched_multi_get_cf(cf, keys.iter(), false)
            .into_iter()
            .map(|found| {
                found
                    .map(|value| value.and_then(|value| file_hash(&value)))
                    .map_err(|err| Error::Index {
                        action: "reading",
                        message: err.into_string(),
                    })
            })
            .collect()
    }

    /// What `reference` (with its platform folded in by the caller) last resolved to.
    pub fn image(&self, reference: &str) -> Result<Option<ImageRecord>> {
        self.get_json(IMAGES, reference.as_bytes())
    }

    /// Every blob with when it was last used (seconds since the epoch), for garbage collection.
    pub fn blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let Some(db) = &self.db else {
            return Ok(Vec::new());
        };
        let Some(cf) = db.cf_handle(BLOBS) else {
            return Ok(Vec::new());
        };
        let mut blobs = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(|err| Error::Index {
                action: "reading",
                message: err.into_string(),
            })?;
            let digest = std::str::from_utf8(&key)
                .ok()
                .and_then(|text| text.parse::<Digest>().ok());
            let used = <[u8; 8]>::try_from(value.as_ref())
                .ok()
                .map(u64::from_be_bytes);
            if let (Some(digest), Some(used)) = (digest, used) {
                blobs.push((digest, used));
            }
        }
        Ok(blobs)
    }

    /// The inputs recorded at a step site by the last build (see `kiln cache explain`).
    pub fn site(&self, site: &str) -> Result<Option<SiteRecord>> {
        self.get_json(SITES, site.as_bytes())
    }

    /// Records the inputs of every step of a build at its site, all at once.
    pub fn put_sites(&self, sites: &[(String, SiteRecord)]) -> Result<()> {
        let (db, cf) = self.writable_family(SITES)?;
        let mut batch = WriteBatch::default();
        for (site, record) in sites {
            let bytes = serde_json::to_vec(record).map_err(|source| Error::Json {
                action: "encoding an index record",
                source,
            })?;
            batch.put_cf(cf, site.as_bytes(), bytes);
        }
        db.write(batch).map_err(write_error)
    }

    /// Records a step's result. Call only once every blob it names is complete in the store.
    pub fn put_step(&self, key: &[u8; 32], record: &StepRecord) -> Result<()> {
        self.put_json(STEPS, key, record)
    }

    /// Records that definition key `from` resolved to content key `to`.
    pub fn put_alias(&self, from: &[u8; 32], to: &[u8; 32]) -> Result<()> {
        self.put(ALIASES, from, to)
    }

    /// Records file hashes, all at once, stamped with the time (for `kiln cache gc`).
    pub fn put_files(&self, files: &[(FileIdentity, [u8; 32])]) -> Result<()> {
        let (db, cf) = self.writable_family(FILES)?;
        let now = crate::record::now().to_be_bytes();
        let mut batch = WriteBatch::default();
        for (identity, hash) in files {
            let mut value = [0u8; 40];
            value[..32].copy_from_slice(hash);
            value[32..].copy_from_slice(&now);
            batch.put_cf(cf, identity.to_key(), value);
        }
        db.write(batch).map_err(write_error)
    }

    /// Forgets the file hashes recorded before `oldest` (seconds since the epoch): files long
    /// gone or changed leave entries nothing would ever read. A forgotten hash of a file that
    /// is still there only costs reading it once more. Returns how many went.
    pub fn forget_files_before(&self, oldest: u64) -> Result<usize> {
        let mut stale = Vec::new();
        self.each(FILES, |key, value| {
            if file_recorded(value) < oldest {
                stale.push(key.to_vec());
            }
        })?;
        if stale.is_empty() {
            return Ok(0);
        }
        let (db, cf) = self.writable_family(FILES)?;
        let mut batch = WriteBatch::default();
        for key in &stale {
            batch.delete_cf(cf, key);
        }
        db.write(batch).map_err(write_error)?;
        Ok(stale.len())
    }

    /// Records what `reference` resolved to.
    pub fn put_image(&self, reference: &str, record: &ImageRecord) -> Result<()> {
        self.put_json(IMAGES, reference.as_bytes(), record)
    }

    /// Marks blobs as used at `when` (seconds since the epoch).
    pub fn touch_blobs<'a>(
        &self,
        digests: impl IntoIterator<Item = &'a Digest>,
        when: u64,
    ) -> Result<()> {
        let (db, cf) = self.writable_family(BLOBS)?;
        let mut batch = WriteBatch::default();
        for digest in digests {
            batch.put_cf(cf, digest.to_string(), when.to_be_bytes());
        }
        db.write(batch).map_err(write_error)
    }

    /// Forgets blobs (after garbage collection removed their files).
    pub fn forget_blobs<'a>(&self, digests: impl IntoIterator<Item = &'a Digest>) -> Result<()> {
        let (db, cf) = self.writable_family(BLOBS)?;
        let mut batch = WriteBatch::default();
        for digest in digests {
            batch.delete_cf(cf, digest.to_string());
        }
        db.write(batch).map_err(write_error)
    }

    /// Every step record, for checks over the whole index (crash tests, `kiln cache gc`).
    pub fn steps(&self) -> Result<Vec<([u8; 32], StepRecord)>> {
        let mut steps = Vec::new();
        self.each(STEPS, |key, value| {
            if let (Ok(key), Ok(record)) = (
                <[u8; 32]>::try_from(key),
                serde_json::from_slice::<StepRecord>(value),
            ) {
                steps.push((key, record));
            }
        })?;
        Ok(steps)
    }

    /// Forgets the `blobs` entries of `gone`, and every step record whose layer and every image
    /// record whose manifest is among them, in one atomic batch. Returns how many step and
    /// image records went.
    pub fn forget_blobs_and_records(&self, gone: &HashSet<Digest>) -> Result<usize> {
        let (db, blobs) = self.writable_family(BLOBS)?;
        let (_, steps) = self.writable_family(STEPS)?;
        let (_, images) = self.writable_family(IMAGES)?;
        let mut batch = WriteBatch::default();
        for digest in gone {
            batch.delete_cf(blobs, digest.to_string());
        }
        let mut forgotten = 0;
        self.each(STEPS, |key, value| {
            let names_gone = serde_json::from_slice::<StepRecord>(value)
                .ok()
                .and_then(|record| record.layer)
                .is_some_and(|layer| gone.contains(&layer.digest));
            if names_gone {
                batch.delete_cf(steps, key);
                forgotten += 1;
            }
        })?;
        self.each(IMAGES, |key, value| {
            let names_gone = serde_json::from_slice::<ImageRecord>(value)
                .is_ok_and(|record| gone.contains(&record.manifest));
            if names_gone {
                batch.delete_cf(images, key);
                forgotten += 1;
            }
        })?;
        db.write(batch).map_err(write_error)?;
        Ok(forgotten)
    }

    /// Calls `visit` with every key and value of `family`.
    fn each(&self, family: &str, mut visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let Some(cf) = db.cf_handle(family) else {
            return Ok(());
        };
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(|err| Error::Index {
                action: "reading",
                message: err.into_string(),
            })?;
            visit(&key, &value);
        }
        Ok(())
    }

    fn get(&self, family: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(db) = &self.db else {
            return Ok(None);
        };
        let Some(cf) = db.cf_handle(family) else {
            return Ok(None);
        };
        db.get_cf(cf, key).map_err(|err| Error::Index {
            action: "reading",
            message: err.into_string(),
        })
    }

    /// A value that does not decode (written by another version, or damaged) reads as absent:
    /// a cache miss, never a wrong hit.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        family: &str,
        key: &[u8],
    ) -> Result<Option<T>> {
        Ok(self
            .get(family, key)?
            .and_then(|value| serde_json::from_slice(&value).ok()))
    }

    fn put(&self, family: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let (db, cf) = self.writable_family(family)?;
        db.put_cf(cf, key, value).map_err(write_error)
    }

    fn put_json<T: serde::Serialize>(&self, family: &str, key: &[u8], value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Json {
            action: "encoding an index record",
            source,
        })?;
        self.put(family, key, &bytes)
    }

    fn writable_family(&self, family: &str) -> Result<(&DB, &rocksdb::ColumnFamily)> {
        let db = self
            .db
            .as_ref()
            .filter(|_| self.writable)
            .ok_or_else(|| Error::Index {
                action: "writing",
                message: "the session is read-only".into(),
            })?;
        let cf = db.cf_handle(family).ok_or_else(|| Error::Index {
            action: "writing",
            message: format!("column family {family} is missing"),
        })?;
        Ok((db, cf))
    }
}

/// Options for the database and each family: small, point lookups, lz4 with zstd at the bottom.
fn options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    opts.set_keep_log_file_num(2);
    opts.set_max_log_file_size(1 << 20);
    opts
}

fn db_error(action: &'static str, path: &Path) -> impl FnOnce(rocksdb::Error) -> Error {
    let path = path.display().to_string();
    move |err| Error::Index {
        action,
        message: format!("{path}: {}", err.into_string()),
    }
}

fn write_error(err: rocksdb::Error) -> Error {
    Error::Index {
        action: "writing",
        message: err.into_string(),
    }
}

/// The hash in a `files` value: 32 bytes, then when it was recorded.
fn file_hash(value: &[u8]) -> Option<[u8; 32]> {
    value
        .get(..32)
        .and_then(|hash| <[u8; 32]>::try_from(hash).ok())
}

/// When a `files` value was recorded; 0 for an entry without a time.
fn file_recorded(value: &[u8]) -> u64 {
    value
        .get(32..40)
        .and_then(|time| <[u8; 8]>::try_from(time).ok())
        .map_or(0, u64::from_be_bytes)
}
