//! One regular file to write, self-contained so that any writer thread can run it.
//!
//! Creating a file is what `COPY` spends its time on (about 0.7 ms each on ext4 with `discard`),
//! so the walk only decides *what* to write and hands these jobs to a pool. Each job holds the
//! source and destination directories as shared descriptors (one per directory, not per file, to
//! stay far below `ulimit -n`) and acts only through `*at` calls on them.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

use super::attributes::Attributes;
use super::{CopyError, replace_non_directory};

/// The only extended attribute kept: file capabilities (`setcap`) must survive `COPY --from`.
pub(super) const CAPABILITY_XATTR: &str = "security.capability";

/// Copy `source_dir/source_name` to `dest_dir/dest_name`, replacing a non-directory there.
#[derive(Debug)]
pub(super) struct FileJob {
    /// The source directory, duplicated from the walker.
    pub(super) source_dir: Arc<OwnedFd>,
    pub(super) source_name: OsString,
    /// Path relative to the source root, for errors.
    pub(super) source_path: PathBuf,
    /// The destination directory, resolved inside the image root.
    pub(super) dest_dir: Arc<OwnedFd>,
    pub(super) dest_name: OsString,
    /// Root-relative real path of the destination, for errors.
    pub(super) dest: PathBuf,
    pub(super) attributes: Attributes,
    /// Whether `security.capability` is carried over (`COPY --from`).
    pub(super) capabilities: bool,
}

impl FileJob {
    /// Streams the content (`copy_file_range` via `std::io::copy`), then owner, mode,
    /// capabilities and, last, times.
    pub(super) fn run(&self) -> Result<(), CopyError> {
        let source_err = |op, err: io::Error| CopyError::in_source(op, &self.source_path, err);
        let dest_err = |op, err: io::Error| CopyError::in_dest(op, &self.dest, err);
        let dest_dir = self.dest_dir.as_fd();
        replace_non_directory(dest_dir, &self.dest_name, &self.dest)?;
        let input = rustix::fs::openat(
            self.source_dir.as_fd(),
            &self.source_name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| source_err("open", err.into()))?;
        let output = rustix::fs::openat(
            dest_dir,
            &self.dest_name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|err| dest_err("create", err.into()))?;
        let mut input = File::from(input);
        let mut output = File::from(output);
        io::copy(&mut input, &mut output).map_err(|err| dest_err("write", err))?;
        self.attributes.apply_owner_and_mode(&output, &self.dest)?;
        if self.capabilities {
            copy_capabilities(&input, &output).map_err(|err| dest_err("set capabilities", err))?;
        }
        self.attributes.apply_times(&output, &self.dest)
    }
}

/// Copies `security.capability` if the source has it (after `fchown`, which clears it).
fn copy_capabilities(input: &File, output: &File) -> io::Result<()> {
    let mut value = [0u8; 64];
    match rustix::fs::fgetxattr(input, CAPABILITY_XATTR, &mut value[..]) {
        Ok(len) => rustix::fs::fsetxattr(
            output,
            CAPABILITY_XATTR,
            &value[..len],
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(Into::into),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => Ok(()),
        Err(err) => Err(err.into()),
    }
}
