//! `kiln plan`: the build graph a `kiln build` with the same flags would execute, printed
//! without touching a registry or the build context's contents.
//!
//! Base images are not pulled, so every external image is planned from an empty config
//! ([`ImageState::default`]): steps are exactly those of the Dockerfile, but what a base image
//! would contribute (its ENV, WORKDIR, SHELL, USER and ONBUILD triggers) is not reflected, and
//! node keys, which need image digests and context hashes, are not computed. Every output says
//! so rather than showing guessed values.

mod dot;
mod json;
mod text;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use kiln_graph::{BaseRef, ImageState, Plan, PlanOptions, Planner, StepKind};

use crate::args::{PlanArgs, PlanFormat};
use crate::build::references::check_references;
use crate::build::settings::{
    build_arg, context_dir, dockerfile_path, host_platform, target_platform,
};

/// The caveat every format carries: what a plan without pulled base images cannot know.
const UNFETCHED_NOTE: &str = "base image configs were not fetched: their ENV, WORKDIR, SHELL, \
USER and ONBUILD triggers are not reflected, and node keys are not computed";

/// Runs `kiln plan`: resolves the Dockerfile like `kiln build`, plans it and prints the plan.
pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let planned = load(args)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        PlanFormat::Text => text::write(&mut out, &planned),
        PlanFormat::Json => json::write(&mut out, &planned),
        PlanFormat::Dot => dot::write(&mut out, &planned),
    }
    .and_then(|()| out.flush())
    .context("writing the plan to standard output")
}

/// A plan and what it was made from, for the renderers.
pub(crate) struct Planned {
    /// The Dockerfile as named in messages (its resolved path).
    pub dockerfile: String,
    /// The platform the plan targets (the host's, as for `kiln build`).
    pub platform: kiln_graph::Platform,
    /// The plan, without node keys.
    pub plan: Plan,
}

/// Resolves flags exactly as `kiln build` does and plans with unknown base configs.
fn load(args: &PlanArgs) -> anyhow::Result<Planned> {
    let context = context_dir(&args.context)?;
    let dockerfile: PathBuf = dockerfile_path(&args.dockerfile, &context)?;
    let build_args = args
        .build_args
        .iter()
        .map(|arg| build_arg(arg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let label = dockerfile.display().to_string();
    let source =
        std::fs::read_to_string(&dockerfile).with_context(|| format!("reading {label}"))?;
    let parsed = kiln_graph::parse(&source, &label)?;
    let platform = target_platform(args.custom_platform.as_deref())?;
    let planner = Planner::new(
        &parsed,
        PlanOptions {
            build_args,
            target: args.target.clone(),
            platform: platform.clone(),
            build_platform: host_platform(),
        },
    )?;
    let bases: BTreeMap<String, ImageState> = planner
        .external_images()
        .into_iter()
        .map(|image| (image, ImageState::default()))
        .collect();
    let pulls = planner.image_pulls();
    let plan = planner.plan(&bases)?;
    check_references(&pulls, &plan, &label)?;
    Ok(Planned {
        dockerfile: label,
        platform,
        plan,
    })
}

/// What a step does, in the executor's terms: the one word every format shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// Runs a process.
    Run,
    /// Copies files (COPY, local ADD).
    Copy,
    /// Creates the working directory.
    Workdir,
    /// Changes only the image config.
    Config,
}

impl Kind {
    /// The kind of a planned step.
    pub(crate) fn of(kind: &StepKind) -> Kind {
        match kind {
            StepKind::Run(_) => Kind::Run,
            StepKind::Copy(_) => Kind::Copy,
            StepKind::Workdir { .. } => Kind::Workdir,
            StepKind::Config => Kind::Config,
        }
    }

    /// The word shown for the kind.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Copy => "copy",
            Kind::Workdir => "workdir",
            Kind::Config => "config",
        }
    }
}

/// A stage as people refer to it: `stage 1 "build"`, or `stage 1` when unnamed.
pub(crate) fn stage_title(plan: &Plan, index: usize) -> String {
    match plan.stages.get(index).and_then(|s| s.name.as_deref()) {
        Some(name) => format!("stage {index} {name:?}"),
        None => format!("stage {index}"),
    }
}

/// What a stage starts from, in words.
pub(crate) fn base_text(plan: &Plan, base: &BaseRef) -> String {
    match base {
        BaseRef::Scratch => "scratch".to_owned(),
        BaseRef::Image(image) => image.clone(),
        BaseRef::Stage(index) => stage_title(plan, *index),
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A multi-stage plan shared by the renderers' tests.

    use super::*;

    /// Plans `dockerfile` for linux/amd64 with unknown base configs.
    pub(crate) fn planned(dockerfile: &str, target: Option<&str>) -> Planned {
        let parsed = kiln_graph::parse(dockerfile, "Dockerfile").unwrap();
        let platform = kiln_graph::Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let planner = Planner::new(
            &parsed,
            PlanOptions {
                build_args: Vec::new(),
                target: target.map(str::to_owned),
                platform: platform.clone(),
                build_platform: platform.clone(),
            },
        )
        .unwrap();
        let bases = planner
            .external_images()
            .into_iter()
            .map(|image| (image, ImageState::default()))
            .collect();
        Planned {
            dockerfile: "Dockerfile".into(),
            platform,
            plan: planner.plan(&bases).unwrap(),
        }
    }

    /// Two stages: `build` from an image, the final one from scratch copying from `build`.
    pub(crate) const MULTI_STAGE: &str = "FROM alpine:3 AS build\nWORKDIR /src\nRUN echo \"hi\" > /src/out\n\nFROM scratch\nCOPY --from=build /src/out /out\nLABEL a=b\n";
}
