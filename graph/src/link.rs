//! `COPY --link` / `ADD --link`: a layer that does not depend on what is below it.
//!
//! BuildKit builds a `--link` copy on an empty filesystem and merges the result onto the stage
//! (a MergeOp), so the layer is the same whatever the parent holds, and a changed base image or
//! earlier step can reuse ("rebase") it. kiln keys such a step without the previous step's key:
//! only the platform, the instruction, its flags and the content it copies. The steps after it
//! must still see the parent change, so they chain from [`Step::after_key`], which combines the
//! previous key with the `--link` key.

use crate::key::{KeyBuilder, NodeKey};
use crate::step::{CopyStep, Step, StepKind};

impl CopyStep {
    /// Whether this step's layer is keyed independently of the parent: `--link`, and any
    /// `--chown` is numeric. A `--chown` by name is resolved against the parent's
    /// `/etc/passwd` and `/etc/group`, so the parent is then an input and the key keeps it (the
    /// layer is still built on an empty tree).
    pub fn rebases(&self) -> bool {
        self.link && self.chown.as_deref().is_none_or(numeric_owner)
    }
}

impl Step {
    /// The key later steps chain from, after this step was keyed `key` following `prev`: `key`
    /// itself, except for a rebasing `--link` copy, whose own key ignores `prev`.
    pub fn after_key(&self, prev: &NodeKey, key: &NodeKey) -> NodeKey {
        match &self.kind {
            StepKind::Copy(copy) if copy.rebases() => {
                KeyBuilder::new("after-link").key(prev).key(key).finish()
            }
            _ => *key,
        }
    }
}

/// `uid[:gid]` with numbers only.
fn numeric_owner(spec: &str) -> bool {
    let number = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    match spec.split_once(':') {
        Some((user, group)) => number(user) && number(group),
        None => number(spec),
    }
}

#[cfg(test)]
mod tests {
    use super::numeric_owner;

    #[test]
    fn only_numeric_owners_keep_a_link_copy_independent() {
        assert!(numeric_owner("1000"));
        assert!(numeric_owner("1000:2000"));
        assert!(!numeric_owner("app"));
        assert!(!numeric_owner("1000:app"));
        assert!(!numeric_owner(":"));
        assert!(!numeric_owner(""));
    }
}
