//! The build plan: planned stages, the step DAG and node keys.

use petgraph::algo::is_cyclic_directed;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::Error;
use crate::key::{KeyBuilder, KeyInputs, NodeKey};
use crate::mount::{NetworkMode, SecurityMode};
use crate::platform::Platform;
use crate::state::ImageState;
use crate::step::{CopyFrom, Step, StepId, StepKind};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// An empty filesystem.
    Scratch,
    /// An external image, by the reference from [`crate::Planner::external_images`].
    Image(String),
    /// An earlier stage (index into [`Plan::stages`]).
    Stage(usize),
}

/// A planned stage. Only stages the target needs are planned.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Position in [`Plan::stages`]; every stage index in a plan means this.
    pub index: usize,
    /// Position among the Dockerfile's FROM lines (what `COPY --from=<n>` counts).
    pub dockerfile_index: usize,
    /// Lowercased `AS` name.
    pub name: Option<String>,
    /// The platform the stage is built for: the target, or the build platform for a
    /// `FROM --platform=$BUILDPLATFORM` stage.
    pub platform: Platform,
    /// What the stage starts from.
    pub base: BaseRef,
    /// Config the first step starts from: the base's, with PATH ensured and ONBUILD triggers
    /// removed (they become the stage's first steps).
    pub base_state: ImageState,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Line of the FROM instruction.
    pub line: usize,
    /// Key of the stage's base, set by [`Plan::assign_keys`].
    pub key: Option<NodeKey>,
}

impl Stage {
    /// Config after the last step.
    pub fn final_state(&self) -> &ImageState {
        self.steps.last().map_or(&self.base_state, |s| &s.state)
    }

    /// Key of the stage's output: the filesystem chain as [`Plan::assign_keys`] follows it
    /// (configuration steps do not chain; a rebasing `--link` copy chains through
    /// [`Step::after_key`]), or the last step's key when that is a configuration step, whose
    /// key frames the whole image state; the base key when the stage has no steps.
    pub fn final_key(&self) -> Option<NodeKey> {
        let mut prev = self.key?;
        for step in &self.steps {
            let key = step.key?;
            if !matches!(step.kind, StepKind::Config) {
                prev = step.after_key(&prev, &key);
            }
        }
        match self.steps.last() {
            Some(step) if matches!(step.kind, StepKind::Config) => step.key,
            _ => Some(prev),
        }
    }
}

/// A validated build plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Planned stages in Dockerfile order; dependencies always precede dependents.
    pub stages: Vec<Stage>,
    /// Index into `stages` of the stage to export.
    pub target: usize,
    file: String,
    platform: Platform,
    graph: DiGraph<StepId, ()>,
    nodes: Vec<Vec<NodeIndex>>,
}

impl Plan {
    pub(crate) fn new(
        file: String,
        stages: Vec<Stage>,
        target: usize,
        platform: Platform,
    ) -> Result<Self, Error> {
        let mut graph = DiGraph::new();
        let nodes: Vec<Vec<NodeIndex>> = stages
            .iter()
            .map(|s| {
                (0..s.steps.len())
                    .map(|step| {
                        graph.add_node(StepId {
                            stage: s.index,
                            step,
                        })
                    })
                    .collect()
            })
            .collect();
        let mut plan = Self {
            stages,
            target,
            file,
            platform,
            graph,
            nodes,
        };
        for s in 0..plan.stages.len() {
            let mut prev = match plan.stages[s].base {
                BaseRef::Stage(b) => plan.final_node(b),
                _ => None,
            };
            for step in 0..plan.stages[s].steps.len() {
                let node = plan.nodes[s][step];
                if let Some(p) = prev {
                    plan.graph.add_edge(p, node, ());
                }
                for src in plan.stages[s].steps[step].kind.source_stages() {
                    if let Some(n) = plan.final_node(src) {
                        plan.graph.add_edge(n, node, ());
                    }
                }
                prev = Some(node);
            }
        }
        if is_cyclic_directed(&plan.graph) {
            return Err(Error::whole(
                &plan.file,
                "the stages form a dependency cycle",
            ));
        }
        Ok(plan)
    }

    /// The step DAG: nodes are steps; edges run from the previous step of a stage, from the
    /// last step of a `FROM <stage>` base, and from the last step of a `COPY --from=<stage>`
    /// source.
    pub fn graph(&self) -> &DiGraph<StepId, ()> {
        &self.graph
    }

    /// The graph node of a step.
    pub fn node(&self, id: StepId) -> Option<NodeIndex> {
        self.nodes.get(id.stage)?.get(id.step).copied()
    }

    /// The step a graph node stands for.
    pub fn step(&self, id: StepId) -> Option<&Step> {
        self.stages.get(id.stage)?.steps.get(id.step)
    }

    /// Stages a stage needs built first: its base stage and `COPY --from` stages.
    pub fn stage_dependencies(&self, stage: usize) -> Vec<usize> {
        let Some(s) = self.stages.get(stage) else {
            return Vec::new();
        };
        let base = match s.base {
            BaseRef::Stage(b) => Some(b),
            _ => None,
        };
        let copies = s.steps.iter().flat_map(|step| step.kind.source_stages());
        let mut deps: Vec<usize> = base.into_iter().chain(copies).collect();
        deps.sort_unstable();
        deps.dedup();
        deps
    }

