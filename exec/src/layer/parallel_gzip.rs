//! gzip compressed on several threads, pigz-style, with memory bounded by a few chunks.
//!
//! gzip is the compression every registry and runtime accepts, and at ~55 MiB/s per core it is
//! the slowest stage of writing a layer. Deflate blocks can be produced independently: the input
//! is cut into fixed chunks, each chunk is deflated on its own thread with the previous 32 KiB as
//! its dictionary and ends on a byte boundary (a sync flush; the last one ends the stream), and
//! the pieces are written in order behind one gzip header, with the CRC-32s combined. The result
//! is one ordinary gzip member any decoder reads.
//!
//! Chunk boundaries depend only on byte offsets, never on how the input was handed in or on the
//! number of threads, so the same tar always gives the same blob on any machine.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::mpsc::{Receiver, sync_channel};

use flate2::{Compress, Crc, FlushCompress, Status};

/// Input bytes per independently compressed chunk: large enough that the per-chunk cost
/// (dictionary priming, the 5-byte sync marker, a thread hand-off) is noise, small enough that
/// a few in flight stay a few MiB.
pub(super) const CHUNK: usize = 1024 * 1024;
/// Deflate's window: the dictionary each chunk is primed with.
const WINDOW: usize = 32 * 1024;
/// Chunks in flight per thread: one being compressed, one queued, so no thread waits for input.
const IN_FLIGHT_PER_THREAD: usize = 2;

/// One chunk, compressed.
struct Piece {
    deflate: Vec<u8>,
    crc: Crc,
}

/// A gzip stream compressed on `threads` rayon workers, written in order to `sink`.
pub(super) struct ParallelGzip<W: Write> {
    sink: W,
    level: flate2::Compression,
    chunk: Vec<u8>,
    dictionary: Vec<u8>,
    pending: VecDeque<Receiver<io::Result<Piece>>>,
    max_pending: usize,
    crc: Crc,
}

impl<W: Write> ParallelGzip<W> {
    /// Writes the gzip header (no name, no time: the same bytes on every run) and starts.
    pub(super) fn new(mut sink: W, level: u32, threads: NonZeroUsize) -> io::Result<Self> {
        let level = flate2::Compression::new(level);
        // Extra flags as gzip sets them: 2 for the slowest level, 4 for the fastest.
        let xfl = match level.level() {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        sink.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        Ok(Self {
            sink,
            level,
            chunk: Vec::with_capacity(CHUNK),
            dictionary: Vec::new(),
            pending: VecDeque::new(),
            max_pending: threads.get() * IN_FLIGHT_PER_THREAD,
            crc: Crc::new(),
        })
    }

    /// Compresses what is left, writes the trailer and returns the sink.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.dispatch(FlushCompress::Finish);
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.sink.write_all(&trailer)?;
        self.sink.flush()?;
        Ok(self.sink)
    }

    /// Hands the current chunk to a worker.
    fn dispatch(&mut self, flush: FlushCompress) {
        let input = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let dictionary = std::mem::take(&mut self.dictionary);
        self.dictionary = input[input.len().saturating_sub(WINDOW)..].to_vec();
        let level = self.level;
        let (tx, rx) = sync_channel(1);
        rayon::spawn(move || {
            // The receiver only disappears when the writer was dropped mid-stream.
            let _ = tx.send(compress(&input, &dictionary, level, flush));
        });
        self.pending.push_back(rx);
    }

    /// Waits for the oldest chunk and writes it.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let piece = rx
            .recv()
            .map_err(|_| io::Error::other("a gzip worker thread died"))??;
        self.sink.write_all(&piece.deflate)?;
        self.crc.combine(&piece.crc);
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            self.dispatch(FlushCompress::Sync);
            while self.pending.len() >= self.max_pending {
                self.write_oldest()?;
            }
        }
        Ok(n)
    }

    /// Writes the chunks already compressed; the partial chunk waits for more input, since
    /// cutting it early would make the blob depend on when flushes happened.
    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// Deflates one chunk as raw deflate ending on a byte boundary (`Sync`) or ending the stream
/// (`Finish`), with its CRC-32.
fn compress(
    input: &[u8],
    dictionary: &[u8],
    level: flate2::Compression,
    flush: FlushCompress,
) -> io::Result<Piece> {
    let mut crc = Crc::new();
    crc.update(input);
    let mut compressor = Compress::new(level, false);
    if !dictionary.is_empty() {
        compressor
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let mut deflate = Vec::with_capacity(input.len() / 2 + 1024);
    let mut consumed = 0;
    loop {
        if deflate.capacity() - deflate.len() < 1024 {
            deflate.reserve(deflate.capacity().max(64 * 1024));
        }
        let before = compressor.total_in();
        let status = compressor
            .compress_vec(&input[consumed..], &mut deflate, flush)
            .map_err(io::Error::other)?;
        consumed += usize::try_from(compressor.total_in() - before).map_err(io::Error::other)?;
        let room_left = deflate.len() < deflate.capacity();
        let done = match (status, flush) {
            (Status::StreamEnd, _) => true,
            // A sync flush is complete once all input is in and the output was not full.
            (_, FlushCompress::Sync) => consumed == input.len() && room_left,
            _ => false,
        };
        if done {
            return Ok(Piece { deflate, crc });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivially: a counter mixed into text.
        let mut data = Vec::with_capacity(len);
        let mut i = 0u64;
        while data.len() < len {
            data.extend_from_slice(
                format!("line {i} of {}\n", i * 2_654_435_761 % 1000).as_bytes(),
            );
            i += 1;
        }
        data.truncate(len);
        data
    }

    fn gzip(data: &[u8], threads: usize, write_size: usize) -> Vec<u8> {
        let mut encoder =
            ParallelGzip::new(Vec::new(), 6, NonZeroUsize::new(threads).unwrap()).unwrap();
        for part in data.chunks(write_size.max(1)) {
            encoder.write_all(part).unwrap();
        }
        encoder.finish().unwrap()
    }

    fn gunzip(blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn output_is_one_gzip_member_that_decodes_to_the_input() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 12_345] {
            let data = sample(len);
            let blob = gzip(&data, 2, 100_000);
            // A single-member decoder reads everything: the chunks form one member.
            assert_eq!(gunzip(&blob), data, "length {len}");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_threads_or_write_sizes() {
        let data = sample(2 * CHUNK + 777);
        let reference = gzip(&data, 1, CHUNK);
        assert_eq!(gzip(&data, 2, 4096), reference);
        assert_eq!(gzip(&data, 4, 3 * CHUNK), reference);
    }

    #[test]
    fn ratio_is_close_to_single_stream_gzip() {
        let data = sample(4 * CHUNK);
        let parallel = gzip(&data, 2, CHUNK).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            parallel * 100 <= single * 101,
            "parallel {parallel} bytes vs single {single}"
        );
    }

    #[test]
    fn gnu_gzip_decodes_the_stream_and_checks_its_crc_and_length() {
        let gzip_program = std::path::Path::new("/usr/bin/gzip");
        assert!(
            gzip_program.is_file(),
            "GNU gzip is not installed: run `apt-get install gzip`"
        );
        let data = sample(3 * CHUNK + 4321);
        let blob = gzip(&data, 2, 65_536);
        let mut child = std::process::Command::new(gzip_program)
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&blob).unwrap());
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(output.stdout == data, "gzip -dc gave other bytes");
    }

    #[test]
    fn header_has_no_time_and_names_no_file() {
        let blob = gzip(b"x", 1, 1);
        assert_eq!(&blob[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    }
}
