//! The overlay snapshot strategy: a `RUN` writes into an overlayfs upper directory, which is then
//! exactly what it changed.
//!
//! The sandbox mounts an overlay on the stage's root filesystem (lower: the root as it is, upper:
//! a fresh directory beside it), so the command sees and changes the usual tree while every write
//! lands in the upper directory: new and modified files (copied up whole, since `metacopy` is
//! off), whiteouts (character devices 0/0) for deletions, and the `trusted.overlay.opaque` marker
//! on a directory that replaced one below. Reading that directory costs what the command changed,
//! not what the image holds, which is the point: no scan of the root before or after.
//!
//! After the command, [`Overlay::changes`] reads the upper directory into [`Changes`] and
//! [`Overlay::merge`] moves it into the root (renames on the same filesystem, whiteouts become
//! removals), so the root is again one plain tree for the layer writer, COPY and the next step.
//! Stacking one overlay per step instead would cap the number of steps (overlayfs has a lower
//! layer limit) and make every later read go through the stack.
//!
//! `redirect_dir`, `metacopy` and `index` are off so the upper directory never holds a redirect,
//! a metadata-only copy or an index entry that would need the lower tree to be interpreted;
//! `xino` is off since nothing reads inode numbers through the mount. Where overlayfs cannot be
//! mounted (no kernel support, an upper directory on overlayfs itself, no `CAP_SYS_ADMIN`),
//! [`probe`] says so and the caller falls back to the scan strategy.
//!
//! Where the kernel has it (Linux 5.10+, found by [`probe`]), overlays are mounted `volatile`.
//! Otherwise unmounting an overlay syncs its upper directory's whole filesystem, which after
//! unpacking a base image means writing back every file of it before the `RUN` can end: 1.3 s for
//! a 200,000-file base on an idle disk, and far more on a busy one. Nothing here needs that
//! sync: the upper and work directories are merged and removed after every step, and a build cut
//! short by a crash starts over from the cache, never from a half-written root.

mod merge;
mod upper;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::changes::Changes;
use crate::fsroot::{RootFs, timestamps};

/// Why the overlay strategy failed.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// A filesystem operation on the upper directory or the root failed.
    #[error("overlay snapshot: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path at fault (host path of the upper directory, or root-relative).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A path cannot be written in overlay mount options.
    #[error(
        "overlay snapshot: {} cannot be used as an overlay directory: it contains ',', ':', '\\\\' or a NUL byte",
        path.display()
    )]
    UnusablePath {
        /// The directory at fault.
        path: PathBuf,
    },
    /// overlayfs cannot be mounted here.
    #[error("overlayfs cannot be mounted here ({source}); use --snapshot-strategy scan")]
    Unavailable {
        /// Why the probe mount failed.
        #[source]
        source: io::Error,
    },
}

/// Whether [`probe`] found that this kernel mounts overlays with `volatile`. A property of the
/// kernel, the same for every overlay of the process, hence one flag rather than a parameter
/// threaded through every caller; until a probe succeeds, overlays are mounted without it.
static VOLATILE: AtomicBool = AtomicBool::new(false);

/// Mount options every overlay shares (see the module documentation).
const FIXED_OPTIONS: &[u8] = b"redirect_dir=off,metacopy=off,index=off,xino=off";

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OverlayError + 'a {
    move |source| OverlayError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One overlay to mount in the `RUN` sandbox: its mount point and mount options.
#[derive(Debug, Clone)]
pub struct OverlayMount {
    pub(crate) target: CString,
    pub(crate) options: CString,
    /// The host directory it covers (and reads as its lower layer).
    pub(crate) lower: PathBuf,
    /// Where the writes go.
    pub(crate) upper: PathBuf,
}

