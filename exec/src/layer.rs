//! Writing one step's changes as a deterministic, compressed diff layer.
//!
//! The same tree and the same [`Changes`] always give byte-identical blobs, so that cache hits
//! and rebuilds reproduce digests: entries are sorted by path, headers carry only what the file
//! says (whole-second mtime, numeric owners, no user or group names, no access times), PAX
//! records appear only when a value does not fit the ustar header, and the gzip header carries
//! no time or file name. With a ceiling (`SOURCE_DATE_EPOCH`, `--reproducible`) mtimes are
//! clamped to it, so the same change made at another time gives the same blob too.
//!
//! Everything is streamed in one pass: file contents go from a descriptor opened inside the root
//! through the tar framing, a SHA-256 of the uncompressed tar (the layer's `diff_id`), and the
//! compressor (on worker threads, a few MiB in flight), into the caller's sink, which hashes the
//! compressed blob itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::changes::Changes;
use crate::compression::Compression;
use crate::fsroot::{self, RootFs};
use encoder::Encoder;

mod encoder;
mod parallel_gzip;

/// Tar block size: headers and content are padded to it.
const BLOCK: u64 = 512;
/// Largest value a 12-byte octal ustar field (size, mtime) holds.
const MAX_OCTAL_12: u64 = 0o777_7777_7777;
/// Largest value an 8-byte octal ustar field (uid, gid) holds.
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// The only extended attribute carried into layers, as Docker and Kaniko do: file capabilities.
const CAPABILITY_XATTR: &str = "security.capability";
/// Copy buffer for file contents.
const COPY_BUFFER: usize = 128 * 1024;

/// How to write a layer: compression, and the timestamps a reproducible build wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    /// The compression; gzip by default, the only one every registry and runtime accepts.
    pub compression: Compression,
    /// Compression level (gzip 0-9, default 6, -1 meaning the default as in zlib and Kaniko;
    /// zstd per libzstd, default 3); ignored when uncompressed.
    pub level: Option<i32>,
    /// Threads compressing: they change speed only, never the bytes.
    pub threads: NonZeroUsize,
    /// Latest modification time an entry may carry (`SOURCE_DATE_EPOCH`, or 0 for
    /// `--reproducible`): later times are clamped to it, as BuildKit does, so files written at
    /// build time do not make the digest depend on when the build ran.
    pub mtime_ceiling: Option<i64>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Gzip,
            level: None,
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            mtime_ceiling: None,
        }
    }
}

impl LayerOptions {
    /// Checks the level against the compressor, so that a bad flag fails before the build
    /// starts rather than at its first layer.
    pub fn validate(&self) -> Result<(), LayerError> {
        encoder::checked_level(self).map(|_| ())
    }
}

