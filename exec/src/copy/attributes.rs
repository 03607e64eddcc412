//! Owner, permission bits and times a copied entry ends up with.
//!
//! Computed once, while walking, from the source `stat` and the `COPY` options, so that whoever
//! applies them later (a writer thread, or the final pass over directories) needs neither.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Gid, Mode, Stat, Timestamps, Uid};

use crate::fsroot::timestamps;

use super::CopyError;

/// What `chown`, `chmod` and `utimensat` are given for one entry.
#[derive(Debug, Clone)]
pub(super) struct Attributes {
    uid: u32,
    gid: u32,
    /// Permission bits; `None` for a symlink, whose mode Linux does not let anyone set.
    mode: Option<u32>,
    times: Timestamps,
}

impl Attributes {
    /// Attributes for an entry copied from `stat`, owned by `owner`, with permission bits `mode`
    /// (`None` for a symlink).
    pub(super) fn new(stat: &Stat, owner: (u32, u32), mode: Option<u32>) -> Self {
        Attributes {
            uid: owner.0,
            gid: owner.1,
            mode: mode.map(|mode| mode & 0o7777),
            times: timestamps(stat),
        }
    }

    /// Applies them to `parent/name`, an entry this copy created a moment ago (never followed if
    /// it is a symlink; otherwise not one, so the path-following `fchmodat` acts on it).
    pub(super) fn apply_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        real: &Path,
    ) -> Result<(), CopyError> {
        let dest_err = |op, err: rustix::io::Errno| CopyError::in_dest(op, real, err.into());
        rustix::fs::chownat(
            parent,
            name,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|err| dest_err("chown", err))?;
        if let Some(mode) = self.mode {
            rustix::fs::chmodat(parent, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|err| dest_err("chmod", err))?;
        }
        rustix::fs::utimensat(parent, name, &self.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| dest_err("set times", err))
    }

    /// Gives an open file its owner and mode; `chown` first, since it clears setuid bits.
    pub(super) fn apply_owner_and_mode(&self, file: &File, real: &Path) -> Result<(), CopyError> {
        let dest_err = |op, err: rustix::io::Errno| CopyError::in_dest(op, real, err.into());
        rustix::fs::fchown(
            file,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .map_err(|err| dest_err("chown", err))?;
        if let Some(mode) = self.mode {
            rustix::fs::fchmod(file, Mode::from_raw_mode(mode))
                .map_err(|err| dest_err("chmod", err))?;
        }
        Ok(())
    }

    /// Gives an open file its times; last, after everything that could change its mtime.
    pub(super) fn apply_times(&self, file: &File, real: &Path) -> Result<(), CopyError> {
        rustix::fs::futimens(file, &self.times)
            .map_err(|err| CopyError::in_dest("set times", real, err.into()))
    }
}
