//! Bearer token auth, token caching, cross-origin redirects and digest verification,
//! against scripted servers.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::fake::{FakeServer, Reply};
use common::{client_options, sha256};
use kiln_registry::manifest::OCI_MANIFEST;
use kiln_registry::{BlobUpload, Client, ClientOptions, Error, Platform, Pushed, Reference};

const TOKEN: &str = "tok-123";

struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

fn image() -> Image {
    let layer = b"layer-data".to_vec();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        sha256(&config),
        config.len(),
        sha256(&layer),
        layer.len()
    )
    .into_bytes();
    Image {
        manifest,
        config,
        layer,
    }
}

/// Blob storage on another origin: must never see the registry's Authorization header.
async fn storage(layer: Vec<u8>) -> FakeServer {
    FakeServer::start(move |_| Reply::new(200).body(layer.clone())).await
}

/// A registry demanding a Bearer token from its own /token realm. `announce` is the
/// Docker-Content-Digest it sends with manifests (honest or not).
async fn registry(img: &Image, storage_port: u16, announce: String) -> FakeServer {
    let port_cell: Arc<Mutex<u16>> = Arc::new(Mutex::new(0));
    let cell = port_cell.clone();
    let manifest = img.manifest.clone();
    let config = img.config.clone();
    let config_path = format!("/v2/team/app/blobs/{}", sha256(&img.config));
    let layer_path = format!("/v2/team/app/blobs/{}", sha256(&img.layer));
    let server = FakeServer::start(move |req| {
        let port = *cell.lock().unwrap();
        if req.target.starts_with("/token") {
            return Reply::new(200).body(format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#));
        }
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return Reply::new(401)
                .header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake-registry""#
                    ),
                )
                .body(
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                );
        }
        match req.target.as_str() {
            // Serves the same bytes whatever tag or digest is asked for, as a
            // compromised or buggy registry might.
            p if p.starts_with("/v2/team/app/manifests/") => Reply::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .header("Docker-Content-Digest", &announce)
                .body(manifest.clone()),
            p if p == config_path => Reply::new(200).body(config.clone()),
            p if p == layer_path => Reply::new(307).header(
                "Location",
                &format!("http://localhost:{storage_port}/bucket/layer?sig=x"),
            ),
            _ => Reply::new(404).body(r#"{"errors":[{"code":"NOT_FOUND","message":"no"}]}"#),
        }
    })
    .await;
    *port_cell.lock().unwrap() = server.port;
    server
}

fn options(dir: &std::path::Path, port: u16) -> ClientOptions {
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    options_with(dir, port, &format!(r#"{{"auth":"{auth}"}}"#))
}

fn options_with(dir: &std::path::Path, port: u16, entry: &str) -> ClientOptions {
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"127.0.0.1:{port}":{entry}}}}}"#),
    )
    .unwrap();
    ClientOptions {
        insecure_registries: vec![format!("127.0.0.1:{port}")],
        ..client_options(dir)
    }
}

#[tokio::test]
async fn bearer_token_is_fetched_with_basic_credentials_cached_and_not_sent_to_storage() {
    let img = image();
    let storage = storage(img.layer.clone()).await;
    let registry = registry(&img, storage.port, sha256(&img.manifest)).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path(), registry.port)).unwrap();
    let reference: Reference = format!("127.0.0.1:{}/team/app", registry.port)
        .parse()
        .unwrap();

    let resolved = client
        .resolve_image(&reference, &Platform::host())
        .await
        .unwrap();
    assert_eq!(resolved.manifest_digest, sha256(&img.manifest));
    client
        .resolve_image(&reference, &Platform::host())
        .await
        .unwrap();

    let token_requests: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/token"))
        .collect();
    assert_eq!(
        token_requests.len(),
        1,
        "token must be cached for the scope"
    );
    let token_request = &token_requests[0];
    assert!(
        token_request.target.contains("service=fake-registry"),
        "{}",
        token_request.target
    );
    assert!(
        token_request
            .target
            .contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{}",
        token_request.target
    );
    assert_eq!(
        token_request.header("authorization"),
        Some("Basic YWxpY2U6cHc=")
    );

    let mut blob = client.blob(&reference, &sha256(&img.layer)).await.unwrap();
    let mut data = Vec::new();
    while let Some(chunk) = blob.next_chunk().await.unwrap() {
        data.extend_from_slice(&chunk);
    }
    assert_eq!(data, img.layer);
    let storage_requests = storage.requests();
    assert_eq!(storage_requests.len(), 1);
    assert_eq!(storage_requests[0].target, "/bucket/layer?sig=x");
    assert_eq!(
        storage_requests[0].header("authorization"),
        None,
        "Authorization leaked to blob storage"
    );
}

