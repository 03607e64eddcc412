//! The layer cache, end to end: a rebuild runs nothing it has run before, any change to a
//! step's inputs re-runs it, and each of Kaniko's known cache bugs stays fixed.
//!
//! Each test builds into a real registry with a cache directory shared between its builds and
//! checks the images with skopeo/umoci. A step that runs prints a marker computed by the shell
//! (`$((40+2))ran` prints `42ran`), so the marker appears in kiln's output only when the step
//! really executed, never because its text was logged.

use std::path::Path;

use crate::support::proxy::Proxy;
use crate::support::tools::{inspect, unpack};
use crate::support::{Kiln, Outcome, Project, Registry};

/// A registry with busybox, and one cache directory for every build of the test.
pub(crate) struct World {
    registry: Registry,
    base: String,
    cache_dir: tempfile::TempDir,
}

impl World {
    pub(crate) fn new() -> World {
        let (registry, base) = Registry::with_busybox();
        World {
            registry,
            base,
            cache_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `kiln build --cache` of `project` to `name`, with `args`.
    pub(crate) fn build(&self, project: &Project, name: &str, args: &[&str]) -> Outcome {
        Kiln::build_in(project.path(), self.cache_dir.path())
            .args(["--cache", "--build-arg", &format!("BASE={}", self.base)])
            .args(args)
            .push_to(&self.registry.image(name))
            .run()
    }

    pub(crate) fn layers(&self, name: &str) -> Vec<String> {
        inspect(&format!("docker://{}", self.registry.image(name)))["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| layer.as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn unpack(&self, name: &str) -> std::path::PathBuf {
        unpack(
            &format!("docker://{}", self.registry.image(name)),
            self.registry.scratch(),
        )
    }
}

/// How many steps the log says came from the cache.
pub(crate) fn cached(log: &str) -> usize {
    log.lines().filter(|line| line.contains("CACHED ")).count()
}

pub(crate) fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap()
}

const COPY_AND_RUN: &str =
    "ARG BASE\nFROM ${BASE}\nCOPY app/ /app/\nRUN echo $((40+2))ran && cat /app/a.txt > /ran\n";

pub(crate) fn app() -> Project {
    Project::new()
        .dockerfile(COPY_AND_RUN)
        .file("app/a.txt", "one\n")
        .file("app/b.txt", "two\n")
}

#[test]
fn a_rebuild_runs_nothing_unpacks_nothing_and_reuses_every_layer() {
    let world = World::new();
    let project = app();
    let first = world.build(&project, "app:1", &[]).everything_printed();
    assert!(
        first.contains("42ran"),
        "the first build must run the RUN:\n{first}"
    );
    let second = world.build(&project, "app:2", &[]);
    let log = second.everything_printed();
    second.success();
    assert!(
        !log.contains("42ran"),
        "the rebuild ran the RUN again:\n{log}"
    );
    assert_eq!(cached(&log), 2, "{log}");
    assert!(
        !log.contains("Unpacking rootfs"),
        "a cached stage was unpacked:\n{log}"
    );
    assert_eq!(world.layers("app:1"), world.layers("app:2"));
    assert_eq!(read(&world.unpack("app:2"), "ran"), "one\n");
}

#[test]
fn touching_mtimes_or_ignored_files_still_hits() {
    let world = World::new();
    let project = app().file(".dockerignore", "app/ignored.txt\n");
    world.build(&project, "app:1", &[]).success();
    // Same content, new mtime; and a file the .dockerignore hides.
    std::fs::write(project.path().join("app/a.txt"), "one\n").unwrap();
    std::fs::write(project.path().join("app/ignored.txt"), "noise\n").unwrap();
    let log = world.build(&project, "app:2", &[]).success_log();
    assert_eq!(cached(&log), 2, "{log}");
    assert!(!log.contains("42ran"), "{log}");
}

#[test]
fn changing_a_copied_file_reruns_the_copy_and_everything_after() {
    let world = World::new();
    let project = app();
    world.build(&project, "app:1", &[]).success();
    std::fs::write(project.path().join("app/a.txt"), "changed\n").unwrap();
    let outcome = world.build(&project, "app:2", &[]);
    let log = outcome.everything_printed();
    outcome.success();
    assert_eq!(cached(&log), 0, "{log}");
    assert!(log.contains("42ran"), "{log}");
    assert_eq!(read(&world.unpack("app:2"), "ran"), "changed\n");
}

#[test]
fn renaming_a_file_inside_a_copied_directory_misses() {
    let world = World::new();
    let project = app();
    world.build(&project, "app:1", &[]).success();
    std::fs::rename(
        project.path().join("app/b.txt"),
        project.path().join("app/c.txt"),
    )
    .unwrap();
    let log = world.build(&project, "app:2", &[]).everything_printed();
    assert_eq!(cached(&log), 0, "{log}");
    let root = world.unpack("app:2");
    assert!(root.join("app/c.txt").exists() && !root.join("app/b.txt").exists());
}

#[test]
fn a_declared_arg_used_by_run_is_in_its_key_an_undeclared_one_is_not() {
    let world = World::new();
    let project = Project::new().dockerfile(
        "ARG BASE\nFROM ${BASE}\nARG VERSION\nRUN echo $((40+2))ran && echo $VERSION > /version\n",
    );
    world
        .build(
            &project,
            "v:1",
            &["--build-arg", "VERSION=1", "--build-arg", "STAMP=a"],
        )
        .success();
    // A volatile argument the Dockerfile never declares (a timestamp, a commit) changes nothing.
    let log = world
        .build(
            &project,
            "v:2",
            &["--build-arg", "VERSION=1", "--build-arg", "STAMP=b"],
        )
        .everything_printed();
    assert_eq!(cached(&log), 1, "{log}");
    let log = world
        .build(
            &project,
            "v:3",
            &["--build-arg", "VERSION=2", "--build-arg", "STAMP=b"],
        )
        .everything_printed();
    assert_eq!(cached(&log), 0, "{log}");
    assert_eq!(read(&world.unpack("v:3"), "version"), "2\n");
}

#[test]
fn arguments_that_join_to_the_same_text_are_different_keys() {
    // Kaniko joined key parts with "-": A=x-B=z,B=y and A=x,B=z-B=y collided (OSS #873).
    let world = World::new();
    let project = Project::new()
        .dockerfile("ARG BASE\nFROM ${BASE}\nARG A\nARG B\nRUN echo \"$A|$B\" > /ab\n");
    world
        .build(
            &project,
            "ab:1",
            &["--build-arg", "A=x-B=z", "--build-arg", "B=y"],
        )
        .success();
    let log = world
        .build(
            &project,
            "ab:2",
            &["--build-arg", "A=x", "--build-arg", "B=z-B=y"],
        )
        .success_log();
    assert_eq!(cached(&log), 0, "{log}");
    assert_eq!(read(&world.unpack("ab:2"), "ab"), "x|z-B=y\n");
}

#[test]
fn variables_in_copy_and_workdir_are_expanded_before_keying() {
    let world = World::new();
    let project = Project::new()
        .dockerfile("ARG BASE\nFROM ${BASE}\nARG DIR\nWORKDIR /$DIR\nCOPY a.txt /$DIR/\n")
        .file("a.txt", "a\n");
    world
        .build(&project, "dir:1", &["--build-arg", "DIR=one"])
        .success();
    world
        .build(&project, "dir:2", &["--build-arg", "DIR=two"])
        .success();
    let root = world.unpack("dir:2");
    assert!(root.join("two/a.txt").exists(), "stale layer for DIR=one");
    assert!(!root.join("one").exists());
}

#[test]
fn a_partly_cached_stage_unpacks_the_hits_before_its_first_miss() {
    let world = World::new();
    let project = Project::new().dockerfile(
        "ARG BASE\nFROM ${BASE}\nRUN echo one > /one\nARG X\nRUN echo $X > /x && cat /one > /copy\n",
    );
    world
        .build(&project, "p:1", &["--build-arg", "X=1"])
        .success();
    let log = world
        .build(&project, "p:2", &["--build-arg", "X=2"])
        .success_log();
    assert_eq!(cached(&log), 1, "{log}");
    let root = world.unpack("p:2");
    assert_eq!(read(&root, "copy"), "one\n");
    assert_eq!(read(&root, "x"), "2\n");
}

#[test]
fn files_deleted_by_a_cached_step_stay_deleted_and_leave_no_whiteout_files() {
    // Kaniko wrote `.wh.*` markers into the filesystem on a cache hit; a later step then saw or
    // copied them (OSS #796).
    let world = World::new();
    let project = Project::new().dockerfile(
        "ARG BASE\nFROM ${BASE} AS build\nRUN mkdir /d && touch /d/keep /d/gone\nRUN rm /d/gone\nARG X\nRUN echo $X > /x && ls -a /d > /listing\nFROM ${BASE}\nCOPY --from=build /d /d\nCOPY --from=build /listing /listing\n",
    );
    world
        .build(&project, "w:1", &["--build-arg", "X=1"])
        .success();
    let log = world
        .build(&project, "w:2", &["--build-arg", "X=2"])
        .success_log();
    // The two RUNs before the changed ARG, and both COPY --from: the files they take are the
    // same as last time, so they re-converge on their content keys.
    assert_eq!(cached(&log), 4, "{log}");
    let root = world.unpack("w:2");
    assert_eq!(read(&root, "listing"), ".\n..\nkeep\n");
    let copied: Vec<_> = std::fs::read_dir(root.join("d"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(copied, ["keep"]);
}

#[test]
fn copy_from_a_changed_stage_is_not_served_stale() {
    let world = World::new();
    let project = Project::new()
        .dockerfile("ARG BASE\nFROM ${BASE} AS src\nCOPY a.txt /a.txt\nFROM ${BASE}\nCOPY --from=src /a.txt /copied\n")
        .file("a.txt", "old\n");
    world.build(&project, "f:1", &[]).success();
    std::fs::write(project.path().join("a.txt"), "new\n").unwrap();
    world.build(&project, "f:2", &[]).success();
    assert_eq!(read(&world.unpack("f:2"), "copied"), "new\n");
}

#[test]
fn a_fully_cached_multi_stage_build_unpacks_no_stage() {
    let world = World::new();
    let project = Project::new().dockerfile(
        "ARG BASE\nFROM ${BASE} AS a\nRUN echo a > /a\nFROM ${BASE}\nCOPY --from=a /a /from-a\nRUN cat /from-a > /b\n",
    );
    world.build(&project, "m:1", &[]).success();
    let log = world.build(&project, "m:2", &[]).success_log();
    assert_eq!(cached(&log), 3, "{log}");
    assert!(!log.contains("Unpacking rootfs"), "{log}");
    assert_eq!(world.layers("m:1"), world.layers("m:2"));
}

#[test]
fn run_layers_are_not_cached_with_cache_run_layers_false() {
    let world = World::new();
    let project = app();
    world.build(&project, "r:1", &[]).success();
    let outcome = world.build(&project, "r:2", &["--cache-run-layers=false"]);
    let log = outcome.everything_printed();
    outcome.success();
    assert!(log.contains("42ran"), "{log}");
    assert_eq!(cached(&log), 1, "the COPY still hits:\n{log}");
}

#[test]
fn a_build_without_cache_flag_neither_reads_nor_writes_the_cache() {
    let world = World::new();
    let project = app();
    world.build(&project, "n:1", &[]).success();
    let outcome = Kiln::build_in(project.path(), world.cache_dir.path())
        .args(["--build-arg", &format!("BASE={}", world.base)])
        .push_to(&world.registry.image("n:2"))
        .run();
    let log = outcome.everything_printed();
    outcome.success();
    assert_eq!(cached(&log), 0, "{log}");
    assert!(log.contains("42ran"), "{log}");
}

#[test]
fn a_cache_index_that_cannot_be_written_fails_the_build_loudly() {
    let world = World::new();
    let project = app();
    // The database directory is a file: every write session fails.
    std::fs::create_dir_all(world.cache_dir.path().join("index")).unwrap();
    std::fs::write(world.cache_dir.path().join("index/db"), "not a database").unwrap();
    let error = world.build(&project, "e:1", &[]).failure();
    assert!(error.contains("cache index"), "{error}");
    assert!(
        !crate::support::tools::exists(&world.registry.image("e:1")),
        "the destination was written"
    );
}

#[test]
fn two_builds_sharing_one_cache_directory_at_once_both_succeed() {
    let world = World::new();
    let first = app();
    let second = Project::new()
        .dockerfile("ARG BASE\nFROM ${BASE}\nRUN echo other > /other\nCOPY x.txt /x.txt\n")
        .file("x.txt", "x\n");
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| world.build(&first, "c:1", &[]));
        let b = scope.spawn(|| world.build(&second, "c:2", &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    a.success();
    b.success();
    let log = world.build(&first, "c:3", &[]).success_log();
    assert_eq!(cached(&log), 2, "{log}");
    let log = world.build(&second, "c:4", &[]).success_log();
    assert_eq!(cached(&log), 2, "{log}");
}

#[test]
fn a_changed_stage_with_identical_output_leaves_later_steps_cached() {
    // cargo-chef: the planner stage reruns on every source change but writes the same
    // recipe; the expensive step that only reads the recipe must stay cached (Kaniko #1520).
    let world = World::new();
    let project = Project::new()
        .dockerfile(
            "ARG BASE\nFROM ${BASE} AS planner\nCOPY src/ /src/\nRUN cat /src/deps > /recipe\nFROM ${BASE}\nCOPY --from=planner /recipe /recipe\nRUN echo $((40+2))ran && cp /recipe /cooked\nCOPY src/ /src/\n",
        )
        .file("src/deps", "serde 1\n")
        .file("src/main", "fn main() {}\n");
    world.build(&project, "chef:1", &[]).success();
    std::fs::write(project.path().join("src/main"), "fn main() { changed() }\n").unwrap();
    let outcome = world.build(&project, "chef:2", &[]);
    let log = outcome.everything_printed();
    outcome.success();
    assert!(!log.contains("42ran"), "the cook step ran again:\n{log}");
    let root = world.unpack("chef:2");
    assert_eq!(read(&root, "cooked"), "serde 1\n");
    assert_eq!(read(&root, "src/main"), "fn main() { changed() }\n");
    // And the next rebuild finds the alias directly.
    let log = world.build(&project, "chef:3", &[]).success_log();
    assert_eq!(cached(&log), 5, "{log}");
}

#[test]
fn a_fully_cached_rebuild_from_the_registry_downloads_no_layer_and_uploads_only_the_config() {
    let (registry, _) = Registry::with_busybox();
    let proxy = Proxy::start(registry.addr());
    let base = proxy.image("busybox:latest");
    let project = app();
    let build = |name: &str| {
        // A fresh cache directory each time: the cache lives only in the registry.
        Kiln::build(project.path())
            .args(["--cache", "--build-arg", &format!("BASE={base}")])
            .args(["--cache-repo", &proxy.image("cache")])
            .push_to(&proxy.image(name))
            .run()
    };
    let first = build("first:1").everything_printed();
    assert!(first.contains("42ran"), "{first}");
    let before = proxy.requests().len();
    let outcome = build("second:1");
    let log = outcome.everything_printed();
    outcome.success();
    assert!(!log.contains("42ran"), "the rebuild ran the RUN:\n{log}");
    assert!(!log.contains("Unpacking rootfs"), "{log}");
    let second: Vec<_> = proxy.requests().split_off(before);
    let layers: Vec<String> =
        inspect(&format!("docker://{}", registry.image("second:1")))["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
    assert_eq!(layers.len(), 3, "busybox, COPY and RUN layers");
    let fetched: Vec<_> = second
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:"))
        .filter(|r| layers.iter().any(|layer| r.path.ends_with(layer.as_str())))
        .collect();
    assert!(fetched.is_empty(), "layers were downloaded: {fetched:?}");
    let uploads = second
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(uploads, 1, "only the new config is uploaded: {second:?}");
    assert_eq!(read(&world_unpack(&registry, "second:1"), "ran"), "one\n");
}

fn world_unpack(registry: &Registry, name: &str) -> std::path::PathBuf {
    unpack(
        &format!("docker://{}", registry.image(name)),
        registry.scratch(),
    )
}
