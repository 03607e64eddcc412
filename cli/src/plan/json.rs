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
//!                "kind": "run" | "copy" | "workdir" | "config", "created_by": "WORKDIR /src",
//!                "run": {"argv": [...], "env": ["PATH=/usr/bin:/bin", ...], "user": null,
//!                        "workdir": "/", "network": "default" | "none" | "host",
//!                        "security": "sandbox" | "insecure", "mounts": [{"type": "cache", ...}],
//!                        "script": {"name": "EOF", "data": "#!/bin/sh\n..."} | null,
//!                        "proxy_args": ["HTTP_PROXY"]},              (RUN steps only)
//!                "copy": {"from": "context" | {"stage": 0} | {"image": "alpine"},
//!                         "sources": [...], "contents": [{"name": "EOF", "data": "..."}],
//!                         "dest": "/app/", "chown": null, "chmod": "u+x" | "755" | null,
//!                         "link": false, "parents": false, "excludes": [...],
//!                         "checksum": null, "keep_git_dir": false}}  (COPY/ADD steps only)
//!     "config": {"env": [...], "cmd": null, "labels": {}, ...}  (after the stage's last step)
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

use kiln_graph::{
    BaseRef, Chmod, CopyFrom, CopyStep, ImageState, InlineFile, Mount, NetworkMode, Platform,
    RunStep, SecurityMode, StepId, StepKind,
};
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
    /// The image config after the stage's last step (what its own steps set; see the note on
    /// base configs).
    config: &'a ImageState,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<Run<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copy: Option<Copy<'a>>,
}

#[derive(Serialize)]
struct Run<'a> {
    argv: &'a [String],
    /// `NAME=value`: the stage's ENV and the ARGs in scope, as the command sees them.
    env: Vec<String>,
    user: Option<&'a str>,
    workdir: &'a str,
    network: NetworkMode,
    security: SecurityMode,
    mounts: &'a [Mount],
    script: Option<&'a InlineFile>,
    /// Names only: proxy values may carry credentials.
    proxy_args: Vec<&'a str>,
}

#[derive(Serialize)]
struct Copy<'a> {
    from: From<'a>,
    sources: &'a [String],
    contents: &'a [InlineFile],
    dest: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a Chmod>,
    add: bool,
    link: bool,
    parents: bool,
    excludes: &'a [String],
    checksum: Option<&'a str>,
    keep_git_dir: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum From<'a> {
    Context,
    Stage(usize),
    Image(&'a str),
}

fn run(step: &RunStep) -> Run<'_> {
    Run {
        argv: &step.argv,
        env: step.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        user: step.user.as_deref(),
        workdir: &step.workdir,
        network: step.network,
        security: step.security,
        mounts: &step.mounts,
        script: step.script.as_ref(),
        proxy_args: step.proxy_env.iter().map(|(k, _)| k.as_str()).collect(),
    }
}

fn copy(step: &CopyStep) -> Copy<'_> {
    Copy {
        from: match &step.from {
            CopyFrom::Context => From::Context,
            CopyFrom::Stage(index) => From::Stage(*index),
            CopyFrom::Image(image) => From::Image(image),
        },
        sources: &step.sources,
        contents: &step.contents,
        dest: &step.dest,
        chown: step.chown.as_deref(),
        chmod: step.chmod.as_ref(),
        add: step.add,
        link: step.link,
        parents: step.parents,
        excludes: &step.excludes,
        checksum: step.checksum.as_deref(),
        keep_git_dir: step.keep_git_dir,
    }
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
                    run: match &step.kind {
                        StepKind::Run(r) => Some(run(r)),
                        _ => None,
                    },
                    copy: match &step.kind {
                        StepKind::Copy(c) => Some(copy(c)),
                        _ => None,
                    },
                })
                .collect(),
            config: stage.final_state(),
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
    fn run_and_copy_details_show_every_flag() {
        let doc = render(
            "FROM alpine:3\nRUN --mount=type=cache,target=/c,id=x --network=none --security=insecure <<EOF\n#!/bin/sh\necho hi\nEOF\nCOPY --link --parents --exclude=*.md --chmod=u+x ./a/./b <<f /d/\nhi\nf\n",
            None,
        );
        let steps = &doc["stages"][0]["steps"];
        let run = &steps[0]["run"];
        assert_eq!(run["argv"], json!(["/bin/sh", "-c", "/dev/pipes/EOF"]));
        assert_eq!(run["network"], "none");
        assert_eq!(run["security"], "insecure");
        assert_eq!(
            run["mounts"],
            json!([{"type": "cache", "target": "/c", "id": "x", "sharing": "shared", "from": null,
                    "source": null, "readonly": false, "mode": null, "uid": null, "gid": null}])
        );
        assert_eq!(
            run["script"],
            json!({"name": "EOF", "data": "#!/bin/sh\necho hi\n"})
        );
        assert!(steps[0].get("copy").is_none());
        let copy = &steps[1]["copy"];
        assert_eq!(copy["from"], "context");
        assert_eq!(copy["sources"], json!(["./a/./b"]));
        assert_eq!(copy["contents"], json!([{"name": "f", "data": "hi\n"}]));
        assert_eq!(copy["chmod"], "u+x");
        assert_eq!(
            (copy["link"].clone(), copy["parents"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(copy["excludes"], json!(["*.md"]));
        assert_eq!(copy["checksum"], Value::Null);
    }

    #[test]
    fn a_target_plans_only_the_stages_it_needs() {
        let doc = render(MULTI_STAGE, Some("build"));
        assert_eq!(doc["stages"].as_array().unwrap().len(), 1);
        assert_eq!(doc["target"], 0);
        assert_eq!(doc["edges"].as_array().unwrap().len(), 1);
    }
}
