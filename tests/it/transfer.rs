//! Transfers through a fault-injecting proxy in front of a real registry: retries, resumed
//! downloads, refused corrupt content, chunked and resumed uploads, cross-repository mounts,
//! the push-access probe and immutable tags. Results are checked on the registry itself with
//! skopeo and umoci.

use std::io::Write;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::proxy::{Action, Proxy};
use crate::support::tools::{exists, inspect, run, skopeo, unpack};
use crate::support::{Kiln, Project, Registry};

/// A registry holding busybox, a proxy in front of it, the base image's name through the
/// proxy, and the digest of its (only) layer.
fn busybox_behind_proxy() -> (Registry, Proxy, String, String) {
    let (registry, base) = Registry::with_busybox();
    let layers = inspect(&format!("docker://{base}"))["Layers"].clone();
    let layer = layers[0].as_str().unwrap().to_owned();
    let proxy = Proxy::start(registry.addr());
    let base = proxy.image("busybox:latest");
    (registry, proxy, base, layer)
}

fn derived_project(base: &str) -> Project {
    Project::new().dockerfile(&format!("FROM {base}\nRUN touch /built\n"))
}

/// Checks, on the registry itself, that `name` is the busybox-derived image, whole.
fn assert_derived_image(registry: &Registry, name: &str) {
    let rootfs = unpack(
        &format!("docker://{}", registry.image(name)),
        &registry.scratch().join(name.replace([':', '/'], "-")),
    );
    assert!(rootfs.join("bin/busybox").is_file());
    assert!(rootfs.join("built").is_file());
}

#[test]
fn a_layer_download_cut_mid_body_resumes_with_a_range_request() {
    let (registry, proxy, base, layer) = busybox_behind_proxy();
    proxy.fail("GET", &format!("/blobs/{layer}"), 1, Action::CutBody);
    let log = Kiln::build(derived_project(&base).path())
        .push_to(&proxy.image("derived:1"))
        .run()
        .success_log();
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.is("GET", &format!("/blobs/{layer}")))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    let range = gets[1].range.clone().unwrap_or_default();
    assert!(
        range.starts_with("bytes=") && range.ends_with('-') && range != "bytes=0-",
        "the second GET should ask for the rest: {range:?}"
    );
    assert!(log.contains("resuming"), "{log}");
    assert_derived_image(&registry, "derived:1");
}

#[test]
fn a_registry_ignoring_the_range_resends_the_layer_and_the_received_part_is_skipped() {
    let (registry, proxy, base, layer) = busybox_behind_proxy();
    let path = format!("/blobs/{layer}");
    proxy.fail("GET", &path, 1, Action::CutBody);
    proxy.fail("GET", &path, 1, Action::IgnoreRange);
    Kiln::build(derived_project(&base).path())
        .push_to(&proxy.image("derived:1"))
        .run()
        .success();
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.is("GET", &path))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[1].range.is_some(), "kiln asked for the rest: {gets:?}");
    assert_derived_image(&registry, "derived:1");
}

#[test]
fn a_corrupted_layer_is_refused_and_downloaded_again() {
    let (registry, proxy, base, layer) = busybox_behind_proxy();
    proxy.fail("GET", &format!("/blobs/{layer}"), 1, Action::FlipByte);
    let log = Kiln::build(derived_project(&base).path())
        .push_to(&proxy.image("derived:1"))
        .run()
        .success_log();
    assert!(log.contains("digest mismatch"), "{log}");
    let gets = proxy
        .requests()
        .into_iter()
        .filter(|r| r.is("GET", &format!("/blobs/{layer}")) && r.range.is_none())
        .count();
    assert_eq!(gets, 2, "the layer should be fetched whole twice");
    assert_derived_image(&registry, "derived:1");
}

#[test]
fn a_layer_corrupted_on_every_attempt_fails_the_build_and_pushes_nothing() {
    let (registry, proxy, base, layer) = busybox_behind_proxy();
    proxy.fail("GET", &format!("/blobs/{layer}"), 100, Action::FlipByte);
    let stderr = Kiln::build(derived_project(&base).path())
        .push_to(&proxy.image("derived:1"))
        .args(["--image-download-retry", "1"])
        .run()
        .failure();
    assert!(stderr.contains("digest mismatch"), "{stderr}");
    assert!(stderr.contains(&layer), "{stderr}");
    assert_eq!(proxy.count("GET", &format!("/blobs/{layer}")), 2);
    assert!(!exists(&registry.image("derived:1")));
}

