//! Layer compression formats, as registries name them.
//!
//! A layer's media type is the only reliable statement of how its blob is compressed: OCI and
//! Docker spell the same three formats half a dozen ways (distributable or not, "foreign"
//! Windows layers), and sniffing magic bytes would accept blobs whose manifest lies about them.

use std::io::{self, Read};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952), possibly several concatenated members.
    Gzip,
    /// Zstandard frames.
    Zstd,
}

/// A layer media type kiln cannot extract.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// The media type is not a tar layer in any compression kiln knows.
    #[error("unsupported layer media type {media_type:?}")]
    UnknownMediaType {
        /// The media type as the manifest gave it.
        media_type: String,
    },
}

impl Compression {
    /// From an OCI or Docker layer media type, so that extraction follows what the manifest
    /// declares. Unknown types are an error rather than a guess, because extracting a blob with
    /// the wrong decoder produces garbage or, worse, a plausible partial tree.
    pub fn from_media_type(media_type: &str) -> Result<Compression, CompressionError> {
        // Parameters (`; charset=...`) never change the format; ignore them like registries do.
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        let compression = match essence {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
            _ => {
                return Err(CompressionError::UnknownMediaType {
                    media_type: media_type.to_owned(),
                });
            }
        };
        Ok(compression)
    }

    /// The OCI media type of a layer kiln writes with this compression (kiln never writes
    /// non-distributable layers, whose use is deprecated by the OCI image spec).
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Wraps a compressed layer stream into one that yields the uncompressed tar, decoding as it is
/// read so no layer is ever held in memory. A truncated or corrupt stream surfaces as an
/// `io::Error` from `read`, never as a silent early end.
pub fn decompress<'a, R: Read + Send + 'a>(
    c: Compression,
    reader: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match c {
        Compression::None => Box::new(reader),
        // Multi-member: some tools (pigz, concatenated layers) emit several gzip members, and a
        // single-member decoder would stop after the first and drop the rest of the tar.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn oci_and_docker_media_types_map_to_their_compression() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
                Compression::Zstd,
            ),
        ];
        for (media_type, expected) in cases {
            assert_eq!(
                Compression::from_media_type(media_type).unwrap(),
                expected,
                "{media_type}"
            );
        }
    }

    #[test]
    fn unknown_media_type_error_names_it() {
        let err = Compression::from_media_type("application/vnd.oci.image.config.v1+json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("application/vnd.oci.image.config.v1+json"),
            "{err}"
        );
    }

    #[test]
    fn oci_media_type_round_trips() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(
                Compression::from_media_type(c.oci_layer_media_type()).unwrap(),
                c
            );
        }
    }

    #[test]
    fn concatenated_gzip_members_decode_completely() {
        let mut blob = Vec::new();
        for part in [b"first ".as_slice(), b"second"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            blob.extend(enc.finish().unwrap());
        }
        let mut out = String::new();
        decompress(Compression::Gzip, blob.as_slice())
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first second");
    }

    #[test]
    fn truncated_compressed_streams_are_errors() {
        let data = vec![7u8; 100_000];
        let gz = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        let zst = zstd::stream::encode_all(data.as_slice(), 3).unwrap();
        for (c, blob) in [(Compression::Gzip, gz), (Compression::Zstd, zst)] {
            let cut = &blob[..blob.len() - 4];
            let result = decompress(c, cut).unwrap().read_to_end(&mut Vec::new());
            assert!(result.is_err(), "{c:?} accepted a truncated stream");
        }
    }
}
