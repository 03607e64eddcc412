//! The store itself: an OCI image layout directory.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;

use crate::{BlobWriter, Error, Result};

/// Ingest files untouched for this long belong to a writer that died (SIGKILL, OOM): a live
/// writer touches its file with every chunk.
const ABANDONED_INGEST: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// The `oci-layout` marker every OCI image layout carries.
const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// A blob that is complete in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its sha256 digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A blob file as garbage collection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its digest (the file name).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When the file was written, in seconds since the Unix epoch.
    pub modified: u64,
}

/// A content-addressed blob store rooted at a directory, optionally reading through to a
/// read-only one.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// A store on a read-only mount (a warmer's volume): blobs found there are used where they
    /// are, new ones go to `root`.
    lower: Option<PathBuf>,
}

impl Store {
    /// Opens the store at `dir`, creating the layout (and the directory) if needed. A directory
    /// that cannot be written is [`Error::ReadOnlyStore`]: open a writable store elsewhere
    /// and read this one through [`Store::reading_through`].
    pub fn open(dir: &Path) -> Result<Store> {
        let blobs = dir.join("blobs").join("sha256");
        let ingest = dir.join("ingest");
        let created = fs::create_dir_all(&blobs).and_then(|()| fs::create_dir_all(&ingest));
        // Creating directories that exist succeeds on a read-only mount: only a write tells.
        match created.and_then(|()| tempfile::tempfile_in(&ingest)) {
            Ok(_) => {}
            Err(err) if is_read_only(&err) => return Err(Error::ReadOnlyStore(dir.to_path_buf())),
            Err(err) => return Err(Error::io("creating store", dir)(err)),
        }
        remove_abandoned(&ingest, ABANDONED_INGEST);
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            fs::write(&layout, OCI_LAYOUT).map_err(Error::io("writing", &layout))?;
        }
        let index = dir.join("index.json");
        if !index.exists() {
            let empty = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
            fs::write(&index, empty).map_err(Error::io("writing", &index))?;
        }
        Ok(Store {
            root: dir.to_path_buf(),
            lower: None,
        })
    }

    /// This store, also reading the blobs of the store at `read_only` (which it never writes):
    /// a blob present there is used in place.
    pub fn reading_through(self, read_only: &Path) -> Result<Store> {
        let marker = read_only.join("oci-layout");
        if !marker.is_file() {
            return Err(Error::io("opening the read-only store", read_only)(
                std::io::Error::new(std::io::ErrorKind::NotFound, "no oci-layout file"),
            ));
        }
        Ok(Store {
            lower: Some(read_only.to_path_buf()),
            ..self
        })
    }

    /// The read-only store this one reads through, if any.
    pub fn read_only_lower(&self) -> Option<&Path> {
        self.lower.as_deref()
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives: in the read-only store if it is there and not in
    /// this one, else in this one (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let own = blob_in(&self.root, digest);
        match &self.lower {
            Some(lower) if !own.is_file() => {
                let theirs = blob_in(lower, digest);
                if theirs.is_file() { theirs } else { own }
            }
            _ => own,
        }
    }

    /// Whether the blob is complete in the store (or the read-only store it reads through).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Every blob of this store (not of the read-only one), for garbage collection. Files whose
    /// name is not a sha256 digest are left out.
    pub fn list(&self) -> Result<Vec<StoredBlob>> {
        let dir = self.root.join("blobs").join("sha256");
        let mut blobs = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("listing", &dir))? {
            let entry = entry.map_err(Error::io("listing", &dir))?;
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|hex| parse_digest(&format!("sha256:{hex}")).ok())
            else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Removed since it was listed (another collection).
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(Error::io("reading", entry.path())(err)),
            };
            let modified = meta
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_secs());
            blobs.push(StoredBlob {
                digest,
                size: meta.len(),
                modified,
            });
        }
        Ok(blobs)
    }

    /// Starts writing a new blob; it is named only when [`BlobWriter::commit`] succeeds.
    pub fn writer(&self) -> Result<BlobWriter> {
        BlobWriter::new(
            &self.root.join("ingest"),
            &self.root.join("blobs").join("sha256"),
        )
    }

    /// Stores a small in-memory blob (a manifest or config).
    pub fn put(&self, bytes: &[u8]) -> Result<Blob> {
        let mut writer = self.writer()?;
        std::io::Write::write_all(&mut writer, bytes)
            .map_err(Error::io("writing blob", self.root.join("ingest")))?;
        writer.commit()
    }

    /// Reads a small blob (manifest, config) whole, refusing anything over `limit` bytes.
    pub fn read_small(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let size = fs::metadata(&path)
            .map_err(|_| Error::Missing(digest.to_string().into()))?
            .len();
        if size > limit {
            return Err(Error::Io {
                action: "reading",
                path,
                source: std::io::Error::other(format!(
                    "{size} bytes is over the {limit}-byte limit"
                )),
            });
        }
        fs::read(&path).map_err(Error::io("reading blob", path))
    }
}

fn blob_in(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm().as_ref())
        .join(digest.digest())
}

/// Errors that mean "this filesystem cannot be written" rather than "something is wrong".
pub(crate) fn is_read_only(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::ReadOnlyFilesystem
        || err.kind() == std::io::ErrorKind::PermissionDenied
}

/// Deletes partial blobs whose writer is long gone. Best effort: the store is correct without it
/// (an ingest file is never read), this only returns the space.
fn remove_abandoned(ingest: &Path, older_than: std::time::Duration) {
    let Ok(entries) = fs::read_dir(ingest) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > older_than);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Parses `sha256:<hex>` into a digest, refusing anything else.
pub(crate) fn parse_digest(text: &str) -> Result<Digest> {
    let digest: Digest = text.parse().map_err(|_| Error::BadDigest(text.into()))?;
    let hex = digest.digest();
    if digest.algorithm().as_ref() != "sha256"
        || hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::BadDigest(text.into()));
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_committed_blob_is_named_by_the_sha256_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = store.put(b"hello").unwrap();
        assert_eq!(
            blob.digest.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blob.size, 5);
        assert_eq!(fs::read(store.blob_path(&blob.digest)).unwrap(), b"hello");
        assert!(dir.path().join("oci-layout").is_file());
    }

    #[test]
    fn a_blob_that_does_not_match_its_expected_digest_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let expected =
            parse_digest("sha256:0000000000000000000000000000000000000000000000000000000000000000")
                .unwrap();
        let mut writer = store.writer().unwrap();
        writer.write_all(b"not what was promised").unwrap();
        let err = writer.commit_expecting(&expected).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&expected));
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn an_abandoned_writer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = store.writer().unwrap();
        writer.write_all(b"partial").unwrap();
        drop(writer);
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn partial_blobs_of_dead_writers_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        let old = dir.path().join("ingest/.tmpOLD");
        let fresh = dir.path().join("ingest/.tmpNEW");
        fs::write(&old, b"partial").unwrap();
        fs::write(&fresh, b"partial").unwrap();
        let two_days_ago = std::time::SystemTime::now() - 2 * ABANDONED_INGEST;
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        Store::open(dir.path()).unwrap();
        assert!(!old.exists());
        assert!(fresh.exists());
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in ["sha256:abc", "md5:00", "sha256:ZZ", "nothing"] {
            assert!(parse_digest(bad).is_err(), "{bad}");
        }
    }
}
