//! Applying a layer's tar stream onto a root filesystem, safely.
//!
//! A layer is untrusted input: its entry names, link targets and symlinks are all chosen by
//! whoever built the image. Every entry is therefore placed through [`RootFs`]: its *parent* is
//! resolved by the kernel with chroot semantics, and the final component is created with `*at`
//! calls relative to that parent without ever being followed, so a layer can at worst write
//! inside the root it was given, never next to it. Names and link targets that only a hostile
//! layer contains (`..` climbing above the root, whiteouts of `..`) are refused with an error
//! naming the layer and the entry; [`policy`] has the rules and how Docker and containerd
//! compare.
//!
//! Layer semantics follow the OCI image spec and Docker: `.wh.<name>` deletes `<name>` from lower
//! layers, `.wh..wh..opq` hides everything lower layers put in its directory, an entry replaces
//! whatever non-directory was there, and a directory entry over an existing directory only
//! updates its metadata.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use crate::fsroot::RootFs;
use crate::ignore::{IgnoreList, list_dir, remove_all};

mod pipeline;
mod policy;
mod sparse;
mod writers;

pub use pipeline::{LayerStream, apply_layers, apply_layers_except};
use sparse::SparseWriter;
use writers::{Job, Pending, SMALL_FILE, Writers};

/// Prefix of a whiteout entry, which deletes the lower-layer file it names.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of AUFS metadata entries (`.wh..wh.plnk`, ...), which are not files.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// Marks its directory opaque: lower layers' contents of it are hidden.
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// PAX records carrying extended attributes, as GNU tar and Go's archive/tar write them.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// The one extended attribute whose loss changes what a program may do (file capabilities).
const CAPABILITY_XATTR: &[u8] = b"security.capability";
/// Copy buffer for file contents: large enough to keep syscalls few, small enough to not matter.
const COPY_BUFFER: usize = 128 * 1024;

