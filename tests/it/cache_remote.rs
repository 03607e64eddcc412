//! The remote cache's format and protocol, driven directly (no build) against a real
//! `docker-registry` and an OCI layout, checked with skopeo and through the fault proxy's log:
//! what one build publishes another finds, expired and surplus records go, blobs the
//! repository has are never sent again, damaged layers never enter the store, and a cache
//! repository that fails is named in the error.

use std::path::Path;
use std::time::Duration;

use kiln_cas::{LayerRecord, StepRecord, Store};
use kiln_cli::remote_cache::{CacheRepo, Publication, RECORDS_MEDIA_TYPE, RemoteCache, Scope};
use kiln_registry::{Client, ClientOptions, Reference};

use crate::support::Registry;
use crate::support::proxy::{Action, Proxy};
use crate::support::registry::free_port;
use crate::support::tools::{run, skopeo};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn client() -> Client {
    Client::new(ClientOptions::default()).unwrap()
}

fn in_registry(repo: &str, ttl: Duration) -> RemoteCache {
    let reference: Reference = repo.parse().unwrap();
    RemoteCache::new(client(), CacheRepo::Registry(reference), ttl)
}

fn in_layout(dir: &Path, ttl: Duration) -> RemoteCache {
    RemoteCache::new(client(), CacheRepo::Layout(dir.to_path_buf()), ttl)
}

/// A local store in a temporary directory.
struct LocalStore {
    _dir: tempfile::TempDir,
    store: Store,
}

impl LocalStore {
    fn new() -> LocalStore {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        LocalStore { _dir: dir, store }
    }

    /// A layer with `content` as its (opaque) bytes, complete in the store.
    fn layer(&self, content: &str) -> LayerRecord {
        let blob = self.store.put(content.as_bytes()).unwrap();
        LayerRecord {
            digest: blob.digest,
            size: blob.size,
            diff_id: format!("sha256:{}", "d".repeat(64)),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
        }
    }
}

fn key(n: u64) -> [u8; 32] {
    let mut key = [0xabu8; 32];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key
}

fn now() -> u64 {
    kiln_cas::record::now()
}

fn step(layer: Option<LayerRecord>, recorded: u64) -> StepRecord {
    StepRecord { layer, recorded }
}

fn scope() -> Scope {
    Scope("Dockerfile#build@linux/amd64".to_owned())
}

fn hex_of(layer: &LayerRecord) -> String {
    layer.digest.digest().to_owned()
}

/// `skopeo inspect --raw` of a transport reference, parsed.
fn raw(transport_ref: &str) -> serde_json::Value {
    let output = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(transport_ref));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `skopeo inspect --config --raw`: the records blob as the registry or layout serves it.
