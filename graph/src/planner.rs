//! Resolves a [`Dockerfile`] into stages and then, given base-image configs, into a [`Plan`].

use std::collections::BTreeMap;

use crate::dispatch::{Context, Scope, StageBuilder};
use crate::error::Error;
use crate::expand::{Vars, expand_word};
use crate::plan::{BaseRef, Plan, Stage};
use crate::platform::Platform;
use crate::stage::{CopySource, DeclBase, StageDecl, resolve_copy_from};
use crate::state::ImageState;
use crate::syntax::{Dockerfile, Instruction, InstructionKind, parse_trigger};

/// How to plan a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--build-arg` values; later entries win. Only ARGs the Dockerfile declares see them.
    pub build_args: Vec<(String, String)>,
    /// Stage to build (case-insensitive name); `None` builds the last stage.
    pub target: Option<String>,
    /// Target platform (`--custom-platform`, else the host's): base images are selected for
    /// it and it is exposed as the automatic `TARGET*` ARGs.
    pub platform: Platform,
    /// The platform kiln runs on, exposed as the automatic `BUILD*` ARGs.
    pub build_platform: Platform,
}

/// One external image to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePull {
    /// The name the plan uses for it ([`Planner::external_images`]).
    pub key: String,
    /// The image reference as written in the Dockerfile.
    pub reference: String,
    /// The platform to select from an image index.
    pub platform: Platform,
}

/// The key of a base image: its reference, qualified with the platform when that is not the
/// target (the same image can be a base for both).
fn base_key(reference: &str, platform: &Platform, target: &Platform) -> String {
    if platform == target {
        reference.to_owned()
    } else {
        format!("{reference} ({platform})")
    }
}

/// The reference inside a [`base_key`].
fn base_reference(key: &str, platform: &Platform, target: &Platform) -> String {
    if platform == target {
        return key.to_owned();
    }
    let suffix = format!(" ({platform})");
    key.strip_suffix(&suffix).unwrap_or(key).to_owned()
}

/// Stage structure of a Dockerfile, resolved far enough to tell which images it needs.
#[derive(Debug)]
pub struct Planner<'a> {
    df: &'a Dockerfile,
    platform: Platform,
    build_args: BTreeMap<String, String>,
    globals: Vec<(String, String)>,
    stages: Vec<StageDecl<'a>>,
    /// Dockerfile index of the target stage.
    target: usize,
    /// Dockerfile indexes the target needs, ascending (dependencies always come earlier).
    needed: Vec<usize>,
}

impl<'a> Planner<'a> {
    /// Splits the Dockerfile into stages, expands FROM lines with the global ARGs, resolves
    /// stage references and the target.
    pub fn new(df: &'a Dockerfile, options: PlanOptions) -> Result<Self, Error> {
        let file = df.file.as_str();
        let build_args: BTreeMap<String, String> = options.build_args.iter().cloned().collect();
        let first_from = df
            .instructions
            .iter()
            .position(|i| matches!(i.kind, InstructionKind::From(_)))
            .ok_or_else(|| {
                Error::whole(
                    file,
                    "no FROM instruction: a Dockerfile needs at least one stage",
                )
            })?;
        let (prelude, rest) = df.instructions.split_at(first_from);
        // TARGETSTAGE is the requested target, or the last stage's name (BuildKit's default).
        let last_name = rest.iter().rev().find_map(|i| match &i.kind {
            InstructionKind::From(f) => Some(f.name.clone().unwrap_or_default()),
            _ => None,
        });
        let target_name = match &options.target {
            Some(t) => t.to_ascii_lowercase(),
            None => last_name.unwrap_or_default(),
        };
        let mut globals = platform_args(
            &options.platform,
            &options.build_platform,
            &build_args,
            &target_name,
        );
        for inst in prelude {
            let InstructionKind::Arg(decls) = &inst.kind else {
                return Err(at(
                    df,
                    inst,
                    format!(
                        "{} cannot come before the first FROM; only ARG can",
                        inst.kind.keyword()
                    ),
                ));
            };
            for decl in decls {
                let value = match (build_args.get(&decl.name), &decl.default) {
                    (Some(v), _) => v.clone(),
                    (None, Some(default)) => expand(df, inst, default, &globals)?,
                    (None, None) => continue,
                };
                set(&mut globals, &decl.name, value);
            }
        }
        let stages = declare_stages(
            df,
            rest,
            &globals,
            &options.platform,
            &options.build_platform,
        )?;
        let target = match &options.target {
            None => stages.len() - 1,
            Some(name) => stages
                .iter()
                .position(|s| s.name.as_deref() == Some(target_name.as_str()))
                .ok_or_else(|| {
                    Error::whole(file, format!("target stage {name:?} could not be found"))
                })?,
        };
        let needed = needed_stages(&stages, target);
        Ok(Self {
            df,
            platform: options.platform,
            build_args,
            globals,
            stages,
            target,
            needed,
        })
    }

