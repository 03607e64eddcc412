//! The threads that write copied files.
//!
//! Writing a small file is dominated by filesystem latency (journal, `discard`), not CPU, so the
//! useful number of writers is well above the core count: on the CI machines 8 parallel copiers
//! were three times faster than one even on 2 cores. The pool is separate from rayon's global
//! one, which is sized for CPU-bound work (hashing, compression) and must not be clogged by
//! threads asleep in the filesystem.

use std::sync::OnceLock;

use rayon::{ThreadPool, ThreadPoolBuilder};

/// Writers per pool: enough to keep the filesystem's queue full; more only adds contention on the
/// directories' locks.
pub(super) const WRITERS: usize = 8;

/// Runs `work` (which uses `par_iter`) on the writer pool, or on rayon's global pool if the
/// writer threads could not be started.
pub(super) fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        ThreadPoolBuilder::new()
            .num_threads(WRITERS)
            .thread_name(|i| format!("kiln-copy-{i}"))
            .build()
            .inspect_err(|err| tracing::warn!("cannot start COPY writer threads: {err}"))
            .ok()
    });
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}
