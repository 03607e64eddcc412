//! Root filesystems and what happens inside them.
//!
//! This crate owns every step of a build that touches files: extracting base and cached layers
//! safely into a root filesystem, running `RUN` in a sandbox chrooted into it, applying `COPY`
//! and `WORKDIR`, observing what a step changed, and writing that change as a deterministic,
//! compressed layer tar while hashing it. It knows nothing about registries or Dockerfile
//! syntax: callers hand it resolved paths, users and commands.

pub mod archive;
pub mod changes;
pub mod compression;
pub mod context;
pub mod copy;
pub mod digest_memo;
pub mod dockerignore;
pub mod fsroot;
pub mod glob;
pub mod ignore;
pub mod layer;
pub mod overlay;
pub mod run;
pub mod snapshot;
pub mod snapshotter;
pub mod sources;
pub mod unpack;
pub mod users;
pub mod workdir;

pub use changes::Changes;
pub use fsroot::RootFs;