    /// Stage indexes the target needs, dependencies first (unused stages are not built).
    pub fn build_order(&self) -> Vec<usize> {
        let mut order = Vec::new();
        let mut visited = vec![false; self.stages.len()];
        self.visit(self.target, &mut visited, &mut order);
        order
    }

    fn visit(&self, stage: usize, visited: &mut [bool], order: &mut Vec<usize>) {
        if stage >= visited.len() || std::mem::replace(&mut visited[stage], true) {
            return;
        }
        for dep in self.stage_dependencies(stage) {
            self.visit(dep, visited, order);
        }
        order.push(stage);
    }

    /// The node whose output is a stage's final filesystem (walking through empty stages).
    fn final_node(&self, stage: usize) -> Option<NodeIndex> {
        let mut s = stage;
        loop {
            if let Some(n) = self.nodes.get(s)?.last() {
                return Some(*n);
            }
            match self.stages.get(s)?.base {
                BaseRef::Stage(b) => s = b,
                _ => return None,
            }
        }
    }

    /// Computes every stage and step key. Keys change when any input that affects the output
    /// changes (platform, base digest, arguments, environment, copied content) and are stable
    /// otherwise.
    pub fn assign_keys(&mut self, inputs: &dyn KeyInputs) -> Result<(), Error> {
        for s in self.build_order() {
            let root = self.root_key(s, inputs)?;
            self.stages[s].key = Some(root);
            // The last filesystem step's key: configuration steps do not chain (see
            // `Plan::chains`).
            let mut prev = root;
            for i in 0..self.stages[s].steps.len() {
                let mut key = self.step_key(s, i, &prev, inputs, None)?;
                if self.copies_from_stage(s, i)
                    && let Some(resolved) = inputs.resolved_copy(&key)
                {
                    key = resolved;
                }
                self.stages[s].steps[i].key = Some(key);
                if self.chains(s, i) {
                    prev = self.stages[s].steps[i].after_key(&prev, &key);
                }
            }
        }
        Ok(())
    }

    fn stage_key(&self, stage: usize) -> Result<NodeKey, Error> {
        self.stages
            .get(stage)
            .and_then(Stage::final_key)
            .ok_or_else(|| Error::whole(&self.file, format!("stage {stage} has no key yet")))
    }

    fn root_key(&self, s: usize, inputs: &dyn KeyInputs) -> Result<NodeKey, Error> {
        let stage = &self.stages[s];
        let mut b = KeyBuilder::new("stage");
        b.platform(&self.platform);
        match &stage.base {
            BaseRef::Scratch => b.str("scratch"),
            BaseRef::Image(r) => {
                let digest = inputs.image_digest(r).ok_or_else(|| {
                    Error::whole(
                        &self.file,
                        format!("no digest for base image {r:?} (line {})", stage.line),
                    )
                })?;
                b.str("image").str(&digest)
            }
            BaseRef::Stage(base) => b.str("stage").key(&self.stage_key(*base)?),
        };
        Ok(b.finish())
    }

    /// The key of step `i` of stage `s` when the last filesystem step before it (see
    /// [`Plan::chains`]) has key `prev`: for a build that re-derived an earlier key while
    /// running (a `COPY --from` resolved to its content key).
    pub fn step_key_after(
        &self,
        s: usize,
        i: usize,
        prev: &NodeKey,
        inputs: &dyn KeyInputs,
    ) -> Result<NodeKey, Error> {
        self.step_key(s, i, prev, inputs, None)
    }

    /// The *content key* of a `COPY --from=<stage>` step: the source stage's key replaced by
    /// `content`, a digest of the files the step selects in that stage's output (with owners,
    /// which `COPY --from` keeps). A source stage that changed but produced the same files
    /// gives the same key, so the steps after it stay cached (cargo-chef's `recipe.json`).
    pub fn copy_content_key(
        &self,
        s: usize,
        i: usize,
        prev: &NodeKey,
        content: &[u8; 32],
        inputs: &dyn KeyInputs,
    ) -> Result<NodeKey, Error> {
        self.step_key(s, i, prev, inputs, Some(content))
    }

    /// Whether step `i` of stage `s` is the `prev` of the steps after it: every step but a
    /// configuration-only one (ARG, ENV, LABEL, ...). Those change no file, and what they
    /// change that a later step's result depends on is framed in that step's own key (a RUN's
    /// environment, user, working directory and volumes; a COPY's expanded sources and
    /// destination), as in BuildKit, where ARG and ENV are not LLB operations: a changed ARG a
    /// COPY does not use leaves the COPY cached, while every RUN that sees it misses.
    /// Configuration steps still get keys of their own (derived from the last filesystem
    /// step), so a stage ending in one has a final key covering its configuration.
    pub fn chains(&self, s: usize, i: usize) -> bool {
        self.stages
            .get(s)
            .and_then(|stage| stage.steps.get(i))
            .is_some_and(|step| !matches!(step.kind, StepKind::Config))
    }

