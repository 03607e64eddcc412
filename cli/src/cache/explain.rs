//! `kiln cache explain`: for each step of a build, whether the local cache has its result, and
//! when it does not, which of its inputs changed since the last build recorded there.
//!
//! After a successful `--cache` build, [`sites`] describes every step's inputs as named fields
//! ([`kiln_graph::Plan::key_inputs`], the base image's digest, and the digest of each context
//! file a COPY reads) and [`record`] stores them in the index's `sites` family under the step's
//! *site*: the Dockerfile's path relative to the context, the stage and the step's position.
//! The site leaves out everything a build can change, so the next build of the same Dockerfile
//! finds the record whatever changed, and comparing the fields names the change.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use kiln_cas::index::Index;
use kiln_cas::{FileIdentity, SiteRecord, Store};
use kiln_exec::context::BuildContext;
use kiln_exec::layer::LayerOptions;
use kiln_graph::{BaseRef, CopyFrom, Plan, StepKind};

use crate::build::bases::PulledImage;
use crate::build::loaded::LoadedBuild;

/// The site of step `step` of `stage`: the same in every build of this Dockerfile.
pub fn site(scope_file: &str, stage: &kiln_graph::Stage, step: usize) -> String {
    let name = stage
        .name
        .clone()
        .unwrap_or_else(|| stage.dockerfile_index.to_string());
    format!("{scope_file}#{name}#{step}")
}

/// The named inputs of one step, with the cache key they produced.
fn describe(
    plan: &Plan,
    stage: usize,
    step: usize,
    images: &BTreeMap<String, PulledImage>,
    context: &BuildContext,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut inputs = plan.key_inputs(stage, step);
    let digest = |reference: &str| {
        images
            .get(reference)
            .map_or_else(String::new, |image| image.resolved.manifest_digest.clone())
    };
    if let BaseRef::Image(reference) = &plan.stages[stage].base {
        inputs.push(("base image digest".to_owned(), digest(reference)));
    }
    if let StepKind::Copy(copy) = &plan.stages[stage].steps[step].kind {
        match &copy.from {
            CopyFrom::Context => {
                let files = context
                    .file_digests(&copy.sources)
                    .context("hashing the build context")?;
                for (path, hash) in files {
                    inputs.push((format!("file {path}"), hex(&hash)));
                }
            }
            CopyFrom::Image(reference) => {
                inputs.push(("source image digest".to_owned(), digest(reference)));
            }
            CopyFrom::Stage(_) => {}
        }
    }
    Ok(inputs)
}

/// Every step's site and record, for [`record`] once the build succeeded. The per-file digests
/// of context COPY steps come from the hashes the keys were computed with: no file is read
/// again.
pub fn sites(
    build: &LoadedBuild,
    layers: &LayerOptions,
) -> anyhow::Result<Vec<(String, SiteRecord)>> {
    let (plan, scope_file, images, context) = (
        &build.plan,
        build.scope_file.as_str(),
        &build.images,
        &build.context,
    );
    let now = kiln_cas::record::now();
    let mut sites = Vec::new();
    for stage in plan.build_order() {
        for (step, planned) in plan.stages[stage].steps.iter().enumerate() {
            let Some(key) = &planned.key else { continue };
            sites.push((
                site(scope_file, &plan.stages[stage], step),
                SiteRecord {
                    key: crate::cache::cache_key(key, layers),
                    inputs: describe(plan, stage, step, images, context)?,
                    recorded: now,
                },
            ));
        }
    }
    Ok(sites)
}

/// Stores the sites of a successful build and the context file hashes it may trust later in
/// the cache index, in one session (nothing on a read-only index, nothing at all when there is
/// nothing to store).
pub fn record(
    cache_dir: &Path,
    sites: &[(String, SiteRecord)],
    files: &[(FileIdentity, [u8; 32])],
) -> anyhow::Result<()> {
    if sites.is_empty() && files.is_empty() {
        return Ok(());
    }
    let dir = cache_dir.join("index");
    let index = Index::open(&dir)
        .with_context(|| format!("opening the cache index in {}", dir.display()))?;
    if index.is_read_only() {
        return Ok(());
    }
    let session = index.write().context("writing the cache index")?;
    if !sites.is_empty() {
        session
            .put_sites(sites)
            .context("writing the cache index")?;
    }
    if !files.is_empty() {
        session
            .put_files(files)
            .context("writing the cache index")?;
    }
    Ok(())
}