fn raw_records(transport_ref: &str) -> serde_json::Value {
    let output = run(skopeo()
        .args(["inspect", "--config", "--raw", "--tls-verify=false"])
        .arg(transport_ref));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn a_scope_never_published_reads_as_empty() {
    let registry = Registry::start();
    let records = in_registry(&registry.image("team/cache"), DAY)
        .fetch(&[scope(), Scope("other".to_owned())])
        .await
        .unwrap();
    assert!(records.steps.is_empty() && records.aliases.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let records = in_layout(&dir.path().join("missing"), DAY)
        .fetch(&[scope()])
        .await
        .unwrap();
    assert!(records.steps.is_empty());
}

#[tokio::test]
async fn what_one_build_publishes_another_finds_and_pulls() {
    let registry = Registry::start();
    let repo = registry.image("team/cache");
    let local = LocalStore::new();
    let layer = local.layer("layer one");
    let publication = Publication {
        steps: vec![
            (key(1), step(Some(layer.clone()), now())),
            (key(2), step(None, now())),
        ],
        aliases: vec![(key(3), key(4))],
    };
    in_registry(&repo, DAY)
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap();

    let other = in_registry(&repo, DAY);
    let records = other.fetch(&[scope()]).await.unwrap();
    assert_eq!(records.steps.len(), 2);
    assert_eq!(records.steps[&key(1)].layer.as_ref(), Some(&layer));
    assert_eq!(records.steps[&key(2)].layer, None);
    assert_eq!(records.aliases[&key(3)], key(4));

    let elsewhere = LocalStore::new();
    other.pull_layer(&elsewhere.store, &layer).await.unwrap();
    assert_eq!(
        std::fs::read(elsewhere.store.blob_path(&layer.digest)).unwrap(),
        b"layer one"
    );
}

#[tokio::test]
async fn skopeo_sees_the_scope_tag_as_an_oci_manifest_of_records_and_layers() {
    let registry = Registry::start();
    let repo = registry.image("team/cache");
    let local = LocalStore::new();
    let layer = local.layer("layer for skopeo");
    let publication = Publication {
        steps: vec![(key(1), step(Some(layer.clone()), now()))],
        aliases: vec![],
    };
    in_registry(&repo, DAY)
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap();

    let tag = scope().tag();
    assert!(tag.starts_with("kiln-") && tag.len() == 37, "{tag}");
    let manifest = raw(&format!("docker://{repo}:{tag}"));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["config"]["mediaType"], RECORDS_MEDIA_TYPE);
    assert_eq!(manifest["layers"][0]["digest"], layer.digest.to_string());
    let records = raw_records(&format!("docker://{repo}:{tag}"));
    assert_eq!(records["steps"][0]["layer"], 0);
    assert_eq!(records["diff_ids"][0], layer.diff_id);
}

#[tokio::test]
async fn a_scope_of_layerless_steps_is_accepted_by_the_registry() {
    let registry = Registry::start();
    let repo = registry.image("team/cache");
    let local = LocalStore::new();
    let publication = Publication {
        steps: vec![(key(1), step(None, now()))],
        aliases: vec![],
    };
    in_registry(&repo, DAY)
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap();
    let manifest = raw(&format!("docker://{repo}:{}", scope().tag()));
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let records = in_registry(&repo, DAY).fetch(&[scope()]).await.unwrap();
    assert_eq!(records.steps[&key(1)].layer, None);
}

#[tokio::test]
async fn records_older_than_the_ttl_are_ignored_and_dropped_at_the_next_publish() {
    let registry = Registry::start();
    let repo = registry.image("team/cache");
    let local = LocalStore::new();
    let hour_ago = now() - 3600;
    let old = Publication {
        steps: vec![(key(1), step(None, hour_ago))],
        aliases: vec![],
    };
    in_registry(&repo, DAY)
        .publish(&local.store, &scope(), &old)
        .await
        .unwrap();

    let short = in_registry(&repo, Duration::from_secs(600));
    assert!(short.fetch(&[scope()]).await.unwrap().steps.is_empty());
    assert_eq!(
        in_registry(&repo, DAY)
            .fetch(&[scope()])
            .await
            .unwrap()
            .steps
            .len(),
        1,
        "a longer TTL still sees it"
    );

    let new = Publication {
        steps: vec![(key(2), step(None, now()))],
        aliases: vec![],
    };
    short.publish(&local.store, &scope(), &new).await.unwrap();
    let records = raw_records(&format!("docker://{repo}:{}", scope().tag()));
    let steps = records["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{records}");
    assert!(steps[0]["recorded"].as_u64().unwrap() >= now() - 60);
}

#[tokio::test]
async fn a_scope_keeps_only_its_newest_thousand_steps() {
    let registry = Registry::start();
    let repo = registry.image("team/cache");
    let local = LocalStore::new();
    let start = now() - 10_000;
    let publication = Publication {
        steps: (0..1005).map(|n| (key(n), step(None, start + n))).collect(),
        aliases: vec![],
    };
    let cache = in_registry(&repo, DAY);
    cache
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap();
    let records = cache.fetch(&[scope()]).await.unwrap();
    assert_eq!(records.steps.len(), 1000);
    for n in 0..5 {
        assert!(!records.steps.contains_key(&key(n)), "oldest step {n} kept");
    }
    assert!(records.steps.contains_key(&key(1004)));
}

#[tokio::test]
async fn concurrent_publishes_to_one_scope_leave_a_valid_manifest() {
    let registry = Registry::start();
    let repo = registry.image("team/cache");
    let (one, two) = (LocalStore::new(), LocalStore::new());
    let (layer_one, layer_two) = (one.layer("from build one"), two.layer("from build two"));
    for round in 0..5u64 {
        let first = Publication {
            steps: vec![(key(100 + round), step(Some(layer_one.clone()), now()))],
            aliases: vec![],
        };
        let second = Publication {
            steps: vec![(key(200 + round), step(Some(layer_two.clone()), now()))],
            aliases: vec![],
        };
        let (a, b) = (in_registry(&repo, DAY), in_registry(&repo, DAY));
        let the_scope = scope();
        let (ra, rb) = tokio::join!(
            a.publish(&one.store, &the_scope, &first),
            b.publish(&two.store, &the_scope, &second)
        );
        ra.unwrap();
        rb.unwrap();
        let records = in_registry(&repo, DAY).fetch(&[scope()]).await.unwrap();
        assert!(
            records.steps.contains_key(&key(100 + round))
                || records.steps.contains_key(&key(200 + round)),
            "round {round}: neither publish is visible"
        );
    }
    // Every layer the final records name is in the repository.
    let reader = in_registry(&repo, DAY);
    let records = reader.fetch(&[scope()]).await.unwrap();
    let fresh = LocalStore::new();
    for record in records.steps.values() {
        reader
            .pull_layer(&fresh.store, record.layer.as_ref().unwrap())
            .await
            .unwrap();
    }
    raw(&format!("docker://{repo}:{}", scope().tag()));
}

#[tokio::test]
async fn a_layer_the_repository_has_is_not_uploaded_again() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    let repo = proxy.image("team/cache");
    let local = LocalStore::new();
    let layer = local.layer("uploaded once");
    let hex = hex_of(&layer);
    for n in 0..2 {
        let publication = Publication {
            steps: vec![(key(n), step(Some(layer.clone()), now()))],
            aliases: vec![],
        };
        in_registry(&repo, DAY)
            .publish(&local.store, &scope(), &publication)
            .await
            .unwrap();
    }
    let uploads = proxy
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PUT" && r.path.contains("/blobs/uploads/") && r.path.contains(&hex)
        })
        .count();
    assert_eq!(uploads, 1, "{:#?}", proxy.requests());
    assert!(proxy.count("HEAD", &hex) >= 2);
    let records = in_registry(&repo, DAY).fetch(&[scope()]).await.unwrap();
    assert_eq!(records.steps.len(), 2);
}

