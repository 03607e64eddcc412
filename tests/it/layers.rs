//! The layers kiln writes, end to end: compression and media types as the registry serves them,
//! reproducible digests across directories and times, and memory that does not grow with a
//! layer's size.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::support::base::sha256;
use serde_json::{Value, json};

use crate::support::tools::{config_of, raw_manifest, unpack, unpack_with};
use crate::support::{Kiln, Project, Registry};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn manifest(image: &str) -> Value {
    serde_json::from_slice(&raw_manifest(image)).unwrap()
}

fn layer_types(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["mediaType"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn zstd_layers_are_pushed_with_the_oci_zstd_media_type_and_unpack() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN echo squeezed > /made\nCOPY note /note\n"
    ));
    let project = project.file("note", "zstd\n");
    let destination = registry.image("zstd:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .args(["--compression", "zstd", "--compression-level", "9"])
        .run()
        .success();

    let types = layer_types(&manifest(&destination));
    // The base keeps its gzip layer; the two new ones are zstd.
    assert_eq!(types, vec![GZIP, ZSTD, ZSTD]);
    // Debian's umoci reads only gzip: skopeo recompresses on the way to the layout.
    let rootfs = unpack_with(
        &format!("docker://{destination}"),
        registry.scratch(),
        &["--dest-compress-format", "gzip"],
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("made")).unwrap(),
        "squeezed\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("note")).unwrap(),
        "zstd\n"
    );
}

#[test]
fn docker_image_format_labels_manifest_config_and_every_layer_with_schema2_types() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN echo docker > /made\n"));
    let destination = registry.image("docker-format:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .args(["--image-format", "docker"])
        .run()
        .success();

    let manifest = manifest(&destination);
    assert_eq!(
        manifest["mediaType"],
        json!("application/vnd.docker.distribution.manifest.v2+json")
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        json!("application/vnd.docker.container.image.v1+json")
    );
    assert_eq!(layer_types(&manifest), vec![DOCKER_GZIP, DOCKER_GZIP]);
    let rootfs = unpack(&format!("docker://{destination}"), registry.scratch());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("made")).unwrap(),
        "docker\n"
    );
}

#[test]
fn zstd_in_a_docker_format_image_is_refused_before_anything_is_built() {
    let project = Project::new().dockerfile("FROM scratch\n");
    let stderr = Kiln::build(project.path())
        .args([
            "--no-push",
            "--compression",
            "zstd",
            "--image-format",
            "docker",
        ])
        .run()
        .failure();
    assert!(stderr.contains("--image-format oci"), "{stderr}");
}

#[test]
fn an_out_of_range_compression_level_is_refused_naming_the_flag() {
    let project = Project::new().dockerfile("FROM scratch\n");
    let stderr = Kiln::build(project.path())
        .args(["--no-push", "--compression-level", "12"])
        .run()
        .failure();
    assert!(
        stderr.contains("--compression-level") && stderr.contains("12"),
        "{stderr}"
    );
}

/// A Dockerfile whose layers hold files from the context, files a RUN writes and a directory
/// WORKDIR creates: every timestamp in it comes from the build's own clock or the context's.
fn dated_project(base: &str) -> Project {
    Project::new()
        .dockerfile(&format!(
            "FROM {base}\nCOPY app/ /app/\nRUN mkdir /data && echo data > /data/f && touch /app\nWORKDIR /work\n"
        ))
        .file("app/main.sh", "#!/bin/sh\necho main\n")
        .file("app/lib/util.sh", "util\n")
}

/// Builds `project` with `flags` and env pairs, pushes it as `name`, and returns the digest
/// kiln printed.
fn build(
    registry: &Registry,
    project: &Project,
    name: &str,
    flags: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut kiln = Kiln::build(project.path())
        .push_to(&registry.image(name))
        .args(flags)
        .env_remove("SOURCE_DATE_EPOCH");
    for (key, value) in env {
        kiln = kiln.env(key, value);
    }
    kiln.run().success().trim().to_owned()
}

