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

mod merge;
mod upper;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
        options.extend_from_slice(b"redirect_dir=off,metacopy=off,index=off,xino=off");
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
/// filesystem of the root filesystems), with the options the strategy uses. Mounts and unmounts
/// nothing in kiln's own mount namespace.
pub fn probe(scratch: &Path) -> Result<(), OverlayError> {
    let dir = scratch.join("overlay-probe");
    let lower = dir.join("lower");
    std::fs::create_dir_all(&lower).map_err(io_error("creating", &lower))?;
    let result = Overlay::create(&lower, &dir.join("overlay")).and_then(|overlay| {
        let mount = overlay.mount()?;
        crate::run::probe_overlay(&mount).map_err(|source| OverlayError::Unavailable { source })
    });
    let cleanup = std::fs::remove_dir_all(&dir).map_err(io_error("removing", &dir));
    result.and(cleanup)
}

#[cfg(test)]
mod tests;
