//! Plain, line-oriented output for CI: each event as a log line through `tracing`, so
//! `--verbosity`, `--log-format text|color|json` and `--log-timestamp` apply to it as to every
//! other line. Text lines keep the wording kiln (and Kaniko) always used (`RUN make`, `CACHED
//! RUN make`, `Pushed ...`); JSON lines carry the facts as fields (`event`, `step`, `key`,
//! `elapsed_ms`, `digest`, ...) for log processors.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_registry::Direction;

use super::{CacheStatus, Event, Observer, PlannedStep, StepId, human_bytes, human_duration};

/// Blobs at least this large get `info` progress lines (smaller ones only at `debug`): a
/// multi-gigabyte push must show it is moving (Kaniko #1696) without flooding small builds.
const LARGE_BLOB: u64 = 32 * 1024 * 1024;

/// Time between two `info` progress lines of one large blob.
const LARGE_BLOB_EVERY: Duration = Duration::from_secs(10);

/// The plain renderer.
#[derive(Debug)]
pub struct Plain {
    json: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    steps: BTreeMap<StepId, PlannedStep>,
    started: HashMap<StepId, Instant>,
    /// When each large blob was last reported at `info`.
    reported: HashMap<String, Instant>,
}

impl Plain {
    /// Lines as text (`json` false) or as JSON objects with fields.
    pub fn new(json: bool) -> Plain {
        Plain {
            json,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn started(&self, id: StepId) {
        let mut state = self.state();
        state.started.insert(id, Instant::now());
        let Some(step) = state.steps.get(&id) else {
            return;
        };
        let shown = step.display();
        if self.json {
            tracing::info!(
                event = "step.started",
                step = %step.location,
                key = step.key.as_deref().unwrap_or(""),
                "{shown}"
            );
        } else {
            tracing::info!("{shown}");
        }
        if let CacheStatus::Cacheable {
            miss_reason: Some(reason),
        } = &step.cache
        {
            if self.json {
                tracing::info!(event = "cache.miss", step = %step.location, reason = %reason, "cache miss: {reason}");
            } else {
                tracing::info!("Cache miss for {}: {reason}", step.location);
            }
        }
    }

    fn cached(&self, id: StepId, layer: Option<&crate::image::Layer>, remote: bool) {
        let state = self.state();
        let Some(step) = state.steps.get(&id) else {
            return;
        };
        let shown = step.display();
        if self.json {
            tracing::info!(
                event = "step.cached",
                step = %step.location,
                key = step.key.as_deref().unwrap_or(""),
                origin = if remote { "remote" } else { "local" },
                layer = layer.map(|l| l.digest.to_string()).unwrap_or_default(),
                "CACHED {shown}"
            );
        } else {
            tracing::info!("CACHED {shown}");
        }
    }

    fn done(&self, id: StepId, layer: Option<&crate::image::Layer>) {
        let mut state = self.state();
        let elapsed = state
            .started
            .remove(&id)
            .map(|start| start.elapsed())
            .unwrap_or_default();
        let Some(step) = state.steps.get(&id) else {
            return;
        };
        if !step.runs {
            // ENV, LABEL, ...: nothing ran, nothing to say.
            return;
        }
        let took = human_duration(elapsed);
        if self.json {
            tracing::info!(
                event = "step.done",
                step = %step.location,
                elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                layer = layer.map(|l| l.digest.to_string()).unwrap_or_default(),
                layer_size = layer.map_or(0, |l| l.size),
                "DONE {} {took}",
                step.location
            );
        } else {
            match layer {
                Some(layer) => tracing::info!(
                    "DONE {} {took}: layer {} ({})",
                    step.location,
                    layer.digest,
                    human_bytes(layer.size)
                ),
                None => tracing::info!("DONE {} {took}: no new layer", step.location),
            }
        }
    }

    fn transfer(&self, progress: &kiln_registry::TransferProgress<'_>) {
        let verb = match progress.direction {
            Direction::Pull => "pulled",
            Direction::Push => "pushed",
        };
        let line = match progress.total {
            Some(total) => format!(
                "{} {verb} {}/{} bytes ({}%)",
                progress.blob,
                progress.done,
                total,
                (progress.done * 100).checked_div(total).unwrap_or(100)
            ),
            None => format!("{} {verb} {} bytes", progress.blob, progress.done),
        };
        let large = progress.total.is_some_and(|total| total >= LARGE_BLOB);
        if large && self.due(progress) {
            tracing::info!("{line}");
        } else {
            tracing::debug!("{line}");
        }
    }

    /// Whether a large blob's report should be shown at `info`: its first and last, and one
    /// every [`LARGE_BLOB_EVERY`] in between.
    fn due(&self, progress: &kiln_registry::TransferProgress<'_>) -> bool {
        let mut state = self.state();
        let finished = progress.total == Some(progress.done);
        let now = Instant::now();
        match state.reported.get(progress.blob) {
            Some(last) if !finished && now.duration_since(*last) < LARGE_BLOB_EVERY => false,
            _ => {
                state.reported.insert(progress.blob.to_owned(), now);
                true
            }
        }
    }
}

impl Observer for Plain {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Planned { steps, .. } => {
                let mut state = self.state();
                state.steps = steps.iter().map(|step| (step.id, step.clone())).collect();
            }
            Event::StepStarted(id) => self.started(*id),
            Event::StepCached { id, layer, remote } => self.cached(*id, *layer, *remote),
            // Only the live view asks for RUN output as events.
            Event::RunOutput { .. } | Event::SnapshotBytes { .. } => {}
            Event::Snapshotting(id) => {
                if let Some(step) = self.state().steps.get(id) {
                    tracing::debug!("Taking a snapshot of {}", step.location);
                }
            }
            Event::StepDone { id, layer } => self.done(*id, *layer),
            Event::Transfer(progress) => self.transfer(progress),
            Event::Built { manifest, config } => {
                if self.json {
                    tracing::info!(event = "image.built", manifest = %manifest, config = %config, "Built image {manifest}");
                } else {
                    tracing::info!("Built image {manifest}");
                }
            }
            Event::Pushed(reference) => {
                if self.json {
                    tracing::info!(event = "image.pushed", image = %reference, "Pushed {reference}");
                } else {
                    tracing::info!("Pushed {reference}");
                }
            }
        }
    }
}