#[tokio::test]
async fn manifest_not_matching_docker_content_digest_is_rejected() {
    let img = image();
    let storage = storage(img.layer.clone()).await;
    let registry = registry(&img, storage.port, sha256(b"something else")).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path(), registry.port)).unwrap();
    let reference: Reference = format!("127.0.0.1:{}/team/app", registry.port)
        .parse()
        .unwrap();
    let err = client
        .resolve_image(&reference, &Platform::host())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&sha256(&img.manifest)), "{err}");
}

#[tokio::test]
async fn manifest_not_matching_the_pinned_digest_is_rejected() {
    let img = image();
    let storage = storage(img.layer.clone()).await;
    let registry = registry(&img, storage.port, sha256(&img.manifest)).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path(), registry.port)).unwrap();
    let pinned: Reference = format!("127.0.0.1:{}/team/app:latest", registry.port)
        .parse()
        .unwrap();
    let pinned = pinned.with_digest(&sha256(b"pinned"));
    let err = client
        .resolve_image(&pinned, &Platform::host())
        .await
        .unwrap_err();
    match &err {
        Error::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &sha256(b"pinned"));
            assert_eq!(actual, &sha256(&img.manifest));
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
}

#[tokio::test]
async fn identity_token_is_exchanged_with_a_refresh_token_grant() {
    let img = image();
    let storage = storage(img.layer.clone()).await;
    let registry = registry(&img, storage.port, sha256(&img.manifest)).await;
    let dir = tempfile::tempdir().unwrap();
    let options = options_with(
        dir.path(),
        registry.port,
        r#"{"identitytoken":"refresh-me"}"#,
    );
    let client = Client::new(options).unwrap();
    let reference: Reference = format!("127.0.0.1:{}/team/app", registry.port)
        .parse()
        .unwrap();
    client
        .resolve_image(&reference, &Platform::host())
        .await
        .unwrap();

    let token_request = registry
        .requests()
        .into_iter()
        .find(|r| r.target.starts_with("/token"))
        .unwrap();
    assert_eq!(token_request.method, "POST");
    assert_eq!(token_request.header("authorization"), None);
    let body = &token_request.body;
    for part in [
        "grant_type=refresh_token",
        "refresh_token=refresh-me",
        "service=fake-registry",
        "scope=repository%3Ateam%2Fapp%3Apull",
    ] {
        assert!(body.contains(part), "{part} missing from {body}");
    }
}

/// A registry that mounts `mountable` from `base/img` and answers any other mount with 202
/// and an upload session, behind Bearer auth.
async fn mounting_registry(mountable: String) -> FakeServer {
    let port_cell: Arc<Mutex<u16>> = Arc::new(Mutex::new(0));
    let cell = port_cell.clone();
    let server = FakeServer::start(move |req| {
        let port = *cell.lock().unwrap();
        if req.target.starts_with("/token") {
            return Reply::new(200).body(format!(r#"{{"token":"{TOKEN}"}}"#));
        }
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return Reply::new(401).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake""#),
            );
        }
        match (req.method.as_str(), req.target.as_str()) {
            ("POST", t) if t.contains(&format!("mount={mountable}&from=base/img")) => {
                Reply::new(201)
            }
            ("POST", _) => Reply::new(202).header("Location", "/v2/team/app/blobs/uploads/s1"),
            ("PUT", t) if t.starts_with("/v2/team/app/blobs/uploads/s1?digest=") => Reply::new(201),
            _ => Reply::new(404),
        }
    })
    .await;
    *port_cell.lock().unwrap() = server.port;
    server
}