    /// Whether step `i` of stage `s` is a `COPY --from=<stage>`.
    pub fn copies_from_stage(&self, s: usize, i: usize) -> bool {
        self.stages
            .get(s)
            .and_then(|stage| stage.steps.get(i))
            .is_some_and(|step| {
                matches!(&step.kind, StepKind::Copy(copy) if matches!(copy.from, CopyFrom::Stage(_)))
            })
    }

    fn step_key(
        &self,
        s: usize,
        i: usize,
        prev: &NodeKey,
        inputs: &dyn KeyInputs,
        content: Option<&[u8; 32]>,
    ) -> Result<NodeKey, Error> {
        let step = &self.stages[s].steps[i];
        let fail = |m: String| Error::at(&self.file, step.line, step.column, &step.text, m);
        let mut b;
        match &step.kind {
            StepKind::Run(run) => {
                b = KeyBuilder::new("run");
                b.key(prev).strs(run.argv.iter().map(String::as_str));
                b.strs(
                    run.env
                        .iter()
                        .flat_map(|(k, v)| [k.as_str(), v.as_str()])
                        .collect::<Vec<_>>()
                        .into_iter(),
                );
                b.opt_str(run.user.as_deref()).str(&run.workdir);
                // Later inputs are framed after a tag, and only when they are not the default,
                // so keys of steps that do not use them are unchanged.
                if let Some(script) = &run.script {
                    b.str("script").str(&script.name).str(&script.data);
                }
                if run.network != NetworkMode::Default {
                    b.str("network").str(run.network.as_str());
                }
                if run.security != SecurityMode::Sandbox {
                    b.str("security").str(run.security.as_str());
                }
                if !run.mounts.is_empty() {
                    let mounts: Vec<String> = run.mounts.iter().map(ToString::to_string).collect();
                    b.str("mounts").strs(mounts.iter().map(String::as_str));
                }
                // What a `from=` mount reads is an input, as for COPY --from.
                // A RUN after VOLUME loses what it writes there: the volumes are an input.
                if !step.state.volumes.is_empty() {
                    b.str("volumes")
                        .strs(step.state.volumes.iter().map(String::as_str));
                }
                for (index, source) in &run.mount_sources {
                    b.str("mount-source").str(&index.to_string());
                    match source {
                        CopyFrom::Context => b.str("context"),
                        CopyFrom::Stage(src) => b.str("stage").key(&self.stage_key(*src)?),
                        CopyFrom::Image(r) => {
                            let digest = inputs
                                .image_digest(r)
                                .ok_or_else(|| fail(format!("no digest for image {r:?}")))?;
                            b.str("image").str(&digest)
                        }
                    };
                }
            }
            StepKind::Copy(copy) => {
                // A rebasing `--link` copy is its own root: the platform instead of the parent.
                if copy.rebases() {
                    b = KeyBuilder::new("copy-link");
                    b.platform(&self.stages[s].platform);
                } else {
                    b = KeyBuilder::new("copy");
                    b.key(prev);
                }
                match &copy.from {
                    CopyFrom::Context => {
                        let digest = inputs.context_digest(copy).map_err(fail)?;
                        b.str("context").bytes(&digest)
                    }
                    CopyFrom::Stage(src) => match content {
                        Some(content) => b.str("stage-content").bytes(content),
                        None => b.str("stage").key(&self.stage_key(*src)?),
                    },
                    CopyFrom::Image(r) => {
                        let digest = inputs
                            .image_digest(r)
                            .ok_or_else(|| fail(format!("no digest for image {r:?}")))?;
                        b.str("image").str(&digest)
                    }
                };
                b.strs(copy.sources.iter().map(String::as_str))
                    .str(&copy.dest)
                    .opt_str(copy.chown.as_deref());
                b.opt_str(copy.chmod.as_ref().map(ToString::to_string).as_deref())
                    .bytes(&[u8::from(copy.add)]);
                if !copy.contents.is_empty() {
                    // A counted list of (name, data) pairs, so the tags after it stay unambiguous.
                    b.str("contents").strs(
                        copy.contents
                            .iter()
                            .flat_map(|file| [file.name.as_str(), file.data.as_str()])
                            .collect::<Vec<_>>()
                            .into_iter(),
                    );
                }
                if copy.parents {
                    b.str("parents");
                }
                if !copy.excludes.is_empty() {
                    b.str("excludes")
                        .strs(copy.excludes.iter().map(String::as_str));
                }
            }
            StepKind::Workdir { path, user } => {
                b = KeyBuilder::new("workdir");
                b.key(prev).str(path).opt_str(user.as_deref());
            }
            StepKind::Config => {
                let state = serde_json::to_vec(&step.state)
                    .map_err(|e| fail(format!("cannot encode config: {e}")))?;
                b = KeyBuilder::new("config");
                b.key(prev).str(&step.created_by).bytes(&state);
            }
        }
        Ok(b.finish())
    }
}
