//! The live terminal view (`--progress=tty`, the default on a terminal), in the style of
//! BuildKit's: one line per step with its state and elapsed time, a bar with bytes and rate for
//! each blob being pulled or pushed, and at the end a summary table (step, cache, time, layer
//! size) with the image digest and what was pushed.
//!
//! Drawn with `indicatif`; log lines are printed above the bars (`console::LogWriter` suspends
//! the drawing while a line is written) so they never tear them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_registry::Direction;

use super::report::{CacheOutcome, Report, StepStatus, Tally};
use super::{Event, Observer, Outcome, PlannedStep, StepId, human_bytes, human_duration};

/// The live view.
#[derive(Debug)]
pub struct Live {
    multi: MultiProgress,
    tally: Tally,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    steps: HashMap<StepId, PlannedStep>,
    lines: HashMap<StepId, ProgressBar>,
    transfers: HashMap<String, ProgressBar>,
    output: HashMap<StepId, Tail>,
}

/// How many of a running command's last lines are shown under its step.
const TAIL_SHOWN: usize = 5;

/// How many are kept, to print when the build fails while the command runs.
const TAIL_KEPT: usize = 30;

/// The last lines of a running `RUN`, and the rows showing them.
#[derive(Debug, Default)]
struct Tail {
    kept: VecDeque<String>,
    rows: Vec<ProgressBar>,
}

impl Tail {
    fn clear(self) {
        for row in self.rows {
            row.finish_and_clear();
        }
    }
}