/// What the cache knows about one step.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its result is in the local cache.
    Hit,
    /// It produces no layer and never runs; its key follows its inputs.
    Metadata,
    /// No build of this Dockerfile recorded this step here.
    NeverBuilt,
    /// Its inputs are those of the last recorded build, but the result is gone (expired,
    /// collected, or never cached because the step is not cacheable).
    ResultGone,
    /// Only what came before it changed.
    EarlierStepChanged,
    /// These inputs differ from the last recorded build: (name, before, now).
    Changed(Vec<(String, Option<String>, Option<String>)>),
}

/// Compares a step's inputs now with those recorded at its site.
pub fn compare(
    recorded: &[(String, String)],
    now: &[(String, String)],
) -> Vec<(String, Option<String>, Option<String>)> {
    let before: BTreeMap<&str, &str> = recorded
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let after: BTreeMap<&str, &str> = now.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut names: Vec<&str> = recorded
        .iter()
        .chain(now)
        .map(|(k, _)| k.as_str())
        .collect();
    names.dedup();
    let mut seen = std::collections::BTreeSet::new();
    names
        .into_iter()
        .filter(|name| seen.insert(*name))
        .filter(|name| before.get(name) != after.get(name))
        .map(|name| {
            (
                name.to_owned(),
                before.get(name).map(|v| (*v).to_owned()),
                after.get(name).map(|v| (*v).to_owned()),
            )
        })
        .collect()
}

/// What [`explain`] looks at.
pub struct Explained<'a> {
    /// The build, keys assigned.
    pub build: &'a LoadedBuild,
    /// How its layers would be written (part of the cache key).
    pub layers: &'a LayerOptions,
    /// The build's cache (what is cacheable).
    pub cache: &'a crate::cache::Cache,
    /// The local index.
    pub index: &'a Index,
    /// The local store (a result whose layer is gone is a miss).
    pub store: &'a Store,
    /// `--cache-ttl`.
    pub ttl: std::time::Duration,
}

/// The verdict for every step of the plan, in build order: (stage, step, verdict).
pub fn explain(build: &Explained<'_>) -> anyhow::Result<Vec<(usize, usize, Verdict)>> {
    let plan = &build.build.plan;
    let session = build.index.read().context("reading the cache index")?;
    let oldest = kiln_cas::record::now().saturating_sub(build.ttl.as_secs());
    let mut verdicts = Vec::new();
    for stage in plan.build_order() {
        for (step, planned) in plan.stages[stage].steps.iter().enumerate() {
            let Some(key) = &planned.key else { continue };
            let key = crate::cache::cache_key(key, build.layers);
            let verdict = if !build.cache.cacheable(&planned.kind) {
                Verdict::Metadata
            } else if session
                .step(&key)
                .context("reading the cache index")?
                .is_some_and(|record| {
                    record.recorded >= oldest
                        && record
                            .layer
                            .as_ref()
                            .is_none_or(|layer| build.store.contains(&layer.digest))
                })
            {
                Verdict::Hit
            } else {
                let site = site(&build.build.scope_file, &plan.stages[stage], step);
                match session.site(&site).context("reading the cache index")? {
                    None => Verdict::NeverBuilt,
                    Some(recorded) => {
                        let now =
                            describe(plan, stage, step, &build.build.images, &build.build.context)?;
                        let changed = compare(&recorded.inputs, &now);
                        if !changed.is_empty() {
                            Verdict::Changed(changed)
                        } else if recorded.key == key {
                            Verdict::ResultGone
                        } else {
                            Verdict::EarlierStepChanged
                        }
                    }
                }
            };
            verdicts.push((stage, step, verdict));
        }
    }
    Ok(verdicts)
}

