//! `ADD`'s local-archive rule: a source file that is a tar archive, plain or compressed, is
//! extracted into the destination instead of copied. Docker decides by content, not by name, so
//! detection sniffs magic numbers and then checks that the (decompressed) stream starts with a
//! tar header. Docker's formats are all read: plain, gzip, bzip2, xz and zstd, each decoded as
//! a stream (bzip2 by the `bzip2` crate's pure-Rust libbz2 port, xz by `lzma-rust2`).

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
    Tar(Format),
}

/// How a tar archive is compressed: the layer compressions plus the two Docker also reads in
/// `ADD` (never in layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain, gzip or zstd, as layers are.
    Layer(Compression),
    /// bzip2, possibly several concatenated streams.
    Bzip2,
    /// xz, possibly several concatenated streams.
    Xz,
}

impl Format {
    /// The compression a stream starting with `head` (its first 6 bytes, or fewer if it is
    /// shorter) uses, by magic number; anything unrecognised is read as plain.
    pub fn sniff(head: &[u8]) -> Format {
        if head.starts_with(&[0x1f, 0x8b]) {
            Format::Layer(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::Layer(Compression::Zstd)
        } else if head.starts_with(b"BZh") {
            Format::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Format::Xz
        } else {
            Format::Layer(Compression::None)
        }
    }
}

/// Wraps `reader` into a stream of the uncompressed tar, decoding as it is read; a corrupt or
/// truncated stream is an error from `read`.
pub fn decode<'a, R: Read + Send + 'a>(
    format: Format,
    reader: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match format {
        Format::Layer(compression) => decompress(compression, reader)?,
        Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
        Format::Xz => Box::new(lzma_rust2::XzReader::new(reader, true)),
    })
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
    let format = Format::sniff(head);
    let tar = is_tar_after(file, format)?;
    file.rewind()?;
    Ok(if tar { Kind::Tar(format) } else { Kind::File })
}

/// Whether the decompressed stream starts with a ustar header.
fn is_tar_after(file: &mut File, format: Format) -> io::Result<bool> {
    let mut header = [0u8; 512];
    let read = match decode(format, &mut *file) {
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
    format: Format,
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
    let stream = decode(format, BufReader::with_capacity(1 << 20, file)).map_err(read_error)?;
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
            Kind::Tar(Format::Layer(Compression::None))
        );
        assert_eq!(
            detect(&mut file_with(dir.path(), "b", &gz)).unwrap(),
            Kind::Tar(Format::Layer(Compression::Gzip))
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
            Kind::File,
            "a bzip2 signature that does not decode to a tar is a file"
        );
    }

    /// Compresses `bytes` with the system's `bzip2` or `xz`, as users make their archives.
    fn compressed_with(tool: &str, bytes: &[u8]) -> Vec<u8> {
        let mut child = std::process::Command::new(tool)
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        output.stdout
    }

    #[test]
    fn bzip2_and_xz_archives_are_detected_and_extracted() {
        for (tool, format) in [("bzip2", Format::Bzip2), ("xz", Format::Xz)] {
            let context = tempfile::tempdir().unwrap();
            let root = tempfile::tempdir().unwrap();
            let archive = compressed_with(tool, &tar_bytes());
            let mut file = file_with(context.path(), "pkg", &archive);
            assert_eq!(detect(&mut file).unwrap(), Kind::Tar(format), "{tool}");
            let context_fs = RootFs::open(context.path()).unwrap();
            let root_fs = RootFs::open(root.path()).unwrap();
            extract(&context_fs, Path::new("pkg"), format, &root_fs, "/opt").unwrap();
            assert_eq!(
                std::fs::read(root.path().join("opt/pkg/file")).unwrap(),
                b"abc",
                "{tool}"
            );
            let text = compressed_with(tool, b"not a tar at all");
            let mut file = file_with(context.path(), "text", &text);
            assert_eq!(detect(&mut file).unwrap(), Kind::File, "{tool}");
        }
    }

    #[test]
    fn a_truncated_xz_archive_is_an_error_not_a_partial_tree() {
        let context = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut big = tar::Builder::new(Vec::new());
        for index in 0..50 {
            let mut header = tar::Header::new_ustar();
            let data = vec![index as u8; 10_000];
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            big.append_data(&mut header, format!("f{index}"), &data[..])
                .unwrap();
        }
        let archive = compressed_with("xz", &big.into_inner().unwrap());
        std::fs::write(
            context.path().join("cut"),
            &archive[..archive.len() * 2 / 3],
        )
        .unwrap();
        let context_fs = RootFs::open(context.path()).unwrap();
        let root_fs = RootFs::open(root.path()).unwrap();
        assert!(extract(&context_fs, Path::new("cut"), Format::Xz, &root_fs, "/").is_err());
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
            Format::Layer(Compression::None),
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
