//! Independent stages build at the same time, bounded by `--jobs`; a failing stage fails the
//! build with its own error.

use crate::support::tools::unpack;
use crate::support::{Kiln, Project, Registry, build_and_unpack};

/// Two independent stages that each record when their RUN started and ended (seconds), and a
/// final stage collecting both records.
const DIAMOND: &str = r#"ARG BASE
FROM ${BASE} AS left
RUN date +%s > /start && sleep 3 && date +%s > /end

FROM ${BASE} AS right
RUN date +%s > /start && sleep 3 && date +%s > /end

FROM ${BASE}
COPY --from=left /start /left-start
COPY --from=left /end /left-end
COPY --from=right /start /right-start
COPY --from=right /end /right-end
"#;

/// The `[start, end]` seconds each of the two stages ran its RUN, from the built image.
fn intervals(jobs: &str) -> ((u64, u64), (u64, u64)) {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(DIAMOND);
    let destination = registry.image("diamond:1");
    Kiln::build(project.path())
        .args(["--build-arg", &format!("BASE={base}"), "--jobs", jobs])
        .push_to(&destination)
        .run()
        .success();
    let root = unpack(&format!("docker://{destination}"), registry.scratch());
    let read = |name: &str| -> u64 {
        std::fs::read_to_string(root.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (
        (read("left-start"), read("left-end")),
        (read("right-start"), read("right-end")),
    )
}

#[test]
fn independent_stages_run_concurrently_with_two_jobs() {
    let (left, right) = intervals("2");
    assert!(
        left.0 < right.1 && right.0 < left.1,
        "stages did not overlap: left {left:?}, right {right:?}"
    );
}

#[test]
fn one_job_builds_stages_one_after_the_other() {
    let (left, right) = intervals("1");
    assert!(
        left.1 <= right.0,
        "stages overlapped with --jobs 1: left {left:?}, right {right:?}"
    );
}

#[test]
fn a_failing_stage_fails_the_build_with_its_own_error() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(
        "ARG BASE\nFROM ${BASE} AS ok\nRUN sleep 1\nFROM ${BASE} AS broken\nRUN exit 7\n\
         FROM ${BASE}\nCOPY --from=ok /bin/sh /a\nCOPY --from=broken /bin/sh /b\n",
    );
    let stderr = Kiln::build(project.path())
        .args(["--build-arg", &format!("BASE={base}"), "--jobs", "2"])
        .push_to(&registry.image("broken:1"))
        .run()
        .failure();
    assert!(stderr.contains("Dockerfile:5"), "{stderr}");
    assert!(stderr.contains("RUN exit 7"), "{stderr}");
    assert!(
        stderr.contains("stage \"broken\"") || stderr.contains("broken"),
        "{stderr}"
    );
}

#[test]
fn a_stage_read_by_two_others_is_taken_over_only_by_the_last_reader() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base} AS base\nRUN echo base > /base\n\
         FROM base AS child\nRUN echo child > /child\n\
         FROM base AS sibling\nRUN sleep 1 && cat /base > /sibling\n\
         FROM {base}\nCOPY --from=child /child /base /out/\nCOPY --from=sibling /sibling /out/\n"
    ));
    let root = build_and_unpack(&registry, &project, "family:1");
    for (name, content) in [
        ("child", "child\n"),
        ("base", "base\n"),
        ("sibling", "base\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(root.join("out").join(name)).unwrap(),
            content
        );
    }
}
