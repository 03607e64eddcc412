//! The plan for programs. The shape is stable; fields may be added, never renamed or removed:
//!
//! ```json
//! {
//!   "dockerfile": "/ctx/Dockerfile",
//!   "platform": {"os": "linux", "architecture": "amd64", "variant": null},
//!   "base_configs_fetched": false,
//!   "note": "base image configs were not fetched: ...",
//!   "target": 1,
//!   "build_order": [0, 1],
//!   "stages": [{
//!     "index": 0, "dockerfile_index": 0, "name": "build", "line": 1,
//!     "base": {"scratch": true} | {"image": "alpine:3"} | {"stage": 0},
//!     "dependencies": [],
//!     "steps": [{"stage": 0, "step": 0, "line": 2, "column": 1, "text": "WORKDIR /src",
//!                "kind": "run" | "copy" | "workdir" | "config", "created_by": "WORKDIR /src"}]
//!   }],
//!   "edges": [{"from": {"stage": 0, "step": 1}, "to": {"stage": 1, "step": 0}}]
//! }
//! ```
//!
//! Stage indexes are positions in `stages` (only stages the target needs are planned);
//! `dockerfile_index` is the stage's position among the Dockerfile's FROM lines. Edges are the
//! step DAG: previous step of the same stage, last step of a `FROM <stage>` base, last step of
//! a `COPY --from=<stage>` source. No node keys: they need pulled base images.

use std::io::{self, Write};

use kiln_graph::{BaseRef, Platform, StepId};
use serde::Serialize;

use super::{Kind, Planned, UNFETCHED_NOTE};

#[derive(Serialize)]
struct Document<'a> {
    dockerfile: &'a str,
    platform: &'a Platform,
    base_configs_fetched: bool,
    note: &'static str,
    target: usize,
    build_order: Vec<usize>,
    stages: Vec<Stage<'a>>,
    edges: Vec<Edge>,
}

#[derive(Serialize)]
struct Stage<'a> {
    index: usize,
    dockerfile_index: usize,
    name: Option<&'a str>,
    line: usize,
    base: Base<'a>,
    dependencies: Vec<usize>,
    steps: Vec<Step<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Base<'a> {
    Scratch(bool),
    Image(&'a str),
    Stage(usize),
}

#[derive(Serialize)]
struct Step<'a> {
    stage: usize,
    step: usize,
    line: usize,
    column: usize,
    text: &'a str,
    kind: Kind,
    created_by: &'a str,
}

#[derive(Serialize)]
struct Edge {
    from: StepId,
    to: StepId,
}

/// Writes the plan as one pretty-printed JSON document and a newline.
pub(crate) fn write(out: &mut impl Write, planned: &Planned) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &document(planned))?;
    writeln!(out)
}

fn document(planned: &Planned) -> Document<'_> {
    let plan = &planned.plan;
    let stages = plan
        .stages
        .iter()
        .map(|stage| Stage {
            index: stage.index,
            dockerfile_index: stage.dockerfile_index,
            name: stage.name.as_deref(),
            line: stage.line,
            base: match &stage.base {
                BaseRef::Scratch => Base::Scratch(true),
                BaseRef::Image(image) => Base::Image(image),
                BaseRef::Stage(index) => Base::Stage(*index),
            },
            dependencies: plan.stage_dependencies(stage.index),
            steps: stage
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| Step {
                    stage: stage.index,
                    step: i,
                    line: step.line,
                    column: step.column,
                    text: &step.text,
                    kind: Kind::of(&step.kind),
                    created_by: &step.created_by,
                })
                .collect(),
        })
        .collect();
    let graph = plan.graph();
    let edges = graph
        .raw_edges()
        .iter()
        .map(|edge| Edge {
            from: graph[edge.source()],
            to: graph[edge.target()],
        })
        .collect();
    Document {
        dockerfile: &planned.dockerfile,
        platform: &planned.platform,
        base_configs_fetched: false,
        note: UNFETCHED_NOTE,
        target: plan.target,
        build_order: plan.build_order(),
        stages,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::fixture::{MULTI_STAGE, planned};
    use super::*;

    fn render(dockerfile: &str, target: Option<&str>) -> Value {
        let mut out = Vec::new();
        write(&mut out, &planned(dockerfile, target)).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn stages_steps_and_kinds_are_listed() {
        let doc = render(MULTI_STAGE, None);
        assert_eq!(doc["target"], 1);
        assert_eq!(doc["build_order"], json!([0, 1]));
        assert_eq!(doc["base_configs_fetched"], false);
        let stages = doc["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0]["name"], "build");
        assert_eq!(stages[0]["base"], json!({"image": "alpine:3"}));
        assert_eq!(stages[1]["base"], json!({"scratch": true}));
        assert_eq!(stages[1]["dependencies"], json!([0]));
        let copy = &stages[1]["steps"][0];
        assert_eq!(copy["kind"], "copy");
        assert_eq!(copy["line"], 6);
        assert_eq!(copy["column"], 1);
        assert_eq!(copy["text"], "COPY --from=build /src/out /out");
        assert_eq!(stages[0]["steps"][1]["kind"], "run");
        assert_eq!(stages[1]["steps"][1]["kind"], "config");
    }

    #[test]
    fn edges_include_steps_in_sequence_and_copy_from() {
        let doc = render(MULTI_STAGE, None);
        let edges = doc["edges"].as_array().unwrap();
        let edge = |a: (usize, usize), b: (usize, usize)| json!({"from": {"stage": a.0, "step": a.1}, "to": {"stage": b.0, "step": b.1}});
        assert!(edges.contains(&edge((0, 0), (0, 1))), "{edges:?}");
        assert!(edges.contains(&edge((0, 1), (1, 0))), "{edges:?}");
        assert!(edges.contains(&edge((1, 0), (1, 1))), "{edges:?}");
        assert_eq!(edges.len(), 3);
    }

    #[test]
    fn a_target_plans_only_the_stages_it_needs() {
        let doc = render(MULTI_STAGE, Some("build"));
        assert_eq!(doc["stages"].as_array().unwrap().len(), 1);
        assert_eq!(doc["target"], 0);
        assert_eq!(doc["edges"].as_array().unwrap().len(), 1);
    }
}