/// Why a layer could not be applied. Every variant names the layer and, where there is one, the
/// tar entry, because a failed extraction is only actionable if one can find the culprit.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream itself is unreadable: truncated, corrupt, or failing to decompress.
    #[error("layer {layer}: reading the tar stream {}: {source}", match after {
        Some(entry) => format!("after entry {}", policy::shown(entry)),
        None => "at its first entry".to_owned(),
    })]
    Read {
        /// The layer being applied (usually its digest).
        layer: String,
        /// The last entry whose header was read, which locates the damage.
        after: Option<PathBuf>,
        /// What the reader reported.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation for one entry failed.
    #[error("layer {layer}: entry {}: {op}: {source}", policy::shown(entry))]
    Entry {
        /// The layer being applied.
        layer: String,
        /// The entry's name as written in the tar.
        entry: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An entry is malformed or asks for something kiln refuses to do.
    #[error("layer {layer}: entry {}: {reason}", policy::shown(entry))]
    Invalid {
        /// The layer being applied.
        layer: String,
        /// The entry's name as written in the tar.
        entry: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Applies one layer (an *uncompressed* tar stream) onto `root`. `layer` labels errors (a digest).
///
/// Layers must be applied in order, lowest first; within one layer entries are applied in tar
/// order, except that opaque whiteouts and directory modification times are settled once the
/// whole layer has been read, so neither depends on where the tar put them.
pub fn apply_layer(root: &RootFs, tar: impl Read, layer: &str) -> Result<(), UnpackError> {
    apply_layer_except(root, tar, layer, &IgnoreList::default())
}

/// [`apply_layer`] onto a root that holds paths the layer must not touch (kiln's own container
/// root, `--isolation=none`): entries at or under an ignored path are skipped, and whiteouts
/// and opaque directories delete around them, as Kaniko's extraction does.
pub fn apply_layer_except(
    root: &RootFs,
    tar: impl Read,
    layer: &str,
    ignore: &IgnoreList,
) -> Result<(), UnpackError> {
    std::thread::scope(|scope| {
        let writers = Writers::start(scope, layer);
        let mut unpacker = Unpacker {
            root,
            layer,
            ignore,
            writers: &writers,
            pending: Pending::default(),
            written: HashSet::new(),
            last_entry: None,
            opaque_dirs: Vec::new(),
            dir_times: Vec::new(),
            last_parent: None,
            buf: vec![0; COPY_BUFFER],
        };
        let applied = unpacker.apply_all(tar);
        // Whatever happened, nothing may still be writing when the caller gets control back.
        let written = writers.barrier();
        applied.and(written).and_then(|()| unpacker.finish())
    })
}

/// State carried across the entries of one layer.
struct Unpacker<'a> {
    root: &'a RootFs,
    layer: &'a str,
    /// Paths never written or deleted.
    ignore: &'a IgnoreList,
    /// The threads small files are written on.
    writers: &'a Writers,
    /// What the writers have queued, to know when an entry must wait for them.
    pending: Pending,
    /// Cleaned paths this layer wrote, with all their ancestors: what an opaque whiteout keeps.
    written: HashSet<PathBuf>,
    /// The entry being applied, or the last one: what a stream error is reported after.
    last_entry: Option<PathBuf>,
    /// Directories this layer marked opaque.
    opaque_dirs: Vec<PathBuf>,
    /// Directory modification times, applied last because writing their contents changes them.
    dir_times: Vec<(PathBuf, PathBuf, Timespec)>,
    /// The directory the last file or hardlink went into, with its root-relative path. A tar
    /// lists a directory's files together, so most files reuse it instead of resolving their
    /// parent again. Any other kind of entry clears it, and an entry with another parent
    /// replaces it, so an entry that could replace the directory or one of its ancestors (its
    /// parent is always a different, shorter path) is never followed by a stale descriptor.
    last_parent: Option<(PathBuf, Arc<OwnedFd>)>,
    buf: Vec<u8>,
}

/// Ownership, permissions and times of an entry, with PAX records already folded in.
struct EntryMeta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timespec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Where a freshly created node's metadata is applied: through its own descriptor when it is
/// safe to open (files, directories), else by name relative to its parent without following.
enum Node<'a> {
    Open(&'a OwnedFd),
    At(&'a OwnedFd, &'a OsStr),
}

/// A failed operation and its name, before the entry is attached to it.
type OpError = (&'static str, io::Error);

impl Unpacker<'_> {
    fn apply_all(&mut self, tar: impl Read) -> Result<(), UnpackError> {
        let mut archive = tar::Archive::new(tar);
        let entries = archive
            .entries()
            .map_err(|source| self.read_error(source))?;
        for entry in entries {
            let mut entry = entry.map_err(|source| self.read_error(source))?;
            self.apply(&mut entry)?;
        }
        Ok(())
    }

    /// Waits for the writers when `needed`: the entry at hand must not overtake what they hold.
    fn wait_for_writers(&mut self, needed: bool) -> Result<(), UnpackError> {
        if needed {
            self.writers.barrier()?;
            self.pending.clear();
        }
        Ok(())
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw_name = entry.path_bytes().into_owned();
        let name = PathBuf::from(OsStr::from_bytes(&raw_name));
        self.last_entry = Some(name.clone());
        let path = policy::beneath_root(&raw_name)
            .map_err(|reason| self.invalid(&name, format!("the name {reason}")))?;
        let mut kind = entry.header().entry_type();
        // Pre-POSIX tars mark directories only by a trailing slash on a regular entry.
        if kind.as_byte() == 0 && raw_name.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        if matches!(kind, EntryType::XGlobalHeader) {
            tracing::debug!(layer = self.layer, entry = %name.display(), "ignoring PAX global header");
            return Ok(());
        }
        if self.ignore.ignores(&path) {
            tracing::debug!(layer = self.layer, entry = %name.display(), "skipping an ignored path");
            return Ok(());
        }

        if let Some(file_name) = path.file_name().map(OsStrExt::as_bytes) {
            if file_name == OPAQUE_WHITEOUT {
                let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
                self.opaque_dirs.push(dir);
                return Ok(());
            }
            if file_name.starts_with(WHITEOUT_META_PREFIX) {
                tracing::debug!(layer = self.layer, entry = %name.display(), "ignoring AUFS metadata");
                return Ok(());
            }
            if let Some(target) = file_name.strip_prefix(WHITEOUT_PREFIX) {
                let target = policy::whiteout_target(target)
                    .map_err(|reason| self.invalid(&name, reason))?;
                let deleted = path.with_file_name(target);
                self.wait_for_writers(true)?;
                return self
                    .whiteout(&deleted)
                    .map_err(|e| self.entry_error(&name, e));
            }
        }

        let meta = self.entry_meta(entry, &name)?;
        if path.as_os_str().is_empty() {
            if !kind.is_dir() {
                return Err(self.invalid(&name, format!("{kind:?} entry names the root itself")));
            }
            self.root_dir(&meta)
                .map_err(|e| self.entry_error(&name, e))?;
            self.dir_times.push((path, name, meta.mtime));
            return Ok(());
        }

        let is_file = matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse | EntryType::Link
        );
        if !is_file {
            self.last_parent = None;
        }
        // A queued file that replaces this entry's directory or one of its ancestors must land
        // before the directory is resolved.
        let shadowed = self.pending.shadows(path.parent().unwrap_or(Path::new("")));
        self.wait_for_writers(shadowed)?;
        let (parent_fd, file_name) = self
            .file_parent(&path, is_file)
            .map_err(|e| self.entry_error(&name, e))?;
        let parent = &*parent_fd;
        let file_name = file_name.as_os_str();
        let must_wait = match kind {
            EntryType::Directory => self.pending.blocks_dir(&path),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
                if entry.size() <= SMALL_FILE =>
            {
                self.pending.blocks_file(&path)
            }
            // Its target may still be queued.
            EntryType::Link => true,
            _ => self.pending.blocks(&path),
        };
        self.wait_for_writers(must_wait)?;
        match kind {
            EntryType::Directory => {
                self.directory(parent, file_name, &meta)
                    .map_err(|e| self.entry_error(&name, e))?;
                self.dir_times.push((path.clone(), name, meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
                if entry.size() <= SMALL_FILE =>
            {
                let content = self.read_small(entry, &name)?;
                let job = Job {
                    parent: parent_fd.clone(),
                    name: file_name.to_os_string(),
                    content,
                    meta,
                    entry: name,
                };
                let dir = path.parent().unwrap_or(Path::new(""));
                let idle = self.writers.write(job, dir)?;
                self.pending.queued(&path, idle);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let expected = entry.size();
                self.regular(parent, file_name, entry, expected, &meta, &name)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.invalid(&name, "symlink without a target".to_owned()))?
                    .into_owned();
                policy::check_symlink_target(&path, &target)
                    .map_err(|reason| self.invalid(&name, reason))?;
                self.symlink(parent, file_name, &target, &meta)
                    .map_err(|e| self.entry_error(&name, e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.invalid(&name, "hardlink without a target".to_owned()))?
                    .into_owned();
                self.hardlink(parent, file_name, &path, &target, &name)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (file_type, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let major = device_number(entry.header().device_major(), "major")
                            .map_err(|reason| self.invalid(&name, reason))?;
                        let minor = device_number(entry.header().device_minor(), "minor")
                            .map_err(|reason| self.invalid(&name, reason))?;
                        let file_type = if matches!(kind, EntryType::Char) {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (file_type, rustix::fs::makedev(major, minor))
                    }
                };
                self.special(parent, file_name, file_type, dev, &meta)
                    .map_err(|e| self.entry_error(&name, e))?;
            }
            other => {
                tracing::debug!(layer = self.layer, entry = %name.display(), kind = ?other, "skipping unsupported tar entry type");
                return Ok(());
            }
        }
        self.mark_written(path);
        Ok(())
    }

    /// Settles what needs the whole layer: opaque directories, then directory times.
    fn finish(self) -> Result<(), UnpackError> {
        for dir in &self.opaque_dirs {
            self.make_opaque(dir).map_err(|source| UnpackError::Entry {
                layer: self.layer.to_owned(),
                entry: dir.join(OsStr::from_bytes(OPAQUE_WHITEOUT)),
                op: "hiding lower-layer contents of an opaque directory",
                source,
            })?;
        }
        for (path, name, mtime) in &self.dir_times {
            let times = Timestamps {
                last_access: *mtime,
                last_modification: *mtime,
            };
            let result = if path.as_os_str().is_empty() {
                rustix::fs::utimensat(self.root.as_fd(), ".", &times, AtFlags::empty())
                    .map_err(io::Error::from)
            } else {
                self.root.parent(path).and_then(|(parent, file_name)| {
                    rustix::fs::utimensat(&parent, &file_name, &times, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io::Error::from)
                })
            };
            match result {
                Ok(()) => {}
                // A later entry of the same layer replaced or deleted the directory.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.entry_error(name, ("setting modification time", e))),
            }
        }
        Ok(())
    }

    fn read_error(&self, source: io::Error) -> UnpackError {
        UnpackError::Read {
            layer: self.layer.to_owned(),
            after: self.last_entry.clone(),
            source,
        }
    }

    fn entry_error(&self, entry: &Path, (op, source): OpError) -> UnpackError {
        UnpackError::Entry {
            layer: self.layer.to_owned(),
            entry: entry.to_path_buf(),
            op,
            source,
        }
    }

    fn invalid(&self, entry: &Path, reason: String) -> UnpackError {
        UnpackError::Invalid {
            layer: self.layer.to_owned(),
            entry: entry.to_path_buf(),
            reason,
        }
    }

    fn mark_written(&mut self, path: PathBuf) {
        let mut current = Some(path.as_path());
        while let Some(p) = current {
            if p.as_os_str().is_empty() || !self.written.insert(p.to_path_buf()) {
                break;
            }
            current = p.parent();
        }
    }

    /// Reads ownership, mode, time and xattrs, refusing PAX records tar-rs would silently skip.
    fn entry_meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        name: &Path,
    ) -> Result<EntryMeta, UnpackError> {
        let header = entry.header();
        let uid = header
            .uid()
            .map_err(|e| self.invalid(name, format!("bad uid: {e}")))?;
        let gid = header
            .gid()
            .map_err(|e| self.invalid(name, format!("bad gid: {e}")))?;
        let mode = header
            .mode()
            .map_err(|e| self.invalid(name, format!("bad mode: {e}")))?;
        let header_mtime = header
            .mtime()
            .map_err(|e| self.invalid(name, format!("bad mtime: {e}")))?;
        let uid =
            u32::try_from(uid).map_err(|_| self.invalid(name, format!("uid {uid} too large")))?;
        let gid =
            u32::try_from(gid).map_err(|_| self.invalid(name, format!("gid {gid} too large")))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(header_mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        let pax = entry
            .pax_extensions()
            .map_err(|e| self.invalid(name, format!("unreadable PAX header: {e}")))?;
        for record in pax.into_iter().flatten() {
            let record =
                record.map_err(|e| self.invalid(name, format!("malformed PAX record: {e}")))?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            match key {
                // tar-rs applies these itself but silently ignores an unparsable value, which
                // would make it read a different size or owner than other tools do.
                b"size" | b"uid" | b"gid" => {
                    let ok = std::str::from_utf8(value).is_ok_and(|v| v.parse::<u64>().is_ok());
                    if !ok {
                        return Err(self.invalid(
                            name,
                            format!(
                                "malformed PAX {} record {:?}",
                                String::from_utf8_lossy(key),
                                String::from_utf8_lossy(value)
                            ),
                        ));
                    }
                }
                b"mtime" => {
                    mtime = parse_pax_time(value).ok_or_else(|| {
                        self.invalid(
                            name,
                            format!("malformed PAX mtime {:?}", String::from_utf8_lossy(value)),
                        )
                    })?;
                }
                _ => {
                    if let Some(attr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                        xattrs.push((OsStr::from_bytes(attr).to_os_string(), value.to_vec()));
                    }
                }
            }
        }
        Ok(EntryMeta {
            uid,
            gid,
            mode: mode & 0o7777,
            mtime,
            xattrs,
        })
    }

    /// [`Unpacker::parent`], reusing the last file's directory when `reusable` (the entry is a
    /// file or hardlink) and it is the same directory.
    fn file_parent(
        &mut self,
        path: &Path,
        reusable: bool,
    ) -> Result<(Arc<OwnedFd>, OsString), OpError> {
        let dir = path.parent().unwrap_or(Path::new(""));
        if let (true, Some((cached, fd)), Some(name)) =
            (reusable, &self.last_parent, path.file_name())
            && cached == dir
        {
            return Ok((fd.clone(), name.to_os_string()));
        }
        let (fd, name) = self.parent(path)?;
        let fd = Arc::new(fd);
        if reusable {
            self.last_parent = Some((dir.to_path_buf(), fd.clone()));
        }
        Ok((fd, name))
    }

    /// The entry's parent directory, created (root-owned, 0755, as Docker does) if the layer did
    /// not list it.
    fn parent(&self, path: &Path) -> Result<(OwnedFd, OsString), OpError> {
        match self.root.parent(path) {
            Ok(found) => Ok(found),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = path.parent().unwrap_or(Path::new(""));
                let (dir, _) = self
                    .root
                    .create_dir_all(parent, 0o755, Some((0, 0)))
                    .map_err(|e| ("creating parent directories", e))?;
                let file_name = path.file_name().unwrap_or_default().to_os_string();
                Ok((dir, file_name))
            }
            Err(e) => Err(("resolving the parent directory inside the root", e)),
        }
    }

    fn whiteout(&self, deleted: &Path) -> Result<(), OpError> {
        let (parent, name) = match self.root.parent(deleted) {
            Ok(found) => found,
            // Nothing below to hide.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(("resolving the whited-out path", e)),
        };
        let removed = if self.ignore.is_empty() {
            remove_all(parent.as_fd(), &name)
        } else {
            self.ignore.remove(parent.as_fd(), &name, deleted)
        };
        match removed {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(|e| ("deleting the whited-out path", e)),
        }
    }

    fn root_dir(&self, meta: &EntryMeta) -> Result<(), OpError> {
        let dir = self
            .root
            .open_path(
                Path::new(""),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )
            .map_err(|e| ("opening the root directory", e))?;
        apply_meta(Node::Open(&dir), meta, MetaKind::Directory)
    }

    fn directory(&self, parent: &OwnedFd, name: &OsStr, meta: &EntryMeta) -> Result<(), OpError> {
        let existing =
            lstat_at(parent.as_fd(), name).map_err(|e| ("inspecting the existing path", e))?;
        if !existing.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory) {
            if existing.is_some() {
                remove_all(parent.as_fd(), name).map_err(|e| ("replacing the existing path", e))?;
            }
            rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                .map_err(|e| ("creating the directory", e.into()))?;
        }
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ("opening the directory", e.into()))?;
        apply_meta(Node::Open(&dir), meta, MetaKind::Directory)
    }

    /// Reads a small file's whole content, refusing a truncated one.
    fn read_small<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        entry_name: &Path,
    ) -> Result<Vec<u8>, UnpackError> {
        let expected = entry.size();
        let mut content = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        entry
            .read_to_end(&mut content)
            .map_err(|source| self.read_error(source))?;
        self.check_length(content.len() as u64, expected, entry_name)?;
        Ok(content)
    }

    /// tar-rs ends an entry's data quietly when the stream ends early: a truncated layer would
    /// otherwise leave a short file and look like success.
    fn check_length(
        &self,
        copied: u64,
        expected: u64,
        entry_name: &Path,
    ) -> Result<(), UnpackError> {
        if copied == expected {
            return Ok(());
        }
        Err(self.invalid(
            entry_name,
            format!("truncated tar: expected {expected} bytes of content, got {copied}"),
        ))
    }

    /// Streams a large file's content into place.
    fn regular<R: Read>(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        entry: &mut tar::Entry<'_, R>,
        expected: u64,
        meta: &EntryMeta,
        entry_name: &Path,
    ) -> Result<(), UnpackError> {
        let file =
            create_file(parent.as_fd(), name).map_err(|e| self.entry_error(entry_name, e))?;
        let mut file = SparseWriter::new(file);
        let mut copied: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.read_error(source)),
            };
            file.write(&self.buf[..n])
                .map_err(|e| self.entry_error(entry_name, ("writing the file", e)))?;
            copied += n as u64;
        }
        let file = file
            .finish()
            .map_err(|e| self.entry_error(entry_name, ("writing the file", e)))?;
        self.check_length(copied, expected, entry_name)?;
        let fd = OwnedFd::from(file);
        apply_meta(Node::Open(&fd), meta, MetaKind::Other)
            .map_err(|e| self.entry_error(entry_name, e))
    }

    fn symlink(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        target: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), OpError> {
        replace_existing(parent.as_fd(), name)?;
        // The target is data: stored verbatim and never resolved while extracting.
        rustix::fs::symlinkat(OsStr::from_bytes(target), parent, name)
            .map_err(|e| ("creating the symlink", e.into()))?;
        apply_meta(Node::At(parent, name), meta, MetaKind::Symlink)
    }

    fn hardlink(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
        target: &[u8],
        entry_name: &Path,
    ) -> Result<(), UnpackError> {
        let shown = policy::shown(Path::new(OsStr::from_bytes(target)));
        let target_path = policy::beneath_root(target).map_err(|reason| {
            self.invalid(entry_name, format!("hardlink target {shown:?} {reason}"))
        })?;
        if target_path.as_os_str().is_empty() {
            return Err(self.invalid(entry_name, format!("hardlink target {shown:?} is the root")));
        }
        if target_path == path {
            return Ok(());
        }
        let (target_parent, target_name) = self.root.parent(&target_path).map_err(|e| {
            self.invalid(
                entry_name,
                format!("hardlink target {shown:?} cannot be resolved inside the root: {e}"),
            )
        })?;
        let target_stat = lstat_at(target_parent.as_fd(), &target_name)
            .map_err(|e| self.entry_error(entry_name, ("inspecting the hardlink target", e)))?
            .ok_or_else(|| {
                self.invalid(
                    entry_name,
                    format!("hardlink target {shown:?} does not exist inside the root"),
                )
            })?;
        if FileType::from_raw_mode(target_stat.st_mode) == FileType::Directory {
            return Err(self.invalid(
                entry_name,
                format!("hardlink target {shown:?} is a directory"),
            ));
        }
        if let Some(existing) = lstat_at(parent.as_fd(), name)
            .map_err(|e| self.entry_error(entry_name, ("inspecting the existing path", e)))?
        {
            if (existing.st_dev, existing.st_ino) == (target_stat.st_dev, target_stat.st_ino) {
                return Ok(());
            }
            remove_all(parent.as_fd(), name)
                .map_err(|e| self.entry_error(entry_name, ("replacing the existing path", e)))?;
        }
        // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never what it points to.
        rustix::fs::linkat(&target_parent, &target_name, parent, name, AtFlags::empty())
            .map_err(|e| self.entry_error(entry_name, ("creating the hardlink", e.into())))
    }

    fn special(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        file_type: FileType,
        dev: u64,
        meta: &EntryMeta,
    ) -> Result<(), OpError> {
        replace_existing(parent.as_fd(), name)?;
        match rustix::fs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev) {
            Ok(()) => {}
            // Without CAP_MKNOD (a user namespace, a restricted container) device nodes cannot
            // exist; containerd and rootless Docker skip them the same way.
            Err(Errno::PERM) if file_type != FileType::Fifo => {
                tracing::warn!(
                    layer = self.layer,
                    entry = %name.to_string_lossy(),
                    "skipping a device node: creating device nodes is not permitted here"
                );
                return Ok(());
            }
            Err(e) => return Err(("creating the device or fifo", e.into())),
        }
        apply_meta(Node::At(parent, name), meta, MetaKind::Other)
    }

    /// Removes from `dir` everything this layer did not write, recursing only into directories
    /// that hold something it did write. "Written" is judged by entry name: layers name paths
    /// as they appear in the image, which is how the opaque marker names its directory too.
    fn make_opaque(&self, dir: &Path) -> io::Result<()> {
        let fd = match self.root.open_path(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        self.prune(&fd, dir)
    }

    fn prune(&self, dir: &OwnedFd, rel: &Path) -> io::Result<()> {
        for name in list_dir(dir.as_fd())? {
            let child = rel.join(&name);
            if !self.written.contains(&child) {
                if self.ignore.is_empty() {
                    remove_all(dir.as_fd(), &name)?;
                } else {
                    self.ignore.remove(dir.as_fd(), &name, &child)?;
                }
                continue;
            }
            let is_dir = lstat_at(dir.as_fd(), &name)?
                .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
            if is_dir {
                let sub = rustix::fs::openat(
                    dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                self.prune(&sub, &child)?;
            }
        }
        Ok(())
    }
}

/// What metadata a node can take: symlinks have no mode of their own, and directories get their
/// times only once their contents are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MetaKind {
    Directory,
    Symlink,
    Other,
}