#[test]
fn server_errors_throttling_and_stalls_are_survived_honouring_retry_after() {
    let (registry, proxy, base, _) = busybox_behind_proxy();
    proxy.fail("GET", "/v2/busybox/manifests/", 2, Action::Status(500));
    let throttled = vec![("Retry-After".to_owned(), "2".to_owned())];
    proxy.fail(
        "HEAD",
        "/v2/derived/blobs/",
        1,
        Action::Respond(429, throttled, String::new()),
    );
    proxy.fail("PUT", "/v2/derived/manifests/", 1, Action::Status(503));
    proxy.fail(
        "GET",
        "/v2/busybox/blobs/",
        1,
        Action::Stall(Duration::from_secs(1)),
    );
    let started = Instant::now();
    let log = Kiln::build(derived_project(&base).path())
        .push_to(&proxy.image("derived:1"))
        .run()
        .success_log();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 2 should have been honoured"
    );
    assert!(
        log.contains("500") && log.contains("429") && log.contains("503"),
        "{log}"
    );
    assert_eq!(proxy.count("PUT", "/v2/derived/manifests/"), 2);
    assert_derived_image(&registry, "derived:1");
}

#[test]
fn retry_exhaustion_names_the_image_registry_and_status() {
    let (registry, proxy, base, _) = busybox_behind_proxy();
    proxy.fail("PUT", "/v2/derived/manifests/", 100, Action::Status(500));
    let destination = proxy.image("derived:1");
    let stderr = Kiln::build(derived_project(&base).path())
        .push_to(&destination)
        .args(["--push-retry", "1"])
        .run()
        .failure();
    assert!(stderr.contains(&destination), "{stderr}");
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    assert!(stderr.contains("giving up after 2 attempts"), "{stderr}");
    assert_eq!(proxy.count("PUT", "/v2/derived/manifests/"), 2);
    assert!(!exists(&registry.image("derived:1")));
}

#[test]
fn an_upload_whose_connection_drops_starts_a_new_session() {
    let (registry, proxy, base, _) = busybox_behind_proxy();
    proxy.fail("PUT", "/v2/derived/blobs/uploads/", 1, Action::Drop);
    Kiln::build(derived_project(&base).path())
        .push_to(&proxy.image("derived:1"))
        .run()
        .success();
    // The new layer and the config are uploaded; one of them twice, in a fresh session.
    assert_eq!(proxy.count("PUT", "/v2/derived/blobs/uploads/"), 3);
    assert_derived_image(&registry, "derived:1");
}

/// `len` bytes that gzip cannot shrink (xorshift), so the layer is as large as the file.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn a_large_layer_goes_up_in_chunks_resuming_after_a_failed_chunk_and_accepting_ecr_201s() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    let project = Project::new().dockerfile("FROM scratch\nCOPY big /big\n");
    let data = incompressible(40 * 1024 * 1024);
    std::fs::File::create(project.path().join("big"))
        .unwrap()
        .write_all(&data)
        .unwrap();
    let uploads = "/v2/large/blobs/uploads/";
    // ECR answers chunks with 201; the second chunk fails once, before reaching the registry.
    proxy.fail("PATCH", uploads, 1, Action::RewriteStatus(201));
    proxy.fail("PATCH", uploads, 1, Action::Status(500));
    let log = Kiln::build(project.path())
        .push_to(&proxy.image("large:1"))
        .args(["--verbosity", "debug"])
        .run()
        .success_log();
    // Progress is reported as the chunks go up, and at the end.
    let progress: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("{}@sha256:", proxy.image("large"))) && l.contains(" pushed ")
        })
        .collect();
    assert!(progress.len() >= 4, "{log}");
    assert!(
        progress.iter().any(|l| l.ends_with("(100%)")),
        "{progress:#?}"
    );
    // 40 MiB in 16 MiB chunks: three, plus the one that failed.
    assert_eq!(proxy.count("PATCH", uploads), 4);
    assert_eq!(
        proxy.count("GET", uploads),
        1,
        "the upload status was asked once"
    );
    assert_eq!(
        proxy.count("POST", uploads),
        3,
        "the probe, the layer and the config: the layer's session was resumed, not restarted"
    );
    let manifest = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}", registry.image("large:1"))));
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    assert!(size > 40 * 1024 * 1024, "{manifest}");
    let rootfs = unpack(
        &format!("docker://{}", registry.image("large:1")),
        registry.scratch(),
    );
    let pushed = std::fs::read(rootfs.join("big")).unwrap();
    assert_eq!(Sha256::digest(&pushed), Sha256::digest(&data));
}

