//! Progress of a layer being written: the compressed bytes reaching the store, reported every
//! few MiB, so a multi-GiB snapshot shows movement and a rate instead of a frozen line.

use std::io::Write;

use super::{Event, StepId, emit};

/// Bytes between two reports.
const REPORT_EVERY: u64 = 4 << 20;

/// A writer that counts what passes through it and reports it as [`Event::SnapshotBytes`].
#[derive(Debug)]
pub struct SnapshotProgress<W> {
    inner: W,
    id: StepId,
    written: u64,
    reported: u64,
}

impl<W: Write> SnapshotProgress<W> {
    /// Counts the layer of step `id` written to `inner`.
    pub fn new(id: StepId, inner: W) -> SnapshotProgress<W> {
        SnapshotProgress {
            inner,
            id,
            written: 0,
            reported: 0,
        }
    }

    /// The writer, once the layer is complete (its last count is reported).
    pub fn into_inner(self) -> W {
        emit(Event::SnapshotBytes {
            id: self.id,
            written: self.written,
        });
        self.inner
    }
}

impl<W: Write> Write for SnapshotProgress<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        if self.written - self.reported >= REPORT_EVERY {
            self.reported = self.written;
            emit(Event::SnapshotBytes {
                id: self.id,
                written: self.written,
            });
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
