//! A directory treated as the root of an image filesystem.
//!
//! Everything kiln writes into a root filesystem (layer extraction, COPY, WORKDIR) and everything
//! it reads from one (`/etc/passwd`) goes through [`RootFs`], which resolves paths with
//! `openat2(RESOLVE_IN_ROOT)`: the kernel itself clamps `..`, absolute symlinks and symlinked
//! parent directories to the root, exactly as a chroot would. Lexical joining
//! (`root.join(name)`) is how Kaniko's extractor escaped its root (CVE-2026-28406); resolving in the
//! kernel also closes the check-then-use races that user-space SecureJoin implementations have.
//!
//! Only the *parent* of a path is ever resolved through symlinks. The final component is acted on
//! with the `*at` syscalls relative to the parent's descriptor and never followed, so a symlink
//! planted in a layer cannot redirect a write.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Mode, OFlags, ResolveFlags};

/// Resolution used for every lookup: chroot semantics, and no `/proc/self/fd`-style magic links
/// that could jump out of the root.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// An open root filesystem directory.
#[derive(Debug)]
pub struct RootFs {
    dir: OwnedFd,
    path: PathBuf,
}

impl RootFs {
    /// Opens `path` (which must be a directory) as a root filesystem.
    pub fn open(path: &Path) -> io::Result<Self> {
        let dir = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The host path of the root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's descriptor, for `*at` calls relative to the root.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Opens an image path (`/etc/passwd`, `etc/passwd`) with every component, the last included,
    /// resolved inside the root. Add `OFlags::NOFOLLOW` to refuse a symlink as the last component.
    pub fn open_path(&self, path: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let rel = clean(path);
        let target: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &rel
        };
        rustix::fs::openat2(&self.dir, target, flags | OFlags::CLOEXEC, mode, RESOLVE)
            .map_err(io::Error::from)
    }

    /// Opens a file for reading, every component (the last included) resolved inside the root.
    pub fn open_file(&self, path: &Path) -> io::Result<std::fs::File> {
        self.open_path(path, OFlags::RDONLY, Mode::empty())
            .map(std::fs::File::from)
    }

    /// Opens the directory that contains `path`, resolved inside the root, and returns it with the
    /// final component's name, which is left unresolved (it may be missing, a symlink, anything).
    ///
    /// Fails with `InvalidInput` for the root itself, which has no parent.
    pub fn parent(&self, path: &Path) -> io::Result<(OwnedFd, OsString)> {
        let rel = clean(path);
        let name = rel
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} has no parent inside the root", path.display()),
                )
            })?
            .to_os_string();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self.open_path(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((fd, name))
    }

    /// Creates `path` and any missing parents inside the root (`mkdir -p` under a chroot), giving
    /// each directory it creates `mode` and, when set, `owner`. Existing symlinked parents are
    /// followed inside the root. Returns the directory and the root-relative real paths of the
    /// directories it created, parents first.
    pub fn create_dir_all(
        &self,
        path: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<(OwnedFd, Vec<PathBuf>)> {
        let rel = clean(path);
        let mut created = Vec::new();
        let mut prefix = PathBuf::new();
        let mut dir = self.open_path(
            Path::new(""),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        for component in rel.components() {
            prefix.push(component);
            match self.open_path(&prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
                Ok(fd) => dir = fd,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    let name = component.as_os_str();
                    make_dir(&dir, name, mode, owner)?;
                    dir = rustix::fs::openat2(
                        &dir,
                        name,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        RESOLVE,
                    )?;
                    created.push(self.real_path(&dir)?);
                }
                Err(err) => return Err(err),
            }
        }
        Ok((dir, created))
    }

    /// The root-relative path (no leading `/`; empty for the root) of an open descriptor inside
    /// the root, i.e. where a resolved path really lives once symlinks are followed.
    pub fn real_path(&self, fd: &OwnedFd) -> io::Result<PathBuf> {
        let proc = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(fd)
        ));
        let host = std::fs::read_link(proc)?;
        let root = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.dir)
        ))?;
        host.strip_prefix(&root)
            .map(Path::to_path_buf)
            .map_err(|_| {
                io::Error::other(format!(
                    "{} resolved outside the root {}",
                    host.display(),
                    root.display()
                ))
            })
    }

    /// The host path an image path resolves to, symlinks followed inside the root: what a bind
    /// mount may use without the image's symlinks leading it out of the root.
    pub fn host_path(&self, path: &Path) -> io::Result<PathBuf> {
        let fd = self.open_path(&clean(path), OFlags::PATH, Mode::empty())?;
        let root = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.dir)
        ))?;
        Ok(root.join(self.real_path(&fd)?))
    }

    /// `lstat` of an image path: parents resolved inside the root, the final component not followed.
    pub fn symlink_metadata(&self, path: &Path) -> io::Result<rustix::fs::Stat> {
        let (parent, name) = self.parent(path)?;
        rustix::fs::statat(&parent, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
    }
}

