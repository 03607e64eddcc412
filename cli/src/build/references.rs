//! Image references written in a Dockerfile, checked before anything is pulled.

use anyhow::bail;
use kiln_graph::{BaseRef, CopyFrom, CopyStep, ImagePull, Plan, StepKind};
use kiln_registry::Reference;

/// Refuses an image reference that is not valid, naming the Dockerfile line that wrote it, so
/// `kiln plan`, which never pulls, rejects what `kiln build` would refuse when pulling.
pub(crate) fn check_references(
    pulls: &[ImagePull],
    plan: &Plan,
    dockerfile: &str,
) -> anyhow::Result<()> {
    for pull in pulls {
        let Err(err) = pull.reference.parse::<Reference>() else {
            continue;
        };
        let (line, column, text) = written_at(plan, &pull.key)
            .unwrap_or_else(|| (0, 0, format!("FROM {}", pull.reference)));
        bail!("{dockerfile}:{line}:{column}: {err}\n    {line} | {text}");
    }
    Ok(())
}

/// Where the plan uses the external image `key`: line, column and text.
fn written_at(plan: &Plan, key: &str) -> Option<(usize, usize, String)> {
    plan.stages.iter().find_map(|stage| {
        if matches!(&stage.base, BaseRef::Image(base) if base == key) {
            return Some((stage.line, 1, format!("FROM {key}")));
        }
        stage.steps.iter().find_map(|step| match &step.kind {
            StepKind::Copy(CopyStep {
                from: CopyFrom::Image(image),
                ..
            }) if image == key => Some((step.line, step.column, step.text.clone())),
            _ => None,
        })
    })
}
