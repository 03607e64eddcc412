//! Manifests, indexes and configs are JSON chosen by the registry (or whoever pushed the base
//! image): parsing them into the `oci-spec` types kiln-registry uses (`resolve.rs`), and choosing
//! an index entry by platform, must fail with an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

/// kiln-registry's platform matching, compiled from its own file (see Cargo.toml for why).
#[path = "../../registry/src/platform.rs"]
#[allow(dead_code)]
mod platform;

use platform::Platform;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(data) {
        let _ = manifest.config().digest().to_string();
        for layer in manifest.layers() {
            let _ = (layer.digest().to_string(), layer.size(), layer.media_type());
        }
    }
    if let Ok(index) = serde_json::from_slice::<ImageIndex>(data) {
        let candidates: Vec<Option<Platform>> = index
            .manifests()
            .iter()
            .map(|d| {
                d.platform().as_ref().map(|p| Platform {
                    os: p.os().to_string(),
                    architecture: p.architecture().to_string(),
                    variant: p.variant().clone(),
                })
            })
            .collect();
        for wanted in [
            "linux/amd64",
            "linux/arm/v7",
            "linux/arm64",
            "windows/amd64",
        ] {
            let wanted: Platform = wanted.parse().expect("a valid platform");
            if let Some(chosen) = platform::select(&wanted, &candidates) {
                assert!(chosen < candidates.len());
            }
        }
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfiguration>(data) {
        let _ = config.rootfs().diff_ids().len();
        let _ = config.history();
    }
});