/// `mkdirat` followed by `fchownat`/`fchmodat`, so the umask never decides a directory's mode.
fn make_dir(
    parent: &OwnedFd,
    name: &OsStr,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let mode = Mode::from_raw_mode(mode);
    rustix::fs::mkdirat(parent, name, mode)?;
    if let Some((uid, gid)) = owner {
        rustix::fs::chownat(
            parent,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    rustix::fs::chmodat(parent, name, mode, AtFlags::empty())?;
    Ok(())
}

/// Lexically cleans an image path into a root-relative one: leading `/` and `.` dropped, `..`
/// clamped at the root (`/../etc` is `etc`), as `filepath.Clean` on an absolute path would.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// [`clean`], except that a path whose `..` components climb above the root is `None` instead
/// of being clamped: `a/../b` is `b`, `/a/../../b` is refused. For untrusted names that no honest
/// writer produces (Docker refuses them in layers as a "breakout"), where clamping would
/// silently put a file somewhere its author did not name.
pub fn clean_beneath(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Opens a host directory for `*at` calls; used for sources outside any root (the build context).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        CWD,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Into::into)
}

/// Access and modification times of `stat`, as `utimensat`/`futimens` take them: what
/// restoring a file's or directory's times needs.
pub fn timestamps(stat: &rustix::fs::Stat) -> rustix::fs::Timestamps {
    use rustix::fs::Timespec;
    rustix::fs::Timestamps {
        last_access: Timespec {
            tv_sec: stat.st_atime as _,
            tv_nsec: stat.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: stat.st_mtime as _,
            tv_nsec: stat.st_mtime_nsec as _,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_clamps_parent_components_at_the_root() {
        assert_eq!(
            clean(Path::new("/../../etc/./passwd")),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(clean(Path::new("a/b/../c/")), PathBuf::from("a/c"));
        assert_eq!(clean(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn clean_beneath_refuses_only_names_that_climb_above_the_root() {
        assert_eq!(
            clean_beneath(Path::new("/a/./b/../c/")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(clean_beneath(Path::new("a/..")), Some(PathBuf::new()));
        assert_eq!(clean_beneath(Path::new("../../etc/x")), None);
        assert_eq!(clean_beneath(Path::new("/a/../../b")), None);
        assert_eq!(clean_beneath(Path::new("/..")), None);
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink("/real", root.join("link")).unwrap();
        symlink("/", root.join("escape")).unwrap();
        let fs = RootFs::open(&root).unwrap();

        let (dir, created) = fs
            .create_dir_all(Path::new("/link/sub"), 0o755, None)
            .unwrap();
        assert_eq!(created, vec![PathBuf::from("real/sub")]);
        assert_eq!(fs.real_path(&dir).unwrap(), PathBuf::from("real/sub"));
        assert!(root.join("real/sub").is_dir());

        // `/escape/..` is still the root: nothing is created next to it on the host.
        fs.create_dir_all(Path::new("/escape/../../outside"), 0o755, None)
            .unwrap();
        assert!(root.join("outside").is_dir());
        assert!(!tmp.path().join("outside").exists());
    }

    #[test]
    fn relative_symlinks_cannot_climb_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink("../../../..", root.join("up")).unwrap();
        let fs = RootFs::open(&root).unwrap();
        let (parent, name) = fs.parent(Path::new("up/file")).unwrap();
        assert_eq!(name, OsString::from("file"));
        assert_eq!(fs.real_path(&parent).unwrap(), PathBuf::new());
    }

    #[test]
    fn created_directories_get_the_requested_mode_despite_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = RootFs::open(tmp.path()).unwrap();
        fs.create_dir_all(Path::new("tmp"), 0o1777, None).unwrap();
        let stat = fs.symlink_metadata(Path::new("/tmp")).unwrap();
        assert_eq!(stat.st_mode & 0o7777, 0o1777);
    }

    #[test]
    fn the_root_has_no_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = RootFs::open(tmp.path()).unwrap();
        let err = fs.parent(Path::new("/")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
