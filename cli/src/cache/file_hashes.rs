//! The identity cache of context file hashes: exec's [`DigestMemo`] over the index's `files`
//! family (file identity -> BLAKE3 of the content), so a rebuild reads only the context files
//! that changed.
//!
//! Index sessions cost 150-700 ms under load, so the index is never asked per file: before the
//! keys are computed, [`FileHashes::load`] walks what the COPY steps select (`stat` only) and
//! looks every identity up in one read session; what the build hashes and may trust later (see
//! `kiln_exec::digest_memo` for the racy-clean rule) is written with the build's last index
//! session ([`FileHashes::settled`]). Every hash also serves the rest of the build, so the
//! per-file digests `kiln cache explain` records read nothing again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use anyhow::Context as _;
use kiln_cas::Index;
use kiln_exec::context::BuildContext;
use kiln_exec::digest_memo::{DigestMemo, FileIdentity};
use kiln_graph::{CopyFrom, Plan, StepKind};

/// Content hashes of one build's context files, by identity.
#[derive(Debug, Default)]
pub struct FileHashes {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Found in the index and not asked for yet.
    stored: HashMap<FileIdentity, [u8; 32]>,
    /// Asked for or hashed during this build.
    known: HashMap<FileIdentity, [u8; 32]>,
    /// Hashed during this build with a settled identity: to record.
    settled: Vec<(FileIdentity, [u8; 32])>,
    /// Files read and hashed.
    hashed: usize,
    /// Files the index vouched for.
    from_index: usize,
}

impl FileHashes {
    /// Looks up, in one read session of `index`, the identity of every context file a COPY of
    /// `plan` selects. A step whose sources cannot be walked is skipped here: computing its key
    /// reports the error with its line.
    pub fn preload(
        &self,
        index: &Index,
        context: &BuildContext,
        plan: &Plan,
    ) -> anyhow::Result<()> {
        let mut identities = Vec::new();
        for stage in plan.build_order() {
            for step in &plan.stages[stage].steps {
                if let StepKind::Copy(copy) = &step.kind
                    && matches!(copy.from, CopyFrom::Context)
                    && !copy.downloads()
                    && !copy.clones()
                    && let Ok(found) = context.identities(&copy.sources)
                {
                    identities.extend(found);
                }
            }
        }
        identities.sort_by_key(|id| (id.dev, id.ino));
        identities.dedup();
        if identities.is_empty() {
            return Ok(());
        }
        let keys: Vec<kiln_cas::FileIdentity> = identities.iter().map(to_cas).collect();
        let found = index
            .read()
            .and_then(|session| session.files(&keys))
            .context("reading the cache index")?;
        self.lock().stored = identities
            .into_iter()
            .zip(found)
            .filter_map(|(identity, hash)| Some((identity, hash?)))
            .collect();
        Ok(())
    }

    /// New hashes the next build may trust, for the index.
    pub fn settled(&self) -> Vec<(kiln_cas::FileIdentity, [u8; 32])> {
        self.lock()
            .settled
            .iter()
            .map(|(identity, hash)| (to_cas(identity), *hash))
            .collect()
    }

    /// Logs how many context files were read and how many the index vouched for.
    pub fn log_summary(&self) {
        let state = self.lock();
        tracing::debug!(
            "context: {} files hashed, {} from the identity cache",
            state.hashed,
            state.from_index
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl DigestMemo for FileHashes {
    fn recall(&self, file: &FileIdentity) -> Option<[u8; 32]> {
        let mut state = self.lock();
        if let Some(hash) = state.known.get(file) {
            return Some(*hash);
        }
        let hash = state.stored.remove(file)?;
        state.from_index += 1;
        state.known.insert(*file, hash);
        Some(hash)
    }

    fn remember(&self, file: FileIdentity, hash: [u8; 32], settled: bool) {
        let mut state = self.lock();
        state.hashed += 1;
        state.known.insert(file, hash);
        if settled {
            state.settled.push((file, hash));
        }
    }
}

fn to_cas(identity: &FileIdentity) -> kiln_cas::FileIdentity {
    kiln_cas::FileIdentity {
        dev: identity.dev,
        ino: identity.ino,
        size: identity.size,
        mtime_ns: identity.mtime_ns,
        ctime_ns: identity.ctime_ns,
        mode: identity.mode,
    }
}
