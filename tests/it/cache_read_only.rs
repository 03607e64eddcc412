//! A cache directory mounted read-only, as a warmer's volume is in a build pod: a build uses
//! its index and blobs in place, keeps what is new under `$TMPDIR`, and writes nothing there.
//!
//! The mount is real: kiln runs in a private mount namespace (`unshare -m`) where the cache
//! directory is bind-mounted onto itself and remounted read-only. Permissions would prove
//! nothing, since the tests run as root.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::tools::{inspect, unpack};
use crate::support::{Kiln, Project, Registry};

const DOCKERFILE: &str =
    "ARG BASE\nFROM ${BASE}\nCOPY app/ /app/\nRUN echo $((40+2))ran && cat /app/a.txt > /ran\n";

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                let name = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string();
                files.insert(name, (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    files
}

fn layers(registry: &Registry, name: &str) -> Vec<String> {
    inspect(&format!("docker://{}", registry.image(name)))["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_build_on_a_read_only_cache_dir_reuses_its_layers_and_keeps_new_ones_elsewhere() {
    let (registry, base) = Registry::with_busybox();
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let project = Project::new()
        .dockerfile(DOCKERFILE)
        .file("app/a.txt", "one\n");
    let base_arg = format!("BASE={base}");
    let build = |name: &str| {
        Kiln::build_in(project.path(), cache.path())
            .args(["--cache", "--build-arg", &base_arg])
            .env("TMPDIR", tmp.path())
            .push_to(&registry.image(name))
    };

    let first = build("app:1").run().everything_printed();
    assert!(
        first.contains("42ran"),
        "the first build must run the RUN:\n{first}"
    );
    let before = [
        snapshot(&cache.path().join("store")),
        snapshot(&cache.path().join("index")),
    ];

    // The same build on the read-only mount: every step is found there, nothing runs.
    let second = build("app:2").read_only_mount(cache.path()).run();
    let log = second.everything_printed();
    assert!(
        second.succeeded(),
        "kiln failed on a read-only cache directory:\n{log}"
    );
    assert!(!log.contains("42ran"), "the RUN ran again:\n{log}");
    assert_eq!(layers(&registry, "app:2"), layers(&registry, "app:1"));

    // A changed file: the COPY and RUN run, their layers go to $TMPDIR.
    std::fs::write(project.path().join("app/a.txt"), "two\n").unwrap();
    let third = build("app:3").read_only_mount(cache.path()).run();
    let log = third.everything_printed();
    assert!(
        third.succeeded(),
        "kiln failed on a read-only cache directory:\n{log}"
    );
    assert!(
        log.contains("42ran"),
        "the RUN must run for the changed file:\n{log}"
    );
    let root = unpack(
        &format!("docker://{}", registry.image("app:3")),
        registry.scratch(),
    );
    assert_eq!(std::fs::read_to_string(root.join("ran")).unwrap(), "two\n");
    let new_layers = layers(&registry, "app:3");
    let top = new_layers.last().unwrap().strip_prefix("sha256:").unwrap();
    let scratch_store = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|entry| entry.unwrap().path().join("store/blobs/sha256"))
        .find(|blobs| blobs.is_dir())
        .expect("a writable store under $TMPDIR");
    assert!(
        scratch_store.join(top).is_file(),
        "the new layer is not in {}",
        scratch_store.display()
    );

    let after = [
        snapshot(&cache.path().join("store")),
        snapshot(&cache.path().join("index")),
    ];
    assert_eq!(before, after, "the read-only cache directory changed");
}
