//! The compressor between the tar stream and the blob sink.
//!
//! Both compressors run on several threads and produce bytes that do not depend on how many:
//! gzip is chunked (see [`super::parallel_gzip`]) and zstd always runs in libzstd's
//! multi-threaded mode, whose output is the same for any number of workers (its single-threaded
//! mode frames data differently). A layer digest therefore never depends on the machine.

use std::io::{self, BufWriter, Write};

use super::parallel_gzip::ParallelGzip;
use super::{COPY_BUFFER, LayerError, LayerOptions};
use crate::compression::Compression;

/// Default gzip level, as `gzip` and Docker use.
const DEFAULT_GZIP_LEVEL: i32 = 6;
/// zlib's spelling of "the default level", which Kaniko's `--compression-level` defaults to.
const ZLIB_DEFAULT_LEVEL: i32 = -1;

/// The compressor in front of the sink.
pub(super) enum Encoder<W: Write> {
    None(BufWriter<W>),
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub(super) fn new(sink: W, options: &LayerOptions) -> Result<Self, LayerError> {
        let level = checked_level(options)?;
        let write_error = |source| LayerError::Write { source };
        Ok(match options.compression {
            Compression::None => Encoder::None(BufWriter::with_capacity(COPY_BUFFER, sink)),
            Compression::Gzip => {
                // `checked_level` guarantees 0-9.
                let level = level.unsigned_abs();
                Encoder::Gzip(ParallelGzip::new(sink, level, options.threads).map_err(write_error)?)
            }
            Compression::Zstd => {
                let mut encoder =
                    zstd::stream::write::Encoder::new(sink, level).map_err(write_error)?;
                let workers = u32::try_from(options.threads.get()).unwrap_or(u32::MAX);
                encoder.multithread(workers).map_err(write_error)?;
                Encoder::Zstd(encoder)
            }
        })
    }

    pub(super) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => w.into_inner().map_err(io::IntoInnerError::into_error),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
        .and_then(|mut sink| sink.flush().map(|()| sink))
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

/// The level the compressor will use, or why the requested one is refused.
pub(super) fn checked_level(options: &LayerOptions) -> Result<i32, LayerError> {
    let invalid = |level| LayerError::InvalidLevel {
        compression: options.compression,
        level,
    };
    match options.compression {
        Compression::None => Ok(0),
        Compression::Gzip => match options.level {
            None | Some(ZLIB_DEFAULT_LEVEL) => Ok(DEFAULT_GZIP_LEVEL),
            Some(level @ 0..=9) => Ok(level),
            Some(level) => Err(invalid(level)),
        },
        Compression::Zstd => {
            let level = options.level.unwrap_or(zstd::DEFAULT_COMPRESSION_LEVEL);
            if zstd::compression_level_range().contains(&level) {
                Ok(level)
            } else {
                Err(invalid(level))
            }
        }
    }
}
