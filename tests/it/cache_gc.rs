//! `kiln cache gc` on a cache directory two real builds filled: the blobs only an old build
//! used go, the ones the latest build used stay, and a build whose cached result named a removed
//! blob runs the step again instead of failing.
//!
//! The first build's use times are moved 30 days back (in the real index and on the blob files)
//! so that they are older than gc's one-hour grace period without waiting for it.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::tools::{inspect, unpack};
use crate::support::{Kiln, Project, Registry};

const DOCKERFILE: &str =
    "ARG BASE\nFROM ${BASE}\nCOPY app/ /app/\nRUN echo $((40+2))ran && cat /app/a.txt > /ran\n";

/// The digests (`sha256:...`) of the files in the store.
fn stored(cache_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(cache_dir.join("store/blobs/sha256"))
        .unwrap()
        .map(|entry| format!("sha256:{}", entry.unwrap().file_name().to_string_lossy()))
        .collect()
}

/// Makes every blob in the store look last used `age` ago, to the index and on disk.
fn age_everything(cache_dir: &Path, age: Duration) {
    let then = SystemTime::now() - age;
    let secs = then
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let digests: Vec<oci_spec::image::Digest> = stored(cache_dir)
        .iter()
        .map(|digest| digest.parse().unwrap())
        .collect();
    let index = kiln_cas::Index::open(&cache_dir.join("index")).unwrap();
    index
        .write()
        .unwrap()
        .touch_blobs(digests.iter(), secs)
        .unwrap();
    for entry in std::fs::read_dir(cache_dir.join("store/blobs/sha256")).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        file.set_modified(then).unwrap();
    }
}

#[test]
fn gc_removes_blobs_only_an_old_build_used_and_a_later_build_treats_them_as_misses() {
    let (registry, base) = Registry::with_busybox();
    let cache = tempfile::tempdir().unwrap();
    let project = Project::new()
        .dockerfile(DOCKERFILE)
        .file("app/a.txt", "one\n");
    let base_arg = format!("BASE={base}");
    let build = |name: &str| {
        Kiln::build_in(project.path(), cache.path())
            // The local cache only: a remote copy of the records would (rightly) survive gc.
            .args(["--cache", "--no-push-cache", "--build-arg", &base_arg])
            .push_to(&registry.image(name))
            .run()
    };
    let layers = |name: &str| -> Vec<String> {
        inspect(&format!("docker://{}", registry.image(name)))["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| layer.as_str().unwrap().to_owned())
            .collect()
    };

    let first = build("app:1").everything_printed();
    assert!(
        first.contains("42ran"),
        "the first build must run:\n{first}"
    );
    age_everything(cache.path(), Duration::from_secs(30 * 24 * 60 * 60));

    std::fs::write(project.path().join("app/a.txt"), "two\n").unwrap();
    let second = build("app:2").everything_printed();
    assert!(
        second.contains("42ran"),
        "the changed file must re-run:\n{second}"
    );
    let old_layers = layers("app:1");
    let new_layers = layers("app:2");
    let base_layers: Vec<String> = old_layers
        .iter()
        .filter(|layer| new_layers.contains(layer))
        .cloned()
        .collect();
    let only_old: Vec<String> = old_layers
        .iter()
        .filter(|layer| !new_layers.contains(layer))
        .cloned()
        .collect();
    assert_eq!(only_old.len(), 2, "the COPY and RUN layers of app:1 differ");
    let before = stored(cache.path());
    assert!(only_old.iter().all(|layer| before.contains(layer)));

    let gc = Kiln::cache_gc(cache.path()).args(["--max-size", "1"]).run();
    let printed = gc.everything_printed();
    assert!(gc.succeeded(), "kiln cache gc failed:\n{printed}");
    let after = stored(cache.path());
    let removed = before.len() - after.len();
    // At least the two layers, the config and the manifest of app:1 (blobs only the old build
    // touched, such as a base manifest it stored, may go too: the next build fetches them again).
    assert!(removed >= 4, "{printed}");
    assert!(
        printed.contains(&format!("Removed {removed} blobs")),
        "gc must say what it removed:\n{printed}"
    );
    for layer in &only_old {
        assert!(!after.contains(layer), "{layer} of the old build stayed");
    }
    for layer in new_layers.iter().chain(&base_layers) {
        assert!(after.contains(layer), "{layer}, used just now, was removed");
    }

    // Back to the first content: its cached result named removed blobs, so the step runs.
    std::fs::write(project.path().join("app/a.txt"), "one\n").unwrap();
    let third = build("app:3");
    let log = third.everything_printed();
    assert!(third.succeeded(), "a build after gc failed:\n{log}");
    assert!(
        log.contains("42ran"),
        "the collected step must run again:\n{log}"
    );
    let root = unpack(
        &format!("docker://{}", registry.image("app:3")),
        registry.scratch(),
    );
    assert_eq!(std::fs::read_to_string(root.join("ran")).unwrap(), "one\n");
}