    /// Images (other than `scratch` and earlier stages) the build needs, each once: FROM bases
    /// and `COPY --from=<image>`; only for stages the target needs. Each is named by its key:
    /// the reference as written, or `reference (os/arch)` for a base pulled for the build
    /// platform rather than the target (see [`Planner::image_pulls`]).
    pub fn external_images(&self) -> Vec<String> {
        self.image_pulls().into_iter().map(|p| p.key).collect()
    }

    /// What to pull for each of [`Planner::external_images`]: reference and platform.
    pub fn image_pulls(&self) -> Vec<ImagePull> {
        let mut out: Vec<ImagePull> = Vec::new();
        for &i in &self.needed {
            let stage = &self.stages[i];
            let base = match &stage.base {
                DeclBase::Image(key) => Some(ImagePull {
                    key: key.clone(),
                    reference: base_reference(key, &stage.platform, &self.platform),
                    platform: stage.platform.clone(),
                }),
                _ => None,
            };
            let copies = stage.copy_images.iter().map(|r| ImagePull {
                key: r.clone(),
                reference: r.clone(),
                platform: self.platform.clone(),
            });
            for pull in base.into_iter().chain(copies) {
                if !out.iter().any(|p| p.key == pull.key) {
                    out.push(pull);
                }
            }
        }
        out
    }

    /// Plans every needed stage. `bases` maps each external image reference (exactly as
    /// returned by [`Planner::external_images`]) to its config.
    pub fn plan(self, bases: &BTreeMap<String, ImageState>) -> Result<Plan, Error> {
        let positions: BTreeMap<usize, usize> = self
            .needed
            .iter()
            .enumerate()
            .map(|(pos, &i)| (i, pos))
            .collect();
        let names: Vec<Option<String>> = self.stages.iter().map(|s| s.name.clone()).collect();
        let mut planned: Vec<Stage> = Vec::with_capacity(self.needed.len());
        let mut scopes: Vec<Scope> = Vec::with_capacity(self.needed.len());
        for (pos, &index) in self.needed.iter().enumerate() {
            let decl = &self.stages[index];
            let (base, mut state, args) = match &decl.base {
                DeclBase::Scratch => (BaseRef::Scratch, ImageState::default(), Vec::new()),
                DeclBase::Image(r) => {
                    let state = bases.get(r).cloned().ok_or_else(|| {
                        at(
                            self.df,
                            decl.from,
                            format!("no image config was provided for base image {r:?}"),
                        )
                    })?;
                    (BaseRef::Image(r.clone()), state, Vec::new())
                }
                DeclBase::Stage(i) => {
                    let base_pos = positions.get(i).copied().ok_or_else(|| {
                        at(
                            self.df,
                            decl.from,
                            format!("base stage {i} was not planned"),
                        )
                    })?;
                    let scope = &scopes[base_pos];
                    // A stage built on a stage inherits its ARG scope too (BuildKit's init()).
                    (
                        BaseRef::Stage(base_pos),
                        scope.state.clone(),
                        scope.args.clone(),
                    )
                }
            };
            state.ensure_path();
            let triggers = std::mem::take(&mut state.onbuild);
            let ctx = Context {
                file: &self.df.file,
                escape: self.df.escape,
                globals: &self.globals,
                build_args: &self.build_args,
                stage_names: &names,
                positions: &positions,
                images: bases,
                current: index,
            };
            let mut builder = StageBuilder::new(ctx, Scope::new(state.clone(), args));
            for trigger in &triggers {
                let inst = parse_trigger(trigger, decl.from.line, decl.from.column, &self.df.file)?;
                builder.dispatch(&inst)?;
            }
            for inst in decl.body {
                builder.dispatch(inst)?;
            }
            let (steps, scope) = builder.finish();
            scopes.push(scope);
            planned.push(Stage {
                index: pos,
                dockerfile_index: index,
                name: decl.name.clone(),
                platform: decl.platform.clone(),
                base,
                base_state: state,
                steps,
                line: decl.from.line,
                key: None,
            });
        }
        let target = positions.get(&self.target).copied().unwrap_or_default();
        Plan::new(self.df.file.clone(), planned, target, self.platform)
    }
}

fn at(df: &Dockerfile, inst: &Instruction, message: impl Into<String>) -> Error {
    Error::at(&df.file, inst.line, inst.column, &inst.text, message)
}

fn expand(
    df: &Dockerfile,
    inst: &Instruction,
    word: &str,
    vars: &dyn Vars,
) -> Result<String, Error> {
    expand_word(word, df.escape, vars).map_err(|e| at(df, inst, format!("{e} (in {word:?})")))
}

fn set(vars: &mut Vec<(String, String)>, key: &str, value: String) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => vars.push((key.to_owned(), value)),
    }
}

