//! Where a build keeps its blobs and work area: the cache directory, or, when that is mounted
//! read-only (a warmer's volume in a build pod), a writable directory under `$TMPDIR` whose
//! store reads through to the read-only one.
//!
//! On a read-only cache directory the store's blobs are used in place (base layers the warmer
//! stored are never copied) and the index is only read (see `crate::cache::Cache::open`); new
//! blobs, the work area, unpacked contexts and `RUN --mount=type=cache` directories go to
//! `$TMPDIR/kiln-<uid>`, which lives as long as the pod's temporary directory.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kiln_cas::Store;

/// The cache directory of a build in kiln's own root (`--isolation=none`, the executor image)
/// when `--cache-dir` is not given: Kaniko's default, where pods mount the warmer's volume.
pub const CONTAINER_CACHE_DIR: &str = "/cache";

/// The directories of one build.
#[derive(Debug)]
pub struct CacheDirs {
    /// The blob store (reading through to the read-only one, if the cache directory is).
    pub store: Store,
    /// A directory the build may write: the cache directory, or the fallback under `$TMPDIR`.
    pub writable: PathBuf,
}

impl CacheDirs {
    /// Opens the store of `cache_dir`, falling back to `$TMPDIR` when it is read-only.
    pub fn open(cache_dir: &Path) -> anyhow::Result<CacheDirs> {
        let store_dir = cache_dir.join("store");
        match Store::open(&store_dir) {
            Ok(store) => Ok(CacheDirs {
                store,
                writable: cache_dir.to_path_buf(),
            }),
            Err(kiln_cas::Error::ReadOnlyStore(_)) => {
                let writable = fallback_dir()?;
                let scratch = writable.join("store");
                let mut store = Store::open(&scratch)
                    .with_context(|| format!("opening the store in {}", scratch.display()))?;
                // A read-only volume without a store yet (only an index, or nothing) has no
                // blobs to read through to.
                if store_dir.join("oci-layout").is_file() {
                    store = store.reading_through(&store_dir)?;
                }
                tracing::info!(
                    "The cache directory {} is read-only: its blobs are used in place, new ones and the work area go to {}",
                    cache_dir.display(),
                    writable.display()
                );
                Ok(CacheDirs { store, writable })
            }
            Err(err) => {
                Err(err).with_context(|| format!("opening the store in {}", store_dir.display()))
            }
        }
    }
}

/// In kiln's own root (`--isolation=none`), keeps the writable directory a build fell back to
/// out of every layer, snapshot and cleanup, as the cache directory itself is.
pub fn keep_out_of_layers(settings: &mut super::Settings, writable: &Path) {
    if settings.isolation.mode != kiln_exec::run::Isolation::None
        || settings.isolation.ignore.ignores(writable)
    {
        return;
    }
    settings.isolation.ignore.extend([writable]);
    settings.snapshot.ignore_paths = settings
        .isolation
        .ignore
        .paths()
        .iter()
        .map(|path| Path::new("/").join(path))
        .collect();
    tracing::debug!("ignore list: {:?}", settings.isolation.ignore.paths());
}

/// `$TMPDIR/kiln-<uid>` (`/tmp` without `TMPDIR`): per user, so that two users of one host do
/// not share a work area.
fn fallback_dir() -> anyhow::Result<PathBuf> {
    let uid = std::fs::metadata("/proc/self")
        .context("reading /proc/self for the user id")?
        .uid();
    Ok(std::env::temp_dir().join(format!("kiln-{uid}")))
}
