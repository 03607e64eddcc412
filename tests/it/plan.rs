//! `kiln plan` prints the build graph without a registry: base images named in the Dockerfile
//! do not exist anywhere, and planning must still succeed.

use serde_json::{Value, json};

use crate::support::{Kiln, Project};

/// Three stages: `deps` and `build` from an image nobody can pull, `final` from scratch copying
/// from `build`; `tools` is unused by the final stage.
const DOCKERFILE: &str = "\
FROM 127.0.0.1:1/nowhere/base:1 AS deps
RUN echo deps > /deps

FROM deps AS build
ARG VERSION=0
COPY app.txt /src/app.txt
RUN echo $VERSION >> /src/app.txt

FROM 127.0.0.1:1/nowhere/tools:1 AS tools
RUN echo tools

FROM scratch
COPY --from=build /src/app.txt /app.txt
CMD [\"/app\"]
";

fn project() -> Project {
    Project::new()
        .dockerfile(DOCKERFILE)
        .file("app.txt", "app\n")
}

fn plan_json(project: &Project, extra: &[&str]) -> Value {
    let stdout = Kiln::plan(project.path())
        .args(["--format", "json"])
        .args(extra)
        .run()
        .success();
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn text_lists_every_needed_stage_and_step_without_a_registry() {
    let project = project();
    let text = Kiln::plan(project.path()).run().success();
    for expected in [
        "stage 0 \"deps\" (line 1) FROM 127.0.0.1:1/nowhere/base:1",
        "stage 1 \"build\" (line 4) FROM stage 0 \"deps\"",
        "stage 2 (line 12) FROM scratch",
        "  2: RUN echo deps > /deps [run]",
        "  6: COPY app.txt /src/app.txt [copy]",
        "  7: RUN echo $VERSION >> /src/app.txt [run]",
        "  13: COPY --from=build /src/app.txt /app.txt [copy]",
        "  14: CMD [\"/app\"] [config]",
        "depends on: stage 1 \"build\"",
        "base image configs were not fetched",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("tools"), "unused stage planned:\n{text}");
}

#[test]
fn json_has_stages_steps_and_the_copy_from_edge() {
    let doc = plan_json(&project(), &["--build-arg", "VERSION=2"]);
    let stages = doc["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3);
    let steps: Vec<usize> = stages
        .iter()
        .map(|s| s["steps"].as_array().unwrap().len())
        .collect();
    assert_eq!(steps, vec![1, 3, 2]);
    assert_eq!(doc["target"], 2);
    assert_eq!(doc["build_order"], json!([0, 1, 2]));
    assert_eq!(stages[1]["base"], json!({"stage": 0}));
    let edges = doc["edges"].as_array().unwrap();
    let copy_from = json!({"from": {"stage": 1, "step": 2}, "to": {"stage": 2, "step": 0}});
    let from_stage = json!({"from": {"stage": 0, "step": 0}, "to": {"stage": 1, "step": 0}});
    assert!(edges.contains(&copy_from), "{edges:?}");
    assert!(edges.contains(&from_stage), "{edges:?}");
    // Within-stage sequence edges: 2 in `build`, 1 in the final stage.
    assert_eq!(edges.len(), 5, "{edges:?}");
    let run = &stages[1]["steps"][2];
    assert_eq!(run["kind"], "run");
    assert!(
        run["created_by"].as_str().unwrap().contains("VERSION=2"),
        "{run}"
    );
}

#[test]
fn dot_is_a_digraph_listing_every_step() {
    let project = project();
    let dot = Kiln::plan(project.path())
        .args(["--format", "dot"])
        .run()
        .success();
    assert!(dot.starts_with("digraph"), "{dot}");
    for node in ["s0_0", "s1_0", "s1_1", "s1_2", "s2_0", "s2_1"] {
        assert!(
            dot.contains(&format!("    {node} [label=")),
            "{node}:\n{dot}"
        );
    }
    assert!(dot.contains("s1_2 -> s2_0;"), "{dot}");
    assert_eq!(dot.matches("subgraph cluster_").count(), 3, "{dot}");
    assert_eq!(dot.matches('{').count(), dot.matches('}').count(), "{dot}");
}

#[test]
fn target_drops_stages_the_target_does_not_need() {
    let doc = plan_json(&project(), &["--target", "tools"]);
    let stages = doc["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 1, "{doc}");
    assert_eq!(stages[0]["name"], "tools");
    assert_eq!(doc["edges"], json!([]));
}

#[test]
fn an_unknown_instruction_exits_non_zero_naming_file_line_and_column() {
    let project = Project::new().dockerfile("FROM scratch\n\n  FROBNICATE the build\n");
    let stderr = Kiln::plan(project.path()).run().failure();
    assert!(stderr.contains("Dockerfile:3:3"), "{stderr}");
    assert!(stderr.contains("FROBNICATE the build"), "{stderr}");
}

#[test]
fn plan_shows_platform_heredocs_mounts_and_copy_flags() {
    let project = Project::new().dockerfile(
        "FROM --platform=$TARGETPLATFORM 127.0.0.1:1/nowhere/base:1\n\
         ARG TARGETARCH\n\
         RUN --mount=type=secret,id=tok --network=none <<EOF\n\
         echo $TARGETARCH\n\
         EOF\n\
         COPY --parents --exclude=*.md --link --chmod=a+X ./src/./app <<notes /app/\n\
         for $TARGETARCH\n\
         notes\n",
    );
    let doc = plan_json(&project, &["--custom-platform", "linux/arm64/v8"]);
    assert_eq!(
        doc["platform"],
        json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
    );
    let steps = &doc["stages"][0]["steps"];
    let run = &steps[1]["run"];
    assert_eq!(run["network"], "none");
    assert_eq!(run["mounts"][0]["type"], "secret");
    assert_eq!(run["mounts"][0]["id"], "tok");
    assert_eq!(run["argv"], json!(["/bin/sh", "-c", "echo $TARGETARCH\n"]));
    let copy = &steps[2]["copy"];
    assert_eq!(copy["parents"], true);
    assert_eq!(copy["link"], true);
    assert_eq!(copy["excludes"], json!(["*.md"]));
    assert_eq!(copy["chmod"], "a+X");
    assert_eq!(
        copy["contents"],
        json!([{"name": "notes", "data": "for arm64\n"}])
    );

    let stderr = Kiln::plan(project.path())
        .args(["--custom-platform", "linux"])
        .run()
        .failure();
    assert!(stderr.contains("--custom-platform"), "{stderr}");
}
