//! `--report <file>`: the build as a JSON document (steps with keys, cache hit or miss and why,
//! durations, layers, bytes moved, final digests), and the [`Tally`] that collects it, which the
//! terminal view's summary table reads too.
//!
//! Only facts the build already shows are recorded: instructions as written, keys, digests,
//! sizes, image names. Secret values and credentials never reach an event, so they cannot reach
//! a report (`tests/it/progress.rs` plants some and scans every output).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context as _;
use kiln_registry::Direction;
use serde::Serialize;

use super::{CacheStatus, Event, Observer, Outcome, PlannedStep, StepId};

/// The JSON report. Field names are part of kiln's interface (CI scripts read them).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// kiln's version.
    pub kiln_version: &'static str,
    /// The Dockerfile, as named in messages.
    pub dockerfile: Option<String>,
    /// Whether the command succeeded.
    pub success: bool,
    /// The error shown, if it failed.
    pub error: Option<String>,
    /// Wall-clock time of the whole command.
    pub duration_ms: u64,
    /// Every planned step, in build order.
    pub steps: Vec<StepReport>,
    /// Bytes downloaded from registries (layers, configs), summed over blobs.
    pub bytes_pulled: u64,
    /// Bytes uploaded to registries.
    pub bytes_pushed: u64,
    /// Blobs downloaded.
    pub blobs_pulled: usize,
    /// Blobs uploaded (mounted or already present blobs are not uploaded).
    pub blobs_pushed: usize,
    /// The image built, if the build got that far.
    pub image: Option<ImageReport>,
    /// Every destination pushed, `registry/repository:tag@sha256:...`.
    pub pushed: Vec<String>,
}

/// One step in the report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Its stage, when the build has more than one.
    pub stage: Option<String>,
    /// `Dockerfile:12`.
    pub location: String,
    /// The instruction as written.
    pub instruction: String,
    /// Its node key (hex).
    pub key: Option<String>,
    /// What happened to it.
    pub status: StepStatus,
    /// Hit or miss in the layer cache.
    pub cache: CacheOutcome,
    /// Why the cache missed, when it knows.
    pub miss_reason: Option<String>,
    /// Time from start to done (absent for cached and unrun steps).
    pub duration_ms: Option<u64>,
    /// The layer it produced or reused.
    pub layer: Option<LayerReport>,
}

/// What happened to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Its result came from the cache.
    Cached,
    /// It executed.
    Built,
    /// It was running when the build failed.
    Failed,
    /// The build ended before it started.
    NotRun,
}

/// The cache's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Served from the local cache.
    Hit,
    /// Served from the remote cache (`--cache-repo`).
    RemoteHit,
    /// Looked up and not found.
    Miss,
    /// `--cache` is off.
    Disabled,
    /// Not a cached kind of step (config only, or excluded by flags).
    NotCacheable,
}

/// A layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Its (compressed) digest.
    pub digest: String,
    /// Its compressed size in bytes.
    pub size: u64,
}

/// The image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// The manifest digest (what was pushed and printed).
    pub manifest: String,
    /// The config digest.
    pub config: String,
}

/// Collects events into a [`Report`].
#[derive(Debug)]
pub struct Tally {
    start: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    dockerfile: Option<String>,
    order: Vec<StepId>,
    steps: HashMap<StepId, Entry>,
    /// Last reported byte count of each blob transfer.
    transfers: BTreeMap<(bool, String), u64>,
    image: Option<ImageReport>,
    pushed: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    planned: PlannedStep,
    started: Option<Instant>,
    report: StepReport,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            start: Instant::now(),
            state: Mutex::default(),
        }
    }
}