#[test]
fn source_date_epoch_builds_in_two_directories_at_two_times_have_one_digest() {
    let (registry, base) = Registry::with_busybox();
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let first = build(&registry, &dated_project(&base), "sde:a", &[], &epoch);
    // A later second, another context directory with freshly written (newer) files, and the
    // epoch given the way BuildKit takes it: as a build argument.
    std::thread::sleep(Duration::from_millis(1100));
    let as_build_arg = ["--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    let second = build(
        &registry,
        &dated_project(&base),
        "sde:b",
        &as_build_arg,
        &[],
    );
    assert_eq!(first, second);
    for tag in ["sde:a", "sde:b"] {
        assert_eq!(sha256(&raw_manifest(&registry.image(tag))), first);
    }

    let config = config_of(&registry.image("sde:a"));
    assert_eq!(config["created"], json!("2023-11-14T22:13:20Z"));
    let history = config["history"].as_array().unwrap();
    for entry in &history[history.len() - 3..] {
        assert_eq!(entry["created"], json!("2023-11-14T22:13:20Z"), "{entry}");
    }
    let rootfs = unpack(
        &format!("docker://{}", registry.image("sde:a")),
        registry.scratch(),
    );
    for path in ["app/main.sh", "app", "data/f", "work"] {
        let mtime = std::fs::symlink_metadata(rootfs.join(path))
            .unwrap()
            .mtime();
        assert_eq!(mtime, 1_700_000_000, "{path}");
    }
}

#[test]
fn reproducible_dates_the_image_1970_and_repeats_its_digest_where_a_plain_build_does_not() {
    let (registry, base) = Registry::with_busybox();
    let first = build(
        &registry,
        &dated_project(&base),
        "r:a",
        &["--reproducible"],
        &[],
    );
    let plain_first = build(&registry, &dated_project(&base), "p:a", &[], &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let second = build(
        &registry,
        &dated_project(&base),
        "r:b",
        &["--reproducible"],
        &[],
    );
    let plain_second = build(&registry, &dated_project(&base), "p:b", &[], &[]);
    assert_eq!(first, second);
    assert_ne!(plain_first, plain_second, "a plain build is dated now");

    let config = config_of(&registry.image("r:a"));
    assert_eq!(config["created"], json!("1970-01-01T00:00:00Z"));
    let rootfs = unpack(
        &format!("docker://{}", registry.image("r:a")),
        registry.scratch(),
    );
    let mtime = std::fs::symlink_metadata(rootfs.join("data/f"))
        .unwrap()
        .mtime();
    assert_eq!(mtime, 0);
}

/// Builds a 2 GiB file made of `block` random bytes repeated, layered with zstd level 1 and
/// pushed; returns kiln's peak memory and the layer blob's size.
fn build_2gib_layer(block: usize) -> (u64, u64) {
    let (registry, base) = Registry::with_busybox();
    // 2 MiB of repeated blocks, then that chunk 1024 times: few processes, one pass to disk.
    let per_chunk = 2 * 1024 * 1024 / block;
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN head -c {block} /dev/urandom > /block && \\\n    for i in $(seq {per_chunk}); do cat /block; done > /chunk && \\\n    for i in $(seq 1024); do cat /chunk; done > /big && rm /block /chunk\n"
    ));
    let destination = registry.image("big:1");
    let (outcome, peak) = Kiln::build(project.path())
        .push_to(&destination)
        .args(["--compression", "zstd", "--compression-level", "1"])
        .run_measuring_memory();
    outcome.success();
    let blob = manifest(&destination)["layers"][1]["size"]
        .as_u64()
        .unwrap();
    eprintln!(
        "peak RSS {} MiB for a 2 GiB layer ({blob} bytes compressed)",
        peak / (1024 * 1024)
    );
    (peak, blob)
}

/// Peak memory kiln must stay under whatever the layer size.
const MEMORY_LIMIT: u64 = 256 * 1024 * 1024;

/// An incompressible 2 GiB file (a 1 MiB random block repeated, beyond zstd -1's window), so a
/// 2 GiB blob is hashed, compressed, stored and uploaded. It writes 6 GiB to disk (the RUN, the
/// store, the registry): 36 s on the idle CI machine, 54 s at load 10, ~100 s when saturated.
#[test]
fn a_2gib_layer_is_written_and_pushed_with_peak_memory_under_256mib() {
    let (peak, blob) = build_2gib_layer(1024 * 1024);
    assert!(blob > 2 * 1024 * 1024 * 1024, "layer blob of {blob} bytes");
    assert!(
        peak < MEMORY_LIMIT,
        "kiln peaked at {} MiB writing and pushing a 2 GiB layer",
        peak / (1024 * 1024)
    );
}
