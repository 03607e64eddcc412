//! Context files are hashed once: the cache index remembers each file's content hash by its
//! identity (device, inode, size, mtime, ctime, mode), a rebuild reads only what changed, and an
//! identity is only recorded once its times are safely in the past (git's "racy clean" rule).
//! Also BuildKit's ARG rule for COPY keys. Each build pushes to the real registry; results are
//! checked with skopeo/umoci.

use std::time::{Duration, Instant};

use crate::cache::{World, app, cached, read};
use crate::support::Project;

/// The build statistic kiln logs at debug level after computing the keys.
fn context_line(log: &str) -> &str {
    log.lines()
        .find(|line| line.contains("context: ") && line.contains("files hashed"))
        .unwrap_or_else(|| panic!("no context statistic in:\n{log}"))
}

#[test]
fn unchanged_context_files_are_not_read_again_and_an_edit_restoring_size_and_mtime_is_seen() {
    let world = World::new();
    let project = app();
    let created = Instant::now();
    let debug = ["--verbosity", "debug"];

    // Just written: hashed, but too fresh to vouch for their content later.
    let first = world.build(&project, "app:1", &debug).success_log();
    assert!(
        context_line(&first).ends_with("context: 2 files hashed, 0 from the identity cache"),
        "{first}"
    );
    // Settled now (the racy margin is 2 s): read once more, and recorded this time.
    std::thread::sleep(Duration::from_millis(2_500).saturating_sub(created.elapsed()));
    let second = world.build(&project, "app:2", &debug).success_log();
    assert!(
        context_line(&second).ends_with("context: 2 files hashed, 0 from the identity cache"),
        "the first build recorded racy identities:\n{second}"
    );
    assert_eq!(cached(&second), 2, "{second}");

    // Same size, mtime put back as `touch -d` would: only the ctime tells.
    let edited = project.path().join("app/a.txt");
    let mtime = std::fs::metadata(&edited).unwrap().modified().unwrap();
    std::fs::write(&edited, "ONE\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&edited)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&edited).unwrap().modified().unwrap(),
        mtime
    );
    let third = world.build(&project, "app:3", &debug);
    let log = third.everything_printed();
    third.success();
    assert!(
        context_line(&log).ends_with("context: 1 files hashed, 1 from the identity cache"),
        "b.txt must come from the identity cache, a.txt be read:\n{log}"
    );
    assert_eq!(cached(&log), 0, "{log}");
    assert!(log.contains("42ran"), "{log}");
    let root = world.unpack("app:3");
    assert_eq!(read(&root, "app/a.txt"), "ONE\n");
    assert_eq!(read(&root, "ran"), "ONE\n");
}

#[test]
fn a_changed_arg_leaves_a_copy_that_does_not_use_it_cached_and_reruns_the_run() {
    let world = World::new();
    let project = Project::new()
        .dockerfile(
            "ARG BASE\nFROM ${BASE}\nARG VERSION\nLABEL version=$VERSION\nCOPY app/ /app/\n\
             RUN echo $((40+2))ran && echo $VERSION > /version\n",
        )
        .file("app/a.txt", "one\n");
    world
        .build(&project, "v:1", &["--build-arg", "VERSION=1"])
        .success();
    let outcome = world.build(&project, "v:2", &["--build-arg", "VERSION=2"]);
    let log = outcome.everything_printed();
    outcome.success();
    assert!(log.contains("CACHED COPY app/ /app/"), "{log}");
    assert_eq!(cached(&log), 1, "only the COPY: {log}");
    assert!(log.contains("42ran"), "the RUN sees VERSION: {log}");
    let (one, two) = (world.layers("v:1"), world.layers("v:2"));
    assert_eq!(one.len(), 3, "base, COPY, RUN: {one:?}");
    assert_eq!(one[..2], two[..2], "base and COPY layers are shared");
    assert_ne!(one[2], two[2]);
    let root = world.unpack("v:2");
    assert_eq!(read(&root, "version"), "2\n");
    assert_eq!(read(&root, "app/a.txt"), "one\n");
}
