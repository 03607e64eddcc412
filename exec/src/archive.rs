//! `ADD`'s local-archive rule: a source file that is a tar archive, plain or compressed, is
//! extracted into the destination instead of copied. Docker decides by content, not by name, so
//! detection sniffs magic numbers and then checks that the (decompressed) stream starts with a
//! tar header.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use thiserror::Error;

use crate::compression::{Compression, decompress};
use crate::snapshot::{Snapshot, SnapshotError};
use crate::unpack::{UnpackError, apply_layer};
use crate::{Changes, RootFs};

/// What a source file is, as far as `ADD` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not an archive: copied as it is.
    File,
    /// A tar archive kiln extracts.
    Tar(Compression),
    /// A tar archive in a compression kiln cannot read yet (Docker would extract it).
    Unsupported(&'static str),
}

/// Why an archive could not be added.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// Reading the archive failed.
    #[error("reading archive {path}: {source}", path = .path.display())]
    Read {
        /// The archive, relative to the build context.
        path: std::path::PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Creating the destination directory failed.
    #[error("creating {dest}: {source}")]
    Dest {
        /// The destination, as written.
        dest: String,
        /// The OS error.
        source: io::Error,
    },
    /// Observing what the extraction changed failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Extraction failed (a hostile entry, a corrupt stream, ...).
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

/// Classifies an open file by its first bytes, leaving it rewound.
pub fn detect(file: &mut File) -> io::Result<Kind> {
    let mut head = [0u8; 6];
    let read = read_up_to(file, &mut head)?;
    let head = &head[..read];
    file.rewind()?;
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        return Ok(if is_tar_after(file, None)? {
            Kind::Unsupported("bzip2")
        } else {
            Kind::File
        });
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Ok(if is_tar_after(file, None)? {
            Kind::Unsupported("xz")
        } else {
            Kind::File
        });
    } else {
        Compression::None
    };
    let tar = is_tar_after(file, Some(compression))?;
    file.rewind()?;
    Ok(if tar {
        Kind::Tar(compression)
    } else {
        Kind::File
    })
}

/// Whether the stream (decompressed when `compression` is known) starts with a ustar header.
/// For compressions kiln cannot decode, a compressed file is assumed to hold a tar, as its name
/// almost always says.
fn is_tar_after(file: &mut File, compression: Option<Compression>) -> io::Result<bool> {
    let Some(compression) = compression else {
        return Ok(true);
    };
    let mut header = [0u8; 512];
    let read = match decompress(compression, &mut *file) {
        Ok(mut stream) => read_up_to(&mut stream, &mut header).unwrap_or(0),
        Err(_) => 0,
    };
    file.rewind()?;
    Ok(read == 512 && &header[257..262] == b"ustar")
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Extracts the archive `source` (relative to `context`) into the directory `dest` of
/// `dest_root`, with the archive's owners and modes, and returns what changed.
///
/// Entries are resolved inside the destination directory, so an archive can never write outside
/// it; changes are observed with a snapshot of the root, as for `RUN`.
pub fn extract(
    context: &RootFs,
    source: &Path,
    compression: Compression,
    dest_root: &RootFs,
    dest: &str,
) -> Result<Changes, ArchiveError> {
    let read_error = |source_err: io::Error| ArchiveError::Read {
        path: source.to_path_buf(),
        source: source_err,
    };
    let file = context.open_file(source).map_err(read_error)?;
    let (dir, _) = dest_root
        .create_dir_all(Path::new(dest), 0o755, None)
        .map_err(|source| ArchiveError::Dest {
            dest: dest.to_owned(),
            source,
        })?;
    let dir_rel = dest_root
        .real_path(&dir)
        .map_err(|source| ArchiveError::Dest {
            dest: dest.to_owned(),
            source,
        })?;
    let target =
        RootFs::open(&dest_root.path().join(&dir_rel)).map_err(|source| ArchiveError::Dest {
            dest: dest.to_owned(),
            source,
        })?;
    let before = Snapshot::scan(dest_root.path(), &[])?;
    let stream =
        decompress(compression, BufReader::with_capacity(1 << 20, file)).map_err(read_error)?;
    apply_layer(&target, stream, &source.display().to_string())?;
    let after = Snapshot::scan(dest_root.path(), &[])?;
    Ok(before.diff(&after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_bytes() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o640);
        header.set_uid(7);
        header.set_gid(8);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, "pkg/file", &b"abc"[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> File {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        File::open(path).unwrap()
    }

    #[test]
    fn archives_are_detected_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let mut plain_gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        plain_gz.write_all(b"just text, not a tar").unwrap();
        let plain_gz = plain_gz.finish().unwrap();

        assert_eq!(
            detect(&mut file_with(dir.path(), "a.bin", &tar)).unwrap(),
            Kind::Tar(Compression::None)
        );
        assert_eq!(
            detect(&mut file_with(dir.path(), "b", &gz)).unwrap(),
            Kind::Tar(Compression::Gzip)
        );
        assert_eq!(
            detect(&mut file_with(dir.path(), "c.tar.gz", &plain_gz)).unwrap(),
            Kind::File
        );
        assert_eq!(
            detect(&mut file_with(dir.path(), "d.tar", b"hello")).unwrap(),
            Kind::File
        );
        assert_eq!(
            detect(&mut file_with(dir.path(), "e", b"BZh91AY")).unwrap(),
            Kind::Unsupported("bzip2")
        );
    }

    #[test]
    fn an_archive_is_extracted_into_the_destination_with_its_owners() {
        let context = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join("pkg.tar"), tar_bytes()).unwrap();
        let context_fs = RootFs::open(context.path()).unwrap();
        let root_fs = RootFs::open(root.path()).unwrap();
        let changes = extract(
            &context_fs,
            Path::new("pkg.tar"),
            Compression::None,
            &root_fs,
            "/opt/",
        )
        .unwrap();
        let file = root.path().join("opt/pkg/file");
        assert_eq!(std::fs::read(&file).unwrap(), b"abc");
        let meta = std::fs::metadata(&file).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!((meta.uid(), meta.gid()), (7, 8));
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        let changed: Vec<_> = changes.changed().collect();
        assert!(changed.contains(&Path::new("opt/pkg/file")), "{changed:?}");
        assert!(changed.contains(&Path::new("opt")), "{changed:?}");
    }
}
