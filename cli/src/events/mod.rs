//! Build events: what a build tells the people and tools watching it.
//!
//! The build calls one-line hooks ([`emit`]) at the moments that matter (the plan with its keys
//! and cache verdicts, a step starting, coming from the cache or finishing, a snapshot, each
//! blob transfer report, the image built, each push). Observers turn them into what is shown:
//! plain log lines for CI ([`plain`]), the live terminal view ([`tty`]), the `--report` files
//! ([`report`]). Rendering never lives in the build code, so the build modules stay about
//! building and every view sees the same facts.
//!
//! The sink is process-wide (installed once by `main`): the hooks sit in the stage executor, the
//! outputs and the registry client's progress callback, and threading a handle through all of
//! them would touch every constructor for no gain; a process runs one command.

pub mod console;
pub mod markdown;
pub mod plain;
pub mod reasons;
pub mod report;
mod snapshot;
pub mod tty;

pub use snapshot::SnapshotProgress;

use std::sync::OnceLock;
use std::time::Duration;

use kiln_registry::TransferProgress;

use crate::image::Layer;

/// One step of the plan: `(stage index, step index)`, as in [`kiln_graph::Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId {
    /// Index of the stage in the plan.
    pub stage: usize,
    /// Index of the step in its stage.
    pub step: usize,
}

impl StepId {
    /// Step `step` of stage `stage`.
    pub fn new(stage: usize, step: usize) -> StepId {
        StepId { stage, step }
    }
}

/// What the cache can say about a step before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// `--cache` is off.
    Disabled,
    /// The flags do not cache this kind of step, or it makes no layer (ENV, LABEL, ...).
    NotCacheable,
    /// Cacheable; if it runs, this is why the cache did not have it (when the cache knows).
    Cacheable {
        /// Why the result is missing (`kiln cache explain`'s verdict), when known.
        miss_reason: Option<String>,
    },
}

/// A step as planned, before anything runs.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// Which step.
    pub id: StepId,
    /// `Dockerfile:12`.
    pub location: String,
    /// The instruction as written (`RUN make`).
    pub text: String,
    /// The stage, as logs name it (`stage build`), when the plan has more than one.
    pub stage: Option<String>,
    /// The node key, hex, when the step has one.
    pub key: Option<String>,
    /// What the cache can say.
    pub cache: CacheStatus,
    /// Whether it executes something (RUN, COPY, ADD, WORKDIR) rather than only setting config.
    pub runs: bool,
}

impl PlannedStep {
    /// The instruction with its stage: `RUN make (stage build)`, as the logs always showed it.
    pub fn display(&self) -> String {
        match &self.stage {
            Some(stage) => format!("{} ({stage})", self.text),
            None => self.text.clone(),
        }
    }
}

/// Something that happened during a command.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The steps the build will go through, in build order; sent once, before any step.
    Planned {
        /// The Dockerfile's name, for messages.
        dockerfile: &'a str,
        /// Every step.
        steps: &'a [PlannedStep],
    },
    /// A step begins to execute.
    StepStarted(StepId),
    /// A step's result came from the cache.
    StepCached {
        /// Which step.
        id: StepId,
        /// Its layer, if it has one.
        layer: Option<&'a Layer>,
        /// Whether the result was found in the remote cache.
        remote: bool,
    },
    /// A line a running `RUN` wrote (only with the live view, which shows the last lines;
    /// otherwise the command writes to kiln's stdout and stderr itself).
    RunOutput {
        /// Which step.
        id: StepId,
        /// The line (stdout or stderr alike, as BuildKit shows them), without its newline.
        line: &'a [u8],
    },
    /// The changes of a step are being written as a layer.
    Snapshotting(StepId),
    /// How far the layer of a step has been written: compressed bytes so far.
    SnapshotBytes {
        /// Which step.
        id: StepId,
        /// Compressed bytes written.
        written: u64,
    },
    /// A step finished executing.
    StepDone {
        /// Which step.
        id: StepId,
        /// Its layer, if it changed any file.
        layer: Option<&'a Layer>,
    },
    /// One report of a blob transfer.
    Transfer(&'a TransferProgress<'a>),
    /// The image exists in the store.
    Built {
        /// Its manifest digest.
        manifest: &'a str,
        /// Its config digest.
        config: &'a str,
    },
    /// The image was pushed: `registry/repository:tag@sha256:...`.
    Pushed(&'a str),
}

/// How a command ended, for the observers' last word.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How long it took.
    pub elapsed: Duration,
    /// The error shown to the user, if it failed.
    pub error: Option<String>,
}

/// Someone watching the build.
pub trait Observer: Send + Sync {
    /// Called for every event, from whichever thread the event happened on: must be quick.
    fn event(&self, event: &Event<'_>);

    /// Called once when the command ends; returns what could not be written (a report file).
    fn finish(&self, outcome: &Outcome) -> anyhow::Result<()> {
        let _ = outcome;
        Ok(())
    }
}

/// Every observer of this process.
pub struct Events {
    observers: Vec<Box<dyn Observer>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl Events {
    /// Observers, called in this order.
    pub fn new(observers: Vec<Box<dyn Observer>>) -> Events {
        Events { observers }
    }
}

static SINK: OnceLock<Events> = OnceLock::new();

/// Makes `events` the process's observers; a second call is ignored (one command a process).
pub fn install(events: Events) {
    let _ = SINK.set(events);
}

/// Tells every observer; nothing when none is installed (unit tests).
pub fn emit(event: Event<'_>) {
    if let Some(events) = SINK.get() {
        for observer in &events.observers {
            observer.event(&event);
        }
    }
}

/// The command ended: every observer writes what it keeps for the end. Each failure is
/// returned, the first one first; all observers are called whatever the others do.
pub fn finish(outcome: &Outcome) -> anyhow::Result<()> {
    let Some(events) = SINK.get() else {
        return Ok(());
    };
    let mut first = None;
    for observer in &events.observers {
        if let Err(err) = observer.finish(outcome) {
            first.get_or_insert(err);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Where step `id`'s `RUN` output goes: kiln's own stdout and stderr, unless the live view is
/// drawing there, in which case the lines become [`Event::RunOutput`]s it shows in place.
pub fn run_output(id: StepId) -> kiln_exec::run::Output {
    if !console::is_live() {
        return kiln_exec::run::Output::Inherit;
    }
    kiln_exec::run::Output::Lines(std::sync::Arc::new(move |_stream, line: &[u8]| {
        emit(Event::RunOutput { id, line });
    }))
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration for people: `0.4s`, `12.3s`, `2m05s`.
pub fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = duration.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn durations_switch_to_minutes_after_one() {
        assert_eq!(human_duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m05s");
    }
}
