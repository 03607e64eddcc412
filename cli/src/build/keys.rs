//! Node-key inputs only the CLI can supply: base image digests, build-context content and
//! what `ADD <url>` downloaded.

use std::collections::BTreeMap;

use kiln_exec::context::BuildContext;
use kiln_graph::{CopyStep, KeyInputs, NodeKey};

use super::bases::PulledImage;
use super::downloads::Downloads;
use crate::cache::Cache;

/// Answers the planner's questions from pulled images and the build context.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// Pulled external images by reference.
    pub images: &'a BTreeMap<String, PulledImage>,
    /// The build context.
    pub context: &'a BuildContext,
    /// Where earlier builds recorded `COPY --from` content keys, if the cache is on.
    pub cache: Option<&'a Cache>,
    /// What `ADD <url>` steps downloaded.
    pub downloads: &'a Downloads,
}

impl KeyInputs for Inputs<'_> {
    fn image_digest(&self, reference: &str) -> Option<String> {
        self.images
            .get(reference)
            .map(|image| image.resolved.manifest_digest.clone())
    }

    fn context_digest(&self, copy: &CopyStep) -> Result<[u8; 32], String> {
        if copy.downloads() || copy.clones() {
            return self.downloads.digest(copy);
        }
        self.context
            .digest(&copy.sources)
            .map_err(|err| err.to_string())
    }

    fn resolved_copy(&self, definition: &NodeKey) -> Option<NodeKey> {
        // An unreadable index is a miss here; the build reports it when it writes.
        self.cache?.alias(&definition.0).ok().flatten().map(NodeKey)
    }
}
