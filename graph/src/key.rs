//! Content-addressed node keys: BLAKE3 over length-framed fields under a versioned context,
//! so that no two different inputs can produce the same byte stream.

use std::fmt;

use crate::platform::Platform;
use crate::step::CopyStep;

/// The key scheme's name and version: the BLAKE3 key-derivation context every key is hashed
/// under. Bump the version whenever the framing or the fields of any node type change, so keys
/// recorded by an older kiln (in a local index or a remote cache) can never match a new key
/// computed from different inputs. `graph/tests/key_scheme.rs` pins it.
pub const KEY_SCHEME: &str = "kiln 2025 kiln-graph node key v2";

/// Identifies a node's output: equal keys mean equal inputs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct NodeKey(pub [u8; 32]);

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Content identities that keys depend on but the planner cannot know without I/O.
pub trait KeyInputs {
    /// Manifest digest of an external image, by the reference from
    /// [`crate::Planner::external_images`].
    fn image_digest(&self, reference: &str) -> Option<String>;
    /// Digest of the build-context content a COPY reads (its sources after .dockerignore).
    fn context_digest(&self, copy: &CopyStep) -> Result<[u8; 32], String>;
    /// The content key a `COPY --from=<stage>` definition key resolved to in an earlier build
    /// (see [`crate::Plan::copy_content_key`]), if one is known.
    fn resolved_copy(&self, definition: &NodeKey) -> Option<NodeKey> {
        let _ = definition;
        None
    }
}

/// Builds one key from framed fields.
pub(crate) struct KeyBuilder(blake3::Hasher);

impl KeyBuilder {
    /// Starts a key of the given node type ("stage", "run", ...).
    pub(crate) fn new(node: &str) -> Self {
        let mut b = Self(blake3::Hasher::new_derive_key(KEY_SCHEME));
        b.str(node);
        b
    }

    /// A length-prefixed byte string.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// `None` and `Some("")` differ.
    pub(crate) fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.bytes(&[0]),
            Some(s) => self.bytes(&[1]).str(s),
        }
    }

    /// A counted list.
    pub(crate) fn strs<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) -> &mut Self {
        self.0.update(&(items.len() as u64).to_le_bytes());
        for s in items {
            self.str(s);
        }
        self
    }

    pub(crate) fn key(&mut self, key: &NodeKey) -> &mut Self {
        self.bytes(&key.0)
    }

    pub(crate) fn platform(&mut self, p: &Platform) -> &mut Self {
        self.str(&p.os)
            .str(&p.architecture)
            .opt_str(p.variant.as_deref())
    }

    pub(crate) fn finish(&self) -> NodeKey {
        NodeKey(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_hex() {
        let mut k = [0u8; 32];
        k[0] = 0xab;
        k[31] = 0x01;
        let s = NodeKey(k).to_string();
        assert_eq!(s.len(), 64);
        assert!(s.starts_with("ab00") && s.ends_with("01"));
    }

    #[test]
    fn framing_prevents_ambiguous_joins() {
        let a = KeyBuilder::new("t").str("ab").str("c").finish();
        let b = KeyBuilder::new("t").str("a").str("bc").finish();
        assert_ne!(a, b);
        let none = KeyBuilder::new("t").opt_str(None).finish();
        let empty = KeyBuilder::new("t").opt_str(Some("")).finish();
        assert_ne!(none, empty);
        let l1 = KeyBuilder::new("t")
            .strs(["a", "b"].into_iter())
            .str("c")
            .finish();
        let l2 = KeyBuilder::new("t")
            .strs(["a"].into_iter())
            .str("b")
            .str("c")
            .finish();
        assert_ne!(l1, l2);
    }
}