/// The verdicts as text, one line per step and one per changed input.
pub fn render(plan: &Plan, dockerfile: &str, verdicts: &[(usize, usize, Verdict)]) -> String {
    let mut out = String::new();
    for (stage, step, verdict) in verdicts {
        let planned = &plan.stages[*stage].steps[*step];
        let at = format!("{dockerfile}:{}", planned.line);
        let summary = match verdict {
            Verdict::Hit => "hit".to_owned(),
            Verdict::Metadata => "metadata (no layer, nothing to cache)".to_owned(),
            Verdict::NeverBuilt => "miss: no build of this step is recorded here".to_owned(),
            Verdict::ResultGone => {
                "miss: same inputs as the last build, but its result expired or was removed"
                    .to_owned()
            }
            Verdict::EarlierStepChanged => "miss: an earlier step changed".to_owned(),
            Verdict::Changed(changed) => format!(
                "miss: {} changed",
                changed
                    .iter()
                    .map(|(name, _, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push_str(&format!("{at} {}: {summary}\n", planned.text));
        if let Verdict::Changed(changed) = verdict {
            for (name, before, after) in changed {
                let show = |value: &Option<String>| {
                    value
                        .as_deref()
                        .map_or_else(|| "(absent)".to_owned(), short)
                };
                out.push_str(&format!(
                    "    {name}: {} -> {}\n",
                    show(before),
                    show(after)
                ));
            }
        }
    }
    out
}

/// A value short enough for one line.
fn short(value: &str) -> String {
    let line = value.replace('\n', "\\n");
    if line.chars().count() > 80 {
        format!("{}...", line.chars().take(77).collect::<String>())
    } else {
        line
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `kiln cache explain` with `kiln build`'s flags: plans the build exactly as `kiln build`
/// would (base images from the cache directory when it holds them fresh, else the registry),
/// then prints each step's verdict. Runs nothing and writes nothing.
pub async fn run(mut options: crate::args::BuildOptions) -> anyhow::Result<()> {
    use crate::build::settings::Settings;
    options.no_push = true;
    options.cache = true;
    let settings = Settings::new(options)?;
    let store = Store::open(&settings.cache_dir.join("store"))
        .with_context(|| format!("opening the store in {}", settings.cache_dir.display()))?;
    let client = kiln_registry::Client::new(settings.registry.clone())
        .context("setting up the registry client")?;
    let mut build = LoadedBuild::load(
        &settings,
        &client,
        &store,
        &settings.cache_dir.join("contexts"),
    )
    .await?;
    let local_only = crate::cache::CacheSettings {
        repo: None,
        ..settings.cache.clone()
    };
    let cache = crate::cache::Cache::open(&local_only, &settings.cache_dir, &client)?;
    // An ADD <url> step's key holds what it downloads: explain fetches it too, into scratch.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let downloads = crate::build::downloads::Downloads::fetch(
        &client,
        &build.plan,
        scratch.path(),
        &build.label,
    )
    .await?;
    build.assign_keys(&cache, &downloads)?;
    let index = cache
        .index()
        .context("the cache index is not open")?
        .clone();
    let verdicts = explain(&Explained {
        build: &build,
        layers: &settings.layers,
        cache: &cache,
        index: &index,
        store: &store,
        ttl: settings.cache.ttl,
    })?;
    print!("{}", render(&build.plan, &build.scope_file, &verdicts));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn comparing_names_changed_added_and_removed_inputs_only() {
        let before = pairs(&[("instruction", "RUN a"), ("arg V", "1"), ("file x", "aa")]);
        let after = pairs(&[("instruction", "RUN a"), ("arg V", "2"), ("file y", "bb")]);
        let changed = compare(&before, &after);
        let names: Vec<&str> = changed.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(names, vec!["arg V", "file x", "file y"]);
        assert_eq!(changed[1].2, None);
        assert!(compare(&before, &before).is_empty());
    }
}