/// The upper and work directories of one overlay over a directory.
#[derive(Debug)]
pub struct Overlay {
    /// The directory the overlay is mounted on, which is also its lower layer.
    lower: PathBuf,
    /// Holds `upper` and `work`; removed as a whole.
    dir: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

impl Overlay {
    /// Creates empty upper and work directories in `dir` (created; it must not exist, and must
    /// be on the same filesystem as the root, so merging is renaming) for an overlay on `lower`,
    /// a host directory. The upper directory gets `lower`'s mode, owner and times: overlayfs shows
    /// the upper root directory's attributes for the merged root.
    pub fn create(lower: &Path, dir: &Path) -> Result<Overlay, OverlayError> {
        let upper = dir.join("upper");
        let work = dir.join("work");
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        std::fs::create_dir(&upper).map_err(io_error("creating", &upper))?;
        std::fs::create_dir(&work).map_err(io_error("creating", &work))?;
        let st = rustix::fs::stat(lower).map_err(|e| io_error("inspecting", lower)(e.into()))?;
        merge::copy_owner_mode(&st, &upper)?;
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &upper,
            &timestamps(&st),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|e| io_error("setting the times of", &upper)(e.into()))?;
        Ok(Overlay {
            lower: lower.to_path_buf(),
            dir: dir.to_path_buf(),
            upper,
            work,
        })
    }

    /// The mount the sandbox makes: this overlay on its lower directory.
    pub fn mount(&self) -> Result<OverlayMount, OverlayError> {
        self.mount_with(VOLATILE.load(Ordering::Relaxed))
    }

    fn mount_with(&self, volatile: bool) -> Result<OverlayMount, OverlayError> {
        let mut options = Vec::new();
        for (key, path) in [
            ("lowerdir", &self.lower),
            ("upperdir", &self.upper),
            ("workdir", &self.work),
        ] {
            let bytes = path.as_os_str().as_bytes();
            if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\' | 0)) {
                return Err(OverlayError::UnusablePath { path: path.clone() });
            }
            options.extend_from_slice(key.as_bytes());
            options.push(b'=');
            options.extend_from_slice(bytes);
            options.push(b',');
        }
        options.extend_from_slice(FIXED_OPTIONS);
        if volatile {
            options.extend_from_slice(b",volatile");
        }
        let unusable = || OverlayError::UnusablePath {
            path: self.lower.clone(),
        };
        Ok(OverlayMount {
            target: CString::new(self.lower.as_os_str().as_bytes()).map_err(|_| unusable())?,
            options: CString::new(options).map_err(|_| unusable())?,
            lower: self.lower.clone(),
            upper: self.upper.clone(),
        })
    }

    /// What the command changed in `root` (the overlay's lower directory), read from the upper
    /// directory. Call before [`Overlay::merge`]: a whiteout or an opaque directory means
    /// something only next to what it hides.
    pub fn changes(&self, root: &RootFs) -> Result<Changes, OverlayError> {
        upper::read(&self.upper, root)
    }

    /// Moves the upper directory's contents into `root` and removes the overlay's directories.
    pub fn merge(self, root: &RootFs) -> Result<(), OverlayError> {
        merge::merge(&self.upper, root)?;
        self.discard()
    }

    /// Removes the overlay's directories and everything written into them.
    pub fn discard(self) -> Result<(), OverlayError> {
        std::fs::remove_dir_all(&self.dir).map_err(io_error("removing", &self.dir))
    }
}

/// Whether an overlay can be mounted with upper and work directories in `scratch` (on the
/// filesystem of the root filesystems), with the options the strategy uses, and whether it can be
/// `volatile` (remembered for every later overlay). Mounts and unmounts nothing in kiln's own
/// mount namespace.
pub fn probe(scratch: &Path) -> Result<(), OverlayError> {
    let dir = scratch.join("overlay-probe");
    let lower = dir.join("lower");
    std::fs::create_dir_all(&lower).map_err(io_error("creating", &lower))?;
    let attempt = |volatile: bool, name: &str| {
        Overlay::create(&lower, &dir.join(name)).and_then(|overlay| {
            let mount = overlay.mount_with(volatile)?;
            crate::run::probe_overlay(&mount).map_err(|source| OverlayError::Unavailable { source })
        })
    };
    let result = match attempt(true, "volatile") {
        Ok(()) => Ok(true),
        Err(OverlayError::Unavailable { .. }) => attempt(false, "plain").map(|()| false),
        Err(err) => Err(err),
    };
    if let Ok(volatile) = result {
        VOLATILE.store(volatile, Ordering::Relaxed);
        tracing::debug!(volatile, "overlayfs available");
    }
    let cleanup = std::fs::remove_dir_all(&dir).map_err(io_error("removing", &dir));
    result.map(drop).and(cleanup)
}

/// Whether overlays are mounted `volatile`: what the last successful [`probe`] found.
pub fn volatile() -> bool {
    VOLATILE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests;
