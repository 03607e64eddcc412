//! `RUN --mount=type=cache,sharing=...` across two concurrent builds sharing one cache
//! directory (BuildKit's semantics): `shared` lets both commands use the cache at once, `locked`
//! makes the second wait until the first is done, `private` gives the second its own copy.
//!
//! Each command drops an `in-<name>` marker into the cache, waits (up to `WAIT` seconds) until
//! it sees two markers, and prints how many it saw (`peak-<name>=N`) before removing its own.
//! When two commands are in one directory at once, at least the one that was there first sees
//! 2 (the other may arrive after it left); a command alone in it prints 1 after the wait.

use std::time::Duration;

use crate::support::{Kiln, Outcome, Project, Registry};

fn dockerfile(sharing: &str) -> String {
    format!(
        "ARG BASE\n\
         FROM ${{BASE}}\n\
         ARG NAME\n\
         ARG WAIT\n\
         RUN --mount=type=cache,target=/c,id=concurrent,sharing={sharing} \
             touch /c/in-$NAME; i=0; \
             while [ $i -lt $((WAIT * 4)) ] && [ $(ls /c | grep -c '^in-') -lt 2 ]; \
             do sleep 0.25; i=$((i + 1)); done; \
             echo peak-$NAME=$(ls /c | grep -c '^in-'); sleep 0.5; rm /c/in-$NAME\n"
    )
}

/// Runs two builds of `sharing` at once over one cache directory; returns both logs.
fn pair(registry: &Registry, base: &str, sharing: &str, wait: u32) -> [String; 2] {
    let project = Project::new().dockerfile(&dockerfile(sharing));
    let cache_dir = tempfile::tempdir().unwrap();
    let running = ["a", "b"].map(|name| {
        Kiln::build_in(project.path(), cache_dir.path())
            .args(["--build-arg", &format!("BASE={base}")])
            .args(["--build-arg", &format!("NAME={name}")])
            .args(["--build-arg", &format!("WAIT={wait}")])
            .push_to(&registry.image(&format!("sharing-{sharing}:{name}")))
            .spawn()
    });
    running.map(|build| {
        let outcome: Outcome = build.wait_within(Duration::from_secs(120));
        let log = outcome.everything_printed();
        outcome.success();
        log
    })
}

#[test]
fn cache_mounts_shared_run_together_locked_wait_for_each_other_and_private_get_their_own_copy() {
    let (registry, base) = Registry::with_busybox();
    // Generous: both stop waiting as soon as they meet.
    let [a, b] = pair(&registry, &base, "shared", 30);
    assert!(
        a.contains("peak-a=2") || b.contains("peak-b=2"),
        "shared: the two commands never were in the cache at once:\n{a}\n{b}"
    );

    let [a, b] = pair(&registry, &base, "locked", 3);
    assert!(a.contains("peak-a=1"), "locked: a was not alone:\n{a}");
    assert!(b.contains("peak-b=1"), "locked: b was not alone:\n{b}");

    let [a, b] = pair(&registry, &base, "private", 3);
    assert!(a.contains("peak-a=1"), "private: a shared its copy:\n{a}");
    assert!(b.contains("peak-b=1"), "private: b shared its copy:\n{b}");
}