/// Applies owner, xattrs, mode and times in the only order that keeps them all: chown clears
/// setuid bits and file capabilities, so both come after it.
fn apply_meta(node: Node<'_>, meta: &EntryMeta, kind: MetaKind) -> Result<(), OpError> {
    let is_symlink = kind == MetaKind::Symlink;
    let uid = Some(Uid::from_raw(meta.uid));
    let gid = Some(Gid::from_raw(meta.gid));
    match node {
        Node::Open(fd) => rustix::fs::fchown(fd, uid, gid),
        Node::At(parent, name) => {
            rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
        }
    }
    .map_err(|e| ("changing owner", e.into()))?;

    for (key, value) in &meta.xattrs {
        let result = match node {
            Node::Open(fd) => {
                rustix::fs::fsetxattr(fd, key.as_os_str(), value, XattrFlags::empty())
            }
            Node::At(parent, name) => rustix::fs::lsetxattr(
                proc_path(parent.as_fd(), name),
                key.as_os_str(),
                value,
                XattrFlags::empty(),
            ),
        };
        if let Err(e) = result {
            // Losing a file capability silently breaks the program that needs it (ping); any
            // other attribute is best effort, as in Docker, since filesystems differ.
            if key.as_bytes() == CAPABILITY_XATTR && !is_symlink {
                return Err(("setting security.capability", e.into()));
            }
            tracing::debug!(xattr = %key.to_string_lossy(), error = %e, "ignoring extended attribute that cannot be set");
        }
    }

    if !is_symlink {
        let mode = Mode::from_raw_mode(meta.mode);
        match node {
            Node::Open(fd) => rustix::fs::fchmod(fd, mode),
            Node::At(parent, name) => rustix::fs::chmodat(parent, name, mode, AtFlags::empty()),
        }
        .map_err(|e| ("changing mode", e.into()))?;
    }

    if kind != MetaKind::Directory {
        let times = Timestamps {
            last_access: meta.mtime,
            last_modification: meta.mtime,
        };
        match node {
            Node::Open(fd) => rustix::fs::futimens(fd, &times),
            Node::At(parent, name) => {
                rustix::fs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            }
        }
        .map_err(|e| ("setting modification time", e.into()))?;
    }
    Ok(())
}

