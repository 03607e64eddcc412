//! `kiln cache explain`: after a `--cache` build, each step is a hit until one of its inputs
//! changes, and then the miss names that input.
//!
//! Each test builds for real (a registry serving busybox, one cache directory), changes one
//! input of one kind, and reads explain's report.

use crate::support::{Kiln, Project, Registry};

const DOCKERFILE: &str = "ARG BASE\nFROM ${BASE}\nARG VERSION\nENV MODE=a\nCOPY app/ /app/\nRUN echo $VERSION $MODE > /out\n";

struct World {
    _registry: Registry,
    base: String,
    cache_dir: tempfile::TempDir,
    project: Project,
}

impl World {
    fn built() -> World {
        let (registry, base) = Registry::with_busybox();
        let world = World {
            _registry: registry,
            base,
            cache_dir: tempfile::tempdir().unwrap(),
            project: Project::new()
                .dockerfile(DOCKERFILE)
                .file("app/a.txt", "one\n")
                .file("app/b.txt", "two\n"),
        };
        Kiln::build_in(world.project.path(), world.cache_dir.path())
            .args(["--cache", "--no-push", "--insecure-pull"])
            .args(world.base_args("1"))
            .run()
            .success();
        world
    }

    fn base_args(&self, version: &str) -> Vec<String> {
        vec![
            "--build-arg".into(),
            format!("BASE={}", self.base),
            "--build-arg".into(),
            format!("VERSION={version}"),
        ]
    }

    /// `kiln cache explain` with `args`: its report, one line per step, then the details.
    fn explain(&self, version: &str, args: &[&str]) -> String {
        Kiln::cache_explain(self.project.path(), self.cache_dir.path())
            .args(["--insecure-pull"])
            .args(self.base_args(version))
            .args(args)
            .run()
            .success()
    }
}

/// The report line of the step whose instruction starts with `instruction`.
fn line<'a>(report: &'a str, instruction: &str) -> &'a str {
    report
        .lines()
        .find(|line| line.contains(&format!(" {instruction}")))
        .unwrap_or_else(|| panic!("no {instruction} in:\n{report}"))
}

#[test]
fn an_unchanged_build_hits_every_cacheable_step() {
    let world = World::built();
    let report = world.explain("1", &[]);
    assert!(line(&report, "COPY").ends_with(": hit"), "{report}");
    assert!(line(&report, "RUN").ends_with(": hit"), "{report}");
    assert!(line(&report, "ENV").contains("metadata"), "{report}");
}

#[test]
fn a_changed_context_file_is_named_and_later_steps_blame_an_earlier_step() {
    let world = World::built();
    std::fs::write(world.project.path().join("app/b.txt"), "changed\n").unwrap();
    let report = world.explain("1", &[]);
    let copy = line(&report, "COPY");
    assert!(copy.contains("miss: file app/b.txt changed"), "{report}");
    assert!(!copy.contains("a.txt"), "{report}");
    assert!(
        line(&report, "RUN").contains("miss: an earlier step changed"),
        "{report}"
    );
}

#[test]
fn a_changed_build_arg_is_named() {
    let world = World::built();
    let report = world.explain("2", &[]);
    assert!(
        line(&report, "RUN").contains("miss: arg VERSION changed"),
        "{report}"
    );
    assert!(report.contains("arg VERSION: 1 -> 2"), "{report}");
}

#[test]
fn a_changed_env_value_is_named() {
    let world = World::built();
    std::fs::write(
        world.project.path().join("Dockerfile"),
        DOCKERFILE.replace("MODE=a", "MODE=b"),
    )
    .unwrap();
    let report = world.explain("1", &[]);
    assert!(line(&report, "RUN").contains("env MODE"), "{report}");
}

#[test]
fn a_changed_instruction_is_named() {
    let world = World::built();
    std::fs::write(
        world.project.path().join("Dockerfile"),
        DOCKERFILE.replace("> /out", "> /out2"),
    )
    .unwrap();
    let report = world.explain("1", &[]);
    let run = line(&report, "RUN");
    assert!(
        run.contains("instruction") && run.contains("command"),
        "{report}"
    );
}

#[test]
fn a_changed_platform_is_named() {
    let registry = Registry::start();
    let base = registry.image("multi:1");
    crate::support::base::push_multi_platform(&base, registry.scratch());
    let cache_dir = tempfile::tempdir().unwrap();
    let project = Project::new().dockerfile("ARG BASE\nFROM ${BASE}\nWORKDIR /work\n");
    let base_arg = format!("BASE={base}");
    Kiln::build_in(project.path(), cache_dir.path())
        .args([
            "--cache",
            "--no-push",
            "--insecure-pull",
            "--build-arg",
            &base_arg,
        ])
        .run()
        .success();
    let other = if crate::support::base::host_arch() == "amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let report = Kiln::cache_explain(project.path(), cache_dir.path())
        .args([
            "--insecure-pull",
            "--build-arg",
            &base_arg,
            "--custom-platform",
            other,
        ])
        .run()
        .success();
    let workdir = line(&report, "WORKDIR");
    assert!(
        workdir.contains("platform") && workdir.contains("base image digest"),
        "{report}"
    );
}
