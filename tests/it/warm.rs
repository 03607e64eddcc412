//! `kiln warm`: base images stored in the cache directory ahead of builds, which then start
//! without a registry.
//!
//! Each test warms from a real registry, checks the store with skopeo, and mostly kills the
//! registry before building, so a build that still asks it fails.

use std::path::Path;

use crate::support::tools::{inspect, run, skopeo};
use crate::support::{Kiln, Outcome, Project, Registry};

const RUN_ON_BASE: &str = "ARG BASE\nFROM ${BASE}\nRUN echo warm > /warm\n";

/// `kiln warm -c <cache_dir> --insecure-pull <args>`.
fn warm(cache_dir: &Path, args: &[&str]) -> Outcome {
    Kiln::warm(cache_dir)
        .args(["--insecure-pull"])
        .args(args)
        .run()
}

/// Builds `RUN_ON_BASE` on `base` into a tarball, without pushing; returns the outcome and the
/// tarball's path.
fn build_tarball(cache_dir: &Path, base: &str, args: &[&str]) -> (Outcome, Project) {
    let project = Project::new().dockerfile(RUN_ON_BASE);
    let tar = project.out("image.tar");
    let outcome = Kiln::build_in(project.path(), cache_dir)
        .args(["--no-push", "--insecure-pull", "--build-arg"])
        .args([format!("BASE={base}")])
        .arg_path("--tar-path", &tar)
        .args(args)
        .run();
    (outcome, project)
}

#[test]
fn a_build_after_warming_needs_no_registry_for_its_base() {
    let (registry, base) = Registry::with_busybox();
    let cache = tempfile::tempdir().unwrap();
    warm(cache.path(), &["--image", &base]).success();
    // The store is an OCI layout naming the image.
    let stored = inspect(&format!(
        "oci:{}:{base}",
        cache.path().join("store").display()
    ));
    let remote = inspect(&format!("docker://{base}"));
    assert_eq!(stored["Digest"], remote["Digest"]);
    drop(registry);
    let (outcome, project) = build_tarball(cache.path(), &base, &[]);
    let log = outcome.everything_printed();
    outcome.success();
    assert!(!log.contains("Retrieving image manifest"), "{log}");
    let built = inspect(&format!(
        "docker-archive:{}",
        project.out("image.tar").display()
    ));
    assert_eq!(built["Layers"].as_array().unwrap().len(), 2, "{built}");
}

#[test]
fn an_expired_warm_record_asks_the_registry() {
    let (registry, base) = Registry::with_busybox();
    let cache = tempfile::tempdir().unwrap();
    warm(cache.path(), &["--image", &base]).success();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (outcome, _project) = build_tarball(cache.path(), &base, &["--cache-ttl", "1s"]);
    let log = outcome.everything_printed();
    outcome.success();
    assert!(log.contains("longer than --cache-ttl"), "{log}");
    assert!(log.contains("Retrieving image manifest"), "{log}");
    drop(registry);
    let (outcome, _project) = build_tarball(cache.path(), &base, &["--cache-ttl", "1s"]);
    let err = outcome.failure();
    assert!(err.contains("cannot pull base image"), "{err}");
}

#[test]
fn a_digest_reference_in_the_store_needs_no_registry_whatever_the_ttl() {
    let (registry, base) = Registry::with_busybox();
    let digest = inspect(&format!("docker://{base}"))["Digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let pinned = format!("{}@{digest}", base.trim_end_matches(":latest"));
    let cache = tempfile::tempdir().unwrap();
    warm(cache.path(), &["--image", &base]).success();
    drop(registry);
    let (outcome, _project) = build_tarball(cache.path(), &pinned, &["--cache-ttl", "0s"]);
    let log = outcome.everything_printed();
    outcome.success();
    assert!(!log.contains("Retrieving image manifest"), "{log}");
}

#[test]
fn a_fresh_image_is_not_fetched_again_unless_forced() {
    let (_registry, base) = Registry::with_busybox();
    let cache = tempfile::tempdir().unwrap();
    let first = warm(cache.path(), &["--image", &base]).success_log();
    assert!(first.contains("Warmed"), "{first}");
    let second = warm(cache.path(), &["--image", &base]).success_log();
    assert!(
        second.contains("already in the cache directory"),
        "{second}"
    );
    assert!(!second.contains("Retrieving image manifest"), "{second}");
    let forced = warm(cache.path(), &["--image", &base, "--force"]).success_log();
    assert!(forced.contains("Warmed"), "{forced}");
}

#[test]
fn the_warmer_fails_only_when_every_image_fails() {
    let (registry, base) = Registry::with_busybox();
    let missing = registry.image("missing:1");
    let cache = tempfile::tempdir().unwrap();
    let log = warm(cache.path(), &["--image", &base, "--image", &missing]).success_log();
    assert!(log.contains(&format!("cannot warm {missing}")), "{log}");
    let err = warm(cache.path(), &["--image", &missing]).failure();
    assert!(err.contains("no image could be warmed"), "{err}");
    assert!(err.contains(&missing), "{err}");
}

#[test]
fn four_warmers_at_once_on_one_directory_all_succeed() {
    let (registry, base) = Registry::with_busybox();
    let other = registry.image("copy:1");
    run(skopeo().args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{base}"),
        &format!("docker://{other}"),
    ]));
    let cache = tempfile::tempdir().unwrap();
    let warmers: Vec<_> = (0..4)
        .map(|n| {
            let dir = cache.path().to_path_buf();
            let image = if n % 2 == 0 {
                base.clone()
            } else {
                other.clone()
            };
            std::thread::spawn(move || warm(&dir, &["--image", &image, "--force"]))
        })
        .collect();
    for warmer in warmers {
        warmer.join().unwrap().success();
    }
    let store = cache.path().join("store");
    for image in [&base, &other] {
        inspect(&format!("oci:{}:{image}", store.display()));
    }
    drop(registry);
    build_tarball(cache.path(), &other, &[]).0.success();
}

#[test]
fn warming_a_dockerfile_stores_the_bases_its_build_needs() {
    let (registry, base) = Registry::with_busybox();
    let cache = tempfile::tempdir().unwrap();
    let project = Project::new().dockerfile(RUN_ON_BASE);
    Kiln::warm(cache.path())
        .args(["--insecure-pull", "--build-arg"])
        .args([format!("BASE={base}")])
        .arg_path("--dockerfile", &project.path().join("Dockerfile"))
        .run()
        .success();
    drop(registry);
    build_tarball(cache.path(), &base, &[]).0.success();
}

#[test]
fn a_warmer_for_another_platform_stores_that_platforms_manifest() {
    let registry = Registry::start();
    let image = registry.image("multi:1");
    crate::support::base::push_multi_platform(&image, registry.scratch());
    let other = if crate::support::base::host_arch() == "amd64" {
        "linux/arm64/v8"
    } else {
        "linux/amd64"
    };
    let cache = tempfile::tempdir().unwrap();
    warm(
        cache.path(),
        &["--image", &image, "--customPlatform", other],
    )
    .success();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.path().join("store/index.json")).unwrap())
            .unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        image.as_str()
    );
    let architecture = other.split('/').nth(1).unwrap();
    assert_eq!(entry["platform"]["architecture"], architecture, "{index}");
}