/// A path naming `name` inside the directory `dir` for calls that have no `*at` form
/// (`lsetxattr`): the magic link resolves to the directory itself, and `name` is not followed.
fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// Creates the file `name` in `parent` for writing, replacing whatever is there. Most files are
/// new, so creating is tried first and the path cleared only when that is refused.
fn create_file(parent: BorrowedFd<'_>, name: &OsStr) -> Result<File, OpError> {
    let create = || {
        rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    let fd = match create() {
        Err(Errno::EXIST) => {
            replace_existing(parent, name)?;
            create()
        }
        other => other,
    };
    fd.map(File::from)
        .map_err(|e| ("creating the file", e.into()))
}

/// Writes a whole small file: created, filled (with holes for zero blocks), then given its
/// metadata. Runs on the writer threads.
fn write_file(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    content: &[u8],
    meta: &EntryMeta,
) -> Result<(), OpError> {
    let mut file = SparseWriter::new(create_file(parent, name)?);
    file.write(content).map_err(|e| ("writing the file", e))?;
    let fd = OwnedFd::from(file.finish().map_err(|e| ("writing the file", e))?);
    apply_meta(Node::Open(&fd), meta, MetaKind::Other)
}

/// Removes whatever is at `name` before a non-directory entry takes its place.
fn replace_existing(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), OpError> {
    match remove_all(parent, name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| ("replacing the existing path", e)),
    }
}

/// `lstat` relative to a directory; `None` when nothing is there.
fn lstat_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn device_number(field: io::Result<Option<u32>>, which: &str) -> Result<u32, String> {
    match field {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(format!("device entry without a {which} number")),
        Err(e) => Err(format!("bad device {which} number: {e}")),
    }
}

/// Parses a PAX time (`1700000000`, `1700000000.5`, `-1.25`) into a timespec.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10_i64.pow(8 - i as u32);
    }
    Some(if !negative {
        Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        }
    } else if nanos == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        }
    })
}

#[cfg(test)]
mod tests;