#[tokio::test]
async fn a_layer_another_repository_holds_is_mounted_not_uploaded() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    let local = LocalStore::new();
    let layer = local.layer("a base image layer");
    let hex = hex_of(&layer);
    let base: Reference = proxy.image("library/base").parse().unwrap();
    client()
        .push_blob(
            &base,
            layer.digest.as_ref(),
            layer.size,
            &local.store.blob_path(&layer.digest),
        )
        .await
        .unwrap();
    let before = proxy.requests().len();

    let cache = in_registry(&proxy.image("team/cache"), DAY);
    cache.add_mount_source(&layer.digest, &base);
    let publication = Publication {
        steps: vec![(key(1), step(Some(layer.clone()), now()))],
        aliases: vec![],
    };
    cache
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap();
    let after = &proxy.requests()[before..];
    assert!(
        after
            .iter()
            .any(|r| r.method == "POST" && r.path.contains("mount=") && r.path.contains(&hex)),
        "{after:#?}"
    );
    assert!(
        !after
            .iter()
            .any(|r| matches!(r.method.as_str(), "PUT" | "PATCH") && r.path.contains(&hex)),
        "the layer was uploaded: {after:#?}"
    );
    let fresh = LocalStore::new();
    cache.pull_layer(&fresh.store, &layer).await.unwrap();
}

#[tokio::test]
async fn a_layer_damaged_in_transit_fails_the_pull_naming_it_and_stays_out_of_the_store() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    let repo = proxy.image("team/cache");
    let local = LocalStore::new();
    let layer = local.layer("these bytes will be flipped in transit");
    let publication = Publication {
        steps: vec![(key(1), step(Some(layer.clone()), now()))],
        aliases: vec![],
    };
    let cache = in_registry(&repo, DAY);
    cache
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap();
    proxy.fail("GET", &hex_of(&layer), 100, Action::FlipByte);
    let fresh = LocalStore::new();
    let error = cache.pull_layer(&fresh.store, &layer).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&hex_of(&layer)), "{message}");
    assert!(message.contains("team/cache"), "{message}");
    assert!(!fresh.store.contains(&layer.digest));
}

#[tokio::test]
async fn an_unreachable_cache_repository_is_an_error_naming_it() {
    let repo = format!("127.0.0.1:{}/team/cache", free_port());
    let error = in_registry(&repo, DAY).fetch(&[scope()]).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&repo), "{message}");
    assert!(message.contains(&scope().tag()), "{message}");
}

