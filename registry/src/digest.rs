//! Content digests: validation of `algorithm:encoded` strings and incremental hashing.
//!
//! Registries address everything by digest, and a client that trusts what it is sent
//! without re-hashing can be fed a different image than the one it pinned. Manifests and
//! configs are therefore always hashed here, and blobs as they stream in.

use sha2::{Digest as _, Sha256, Sha512};

/// Digest algorithms this client can compute, so it can verify content it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Checks `digest` against the OCI digest grammar, with exact lengths for the
/// registered algorithms. Returns a human-readable reason on failure.
pub(crate) fn validate(digest: &str) -> Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err("a digest is \"algorithm:hex\", e.g. sha256:<64 hex digits>".to_owned());
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !algorithm.split(['+', '.', '_', '-']).all(component_ok) {
        return Err(format!("invalid digest algorithm {algorithm:?}"));
    }
    if encoded.is_empty()
        || !encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
    {
        return Err("invalid characters in the encoded part of the digest".to_owned());
    }
    if let Some(known) = known_algorithm(algorithm) {
        let lower_hex = encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if encoded.len() != known.hex_len() || !lower_hex {
            return Err(format!(
                "{algorithm} digests are {} lowercase hex digits",
                known.hex_len()
            ));
        }
    }
    Ok(())
}

fn known_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "sha256" => Some(Algorithm::Sha256),
        "sha512" => Some(Algorithm::Sha512),
        _ => None,
    }
}

/// The algorithm of a (valid) digest string, when this client can compute it.
pub(crate) fn algorithm_of(digest: &str) -> Option<Algorithm> {
    digest.split_once(':').and_then(|(a, _)| known_algorithm(a))
}

/// Digest of `bytes` with `algorithm`, formatted as `algorithm:hex`.
pub(crate) fn compute(algorithm: Algorithm, bytes: &[u8]) -> String {
    let hex = match algorithm {
        Algorithm::Sha256 => to_hex(&Sha256::digest(bytes)),
        Algorithm::Sha512 => to_hex(&Sha512::digest(bytes)),
    };
    format!("{}:{hex}", algorithm.name())
}

/// The canonical (sha256) digest of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    compute(Algorithm::Sha256, bytes)
}

/// Recomputes the digest of `bytes` with the algorithm named by `expected`.
///
/// Returns `Ok(())` on a match and `Err(actual)` with the digest the content really has
/// otherwise. Digests with an algorithm we cannot compute fail closed: we refuse content
/// we cannot verify rather than silently trusting it.
pub(crate) fn verify(expected: &str, bytes: &[u8]) -> Result<(), String> {
    let Some(algorithm) = algorithm_of(expected) else {
        return Err(format!(
            "<unverifiable: unsupported algorithm in {expected}>"
        ));
    };
    let actual = compute(algorithm, bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(actual)
    }
}

/// Hashes content as it streams by, so a blob can be verified without holding it.
#[derive(Debug, Clone)]
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    /// A hasher for the algorithm `expected` names, or `None` when we cannot compute it.
    pub(crate) fn for_digest(expected: &str) -> Option<Hasher> {
        Some(match algorithm_of(expected)? {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        })
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest so far, as `algorithm:hex`.
    pub(crate) fn finish(&self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", to_hex(&h.clone().finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", to_hex(&h.clone().finalize())),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_input_matches_the_well_known_value() {
        assert_eq!(sha256(b""), EMPTY_SHA256);
    }

    #[test]
    fn verify_accepts_matching_and_reports_actual_digest_on_mismatch() {
        assert_eq!(verify(EMPTY_SHA256, b""), Ok(()));
        assert_eq!(verify(EMPTY_SHA256, b"x"), Err(sha256(b"x")));
    }

    #[test]
    fn verify_supports_sha512() {
        let d = compute(Algorithm::Sha512, b"abc");
        assert!(d.starts_with("sha512:ddaf35a1"));
        assert_eq!(verify(&d, b"abc"), Ok(()));
    }

    #[test]
    fn streaming_hasher_matches_one_shot_digest() {
        let mut h = Hasher::for_digest(EMPTY_SHA256).unwrap();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), sha256(b"abc"));
        assert!(Hasher::for_digest("blake3:abcd").is_none());
    }

    #[test]
    fn verify_fails_closed_for_unknown_algorithms() {
        assert!(verify("blake3:abcd", b"").is_err());
    }

    #[test]
    fn validate_rejects_malformed_digests() {
        assert!(validate(EMPTY_SHA256).is_ok());
        assert!(validate("sha256:abc").is_err());
        assert!(validate(&EMPTY_SHA256.to_uppercase()).is_err());
        assert!(validate("e3b0c44298fc").is_err());
        assert!(validate(":abc").is_err());
        assert!(
            validate("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8").is_ok()
        );
    }
}