impl Tally {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one event into account.
    pub fn observe(&self, event: &Event<'_>) {
        let mut state = self.state();
        match event {
            Event::Planned { dockerfile, steps } => {
                state.dockerfile = Some((*dockerfile).to_owned());
                state.order = steps.iter().map(|step| step.id).collect();
                state.steps = steps
                    .iter()
                    .map(|step| (step.id, Entry::planned(step)))
                    .collect();
            }
            Event::StepStarted(id) => {
                if let Some(entry) = state.steps.get_mut(id) {
                    entry.started = Some(Instant::now());
                    entry.report.status = StepStatus::Failed;
                    if let CacheStatus::Cacheable { miss_reason } = &entry.planned.cache {
                        entry.report.cache = CacheOutcome::Miss;
                        entry.report.miss_reason.clone_from(miss_reason);
                    }
                }
            }
            Event::StepCached { id, layer, remote } => {
                if let Some(entry) = state.steps.get_mut(id) {
                    entry.report.status = StepStatus::Cached;
                    entry.report.cache = if *remote {
                        CacheOutcome::RemoteHit
                    } else {
                        CacheOutcome::Hit
                    };
                    entry.report.layer = layer.map(LayerReport::from);
                }
            }
            Event::Snapshotting(_) | Event::RunOutput { .. } | Event::SnapshotBytes { .. } => {}
            Event::StepDone { id, layer } => {
                if let Some(entry) = state.steps.get_mut(id) {
                    entry.report.status = StepStatus::Built;
                    entry.report.duration_ms = entry.started.map(|start| millis(start.elapsed()));
                    entry.report.layer = layer.map(LayerReport::from);
                }
            }
            Event::Transfer(progress) => {
                let push = progress.direction == Direction::Push;
                state
                    .transfers
                    .insert((push, progress.blob.to_owned()), progress.done);
            }
            Event::Built { manifest, config } => {
                state.image = Some(ImageReport {
                    manifest: (*manifest).to_owned(),
                    config: (*config).to_owned(),
                });
            }
            Event::Pushed(reference) => state.pushed.push((*reference).to_owned()),
        }
    }

    /// The report as of now, ending as `outcome` says.
    pub fn report(&self, outcome: &Outcome) -> Report {
        let state = self.state();
        let steps = state
            .order
            .iter()
            .filter_map(|id| state.steps.get(id))
            .map(|entry| entry.report.clone())
            .collect();
        let sum = |push: bool| {
            state
                .transfers
                .iter()
                .filter(|((pushed, _), _)| *pushed == push)
                .fold((0u64, 0usize), |(bytes, blobs), (_, done)| {
                    (bytes + done, blobs + 1)
                })
        };
        let (bytes_pulled, blobs_pulled) = sum(false);
        let (bytes_pushed, blobs_pushed) = sum(true);
        Report {
            kiln_version: env!("CARGO_PKG_VERSION"),
            dockerfile: state.dockerfile.clone(),
            success: outcome.error.is_none(),
            error: outcome.error.clone(),
            duration_ms: millis(outcome.elapsed.max(self.start.elapsed())),
            steps,
            bytes_pulled,
            bytes_pushed,
            blobs_pulled,
            blobs_pushed,
            image: state.image.clone(),
            pushed: state.pushed.clone(),
        }
    }
}

impl Entry {
    fn planned(step: &PlannedStep) -> Entry {
        Entry {
            planned: step.clone(),
            started: None,
            report: StepReport {
                stage: step.stage.clone(),
                location: step.location.clone(),
                instruction: step.text.clone(),
                key: step.key.clone(),
                status: StepStatus::NotRun,
                cache: match step.cache {
                    CacheStatus::Disabled => CacheOutcome::Disabled,
                    CacheStatus::NotCacheable => CacheOutcome::NotCacheable,
                    CacheStatus::Cacheable { .. } => CacheOutcome::Miss,
                },
                miss_reason: None,
                duration_ms: None,
                layer: None,
            },
        }
    }
}

