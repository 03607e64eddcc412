//! Dockerfile front end and build plan for kiln.
//!
//! [`parse`] turns Dockerfile text into typed [`Instruction`]s; [`Planner`] resolves stages,
//! build arguments and variable expansion into a [`Plan`]: stages of [`Step`]s, each with its
//! fully expanded arguments and the image config after it, a DAG of step dependencies, and
//! content-addressed [`NodeKey`]s. The crate performs no I/O: the caller supplies base-image
//! configs and content digests.
//!
//! Anything kiln does not implement yet (`ADD <url>`, executing `RUN --mount`, ...) is an
//! error that names the instruction and its position, never a silently skipped step.

mod chmod;
mod dispatch;
mod duration;
mod error;
mod expand;
mod history;
mod key;
mod key_fields;
mod link;
mod mount;
mod paths;
mod plan;
#[cfg(test)]
mod plan_tests;
mod planner;
mod platform;
mod ports;
mod signal;
mod stage;
mod state;
mod step;
mod syntax;

pub use chmod::Chmod;
pub use dispatch::{is_git_url, is_http_url};
/// Go `time.Duration` syntax (`336h`, `1m30s`), as Kaniko's duration flags take it, in nanoseconds.
pub use duration::parse as parse_go_duration;
pub use error::{Error, Span};
pub use expand::{ExpandError, Vars, expand_word, expand_words};
pub use key::{KEY_SCHEME, KeyInputs, NodeKey};
pub use mount::{Mount, NetworkMode, SecurityMode, Sharing};
pub use plan::{BaseRef, Plan, Stage};
pub use planner::{ImagePull, PlanOptions, Planner};
pub use platform::Platform;
pub use state::{DEFAULT_PATH, Healthcheck, ImageState};
pub use step::{CopyFrom, CopyStep, InlineFile, RunStep, SCRIPT_DIR, Step, StepId, StepKind};
pub use syntax::{
    AddInstruction, ArgDecl, CommandLine, CopyInstruction, Directives, Dockerfile, FromInstruction,
    Heredoc, Instruction, InstructionKind, KeyValue, RunInstruction, parse,
};