#[tokio::test]
async fn a_failing_cache_registry_is_an_error_naming_repository_tag_and_status() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    let repo = proxy.image("team/cache");
    proxy.fail("GET", "/manifests/", 100, Action::Status(500));
    let error = in_registry(&repo, DAY).fetch(&[scope()]).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("{repo}:{}", scope().tag())),
        "{message}"
    );
    assert!(message.contains("500"), "{message}");
}

#[tokio::test]
async fn a_cache_repository_refusing_pushes_fails_the_access_check_and_the_publish() {
    let registry = Registry::start_with_auth("builder", "s3cret");
    let repo = registry.image("team/cache");
    let cache = in_registry(&repo, DAY);
    let error = cache.check_access().await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&repo), "{message}");
    assert!(message.contains("401"), "{message}");

    let local = LocalStore::new();
    let publication = Publication {
        steps: vec![(key(1), step(Some(local.layer("refused")), now()))],
        aliases: vec![],
    };
    let error = cache
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&repo), "{message}");
    assert!(message.contains("401"), "{message}");
}

#[tokio::test]
async fn an_oci_layout_holds_the_scope_under_its_tag_next_to_other_images() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("cache");
    let local = LocalStore::new();
    let layer = local.layer("layer in a layout");
    let cache = in_layout(&layout, DAY);
    cache.check_access().await.unwrap();
    // An image already in the layout stays there.
    let foreign =
        crate::support::base::put(&layout, "application/vnd.oci.image.manifest.v1+json", b"{}");
    crate::support::base::write_index(&layout, "someone-elses", foreign);

    let publication = Publication {
        steps: vec![(key(1), step(Some(layer.clone()), now()))],
        aliases: vec![(key(2), key(3))],
    };
    cache
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap();
    let second = Publication {
        steps: vec![(key(4), step(None, now()))],
        aliases: vec![],
    };
    cache
        .publish(&local.store, &scope(), &second)
        .await
        .unwrap();

    let transport = format!("oci:{}:{}", layout.display(), scope().tag());
    let manifest = raw(&transport);
    assert_eq!(manifest["config"]["mediaType"], RECORDS_MEDIA_TYPE);
    assert_eq!(
        raw_records(&transport)["steps"].as_array().unwrap().len(),
        2
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["someone-elses", scope().tag().as_str()]);

    let other = in_layout(&layout, DAY);
    let records = other.fetch(&[scope()]).await.unwrap();
    assert_eq!(records.steps.len(), 2);
    assert_eq!(records.aliases[&key(2)], key(3));
    let fresh = LocalStore::new();
    other.pull_layer(&fresh.store, &layer).await.unwrap();
    assert!(fresh.store.contains(&layer.digest));
}

#[tokio::test]
async fn concurrent_publishes_into_one_layout_lose_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("cache");
    let local = LocalStore::new();
    // Each publish runs its file work on its own blocking thread: they really race for the lock.
    // Spawned tasks on blocking threads: the publishes really race for the lock.
    let publishes = (0..8u64).map(|n| {
        let cache = in_layout(&layout, DAY);
        let store = local.store.clone();
        let layer = local.layer(&format!("layer {n}"));
        tokio::spawn(async move {
            let publication = Publication {
                steps: vec![(key(n), step(Some(layer), now()))],
                aliases: vec![],
            };
            cache.publish(&store, &scope(), &publication).await
        })
    });
    for publish in futures_util::future::join_all(publishes).await {
        publish.unwrap().unwrap();
    }
    let records = in_layout(&layout, DAY).fetch(&[scope()]).await.unwrap();
    assert_eq!(records.steps.len(), 8);
    raw(&format!("oci:{}:{}", layout.display(), scope().tag()));
}

#[tokio::test]
async fn a_damaged_layer_in_a_layout_fails_the_pull_and_stays_out_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("cache");
    let local = LocalStore::new();
    let layer = local.layer("to be damaged");
    let cache = in_layout(&layout, DAY);
    let publication = Publication {
        steps: vec![(key(1), step(Some(layer.clone()), now()))],
        aliases: vec![],
    };
    cache
        .publish(&local.store, &scope(), &publication)
        .await
        .unwrap();
    let blob = layout.join("blobs/sha256").join(hex_of(&layer));
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, b"to be DAMAGED").unwrap();
    let fresh = LocalStore::new();
    let error = cache.pull_layer(&fresh.store, &layer).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&hex_of(&layer)), "{message}");
    assert!(!fresh.store.contains(&layer.digest));
}
