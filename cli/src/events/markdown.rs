//! `--report-markdown <file>`: the build report as GitHub-flavoured Markdown, for
//! `buildkite-agent annotate --style info < file` (or a GitHub job summary): the outcome, one
//! table row per step (cache, time, layer) and the image digests.

use super::report::{CacheOutcome, Report, StepStatus};
use super::{human_bytes, human_duration};

/// The report as Markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let outcome = if report.success {
        "succeeded"
    } else {
        "failed"
    };
    let took = human_duration(std::time::Duration::from_millis(report.duration_ms));
    out.push_str(&format!(
        "### kiln build {outcome} in {took}{}\n\n",
        report
            .dockerfile
            .as_deref()
            .map_or_else(String::new, |file| format!(" (`{}`)", code(file)))
    ));
    if let Some(error) = &report.error {
        out.push_str("```\n");
        out.push_str(error.trim_end());
        out.push_str("\n```\n\n");
    }
    let hits = report
        .steps
        .iter()
        .filter(|step| matches!(step.cache, CacheOutcome::Hit | CacheOutcome::RemoteHit))
        .count();
    let cacheable = report
        .steps
        .iter()
        .filter(|step| {
            matches!(
                step.cache,
                CacheOutcome::Hit | CacheOutcome::RemoteHit | CacheOutcome::Miss
            )
        })
        .count();
    if cacheable > 0 {
        out.push_str(&format!("Cache: {hits} of {cacheable} steps hit.\n\n"));
    }
    if !report.steps.is_empty() {
        out.push_str("| step | instruction | cache | time | layer |\n");
        out.push_str("| --- | --- | --- | --- | --- |\n");
        for step in &report.steps {
            let cache = match (step.cache, step.status) {
                (_, StepStatus::NotRun) => "not run".to_owned(),
                (_, StepStatus::Failed) => "**failed**".to_owned(),
                (CacheOutcome::Hit, _) => "hit".to_owned(),
                (CacheOutcome::RemoteHit, _) => "hit (remote)".to_owned(),
                (CacheOutcome::Miss, _) => match &step.miss_reason {
                    Some(reason) => format!("miss: {}", cell(reason)),
                    None => "miss".to_owned(),
                },
                (CacheOutcome::Disabled, _) => "off".to_owned(),
                (CacheOutcome::NotCacheable, _) => "-".to_owned(),
            };
            let time = step.duration_ms.map_or_else(
                || "-".to_owned(),
                |ms| human_duration(std::time::Duration::from_millis(ms)),
            );
            let layer = step
                .layer
                .as_ref()
                .map_or_else(|| "-".to_owned(), |layer| human_bytes(layer.size));
            out.push_str(&format!(
                "| {} | `{}` | {cache} | {time} | {layer} |\n",
                cell(&step.location),
                cell(&code(&step.instruction)),
            ));
        }
        out.push('\n');
    }
    if report.bytes_pulled > 0 || report.bytes_pushed > 0 {
        out.push_str(&format!(
            "Pulled {} ({} blobs), pushed {} ({} blobs).\n\n",
            human_bytes(report.bytes_pulled),
            report.blobs_pulled,
            human_bytes(report.bytes_pushed),
            report.blobs_pushed
        ));
    }
    if let Some(image) = &report.image {
        out.push_str(&format!("Image: `{}`\n", image.manifest));
    }
    for pushed in &report.pushed {
        out.push_str(&format!("\nPushed: `{}`\n", pushed.replace('`', "'")));
    }
    out
}

/// Text safe inside a table cell: no pipes or line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Text safe inside single backticks.
fn code(text: &str) -> String {
    let short: String = if text.chars().count() > 100 {
        format!("{}...", text.chars().take(97).collect::<String>())
    } else {
        text.to_owned()
    };
    short.replace('`', "'")
}