/// A finished layer: the sink it was written to, and what the image config needs about it.
#[derive(Debug)]
pub struct WrittenLayer<W> {
    /// The caller's sink, flushed, with the whole compressed blob written to it.
    pub sink: W,
    /// `sha256:<hex>` of the uncompressed tar: the layer's entry in the config's `rootfs.diff_ids`.
    pub diff_id: String,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A changed path could not be inspected or read.
    #[error("layer entry {}: {op}: {source}", path.display())]
    Read {
        /// The root-relative path at fault.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file was modified while its content was being copied; the tar would be corrupt.
    #[error("layer entry {}: file changed while being read: {detail}", path.display())]
    Changed {
        /// The root-relative path at fault.
        path: PathBuf,
        /// What was observed.
        detail: String,
    },
    /// A path cannot be expressed in a tar entry.
    #[error("layer entry {}: {reason}", path.display())]
    Unrepresentable {
        /// The root-relative path at fault.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The compression level is outside what the compressor accepts.
    #[error("invalid {compression:?} compression level {level}")]
    InvalidLevel {
        /// The compression asked for.
        compression: Compression,
        /// The level asked for.
        level: i32,
    },
    /// Writing to the compressor or the sink failed.
    #[error("writing the layer: {source}")]
    Write {
        /// The OS or compressor error.
        #[source]
        source: io::Error,
    },
}

/// Writes `changes` of `root` as a deterministic diff layer, compressed, into `sink`.
///
/// Every parent directory of an entry is emitted before it (except the root), with its current
/// metadata, since extractors need them and Docker emits them too. Deleted paths become
/// whiteouts, except below another deleted path or below a path that is no longer a directory.
pub fn write_layer<W: Write>(
    root: &RootFs,
    changes: &Changes,
    options: &LayerOptions,
    sink: W,
) -> Result<WrittenLayer<W>, LayerError> {
    let items = plan(root, changes);
    let encoder = Encoder::new(sink, options)?;
    let mut out = TarOut {
        inner: HashingWriter {
            inner: encoder,
            hasher: Sha256::new(),
            written: 0,
        },
    };
    let mut seen_inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut buf = vec![0; COPY_BUFFER];
    for (path, item) in &items {
        match item {
            Item::Whiteout => out.whiteout(path)?,
            Item::Path => write_path(
                root,
                path,
                options.mtime_ceiling,
                &mut out,
                &mut seen_inodes,
                &mut buf,
            )?,
        }
    }
    out.write(&[0; 2 * BLOCK as usize])?;
    let HashingWriter {
        inner,
        hasher,
        written,
    } = out.inner;
    let sink = inner
        .finish()
        .map_err(|source| LayerError::Write { source })?;
    Ok(WrittenLayer {
        sink,
        diff_id: format!("sha256:{}", hex(&hasher.finalize())),
        uncompressed_size: written,
    })
}

/// One entry of the layer, keyed by its root-relative path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// The file at this path, as it is now.
    Path,
    /// A whiteout (`dir/.wh.name`) deleting `dir/name`.
    Whiteout,
}

/// The sorted entries of the layer: changed paths with their parents, and the whiteouts that
/// still mean something.
fn plan(root: &RootFs, changes: &Changes) -> BTreeMap<PathBuf, Item> {
    let mut items = BTreeMap::new();
    let changed: BTreeSet<PathBuf> = changes.changed().map(fsroot::clean).collect();
    let deleted: BTreeSet<PathBuf> = changes.deleted().map(fsroot::clean).collect();
    for path in &deleted {
        let Some(name) = path.file_name() else {
            continue;
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        if changed.contains(path) || path.ancestors().skip(1).any(|a| deleted.contains(a)) {
            continue;
        }
        if !parent.as_os_str().is_empty() {
            let parent_is_dir = root
                .symlink_metadata(parent)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
            if !parent_is_dir {
                tracing::debug!(path = %path.display(), "no whiteout: its parent is no longer a directory");
                continue;
            }
        }
        let mut whiteout = b".wh.".to_vec();
        whiteout.extend_from_slice(name.as_bytes());
        let whiteout = parent.join(OsStr::from_bytes(&whiteout));
        add_parents(&mut items, &whiteout);
        items.insert(whiteout, Item::Whiteout);
    }
    for dir in changes.opaque().map(fsroot::clean) {
        let whiteout = dir.join(".wh..wh..opq");
        add_parents(&mut items, &whiteout);
        items.insert(whiteout, Item::Whiteout);
    }
    for path in changed {
        if path.as_os_str().is_empty() {
            continue;
        }
        add_parents(&mut items, &path);
        items.insert(path, Item::Path);
    }
    items
}

fn add_parents(items: &mut BTreeMap<PathBuf, Item>, path: &Path) {
    for parent in path.ancestors().skip(1) {
        if parent.as_os_str().is_empty() {
            break;
        }
        items.entry(parent.to_path_buf()).or_insert(Item::Path);
    }
}

/// Writes the entry for one path of the root.
fn write_path<W: Write>(
    root: &RootFs,
    path: &Path,
    mtime_ceiling: Option<i64>,
    out: &mut TarOut<W>,
    seen_inodes: &mut HashMap<(u64, u64), PathBuf>,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    let read_error = |op: &'static str| {
        move |source: io::Error| LayerError::Read {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let st = root.symlink_metadata(path).map_err(read_error("lstat"))?;
    let file_type = FileType::from_raw_mode(st.st_mode);
    if matches!(file_type, FileType::Socket | FileType::Unknown) {
        // Sockets belong to a process that no longer runs; tar cannot hold them anyway. Skipped
        // before hardlink bookkeeping so no link entry ever points at an entry never written.
        tracing::debug!(path = %path.display(), "skipping socket");
        return Ok(());
    }
    let mut entry = EntryHeader::new(path, &st, mtime_ceiling)?;

    if file_type != FileType::Directory && st.st_nlink > 1 {
        match seen_inodes.get(&(st.st_dev, st.st_ino)) {
            Some(first) => {
                entry.kind = EntryType::Link;
                entry.link = Some(first.as_os_str().as_bytes().to_vec());
                return out.entry(&entry, path);
            }
            None => {
                seen_inodes.insert((st.st_dev, st.st_ino), path.to_path_buf());
            }
        }
    }

    match file_type {
        FileType::Directory => {
            entry.kind = EntryType::Directory;
            out.entry(&entry, path)
        }
        FileType::RegularFile => {
            let fd = root
                .open_path(path, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty())
                .map_err(read_error("opening"))?;
            let opened = rustix::fs::fstat(&fd).map_err(|e| read_error("fstat")(e.into()))?;
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
                return Err(LayerError::Changed {
                    path: path.to_path_buf(),
                    detail: "replaced by another file".to_owned(),
                });
            }
            let mut entry = EntryHeader::new(path, &opened, mtime_ceiling)?;
            entry.kind = EntryType::Regular;
            entry.size = u64::try_from(opened.st_size).unwrap_or(0);
            entry.capability =
                capability(&fd).map_err(read_error("reading security.capability"))?;
            out.entry(&entry, path)?;
            out.content(File::from(fd), entry.size, path, buf)
        }
        FileType::Symlink => {
            let (parent, name) = root.parent(path).map_err(read_error("resolving parent"))?;
            let target = rustix::fs::readlinkat(&parent, name.as_os_str(), Vec::new())
                .map_err(|e| read_error("readlink")(e.into()))?;
            entry.kind = EntryType::Symlink;
            entry.link = Some(target.into_bytes());
            out.entry(&entry, path)
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
            entry.kind = match file_type {
                FileType::CharacterDevice => EntryType::Char,
                FileType::BlockDevice => EntryType::Block,
                _ => EntryType::Fifo,
            };
            if file_type != FileType::Fifo {
                entry.device = Some((rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)));
            }
            out.entry(&entry, path)
        }
        FileType::Socket | FileType::Unknown => Ok(()),
    }
}

/// The file capability of an open file, if it has one.
fn capability(fd: &std::os::fd::OwnedFd) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; 64];
    loop {
        match rustix::fs::fgetxattr(fd, CAPABILITY_XATTR, &mut value[..]) {
            Ok(len) => {
                value.truncate(len);
                return Ok(Some(value));
            }
            Err(Errno::NODATA | Errno::NOTSUP) => return Ok(None),
            Err(Errno::RANGE) => {
                let len = rustix::fs::fgetxattr_query(fd, CAPABILITY_XATTR)?;
                value.resize(len.max(value.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Everything one tar entry says, before it is split between the ustar header and PAX records.
struct EntryHeader {
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Option<Vec<u8>>,
    device: Option<(u32, u32)>,
    capability: Option<Vec<u8>>,
}

impl EntryHeader {
    fn new(path: &Path, st: &Stat, mtime_ceiling: Option<i64>) -> Result<Self, LayerError> {
        if path.as_os_str().is_empty() {
            return Err(LayerError::Unrepresentable {
                path: path.to_path_buf(),
                reason: "the root itself is not a layer entry".to_owned(),
            });
        }
        Ok(Self {
            kind: EntryType::Regular,
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            mtime: mtime_ceiling.map_or(st.st_mtime, |ceiling| st.st_mtime.min(ceiling)),
            size: 0,
            link: None,
            device: None,
            capability: None,
        })
    }
}

/// The uncompressed tar stream being written.
struct TarOut<W: Write> {
    inner: HashingWriter<Encoder<W>>,
}

impl<W: Write> TarOut<W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), LayerError> {
        self.inner
            .write_all(bytes)
            .map_err(|source| LayerError::Write { source })
    }

    fn pad(&mut self, len: u64) -> Result<(), LayerError> {
        let rem = (BLOCK - len % BLOCK) % BLOCK;
        self.write(&[0; BLOCK as usize][..rem as usize])
    }

    /// A zero-size whiteout entry, owned by root with mode 0, as Docker writes them.
    fn whiteout(&mut self, path: &Path) -> Result<(), LayerError> {
        let entry = EntryHeader {
            kind: EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            device: None,
            capability: None,
        };
        self.entry(&entry, path)
    }

    /// Writes the header (and a PAX header before it when needed) of one entry.
    fn entry(&mut self, entry: &EntryHeader, path: &Path) -> Result<(), LayerError> {
        let mut name = path.as_os_str().as_bytes().to_vec();
        if entry.kind == EntryType::Directory {
            name.push(b'/');
        }
        let mut header = Header::new_ustar();
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        if !set_ustar_name(&mut header, &name) {
            pax.push(("path", name.clone()));
        }
        if let Some(link) = &entry.link {
            if link.len() <= 100 {
                header
                    .set_link_name_literal(link)
                    .map_err(|e| unrepresentable(path, e))?;
            } else {
                pax.push(("linkpath", link.clone()));
            }
        }
        if entry.uid <= MAX_OCTAL_8 {
            header.set_uid(entry.uid);
        } else {
            pax.push(("uid", entry.uid.to_string().into_bytes()));
        }
        if entry.gid <= MAX_OCTAL_8 {
            header.set_gid(entry.gid);
        } else {
            pax.push(("gid", entry.gid.to_string().into_bytes()));
        }
        match u64::try_from(entry.mtime) {
            Ok(mtime) if mtime <= MAX_OCTAL_12 => header.set_mtime(mtime),
            _ => pax.push(("mtime", entry.mtime.to_string().into_bytes())),
        }
        if entry.size <= MAX_OCTAL_12 {
            header.set_size(entry.size);
        } else {
            header.set_size(0);
            pax.push(("size", entry.size.to_string().into_bytes()));
        }
        if let Some(cap) = &entry.capability {
            pax.push(("SCHILY.xattr.security.capability", cap.clone()));
        }
        // Zeros rather than empty fields for non-devices, as Go's archive/tar writes them.
        let (major, minor) = entry.device.unwrap_or((0, 0));
        header
            .set_device_major(major)
            .map_err(|e| unrepresentable(path, e))?;
        header
            .set_device_minor(minor)
            .map_err(|e| unrepresentable(path, e))?;
        header.set_mode(entry.mode);
        header.set_entry_type(entry.kind);
        header.set_cksum();

        if !pax.is_empty() {
            self.pax(&name, &pax)?;
        }
        self.write(header.as_bytes())
    }

    /// A PAX extended header (`x`) holding `records` for the entry that follows.
    fn pax(&mut self, name: &[u8], records: &[(&str, Vec<u8>)]) -> Result<(), LayerError> {
        let mut data = Vec::new();
        for (key, value) in records {
            // Each record is "<len> <key>=<value>\n", where <len> counts its own digits.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let base = name
            .rsplit(|b| *b == b'/')
            .find(|part| !part.is_empty())
            .unwrap_or_default();
        let mut pax_name = b"PaxHeaders.0/".to_vec();
        pax_name.extend_from_slice(base);
        pax_name.truncate(100);
        let mut header = Header::new_ustar();
        if let Some(ustar) = header.as_ustar_mut() {
            ustar.name[..pax_name.len()].copy_from_slice(&pax_name);
        }
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header
            .set_device_major(0)
            .and_then(|()| header.set_device_minor(0))
            .map_err(|source| LayerError::Write { source })?;
        header.set_size(data.len() as u64);
        header.set_entry_type(EntryType::XHeader);
        header.set_cksum();
        self.write(header.as_bytes())?;
        self.write(&data)?;
        self.pad(data.len() as u64)
    }

    /// Streams exactly `size` bytes of `file`, failing if it has fewer or more.
    fn content(
        &mut self,
        mut file: File,
        size: u64,
        path: &Path,
        buf: &mut [u8],
    ) -> Result<(), LayerError> {
        let mut remaining = size;
        while remaining > 0 {
            let want = buf
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(LayerError::Changed {
                        path: path.to_path_buf(),
                        detail: format!(
                            "expected {size} bytes, it ended after {}",
                            size - remaining
                        ),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerError::Read {
                        path: path.to_path_buf(),
                        op: "reading",
                        source,
                    });
                }
            };
            self.write(&buf[..n])?;
            remaining -= n as u64;
        }
        let grew = loop {
            match file.read(&mut buf[..1]) {
                Ok(n) => break n > 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(LayerError::Read {
                        path: path.to_path_buf(),
                        op: "reading",
                        source,
                    });
                }
            }
        };
        if grew {
            return Err(LayerError::Changed {
                path: path.to_path_buf(),
                detail: format!("expected {size} bytes, it grew"),
            });
        }
        self.pad(size)
    }
}

fn unrepresentable(path: &Path, e: io::Error) -> LayerError {
    LayerError::Unrepresentable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Puts `name` in the ustar name field, or splits it at a `/` between prefix and name; `false`
/// when it fits neither way and needs a PAX `path` record (the field then holds a truncation).
fn set_ustar_name(header: &mut Header, name: &[u8]) -> bool {
    let Some(ustar) = header.as_ustar_mut() else {
        return false;
    };
    if name.len() <= ustar.name.len() {
        ustar.name[..name.len()].copy_from_slice(name);
        return true;
    }
    let split = name.iter().enumerate().position(|(i, b)| {
        *b == b'/'
            && i <= ustar.prefix.len()
            && name.len() - i - 1 <= ustar.name.len()
            && name.len() - i - 1 > 0
            && i > 0
    });
    match split {
        Some(i) => {
            ustar.prefix[..i].copy_from_slice(&name[..i]);
            ustar.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
            true
        }
        None => {
            let len = ustar.name.len();
            ustar.name.copy_from_slice(&name[..len]);
            false
        }
    }
}

/// Hashes and counts the uncompressed tar on its way to the compressor.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests;
