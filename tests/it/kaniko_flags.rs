//! Kaniko executor flags with an effect beyond parsing, end to end against a real registry:
//! `--context-sub-path`, `--annotation`, `$BUILDER_OUTPUT`, and the refusals that name why.

use crate::support::tools::raw_manifest;
use crate::support::{Kiln, Project, Registry};

#[test]
fn context_sub_path_annotations_and_builder_output_reach_the_pushed_image() {
    let registry = Registry::start();
    let project = Project::new()
        .file(
            "services/api/Dockerfile",
            "FROM scratch\nCOPY api.txt /api.txt\n",
        )
        .file("services/api/api.txt", "api\n")
        .file("Dockerfile", "FROM scratch\nCOPY missing /missing\n");
    let destination = registry.image("team/api:2.0");
    let output_dir = project.out("builder-output");
    let stdout = Kiln::build(project.path())
        .args([
            "--context-sub-path=services/api",
            "--annotation",
            "org.opencontainers.image.source=https://example.test/api",
            "--annotation=team=platform",
            "--destination",
            &destination,
        ])
        .env("BUILDER_OUTPUT", &output_dir)
        .run()
        .success();
    let digest = stdout.trim();

    let manifest: serde_json::Value = serde_json::from_slice(&raw_manifest(&destination)).unwrap();
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({
            "org.opencontainers.image.source": "https://example.test/api",
            "team": "platform",
        })
    );
    let images = std::fs::read_to_string(output_dir.join("images")).unwrap();
    let line: serde_json::Value = serde_json::from_str(images.trim()).unwrap();
    assert_eq!(line["name"], serde_json::json!(destination));
    assert_eq!(line["digest"], serde_json::json!(digest));
}

#[test]
fn kaniko_flags_kiln_cannot_honour_are_refused_saying_why() {
    let project = Project::new().dockerfile("FROM scratch\n");
    let err = Kiln::build(project.path())
        .args(["--no-push", "--bucket", "my-bucket"])
        .run()
        .failure();
    assert!(
        err.contains("GCS build contexts are not supported"),
        "{err}"
    );
    let err = Kiln::build(project.path())
        .args(["--no-push", "--context-sub-path", "nope"])
        .run()
        .failure();
    assert!(
        err.contains("--context-sub-path \"nope\"") && err.contains("not found"),
        "{err}"
    );
    let err = Kiln::build(project.path())
        .args(["--no-push", "--annotation", "novalue"])
        .run()
        .failure();
    assert!(
        err.contains("--annotation \"novalue\" must be KEY=VALUE"),
        "{err}"
    );
}
