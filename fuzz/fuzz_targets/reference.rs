//! Image references come from Dockerfiles (`FROM`), flags and registries (index entries): a
//! reference either fails to parse with an error or round-trips through `Display` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// kiln-registry's reference parser and the digest validation it calls, compiled from their
/// own files (see Cargo.toml for why).
#[path = "../../registry/src/digest.rs"]
#[allow(dead_code)]
mod digest;
#[path = "../../registry/src/reference.rs"]
#[allow(dead_code)]
mod reference;

use reference::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = text.parse::<Reference>() else {
        return;
    };
    let shown = reference.to_string();
    let again: Reference = shown
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its display {shown:?} does not: {e}"));
    assert_eq!(
        again.to_string(),
        shown,
        "display of {text:?} is not stable"
    );
    let _ = reference.repo_ref();
    let _ = reference.origin();
    if let Some(digest) = reference.digest() {
        let _ = reference.try_with_digest(digest);
    }
});
