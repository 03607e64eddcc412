//! Eight builds of different Dockerfiles at once, sharing one cache directory (store, index,
//! work area, `RUN --mount=type=cache` directories) and one cache repository: all succeed, and
//! each pushes the digest it gives when built alone with nothing shared. `--reproducible`
//! makes a digest depend only on the inputs, so any difference is something the sharing did.

use std::time::Instant;

use kiln_cas::Verifier;

use super::check::{cache_is_consistent, cached_steps, mounts_under, printed_digest, tag_digest};
use crate::support::{Kiln, Outcome, Project, Registry};

/// Every Dockerfile starts with the same COPY, so the builds race to record the same key; the
/// rest covers what a build does to a shared cache directory: RUN (overlay snapshots), cache
/// mounts with each sharing mode, deletions, stages read by `COPY --from`, WORKDIR, USER,
/// `--network=none`, a scratch image.
const DOCKERFILES: [&str; 8] = [
    "ARG BASE\nFROM ${BASE}\nCOPY common/ /common/\nRUN echo zero > /id\n",
    "ARG BASE\nFROM ${BASE}\nCOPY common/ /common/\nRUN --mount=type=cache,id=shared,target=/var/cache/shared,sharing=locked echo one >> /var/cache/shared/log && echo one > /id\n",
    "ARG BASE\nFROM ${BASE} AS build\nCOPY common/ /common/\nRUN cat /common/a /common/b > /all\nFROM ${BASE}\nCOPY --from=build /all /all\n",
    "ARG BASE\nFROM ${BASE}\nCOPY common/ /common/\nWORKDIR /work/three\nCOPY common/a ./\nRUN ls -l > /listing\n",
    "ARG BASE\nFROM ${BASE} AS base\nCOPY common/ /common/\nFROM scratch\nCOPY --from=base /common/ /\n",
    "ARG BASE\nFROM ${BASE}\nCOPY common/ /common/\nRUN mkdir -p /five/a && echo five > /five/a/b && rm /etc/group\n",
    "ARG BASE\nFROM ${BASE}\nCOPY common/ /common/\nUSER app\nRUN --mount=type=cache,target=/tmp/cache,uid=1000,sharing=private echo six > /tmp/six\n",
    "ARG BASE\nFROM ${BASE}\nCOPY common/ /common/\nENV SEVEN=7\nLABEL seven=7\nRUN --network=none --mount=type=cache,id=shared,target=/c,sharing=shared echo $SEVEN >> /c/log && echo $SEVEN > /seven\n",
];

/// The COPY, RUN and WORKDIR steps of all eight Dockerfiles.
const CACHEABLE_STEPS: usize = 19;

fn project(dockerfile: &str) -> Project {
    Project::new()
        .dockerfile(dockerfile)
        .file("common/a", "a\n")
        .file("common/b", "b\n")
}

/// `kiln build --reproducible` of `project` into `destination`, with `args`.
fn build(
    project: &Project,
    cache_dir: &std::path::Path,
    base: &str,
    destination: &str,
    args: &[&str],
) -> Outcome {
    Kiln::build_in(project.path(), cache_dir)
        .args(["--reproducible", "--build-arg", &format!("BASE={base}")])
        .args(args)
        .push_to(destination)
        .run()
}

/// Runs `build(i)` for every Dockerfile on its own thread at once; returns the outcomes.
fn all_at_once(build: impl Fn(usize) -> Outcome + Sync) -> Vec<Outcome> {
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..DOCKERFILES.len())
            .map(|i| {
                let build = &build;
                scope.spawn(move || build(i))
            })
            .collect();
        running
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect()
    })
}

#[test]
fn eight_builds_sharing_one_cache_directory_and_repository_push_the_digests_they_push_alone() {
    let (registry, base) = Registry::with_busybox();
    let projects: Vec<Project> = DOCKERFILES.iter().map(|d| project(d)).collect();

    // Alone: a cache directory each, no cache at all, nothing shared but the registry.
    let started = Instant::now();
    let alone: Vec<String> = all_at_once(|i| {
        let cache_dir = tempfile::tempdir().unwrap();
        build(
            &projects[i],
            cache_dir.path(),
            &base,
            &registry.image(&format!("alone/{i}:1")),
            &[],
        )
    })
    .into_iter()
    .map(|outcome| printed_digest(&outcome.success()))
    .collect();
    let alone_time = started.elapsed();

    // Shared, twice: the first round races to build and record, the second reads what the
    // first recorded (locally and in the repository).
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_repo = registry.image("shared/cache");
    let mut verifier = Verifier::new();
    let mut rounds = Vec::new();
    for round in 1..=2 {
        let started = Instant::now();
        let outcomes = all_at_once(|i| {
            build(
                &projects[i],
                cache_dir.path(),
                &base,
                &registry.image(&format!("shared/{i}:{round}")),
                &["--cache", "--cache-repo", &cache_repo],
            )
        });
        let elapsed = started.elapsed();
        let mut cached = 0;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let log = outcome.everything_printed();
            let digest = printed_digest(&outcome.success());
            assert_eq!(
                digest, alone[i],
                "round {round}: Dockerfile {i} pushed another digest than alone:\n{log}"
            );
            assert_eq!(
                tag_digest(&registry.image(&format!("shared/{i}:{round}"))),
                Some(digest),
                "round {round}: Dockerfile {i}"
            );
            cached += cached_steps(&log);
        }
        if round == 2 {
            assert_eq!(
                cached, CACHEABLE_STEPS,
                "the second round must reuse every step the first recorded"
            );
        }
        let summary = cache_is_consistent(cache_dir.path(), &mut verifier, "shared");
        assert_eq!(mounts_under(cache_dir.path()), Vec::<String>::new());
        rounds.push(format!(
            "round {round} {elapsed:.1?} ({cached} steps cached, {} records)",
            summary.steps
        ));
    }
    eprintln!(
        "concurrency: {} builds alone (at once, nothing shared) {alone_time:.1?}; sharing one cache directory and repository: {}",
        DOCKERFILES.len(),
        rounds.join(", ")
    );
}
