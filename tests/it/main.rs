//! kiln's integration tests: one test binary (link time matters on two cores) that drives the
//! real `kiln` binary against a real registry (Debian's `docker-registry`) and checks results
//! with independent clients (`skopeo`, `umoci`).
//!
//! Every test describes its world (a registry, base images, a build context), runs kiln, and
//! asserts on what the other tools see. A missing tool fails the test with what to install.

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

mod add;
mod auth;
mod bench_smoke;
mod build;
mod cache;
mod cache_gc;
mod cache_identity;
mod cache_read_only;
mod cache_remote;
mod cache_sharing;
mod cloud_auth;
mod contexts;
mod corpus;
mod env_auth;
mod errors;
mod explain;
mod extract;
mod faults;
mod frontend;
mod git_context;
mod hostile;
mod kaniko_flags;
mod layers;
mod link;
mod login;
mod mirrors;
mod mounts;
mod outputs;
mod parity;
mod plan;
mod platform;
mod pod;
mod progress;
mod pull;
mod push;
mod registry_tls;
mod secrets_scan;
mod signals;
mod snapshot;
mod stages;
mod token_auth;
mod transfer;
mod warm;
