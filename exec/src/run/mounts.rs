//! `RUN --mount`: what the sandbox mounts over the root for one command.
//!
//! The caller resolves every Dockerfile mount to something on the host (a cache directory, a
//! context or stage directory, a secret file) or to a tmpfs; the sandbox mounts them in the
//! command's mount namespace, after the root's own mounts and before `pivot_root`. Nothing written
//! through them lands in the root, so neither snapshot strategy sees it, and the mount points the
//! image lacked are removed afterwards like the `/proc` and `/dev` stubs.

use std::ffi::CString;
use std::path::PathBuf;

/// One mount over the root for the duration of a `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// Absolute path inside the root.
    pub target: String,
    /// What appears there.
    pub source: MountSource,
}

/// What a [`RunMount`] shows at its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A host directory or file, bind-mounted.
    Bind {
        /// Host path (a directory or a regular file).
        path: PathBuf,
        /// Mounted read-only.
        readonly: bool,
    },
    /// A host directory the command may write to without changing it: an overlay whose upper
    /// and work directories are created in `scratch` (which must not exist, on a filesystem
    /// where overlayfs works); the caller removes `scratch` afterwards, discarding the writes.
    Discarded {
        /// Host directory shown (the overlay's lower layer).
        path: PathBuf,
        /// Where the writes go.
        scratch: PathBuf,
    },
    /// An empty tmpfs, gone with the command.
    Tmpfs {
        /// Size limit in bytes; the kernel's default (half the RAM) when absent.
        size: Option<u64>,
    },
}

/// A [`RunMount`] with its host paths computed, ready for the child.
#[derive(Debug)]
pub(super) enum MountPlan {
    /// `(host source, host mount point, read-only)`.
    Bind(CString, CString, bool),
    /// `(host mount point, tmpfs options)`.
    Tmpfs(CString, CString),
    /// `(host mount point, overlay options)`.
    Overlay(CString, CString),
}

/// The tmpfs options of a `type=tmpfs` mount.
pub(super) fn tmpfs_options(size: Option<u64>) -> String {
    match size {
        Some(bytes) => format!("mode=1777,size={bytes}"),
        None => "mode=1777".to_owned(),
    }
}
