//! Applying an image's layers with decompression running ahead of the filesystem writes.
//!
//! Layers must be applied in order (a whiteout in layer N+1 deletes what layer N wrote), but
//! reading them need not wait: one thread decompresses the layers in order into a bounded queue
//! while the calling thread parses and writes. gzip decoding (~55 MiB/s per core) and file
//! creation (~0.7 ms per file on the CI disks) then overlap instead of adding up, and layer
//! N+1 starts decoding while layer N's last files are written. The queue bounds memory:
//! [`QUEUE_CHUNKS`] chunks of [`CHUNK`] bytes, whatever the layer sizes.

use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{UnpackError, apply_layer_except};
use crate::fsroot::RootFs;
use crate::ignore::IgnoreList;

/// Bytes the decoder hands over at a time: large enough to make channel costs vanish.
const CHUNK: usize = 256 * 1024;
/// Chunks the decoder may run ahead of the writer (4 MiB).
const QUEUE_CHUNKS: usize = 16;

/// One layer to apply: a label for errors (its digest) and its uncompressed tar stream.
pub struct LayerStream {
    /// Names the layer in errors (usually its digest).
    pub label: String,
    /// The layer's tar, already wrapped in its decompressor; read only by the decoder thread.
    pub tar: Box<dyn Read + Send>,
}

impl fmt::Debug for LayerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerStream")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Applies `layers` onto `root` in order, lowest first, decoding ahead of the writes.
///
/// The result is exactly that of calling [`super::apply_layer`] on each in turn; the first error stops
/// everything and is returned.
pub fn apply_layers(root: &RootFs, layers: Vec<LayerStream>) -> Result<(), UnpackError> {
    apply_layers_except(root, layers, &IgnoreList::default())
}

/// [`apply_layers`] sparing the `ignore`d paths of the root (see
/// [`super::apply_layer_except`]).
pub fn apply_layers_except(
    root: &RootFs,
    layers: Vec<LayerStream>,
    ignore: &IgnoreList,
) -> Result<(), UnpackError> {
    let mut labels = Vec::with_capacity(layers.len());
    let mut senders = Vec::with_capacity(layers.len());
    let mut receivers = Vec::with_capacity(layers.len());
    let mut tars = Vec::with_capacity(layers.len());
    for layer in layers {
        // Each layer has its own queue, so the writer knows where one layer ends; the decoder
        // fills them in order, so together they never hold more than one queue's worth.
        let (sender, receiver) = sync_channel(QUEUE_CHUNKS);
        labels.push(layer.label);
        senders.push(sender);
        receivers.push(receiver);
        tars.push(layer.tar);
    }
    std::thread::scope(|scope| {
        scope.spawn(move || decode(tars, senders));
        for (label, receiver) in labels.iter().zip(receivers) {
            // Dropping a receiver (done with a layer, or failed) tells the decoder to stop
            // reading that layer; an early return drops them all.
            apply_layer_except(root, QueueReader::new(receiver), label, ignore)?;
        }
        Ok(())
    })
}

/// The decoder thread: reads each layer to its end (or until the writer stops listening) into
/// its queue, in layer order.
fn decode(tars: Vec<Box<dyn Read + Send>>, senders: Vec<SyncSender<io::Result<Vec<u8>>>>) {
    for (mut tar, sender) in tars.into_iter().zip(senders) {
        loop {
            let chunk = read_chunk(&mut tar);
            let last = !matches!(&chunk, Ok(data) if !data.is_empty());
            if sender.send(chunk).is_err() || last {
                break;
            }
        }
    }
}

/// Up to [`CHUNK`] bytes; empty at the end of the stream.
fn read_chunk(reader: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut chunk = vec![0; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        match reader.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    chunk.truncate(filled);
    Ok(chunk)
}

/// The writer's end of a layer's queue, read as a stream.
struct QueueReader {
    receiver: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    offset: usize,
    done: bool,
}

impl QueueReader {
    fn new(receiver: Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            receiver,
            chunk: Vec::new(),
            offset: 0,
            done: false,
        }
    }
}

impl Read for QueueReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    self.done = chunk.is_empty();
                    self.chunk = chunk;
                    self.offset = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The decoder only hangs up after the end marker or an error, both seen above.
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the layer decoder stopped unexpectedly"));
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.offset);
        buf[..n].copy_from_slice(&self.chunk[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that fails, as a disk or a decompressor would.
    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            builder.append_data(&mut header, name, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn stream(label: &str, bytes: Vec<u8>) -> LayerStream {
        LayerStream {
            label: label.to_owned(),
            tar: Box::new(io::Cursor::new(bytes)),
        }
    }

    #[test]
    fn layers_apply_in_order_across_many_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootFs::open(dir.path()).unwrap();
        let big = vec![7u8; 3 * CHUNK + 17];
        let layers = vec![
            stream("one", tar_of(&[("a", b"1"), ("big", &big), ("gone", b"g")])),
            stream("two", tar_of(&[("a", b"2"), (".wh.gone", b"")])),
            stream("three", tar_of(&[])),
        ];
        apply_layers(&root, layers).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"2");
        assert_eq!(std::fs::read(dir.path().join("big")).unwrap(), big);
        assert!(!dir.path().join("gone").exists());
    }

    #[test]
    fn a_read_error_names_its_layer_and_stops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootFs::open(dir.path()).unwrap();
        let mut failing_prefix = tar_of(&[("big", &vec![1u8; 10 * CHUNK])]);
        failing_prefix.truncate(2 * CHUNK);
        let layers = vec![
            stream("sha256:good", tar_of(&[("a", b"1")])),
            LayerStream {
                label: "sha256:bad".to_owned(),
                // Fails in the middle of a file's content, two chunks in.
                tar: Box::new(io::Cursor::new(failing_prefix).chain(Failing)),
            },
            stream("sha256:never", tar_of(&[("never", b"x")])),
        ];
        let err = apply_layers(&root, layers).unwrap_err().to_string();
        assert!(err.contains("sha256:bad"), "{err}");
        assert!(err.contains("big"), "{err}");
        assert!(err.contains("disk on fire"), "{err}");
        assert!(dir.path().join("a").exists());
        assert!(!dir.path().join("never").exists());
    }

    #[test]
    fn a_failing_layer_stops_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootFs::open(dir.path()).unwrap();
        let mut hostile = tar_of(&[("ok", b"1")]);
        hostile.truncate(hostile.len() - 1024);
        hostile.extend(tar_of(&[("x", b"x")]).iter().map(|_| 0xffu8));
        let layers = vec![
            stream("sha256:hostile", hostile),
            // Endless: the test only finishes if the decoder stops reading it.
            LayerStream {
                label: "sha256:endless".to_owned(),
                tar: Box::new(io::repeat(0)),
            },
        ];
        let err = apply_layers(&root, layers).unwrap_err().to_string();
        assert!(err.contains("sha256:hostile"), "{err}");
    }
}
