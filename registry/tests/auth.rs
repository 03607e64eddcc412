//! Basic authentication against a real registry with htpasswd.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::{Registry, blob_file, client_options, manifest_json, push_layer_and_config};
use kiln_registry::manifest::OCI_MANIFEST;
use kiln_registry::{Access, Client, Platform};

async fn registry_with_user(user: &str, password: &str) -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
    (Registry::start(Some(&htpasswd)).await, dir)
}

fn write_config(dir: &std::path::Path, registry: &str, user: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
}

#[tokio::test]
async fn credentials_from_docker_config_allow_push_and_pull() {
    let (registry, dir) = registry_with_user("kiln", "s3cret-pw").await;
    let config_dir = dir.path().join("docker");
    std::fs::create_dir(&config_dir).unwrap();
    write_config(
        &config_dir,
        &format!("http://{}", registry.addr),
        "kiln",
        "s3cret-pw",
    );
    let client = Client::new(client_options(&config_dir)).unwrap();

    let repo = registry.reference("private/app:v1");
    let (layer, config) = push_layer_and_config(&client, &registry, &repo, b"layer bytes").await;
    let manifest = manifest_json(
        OCI_MANIFEST,
        "application/vnd.oci.image.config.v1+json",
        &config,
        "application/vnd.oci.image.layer.v1.tar",
        &layer,
    );
    let digest = client
        .push_manifest(&repo, OCI_MANIFEST, manifest)
        .await
        .unwrap();
    assert!(
        client
            .blob_exists(&repo, &layer.digest, Access::Pull)
            .await
            .unwrap()
    );

    // A fresh client (no cached auth) pulls it back.
    let puller = Client::new(client_options(&config_dir)).unwrap();
    let resolved = puller
        .resolve_image(&repo, &"linux/amd64".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.manifest_digest, digest);
}

#[tokio::test]
async fn missing_credentials_give_401_naming_the_config_file() {
    let (registry, dir) = registry_with_user("kiln", "pw").await;
    let client = Client::new(client_options(dir.path())).unwrap();
    let err = client
        .resolve_image(&registry.reference("private/app:v1"), &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    let msg = err.to_string();
    let config = dir.path().join("config.json");
    assert!(msg.contains("HTTP 401 Unauthorized"), "{msg}");
    assert!(
        msg.contains(&format!("no credentials for {}", registry.addr))
            && msg.contains(&config.display().to_string()),
        "{msg}"
    );
}

#[tokio::test]
async fn wrong_password_gives_401_with_check_credentials_hint_and_no_secret() {
    let (registry, dir) = registry_with_user("kiln", "right-password").await;
    write_config(dir.path(), &registry.addr, "kiln", "wrong-password");
    let client = Client::new(client_options(dir.path())).unwrap();
    let blob = blob_file(dir.path(), "b", b"x");
    let err = client
        .push_blob(
            &registry.reference("private/app:v1"),
            &blob.digest,
            blob.size,
            &blob.path,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("pushing blob "), "{msg}");
    assert!(msg.contains("(check credentials for"), "{msg}");
    assert!(
        !format!("{msg} {err:?}").contains("wrong-password"),
        "{msg}"
    );
}