#[test]
fn a_registrys_minimum_chunk_length_is_honoured() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    let project = Project::new().dockerfile("FROM scratch\nCOPY big /big\n");
    std::fs::write(project.path().join("big"), incompressible(40 * 1024 * 1024)).unwrap();
    let uploads = "/v2/large/blobs/uploads/";
    // Every session says chunks must be at least 24 MiB (the config goes up whole anyway).
    let minimum = (24 * 1024 * 1024).to_string();
    proxy.fail(
        "POST",
        uploads,
        100,
        Action::AddHeader("OCI-Chunk-Min-Length".to_owned(), minimum),
    );
    Kiln::build(project.path())
        .push_to(&proxy.image("large:1"))
        .run()
        .success();
    assert_eq!(
        proxy.count("PATCH", uploads),
        2,
        "40 MiB in 24 MiB chunks, not 16 MiB ones"
    );
    assert!(exists(&registry.image("large:1")));
}

#[test]
fn base_layers_and_a_second_destination_are_mounted_not_uploaded() {
    let (registry, proxy, base, layer) = busybox_behind_proxy();
    Kiln::build(derived_project(&base).path())
        .push_to(&proxy.image("team/one:1"))
        .args(["--destination", &proxy.image("team/two:1")])
        .run()
        .success();
    let layer_hex = &layer["sha256:".len()..];
    assert_eq!(
        proxy.count(
            "POST",
            &format!("/v2/team/one/blobs/uploads/?mount={layer}&from=busybox")
        ),
        1,
        "{:#?}",
        proxy.requests()
    );
    assert_eq!(
        proxy
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/v2/team/one/blobs/uploads/")
                && r.path.contains(layer_hex)
                && r.method != "POST")
            .count(),
        0,
        "the base layer must not be uploaded to team/one"
    );
    assert_eq!(
        proxy.count("POST", "/v2/team/two/blobs/uploads/?mount="),
        3,
        "base layer, new layer and config mounted from team/one"
    );
    assert_eq!(proxy.count("PUT", "/v2/team/two/blobs/uploads/"), 0);
    assert_eq!(proxy.count("PATCH", "/v2/team/two/blobs/uploads/"), 0);
    assert_derived_image(&registry, "team/one:1");
    assert_derived_image(&registry, "team/two:1");
}

#[test]
fn a_destination_refusing_pushes_fails_before_anything_is_pulled() {
    let (_registry, proxy, base, _) = busybox_behind_proxy();
    let denied =
        r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
    proxy.fail(
        "POST",
        "/v2/locked/blobs/uploads/",
        100,
        Action::Respond(403, Vec::new(), denied.to_owned()),
    );
    let destination = proxy.image("locked:1");
    let stderr = Kiln::build(derived_project(&base).path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(
        stderr.contains(&format!("cannot push to {destination}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("403") && stderr.contains("DENIED"),
        "{stderr}"
    );
    assert_eq!(
        proxy.count("GET", "/v2/busybox/"),
        0,
        "nothing should be pulled"
    );

    let stderr = Kiln::build(derived_project(&base).path())
        .push_to(&destination)
        .args(["--skip-push-permission-check"])
        .run()
        .failure();
    assert!(
        proxy.count("GET", "/v2/busybox/") > 0,
        "the build should have run"
    );
    assert!(stderr.contains("403"), "{stderr}");
}

#[test]
fn immutable_tag_refusals_are_ignored_only_when_asked() {
    let (_registry, proxy, base, _) = busybox_behind_proxy();
    let immutable = r#"{"errors":[{"code":"TAG_INVALID","message":"The image tag '1' already exists in the 'derived' repository and cannot be overwritten because the repository is immutable."}]}"#;
    proxy.fail(
        "PUT",
        "/v2/derived/manifests/1",
        2,
        Action::Respond(400, Vec::new(), immutable.to_owned()),
    );
    let destination = proxy.image("derived:1");
    let stderr = Kiln::build(derived_project(&base).path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(stderr.contains("TAG_INVALID"), "{stderr}");
    let log = Kiln::build(derived_project(&base).path())
        .push_to(&destination)
        .args(["--push-ignore-immutable-tag-errors"])
        .run()
        .success_log();
    assert!(log.contains("immutable tag"), "{log}");
}
