//! Bugs the fault matrix found, each pinned by the smallest build that showed it.

use crate::faults::check::{printed_digest, tag_digest};
use crate::support::proxy::{Action, Proxy};
use crate::support::{Kiln, Project, Registry};

/// A manifest damaged on the way to the registry in a way that keeps it valid (one bit of a
/// long annotation flipped) is stored under the tag as it arrived; kiln used to fail with a
/// digest mismatch and leave the tag on the damaged manifest. It now puts the manifest again,
/// and the tag ends on the image kiln built.
#[test]
fn a_manifest_the_registry_stored_damaged_is_put_again_and_the_tag_ends_on_the_built_image() {
    let (registry, _) = Registry::with_busybox();
    let proxy = Proxy::start(registry.addr());
    let project = Project::new().dockerfile(&format!("FROM {}\n", proxy.image("busybox:latest")));
    // The manifest's middle byte is inside this value, so the damaged manifest stays valid.
    let annotation = format!("note={}", "x".repeat(4096));
    proxy.fail("PUT", "/v2/damaged/manifests/", 1, Action::FlipRequestByte);
    let destination = proxy.image("damaged:1");
    let outcome = Kiln::build(project.path())
        .args(["--annotation", &annotation])
        .push_to(&destination)
        .run();
    let log = outcome.stderr();
    let stdout = outcome.success();
    assert!(log.contains("damaged in flight"), "{log}");
    assert_eq!(proxy.count("PUT", "/v2/damaged/manifests/"), 2);
    assert_eq!(
        tag_digest(&registry.image("damaged:1")),
        Some(printed_digest(&stdout))
    );
}

/// A manifest refused as naming a blob the registry lacks, right after kiln confirmed every
/// blob is there, was damaged on the way (here one bit of a layer digest flipped): it is put
/// again rather than failing the build.
#[test]
fn a_manifest_refused_for_an_unknown_blob_right_after_its_blobs_were_confirmed_is_put_again() {
    let (registry, _) = Registry::with_busybox();
    let proxy = Proxy::start(registry.addr());
    // Three layers: the manifest's middle byte falls in a layer digest.
    let project = Project::new()
        .dockerfile(&format!(
            "FROM {}\nCOPY app/ /app/\nRUN echo x > /x\n",
            proxy.image("busybox:latest")
        ))
        .file("app/a.txt", "a\n");
    proxy.fail("PUT", "/v2/refused/manifests/", 1, Action::FlipRequestByte);
    let outcome = Kiln::build(project.path())
        .push_to(&proxy.image("refused:1"))
        .run();
    let log = outcome.stderr();
    let stdout = outcome.success();
    assert!(log.contains("MANIFEST_BLOB_UNKNOWN"), "{log}");
    assert_eq!(proxy.count("PUT", "/v2/refused/manifests/"), 2);
    assert_eq!(
        tag_digest(&registry.image("refused:1")),
        Some(printed_digest(&stdout))
    );
}
