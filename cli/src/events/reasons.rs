//! The plan as the observers see it: every step with its location, key and what the cache can
//! say about it, including *why* a cacheable step will miss, from the same comparison
//! `kiln cache explain` prints (the inputs recorded at the step's site by the last build).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kiln_cas::Store;
use kiln_cas::index::Index;
use kiln_exec::layer::LayerOptions;
use kiln_graph::{Plan, StepKind};

use super::{CacheStatus, Event, PlannedStep, StepId, emit};
use crate::build::loaded::LoadedBuild;
use crate::cache::Cache;
use crate::cache::explain::{Explained, Verdict, explain};

/// What [`announce`] describes.
#[derive(Debug)]
pub struct Announce<'a> {
    /// The build, keys assigned.
    pub build: &'a LoadedBuild,
    /// Layer options (part of cache keys).
    pub layers: &'a LayerOptions,
    /// The build's cache.
    pub cache: &'a Cache,
    /// The cache directory (its index holds the sites).
    pub cache_dir: &'a Path,
    /// The local store.
    pub store: &'a Store,
    /// `--cache-ttl`.
    pub ttl: Duration,
}

/// Sends [`Event::Planned`]. Finding miss reasons reads the cache index and may hash context
/// files again; a failure there costs the reasons, never the build.
pub fn announce(build: &Announce<'_>) {
    let reasons = if build.cache.enabled() {
        miss_reasons(build).unwrap_or_else(|err| {
            tracing::debug!("cache miss reasons unavailable: {err:#}");
            BTreeMap::new()
        })
    } else {
        BTreeMap::new()
    };
    let steps = planned_steps(&build.build.plan, &build.build.label, build.cache, &reasons);
    emit(Event::Planned {
        dockerfile: &build.build.label,
        steps: &steps,
    });
}

/// Every step of the plan in build order.
fn planned_steps(
    plan: &Plan,
    dockerfile: &str,
    cache: &Cache,
    reasons: &BTreeMap<StepId, String>,
) -> Vec<PlannedStep> {
    let mut steps = Vec::new();
    for stage_index in plan.build_order() {
        let stage = &plan.stages[stage_index];
        let label = (plan.stages.len() > 1).then(|| match &stage.name {
            Some(name) => format!("stage {name}"),
            None => format!("stage {}", stage.dockerfile_index),
        });
        for (index, step) in stage.steps.iter().enumerate() {
            let id = StepId::new(stage_index, index);
            let status = if !cache.enabled() {
                CacheStatus::Disabled
            } else if !cache.cacheable(&step.kind) {
                CacheStatus::NotCacheable
            } else {
                CacheStatus::Cacheable {
                    miss_reason: reasons.get(&id).cloned(),
                }
            };
            steps.push(PlannedStep {
                id,
                location: format!("{dockerfile}:{}", step.line),
                text: step.text.clone(),
                stage: label.clone(),
                key: step.key.as_ref().map(ToString::to_string),
                cache: status,
                runs: !matches!(step.kind, StepKind::Config),
            });
        }
    }
    steps
}

/// Why each step the local cache lacks will miss.
fn miss_reasons(build: &Announce<'_>) -> anyhow::Result<BTreeMap<StepId, String>> {
    let index = Index::open(&build.cache_dir.join("index"))?;
    let verdicts = explain(&Explained {
        build: build.build,
        layers: build.layers,
        cache: build.cache,
        index: &index,
        store: build.store,
        ttl: build.ttl,
    })?;
    Ok(verdicts
        .into_iter()
        .filter_map(|(stage, step, verdict)| {
            reason(&verdict).map(|reason| (StepId::new(stage, step), reason))
        })
        .collect())
}

/// A miss verdict in a few words (`kiln cache explain` prints the same with the values).
fn reason(verdict: &Verdict) -> Option<String> {
    Some(match verdict {
        Verdict::Hit | Verdict::Metadata => return None,
        Verdict::NeverBuilt => "no build of this step is recorded in this cache".to_owned(),
        Verdict::ResultGone => {
            "same inputs as the last build, but its result expired or was removed".to_owned()
        }
        Verdict::EarlierStepChanged => "an earlier step changed".to_owned(),
        Verdict::Changed(changed) => format!(
            "{} changed",
            changed
                .iter()
                .map(|(name, _, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}
