//! Mirrors answering 5xx: skipped in order, then the next mirror (a real registry) serves the
//! image; with the fallback off, the error lists every mirror and what it answered. The
//! integration tests cover unreachable and empty (404) mirrors through the `kiln` binary.

#![allow(clippy::unwrap_used)]

mod common;

use common::fake::{FakeServer, Reply};
use common::{Registry, client_options, manifest_json, push_layer_and_config};
use kiln_registry::manifest::OCI_MANIFEST;
use kiln_registry::{Client, ClientOptions, Error, Platform, Reference, RegistryMaps};

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Pushes a one-layer image to `registry` as `cache/app:v1`.
async fn push_image(registry: &Registry) {
    let client = Client::new(client_options(registry.scratch())).unwrap();
    let repo = registry.reference("cache/app:v1");
    let (layer, config) = push_layer_and_config(&client, registry, &repo, b"layer bytes").await;
    let manifest = manifest_json(OCI_MANIFEST, OCI_CONFIG, &config, OCI_LAYER, &layer);
    client
        .push_manifest(&repo, OCI_MANIFEST, manifest)
        .await
        .unwrap();
}

fn options(registry: &Registry, map: &str, skip_fallback: bool) -> ClientOptions {
    let mut maps = RegistryMaps::default();
    maps.add_map(map).unwrap();
    ClientOptions {
        registry_maps: maps,
        skip_default_registry_fallback: skip_fallback,
        insecure_pull: true,
        ..client_options(registry.scratch())
    }
}

#[tokio::test]
async fn mirrors_answering_5xx_are_skipped_in_order_and_layers_come_from_the_one_that_answered() {
    let registry = Registry::start(None).await;
    push_image(&registry).await;
    let broken = FakeServer::start(|_| Reply::new(500).body("overloaded")).await;
    let unavailable = FakeServer::start(|_| Reply::new(503)).await;
    // The image names a registry that does not exist: only the mirrors can serve it.
    let image: Reference = "gone.invalid:5000/app:v1".parse().unwrap();
    let map = format!(
        "gone.invalid:5000=127.0.0.1:{}/cache;127.0.0.1:{}/cache;{}/cache",
        broken.port, unavailable.port, registry.addr
    );
    let client = Client::new(options(&registry, &map, false)).unwrap();
    let resolved = client
        .resolve_pull(&image, &"linux/amd64".parse::<Platform>().unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.reference, image);
    assert_eq!(
        resolved.source.to_string(),
        format!("{}/cache/app:v1", registry.addr)
    );
    for fake in [&broken, &unavailable] {
        let seen = fake.requests();
        assert!(
            seen.iter()
                .any(|r| r.target == "/v2/cache/app/manifests/v1"),
            "{seen:?}"
        );
    }
    let layer = resolved.manifest.layers()[0].digest().to_string();
    client.blob(&resolved.source, &layer).await.unwrap();

    let map = format!(
        "gone.invalid:5000=127.0.0.1:{};127.0.0.1:{}",
        broken.port, unavailable.port
    );
    let client = Client::new(options(&registry, &map, true)).unwrap();
    let err = client
        .resolve_pull(&image, &"linux/amd64".parse::<Platform>().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOnAnyMirror { .. }), "{err:?}");
    let text = err.to_string();
    for expected in [
        format!("127.0.0.1:{}", broken.port),
        format!("127.0.0.1:{}", unavailable.port),
        "500".to_owned(),
        "503".to_owned(),
        "gone.invalid:5000/app:v1".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected} missing from: {text}");
    }
}