impl From<&crate::image::Layer> for LayerReport {
    fn from(layer: &crate::image::Layer) -> LayerReport {
        LayerReport {
            digest: layer.digest.to_string(),
            size: layer.size,
        }
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Writes `--report` (JSON) and `--report-markdown` when the command ends, failed or not.
#[derive(Debug)]
pub struct ReportFiles {
    tally: Tally,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
}

impl ReportFiles {
    /// Reports to these files, if any is asked for.
    pub fn new(json: Option<PathBuf>, markdown: Option<PathBuf>) -> Option<ReportFiles> {
        (json.is_some() || markdown.is_some()).then(|| ReportFiles {
            tally: Tally::default(),
            json,
            markdown,
        })
    }
}

impl Observer for ReportFiles {
    fn event(&self, event: &Event<'_>) {
        self.tally.observe(event);
    }

    fn finish(&self, outcome: &Outcome) -> anyhow::Result<()> {
        let report = self.tally.report(outcome);
        if let Some(path) = &self.json {
            let mut text = serde_json::to_string_pretty(&report)?;
            text.push('\n');
            std::fs::write(path, text)
                .with_context(|| format!("writing the build report {}", path.display()))?;
        }
        if let Some(path) = &self.markdown {
            std::fs::write(path, super::markdown::render(&report))
                .with_context(|| format!("writing the Markdown build report {}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::human_duration;
    use kiln_registry::TransferProgress;

    fn planned(step: usize, text: &str, cache: CacheStatus) -> PlannedStep {
        PlannedStep {
            id: StepId::new(0, step),
            location: format!("Dockerfile:{}", step + 2),
            text: text.to_owned(),
            stage: None,
            key: Some(format!("{step:064x}")),
            cache,
            runs: true,
        }
    }

    fn layer(size: u64) -> crate::image::Layer {
        crate::image::Layer {
            digest: format!("sha256:{:064x}", size).parse().unwrap(),
            size,
            diff_id: String::new(),
            media_type: String::new(),
        }
    }

    #[test]
    fn a_failed_build_reports_the_running_step_failed_and_later_ones_not_run() {
        let tally = Tally::default();
        let reason = CacheStatus::Cacheable {
            miss_reason: Some("file a changed".to_owned()),
        };
        let steps = [
            planned(0, "COPY a /a", reason.clone()),
            planned(1, "RUN make", reason),
            planned(2, "RUN test", CacheStatus::Disabled),
        ];
        tally.observe(&Event::Planned {
            dockerfile: "Dockerfile",
            steps: &steps,
        });
        tally.observe(&Event::StepStarted(StepId::new(0, 0)));
        let copied = layer(100);
        tally.observe(&Event::StepDone {
            id: StepId::new(0, 0),
            layer: Some(&copied),
        });
        tally.observe(&Event::StepStarted(StepId::new(0, 1)));
        for done in [0, 10, 40] {
            tally.observe(&Event::Transfer(&TransferProgress {
                direction: Direction::Pull,
                blob: "r/base@sha256:1",
                done,
                total: Some(40),
            }));
        }
        let report = tally.report(&Outcome {
            elapsed: std::time::Duration::from_secs(2),
            error: Some("Dockerfile:3: RUN make: exit code: 2".to_owned()),
        });
        let statuses: Vec<StepStatus> = report.steps.iter().map(|step| step.status).collect();
        assert_eq!(
            statuses,
            [StepStatus::Built, StepStatus::Failed, StepStatus::NotRun]
        );
        assert_eq!(
            report.steps[0].miss_reason.as_deref(),
            Some("file a changed")
        );
        assert_eq!(report.steps[0].layer.as_ref().map(|l| l.size), Some(100));
        assert_eq!(report.steps[2].cache, CacheOutcome::Disabled);
        assert_eq!((report.bytes_pulled, report.blobs_pulled), (40, 1));
        assert!(!report.success);

        let markdown = crate::events::markdown::render(&report);
        assert!(markdown.contains("### kiln build failed"), "{markdown}");
        assert!(
            markdown.contains("| Dockerfile:3 | `RUN make` | **failed** |"),
            "{markdown}"
        );
        let table = crate::events::tty::summary(&report);
        assert!(table.contains("Dockerfile:3 RUN make"), "{table}");
        assert!(table.contains("FAILED"), "{table}");
        assert!(
            table.contains(&human_duration(std::time::Duration::from_secs(2))),
            "{table}"
        );
    }
}
