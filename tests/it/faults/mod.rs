//! Hardening against faults, interruptions and concurrency, end to end through `kiln build`:
//! registry faults in every phase of a cached build ([`matrix`]), SIGTERM and SIGKILL at random
//! points ([`kills`]), and builds sharing one cache directory and one cache repository at once
//! ([`concurrent`]). After each, [`check`] verifies the cache directory, the mount table, the
//! process table and the registry.

pub(crate) mod check;
mod concurrent;
mod kills;
mod matrix;
mod regressions;
