//! Registry mirrors and maps (`--registry-mirror`, `--registry-map`, `KANIKO_REGISTRY_MIRROR`,
//! `KANIKO_REGISTRY_MAP`): pulls go to mirrors first, in order, falling back past broken ones to
//! the image's own registry unless `--skip-default-registry-fallback`; pushes never do.

use crate::support::base::push_busybox;
use crate::support::registry::free_port;
use crate::support::tools::exists;
use crate::support::{Kiln, Project, Registry};

#[test]
fn docker_hub_images_are_pulled_from_the_first_mirror_that_has_them() {
    // Docker Hub is unreachable here: the build can only succeed through a mirror.
    let mirror = Registry::start();
    push_busybox(&mirror.image("library/busybox:latest"), mirror.scratch());
    let empty = Registry::start();
    let dead = format!("127.0.0.1:{}", free_port());
    let target = Registry::start();
    let project = Project::new().dockerfile("FROM busybox\nRUN touch /from-mirror\n");
    let destination = target.image("mirrored/app:1");

    let (_, log) = Kiln::build(project.path())
        .push_to(&destination)
        .args([
            "--registry-mirror",
            &dead,
            "--registry-mirror",
            empty.addr(),
        ])
        .env("KANIKO_REGISTRY_MIRROR", mirror.addr())
        .run()
        .success_with_log();
    for broken in [dead.as_str(), empty.addr()] {
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains(broken) && l.contains("index.docker.io")),
            "no warning naming mirror {broken}:\n{log}"
        );
    }
    assert!(exists(&destination));
    assert!(!exists(&mirror.image("mirrored/app:1")));

    // No mirror has it and falling back is forbidden: a clear error naming each mirror.
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .args([
            "--registry-mirror",
            &dead,
            "--registry-mirror",
            empty.addr(),
        ])
        .args(["--skip-default-registry-fallback"])
        .run()
        .failure();
    assert!(
        stderr.contains("not found on any mapped registry")
            && stderr.contains("--skip-default-registry-fallback"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&dead) && stderr.contains(empty.addr()),
        "{stderr}"
    );
}

#[test]
fn registry_map_redirects_pulls_with_a_path_prefix_falls_back_and_never_redirects_pushes() {
    let (origin, base) = Registry::with_busybox();
    let mirror = Registry::start();
    push_busybox(&mirror.image("cache/busybox:latest"), mirror.scratch());

    // The mapped registry does not exist: only the mirror (with its prefix) can serve it.
    let gone = format!("127.0.0.1:{}", free_port());
    let project = Project::new().dockerfile(&format!("FROM {gone}/busybox\nRUN touch /mapped\n"));
    let destination = origin.image("mapped/app:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .args(["--registry-map", &format!("{gone}={}/cache", mirror.addr())])
        .run()
        .success();
    assert!(exists(&destination));

    // A map whose mirror lacks the image falls back to the original registry, with a warning;
    // the push goes to the destination as named even though its registry is mapped.
    let empty = Registry::start();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /fallback\n"));
    let map = format!("{}={}", origin.addr(), empty.addr());
    let destination = origin.image("fallback/app:1");
    let (_, log) = Kiln::build(project.path())
        .push_to(&destination)
        .env("KANIKO_REGISTRY_MAP", &map)
        .run()
        .success_with_log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains(empty.addr()) && l.contains(origin.addr())),
        "{log}"
    );
    assert!(exists(&destination));
    assert!(!exists(&empty.image("fallback/app:1")));

    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .args(["--registry-map", &map])
        .args(["--skip-default-registry-fallback"])
        .run()
        .failure();
    assert!(
        stderr.contains("not found on any mapped registry") && stderr.contains(empty.addr()),
        "{stderr}"
    );
}