#[tokio::test]
async fn a_mount_asks_one_token_for_both_repositories_and_falls_back_to_upload_on_202() {
    let dir = tempfile::tempdir().unwrap();
    let held = common::blob_file(dir.path(), "held", b"held by base/img");
    let fresh = common::blob_file(dir.path(), "fresh", b"nowhere yet");
    let registry = mounting_registry(held.digest.clone()).await;
    let client = Client::new(options(dir.path(), registry.port)).unwrap();
    let repo: Reference = format!("127.0.0.1:{}/team/app:1", registry.port)
        .parse()
        .unwrap();
    fn upload(blob: &common::BlobFile) -> BlobUpload<'_> {
        BlobUpload {
            digest: &blob.digest,
            size: blob.size,
            path: &blob.path,
            mount_from: Some("base/img"),
        }
    }
    let pushed = client.upload_blob(&repo, &upload(&held)).await.unwrap();
    assert_eq!(pushed, Pushed::Mounted);
    let pushed = client.upload_blob(&repo, &upload(&fresh)).await.unwrap();
    assert_eq!(pushed, Pushed::Uploaded);

    let requests = registry.requests();
    let token = requests
        .iter()
        .find(|r| r.target.starts_with("/token"))
        .unwrap();
    assert!(
        token.target.contains(
            "scope=repository%3Ateam%2Fapp%3Apull%2Cpush&scope=repository%3Abase%2Fimg%3Apull"
        ),
        "{}",
        token.target
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.target.starts_with("/token"))
            .count(),
        1,
        "the two-repository token is cached"
    );
    let puts: Vec<_> = requests.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(
        puts.len(),
        1,
        "only the blob the registry could not mount is sent"
    );
    assert!(puts[0].target.contains(&fresh.digest.replace(':', "%3A")));
}

#[tokio::test]
async fn a_token_the_registry_stops_accepting_is_replaced_on_401() {
    // The token server numbers its tokens; the registry accepts only the newest, and the
    // first one for a single request (as if revoked right after).
    let state = Arc::new(Mutex::new((0u32, false)));
    let port_cell: Arc<Mutex<u16>> = Arc::new(Mutex::new(0));
    let (cell, shared) = (port_cell.clone(), state.clone());
    let registry = FakeServer::start(move |req| {
        let port = *cell.lock().unwrap();
        let mut state = shared.lock().unwrap();
        if req.target.starts_with("/token") {
            state.0 += 1;
            return Reply::new(200)
                .body(format!(r#"{{"token":"tok-{}","expires_in":300}}"#, state.0));
        }
        let current = format!("Bearer tok-{}", state.0);
        if req.header("authorization") == Some(current.as_str()) && !(state.0 == 1 && state.1) {
            state.1 |= state.0 == 1;
            return Reply::new(200);
        }
        Reply::new(401).header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake""#),
        )
    })
    .await;
    *port_cell.lock().unwrap() = registry.port;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path(), registry.port)).unwrap();
    let repo: Reference = format!("127.0.0.1:{}/team/app:1", registry.port)
        .parse()
        .unwrap();
    for content in [&b"first"[..], b"second"] {
        assert!(
            client
                .blob_exists(&repo, &sha256(content), kiln_registry::Access::Pull)
                .await
                .unwrap()
        );
    }
    let requests = registry.requests();
    let tokens = requests
        .iter()
        .filter(|r| r.target.starts_with("/token"))
        .count();
    assert_eq!(tokens, 2, "{requests:#?}");
    let sent: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "HEAD")
        .map(|r| r.header("authorization").unwrap_or("-").to_owned())
        .collect();
    assert_eq!(
        sent,
        ["-", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"],
        "the cached token is sent first, refused, and replaced"
    );
}
