//! Push and pull against a real distribution registry.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{
    Registry, blob_file, client_options, config_json, manifest_json, push_layer_and_config, sha256,
};
use futures_util::StreamExt;
use kiln_registry::manifest::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use kiln_registry::{Access, Client, ClientOptions, Error, Platform};

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn platform(s: &str) -> Platform {
    s.parse().unwrap()
}

fn layer_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn pushes_blobs_and_manifest_then_resolves_and_streams_them_back() {
    let registry = Registry::start(None).await;
    let client = Client::new(client_options(registry.scratch())).unwrap();
    let repo = registry.reference("kiln/test:v1");

    // A layer spanning several upload chunks.
    let layer = blob_file(
        registry.scratch(),
        "layer",
        &layer_bytes(7, 3 * 1024 * 1024 + 5),
    );
    assert!(
        !client
            .blob_exists(&repo, &layer.digest, Access::Pull)
            .await
            .unwrap()
    );
    client
        .push_blob(&repo, &layer.digest, layer.size, &layer.path)
        .await
        .unwrap();
    assert!(
        client
            .blob_exists(&repo, &layer.digest, Access::Pull)
            .await
            .unwrap()
    );
    assert!(
        client
            .blob_exists(&repo, &layer.digest, Access::Push)
            .await
            .unwrap()
    );

    let config = blob_file(
        registry.scratch(),
        "config",
        &config_json("amd64", None, &layer.digest),
    );
    client
        .push_blob(&repo, &config.digest, config.size, &config.path)
        .await
        .unwrap();

    let manifest = manifest_json(OCI_MANIFEST, OCI_CONFIG, &config, OCI_LAYER, &layer);
    let pushed = client
        .push_manifest(&repo, OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    assert_eq!(pushed, sha256(&manifest));

    let resolved = client
        .resolve_image(&repo, &platform("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(resolved.manifest_digest, pushed);
    assert_eq!(resolved.index_digest, None);
    assert_eq!(resolved.manifest_media_type, OCI_MANIFEST);
    assert_eq!(resolved.config_bytes, config.bytes);
    assert_eq!(resolved.config.architecture().to_string(), "amd64");
    assert_eq!(resolved.manifest.layers().len(), 1);
    assert_eq!(
        resolved.manifest.layers()[0].digest().to_string(),
        layer.digest
    );
    assert_eq!(resolved.reference, repo);

    // Pinned by digest: verified against the pin.
    let pinned = repo.pinned(&pushed);
    let by_digest = client
        .resolve_image(&pinned, &platform("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(by_digest.manifest_digest, pushed);

    let mut stream = client.blob(&repo, &layer.digest).await.unwrap();
    assert_eq!(stream.content_length(), Some(layer.size));
    let mut received = Vec::new();
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(sha256(&received), layer.digest);

    // As a Stream too.
    let chunks: Vec<Bytes> = client
        .blob(&repo, &config.digest)
        .await
        .unwrap()
        .into_stream()
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert_eq!(chunks.concat(), config.bytes.to_vec());
}

#[tokio::test]
async fn docker_schema2_manifests_resolve_like_oci_ones() {
    let registry = Registry::start(None).await;
    let client = Client::new(client_options(registry.scratch())).unwrap();
    let repo = registry.reference("docker/style:latest");
    let (layer, config) =
        push_layer_and_config(&client, &registry, &repo, b"not really a tarball").await;
    let manifest = manifest_json(
        DOCKER_MANIFEST,
        DOCKER_CONFIG,
        &config,
        DOCKER_LAYER,
        &layer,
    );
    let digest = client
        .push_manifest(&repo, DOCKER_MANIFEST, manifest.clone())
        .await
        .unwrap();
    let resolved = client
        .resolve_image(&repo, &platform("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(resolved.manifest_digest, digest);
    assert_eq!(resolved.manifest_media_type, DOCKER_MANIFEST);
    assert_eq!(
        resolved.manifest.layers()[0].media_type().to_string(),
        DOCKER_LAYER
    );
}

#[tokio::test]
async fn index_with_two_platforms_resolves_each_and_lists_them_when_missing() {
    let registry = Registry::start(None).await;
    let client = Client::new(client_options(registry.scratch())).unwrap();
    let repo = registry.reference("kiln/multi:latest");

    let mut entries = Vec::new();
    let mut manifest_digests = Vec::new();
    for (i, (arch, variant)) in [("amd64", None), ("arm64", Some("v8"))]
        .into_iter()
        .enumerate()
    {
        let layer = blob_file(
            registry.scratch(),
            &format!("layer{i}"),
            &layer_bytes(i as u8, 1000 + i),
        );
        let config = blob_file(
            registry.scratch(),
            &format!("config{i}"),
            &config_json(arch, variant, &layer.digest),
        );
        for blob in [&layer, &config] {
            client
                .push_blob(&repo, &blob.digest, blob.size, &blob.path)
                .await
                .unwrap();
        }
        let manifest = manifest_json(OCI_MANIFEST, OCI_CONFIG, &config, OCI_LAYER, &layer);
        let digest = sha256(&manifest);
        let pushed = client
            .push_manifest(&repo.pinned(&digest), OCI_MANIFEST, manifest.clone())
            .await
            .unwrap();
        assert_eq!(pushed, digest);
        let variant = variant
            .map(|v| format!(r#","variant":"{v}""#))
            .unwrap_or_default();
        entries.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{},"platform":{{"architecture":"{arch}","os":"linux"{variant}}}}}"#,
            manifest.len()
        ));
        manifest_digests.push(digest);
    }
    let index = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    ));
    let index_digest = client
        .push_manifest(&repo, OCI_INDEX, index.clone())
        .await
        .unwrap();
    assert_eq!(index_digest, sha256(&index));

    let amd64 = client
        .resolve_image(&repo, &platform("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(amd64.manifest_digest, manifest_digests[0]);
    assert_eq!(amd64.index_digest.as_deref(), Some(index_digest.as_str()));
    assert_eq!(amd64.config.architecture().to_string(), "amd64");

    // arm64 without a variant matches the arm64/v8 entry.
    let arm64 = client
        .resolve_image(&repo, &platform("linux/arm64"))
        .await
        .unwrap();
    assert_eq!(arm64.manifest_digest, manifest_digests[1]);
    assert_eq!(arm64.config.architecture().to_string(), "arm64");

    let err = client
        .resolve_image(&repo, &platform("linux/s390x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PlatformNotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("linux/s390x") && msg.contains("linux/amd64, linux/arm64/v8"),
        "{msg}"
    );
}

#[tokio::test]
async fn missing_manifest_error_names_image_status_and_registry_code() {
    let registry = Registry::start(None).await;
    let client = Client::new(client_options(registry.scratch())).unwrap();
    let repo = registry.reference("nope");
    let err = client
        .resolve_image(&repo, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "pulling manifest {}/nope:latest: HTTP 404 Not Found: ",
            registry.addr
        )),
        "{msg}"
    );
    assert!(
        msg.contains("MANIFEST_UNKNOWN") || msg.contains("NAME_UNKNOWN"),
        "{msg}"
    );
}

#[tokio::test]
async fn explicitly_insecure_registry_is_used_over_plain_http() {
    let registry = Registry::start(None).await;
    let options = ClientOptions {
        insecure_registries: vec![registry.addr.clone()],
        ..client_options(registry.scratch())
    };
    let client = Client::new(options).unwrap();
    let repo = registry.reference("kiln/insecure:v1");
    let blob = blob_file(registry.scratch(), "b", b"hello");
    client
        .push_blob(&repo, &blob.digest, blob.size, &blob.path)
        .await
        .unwrap();
    assert!(
        client
            .blob_exists(&repo, &blob.digest, Access::Push)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn push_blob_refuses_a_file_whose_size_differs_from_the_declared_one() {
    let registry = Registry::start(None).await;
    let client = Client::new(client_options(registry.scratch())).unwrap();
    let repo = registry.reference("kiln/size:v1");
    let blob = blob_file(registry.scratch(), "b", b"hello");
    let err = client
        .push_blob(&repo, &blob.digest, blob.size + 1, &blob.path)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FileSize { .. }), "{err}");
    // A wrong digest is rejected by the registry, and the error says so.
    let wrong = sha256(b"other");
    let err = client
        .push_blob(&repo, &wrong, blob.size, &blob.path)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("DIGEST_INVALID"), "{err}");
}

#[tokio::test]
async fn unreachable_registry_error_says_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(client_options(dir.path())).unwrap();
    let repo: kiln_registry::Reference = format!("127.0.0.1:{port}/x").parse().unwrap();
    let err = client
        .resolve_image(&repo, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach registry 127.0.0.1:{port}: connection refused")
    );
}