/// BuildKit's automatic platform ARGs: in the global scope (FROM lines, and a stage's `ARG
/// TARGETARCH` without a default), never visible in a stage without an ARG.
fn platform_args(
    p: &Platform,
    build: &Platform,
    build_args: &BTreeMap<String, String>,
    target: &str,
) -> Vec<(String, String)> {
    let defaults = [
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
        ("TARGETPLATFORM", p.to_string()),
        ("TARGETOS", p.os.clone()),
        ("TARGETARCH", p.architecture.clone()),
        ("TARGETVARIANT", p.variant.clone().unwrap_or_default()),
        ("TARGETSTAGE", target.to_owned()),
    ];
    defaults
        .into_iter()
        .map(|(k, v)| (k.to_owned(), build_args.get(k).cloned().unwrap_or(v)))
        .collect()
}

fn declare_stages<'a>(
    df: &'a Dockerfile,
    instructions: &'a [Instruction],
    globals: &[(String, String)],
    platform: &Platform,
    build: &Platform,
) -> Result<Vec<StageDecl<'a>>, Error> {
    let starts: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.kind, InstructionKind::From(_)))
        .map(|(n, _)| n)
        .collect();
    let mut stages: Vec<StageDecl<'a>> = Vec::with_capacity(starts.len());
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(instructions.len());
        let from_inst = &instructions[start];
        let InstructionKind::From(from) = &from_inst.kind else {
            continue;
        };
        let stage_platform = match &from.platform {
            Some(raw) => check_platform(df, from_inst, raw, globals, platform, build)?,
            None => platform.clone(),
        };
        let image = expand(df, from_inst, &from.image, &globals)?;
        if image.is_empty() {
            return Err(at(
                df,
                from_inst,
                format!("base name ({}) should not be blank", from.image),
            ));
        }
        let lower = image.to_ascii_lowercase();
        // Only earlier stages count: `FROM nginx AS nginx` names the image, as in BuildKit.
        let base = match stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            Some(i) => DeclBase::Stage(i),
            None if lower == "scratch" => DeclBase::Scratch,
            None => DeclBase::Image(base_key(&image, &stage_platform, platform)),
        };
        if let Some(name) = &from.name
            && let Some(prev) = stages
                .iter()
                .find(|s| s.name.as_deref() == Some(name.as_str()))
        {
            let message = format!(
                "duplicate stage name {name:?}, first defined on line {}",
                prev.from.line
            );
            return Err(at(df, from_inst, message));
        }
        stages.push(StageDecl {
            index,
            name: from.name.clone(),
            base,
            platform: stage_platform,
            from: from_inst,
            body: &instructions[start + 1..end],
            copy_stages: Vec::new(),
            copy_images: Vec::new(),
        });
    }
    let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
    for stage in &mut stages {
        for inst in stage.body {
            let froms: Vec<&str> = match &inst.kind {
                InstructionKind::Copy(copy) => copy.from.as_deref().into_iter().collect(),
                InstructionKind::Run(run) => run.mounts.iter().filter_map(|m| m.from()).collect(),
                _ => continue,
            };
            for from in froms {
                match resolve_copy_from(from, stage.index, &names).map_err(|m| at(df, inst, m))? {
                    CopySource::Stage(i) => stage.copy_stages.push(i),
                    CopySource::Image(r) => stage.copy_images.push(r),
                }
            }
        }
    }
    Ok(stages)
}

/// `FROM --platform` is honoured when it names the target platform or the build platform (the
/// cross-compiling pattern `FROM --platform=$BUILDPLATFORM`); any other platform would need
/// emulation, and silently building for the wrong platform is worse. Returns the stage's
/// platform.
fn check_platform(
    df: &Dockerfile,
    inst: &Instruction,
    raw: &str,
    globals: &[(String, String)],
    target: &Platform,
    build: &Platform,
) -> Result<Platform, Error> {
    let value = expand(df, inst, raw, &globals)?;
    let requested: Platform = value
        .parse()
        .map_err(|e: String| at(df, inst, format!("FROM --platform: {e}")))?;
    if requested.matches(target) {
        return Ok(target.clone());
    }
    if requested.matches(build) {
        return Ok(build.clone());
    }
    Err(at(
        df,
        inst,
        format!(
            "FROM --platform={value} differs from the target platform {target}; building for another platform is not supported yet (kiln does not emulate): use --custom-platform={value}, or $BUILDPLATFORM to run the stage natively"
        ),
    ))
}

/// The target and every stage it transitively depends on, ascending.
fn needed_stages(stages: &[StageDecl<'_>], target: usize) -> Vec<usize> {
    let mut seen = vec![false; stages.len()];
    let mut stack = vec![target];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        stack.extend(stages[i].dependencies());
    }
    seen.iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .map(|(i, _)| i)
        .collect()
}
