//! `WWW-Authenticate` headers come from any registry kiln talks to (or anything in between):
//! the challenge parser must never panic or loop. Several header values are separated by NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The parser kiln-registry uses, compiled from its own file (see Cargo.toml for why).
#[path = "../../registry/src/auth/challenge.rs"]
#[allow(dead_code)]
mod challenge;

use challenge::{Challenge, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Whatever the text, parsing ends; what comes out is only ever offered to the realm's
    // origin by the client, so any value is acceptable here.
    let challenges = parse(text.split('\0'));
    assert!(challenges.len() <= text.len() + 1);
    for challenge in challenges {
        if let Challenge::Bearer { realm, .. } = challenge {
            let _ = realm.len();
        }
    }
});