impl Live {
    /// Draws on `multi` (shared with the log writer).
    pub fn new(multi: MultiProgress) -> Live {
        Live {
            multi,
            tally: Tally::default(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn step_line(&self, state: &mut State, id: StepId) -> Option<ProgressBar> {
        if let Some(line) = state.lines.get(&id) {
            return Some(line.clone());
        }
        let step = state.steps.get(&id)?;
        let line = self.multi.add(ProgressBar::new_spinner());
        line.set_style(style(
            "{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:>4}",
        ));
        line.set_prefix(short_location(&step.location));
        line.set_message(step.display());
        line.enable_steady_tick(Duration::from_millis(120));
        state.lines.insert(id, line.clone());
        Some(line)
    }

    fn finish_line(line: &ProgressBar, state: &str, step: Option<&PlannedStep>, detail: &str) {
        line.set_style(style("{prefix:.bold} {wide_msg}"));
        let text = step.map(PlannedStep::display).unwrap_or_default();
        line.finish_with_message(format!("{text} {state}{detail}"));
    }

    /// Shows `line` under step `id`, which keeps its last [`TAIL_SHOWN`] lines in view.
    fn run_output(&self, id: StepId, line: &[u8]) {
        let mut state = self.state();
        let Some(step_line) = self.step_line(&mut state, id) else {
            return;
        };
        let text = String::from_utf8_lossy(line).replace('\t', "    ");
        let tail = state.output.entry(id).or_default();
        if tail.kept.len() == TAIL_KEPT {
            tail.kept.pop_front();
        }
        tail.kept.push_back(text);
        if tail.rows.len() < TAIL_SHOWN {
            let after = tail.rows.last().unwrap_or(&step_line).clone();
            let row = self.multi.insert_after(&after, ProgressBar::new_spinner());
            row.set_style(style("  {wide_msg:.dim}"));
            tail.rows.push(row);
        }
        let shown = tail.kept.len().min(tail.rows.len());
        for (row, text) in tail
            .rows
            .iter()
            .zip(tail.kept.iter().skip(tail.kept.len() - shown))
        {
            row.set_message(format!("> {text}"));
        }
    }

    /// The step left the view's running set: its output rows go.
    fn end_output(state: &mut State, id: StepId) {
        if let Some(tail) = state.output.remove(&id) {
            tail.clear();
        }
    }

    fn transfer(&self, progress: &kiln_registry::TransferProgress<'_>) {
        let mut state = self.state();
        let finished = progress.total.is_some_and(|total| progress.done >= total);
        let bar = match state.transfers.get(progress.blob) {
            Some(bar) => bar.clone(),
            None if finished => return,
            None => {
                let bar = self
                    .multi
                    .add(ProgressBar::new(progress.total.unwrap_or(0)));
                bar.set_style(style(
                    "  {prefix} {wide_msg} [{bar:24.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
                ));
                bar.set_prefix(match progress.direction {
                    Direction::Pull => "pull",
                    Direction::Push => "push",
                });
                bar.set_message(short_blob(progress.blob));
                state
                    .transfers
                    .insert(progress.blob.to_owned(), bar.clone());
                bar
            }
        };
        bar.set_position(progress.done);
        if finished {
            // Finished transfers leave the view; the summary counts their bytes.
            bar.finish_and_clear();
            state.transfers.remove(progress.blob);
        }
    }
}

impl Observer for Live {
    fn event(&self, event: &Event<'_>) {
        self.tally.observe(event);
        match event {
            Event::Planned { steps, .. } => {
                self.state().steps = steps.iter().map(|step| (step.id, step.clone())).collect();
            }
            Event::StepStarted(id) => {
                let mut state = self.state();
                let _ = self.step_line(&mut state, *id);
            }
            Event::StepCached { id, layer, .. } => {
                let mut state = self.state();
                if let Some(line) = self.step_line(&mut state, *id) {
                    let detail = layer
                        .map(|layer| format!(" {}", human_bytes(layer.size)))
                        .unwrap_or_default();
                    Self::finish_line(&line, "CACHED", state.steps.get(id), &detail);
                }
            }
            Event::RunOutput { id, line } => self.run_output(*id, line),
            Event::SnapshotBytes { id, written } => {
                if let Some(line) = self.state().lines.get(id) {
                    line.set_position(*written);
                }
            }
            Event::Snapshotting(id) => {
                let mut state = self.state();
                Self::end_output(&mut state, *id);
                if let Some(line) = self.step_line(&mut state, *id) {
                    // The bytes go where a long instruction cannot push them off the line.
                    line.set_style(style(
                        "{spinner:.cyan} {prefix:.bold} {wide_msg} writing layer {bytes} at {binary_bytes_per_sec} {elapsed:>4}",
                    ));
                    line.set_position(0);
                }
            }
            Event::StepDone { id, layer } => {
                let mut state = self.state();
                Self::end_output(&mut state, *id);
                if let Some(line) = state.lines.get(id).cloned() {
                    let took = human_duration(line.elapsed());
                    let detail = match layer {
                        Some(layer) => format!(" {took}, {}", human_bytes(layer.size)),
                        None => format!(" {took}"),
                    };
                    Self::finish_line(&line, "DONE", state.steps.get(id), &detail);
                }
            }
            Event::Transfer(progress) => self.transfer(progress),
            Event::Built { .. } | Event::Pushed(_) => {}
        }
    }

    fn finish(&self, outcome: &Outcome) -> anyhow::Result<()> {
        let mut unfinished_output = String::new();
        {
            let mut state = self.state();
            // A command that was running when the build ended (it failed, or kiln was stopped):
            // its last lines are what the error needs next to it.
            for (id, tail) in std::mem::take(&mut state.output) {
                let step = state.steps.get(&id).map(PlannedStep::display);
                unfinished_output
                    .push_str(&format!("\nLast output of {}:\n", step.unwrap_or_default()));
                for line in &tail.kept {
                    unfinished_output.push_str(&format!("  {line}\n"));
                }
                tail.clear();
            }
            for line in state.lines.values().filter(|line| !line.is_finished()) {
                line.abandon();
            }
            for bar in state.transfers.values() {
                bar.finish_and_clear();
            }
        }
        // What is drawn stays on screen; nothing is redrawn under the summary.
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
        let report = self.tally.report(outcome);
        if report.steps.is_empty() {
            // Not a build (`kiln warm`, `kiln plan`, ...), or one that failed before planning:
            // the error, if any, follows.
            return Ok(());
        }
        let summary = summary(&report);
        self.multi
            .suspend(|| eprint!("{unfinished_output}{summary}"));
        Ok(())
    }
}

/// The table printed when the build ends.
pub fn summary(report: &Report) -> String {
    let rows: Vec<[String; 4]> = report
        .steps
        .iter()
        .filter(|step| step.status != StepStatus::NotRun || report.success)
        .map(|step| {
            let cache = match (step.status, step.cache) {
                (StepStatus::Failed, _) => "FAILED",
                (StepStatus::NotRun, _) => "not run",
                (_, CacheOutcome::Hit) => "hit",
                (_, CacheOutcome::RemoteHit) => "hit (remote)",
                (_, CacheOutcome::Miss) => "miss",
                (_, CacheOutcome::Disabled) => "off",
                (_, CacheOutcome::NotCacheable) => "-",
            };
            let time = step.duration_ms.map_or_else(
                || "-".to_owned(),
                |ms| human_duration(Duration::from_millis(ms)),
            );
            let layer = step
                .layer
                .as_ref()
                .map_or_else(|| "-".to_owned(), |layer| human_bytes(layer.size));
            let mut text = format!("{} {}", short_location(&step.location), step.instruction);
            if text.chars().count() > 60 {
                text = format!("{}...", text.chars().take(57).collect::<String>());
            }
            [text, cache.to_owned(), time, layer]
        })
        .collect();
    let header = [
        "STEP".to_owned(),
        "CACHE".to_owned(),
        "TIME".to_owned(),
        "LAYER".to_owned(),
    ];
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::from("\n");
    for row in std::iter::once(&header).chain(&rows) {
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        ));
    }
    let took = human_duration(Duration::from_millis(report.duration_ms));
    out.push_str(&format!(
        "\n{} in {took}; pulled {}, pushed {}\n",
        if report.success {
            "Build succeeded"
        } else {
            "Build FAILED"
        },
        human_bytes(report.bytes_pulled),
        human_bytes(report.bytes_pushed)
    ));
    if let Some(image) = &report.image {
        out.push_str(&format!("Image {}\n", image.manifest));
    }
    for pushed in &report.pushed {
        out.push_str(&format!("Pushed {pushed}\n"));
    }
    out
}

/// `Dockerfile:12` for `/long/path/to/Dockerfile:12`: the table has no room for paths.
fn short_location(location: &str) -> String {
    location
        .rsplit_once('/')
        .map_or(location, |(_, name)| name)
        .to_owned()
}

/// `registry/repository@sha256:0123456789ab`: the digest cut to what people compare.
fn short_blob(blob: &str) -> String {
    match blob.split_once("@sha256:") {
        Some((repository, digest)) => {
            let name = repository.rsplit('/').next().unwrap_or(repository);
            format!("{name}@{}", digest.chars().take(12).collect::<String>())
        }
        None => blob.to_owned(),
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}
