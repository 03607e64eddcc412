//! Per-blob transfer progress, reported through a callback the application renders.
//!
//! Multi-gigabyte layers take minutes to move; without progress a build looks hung (Kaniko
//! #1696). The client reports at most every [`REPORT_STEP`] bytes per blob, plus the start and
//! the end, so a renderer can log every report without flooding.

use std::fmt;
use std::sync::Arc;

/// Bytes between two reports of the same blob.
pub const REPORT_STEP: u64 = 4 * 1024 * 1024;

/// Which way a blob is moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Downloading from a registry.
    Pull,
    /// Uploading to a registry.
    Push,
}

/// One report: how far one blob's transfer has come.
#[derive(Debug, Clone, Copy)]
pub struct TransferProgress<'a> {
    /// Download or upload.
    pub direction: Direction,
    /// The blob, as `registry/repository@digest`.
    pub blob: &'a str,
    /// Bytes transferred so far. It can go down when a transfer restarts from scratch.
    pub done: u64,
    /// The blob's size, when known.
    pub total: Option<u64>,
}

/// The callback: cheap to clone, shared by every transfer of a client.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&TransferProgress<'_>) + Send + Sync>);

impl Progress {
    /// Wraps a renderer. It is called from the transfer tasks, so it must be quick.
    pub fn new(report: impl Fn(&TransferProgress<'_>) + Send + Sync + 'static) -> Progress {
        Progress(Arc::new(report))
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Tracks one transfer and decides when it is worth a report.
#[derive(Debug)]
pub(crate) struct Meter {
    progress: Option<Progress>,
    direction: Direction,
    blob: String,
    total: Option<u64>,
    done: u64,
    reported: Option<u64>,
}

impl Meter {
    pub(crate) fn new(
        progress: Option<Progress>,
        direction: Direction,
        blob: &str,
        total: Option<u64>,
    ) -> Meter {
        let mut meter = Meter {
            progress,
            direction,
            blob: blob.to_owned(),
            total,
            done: 0,
            reported: None,
        };
        meter.report();
        meter
    }

    /// `bytes` more have moved.
    pub(crate) fn advance(&mut self, bytes: u64) {
        self.set(self.done.saturating_add(bytes));
    }

    /// The transfer is now at `done` (after a resume or a restart).
    pub(crate) fn set(&mut self, done: u64) {
        self.done = done;
        let due = match self.reported {
            None => true,
            Some(last) => done < last || done - last >= REPORT_STEP || Some(done) == self.total,
        };
        if due {
            self.report();
        }
    }

    fn report(&mut self) {
        if self.reported == Some(self.done) {
            return;
        }
        self.reported = Some(self.done);
        if let Some(progress) = &self.progress {
            (progress.0)(&TransferProgress {
                direction: self.direction,
                blob: &self.blob,
                done: self.done,
                total: self.total,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn reports_start_every_step_restarts_and_the_end() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let progress = Progress::new(move |p| sink.lock().unwrap().push((p.done, p.total)));
        let total = 3 * REPORT_STEP + 10;
        let mut meter = Meter::new(Some(progress), Direction::Pull, "r/a@sha256:x", Some(total));
        for _ in 0..(total / 1024) {
            meter.advance(1024);
        }
        meter.advance(total % 1024);
        meter.set(0);
        let seen = seen.lock().unwrap();
        let done: Vec<u64> = seen.iter().map(|(d, _)| *d).collect();
        assert_eq!(
            done,
            vec![0, REPORT_STEP, 2 * REPORT_STEP, 3 * REPORT_STEP, total, 0]
        );
        assert!(seen.iter().all(|(_, t)| *t == Some(total)));
    }
}
