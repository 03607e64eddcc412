//! Base images in every format a registry may serve: OCI or Docker schema 2 manifests, gzip or
//! zstd layers.

use std::process::Command;

use crate::support::base::busybox_layout;
use crate::support::tools::{run, skopeo, unpack_with};
use crate::support::{Kiln, Project, Registry};

/// Pushes the busybox layout to `image` with extra `skopeo copy` flags.
fn push_with(registry: &Registry, image: &str, flags: &[&str]) {
    let layout = busybox_layout(registry.scratch());
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .args(flags)
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{image}")));
}

fn build_from(registry: &Registry, base: &str) -> std::path::PathBuf {
    build_from_with(registry, base, &[])
}

fn build_from_with(registry: &Registry, base: &str, copy_flags: &[&str]) -> std::path::PathBuf {
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN busybox --help > /dev/null && touch /built\n"
    ));
    let destination = registry.image("derived:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .success();
    unpack_with(
        &format!("docker://{destination}"),
        &registry.scratch().join("derived"),
        copy_flags,
    )
}

#[test]
fn a_docker_schema2_base_image_is_pulled() {
    let registry = Registry::start();
    let base = registry.image("docker-format:latest");
    push_with(&registry, &base, &["--format", "v2s2"]);
    let manifest = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{base}")));
    assert!(
        String::from_utf8_lossy(&manifest.stdout)
            .contains("application/vnd.docker.distribution.manifest.v2+json"),
        "the base should be a Docker schema 2 manifest"
    );
    let rootfs = build_from(&registry, &base);
    assert!(rootfs.join("built").is_file());
    assert!(rootfs.join("bin/busybox").is_file());
}

#[test]
fn a_base_image_with_zstd_layers_is_unpacked() {
    let registry = Registry::start();
    let base = registry.image("zstd:latest");
    push_with(
        &registry,
        &base,
        &["--dest-compress-format", "zstd", "--dest-compress"],
    );
    let manifest = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{base}")));
    assert!(
        String::from_utf8_lossy(&manifest.stdout).contains("tar+zstd"),
        "the base should have zstd layers"
    );
    let rootfs = build_from_with(
        &registry,
        &base,
        &["--dest-compress-format", "gzip", "--dest-compress"],
    );
    assert!(rootfs.join("built").is_file());
    assert!(rootfs.join("etc/passwd").is_file());
}

#[test]
fn kaniko_style_invocation_as_executor_with_a_dir_context() {
    let registry = Registry::start();
    let project = Project::new()
        .dockerfile("FROM scratch\nCOPY f /f\n")
        .file("f", "x");
    let bin = project.out("kaniko");
    std::fs::create_dir_all(&bin).unwrap();
    let executor = bin.join("executor");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kiln"), &executor).unwrap();
    let destination = registry.image("kaniko:1");
    let names = project.out("names");
    let output = Command::new(&executor)
        .arg(format!("--context=dir://{}", project.path().display()))
        .arg("--dockerfile=Dockerfile")
        .arg(format!("--destination={destination}"))
        .arg(format!(
            "--image-name-tag-with-digest-file={}",
            names.display()
        ))
        .arg(format!("--cache-dir={}", project.out("cache").display()))
        .arg("--insecure")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let digest = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(
        std::fs::read_to_string(&names).unwrap(),
        format!("{destination}@{digest}\n")
    );
}
