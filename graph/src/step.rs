//! One planned step: what to execute (fully expanded) and the image config after it.

use crate::chmod::Chmod;
use crate::key::NodeKey;
use crate::mount::{Mount, NetworkMode, SecurityMode};
use crate::state::ImageState;

/// Identifies a step: position of its stage in [`crate::Plan::stages`] and of the step in it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct StepId {
    /// Index into [`crate::Plan::stages`].
    pub stage: usize,
    /// Index into [`crate::Stage::steps`].
    pub step: usize,
}

/// A planned step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// 1-based line of the instruction (the stage's FROM line for inherited ONBUILD triggers).
    pub line: usize,
    /// 1-based column of the instruction.
    pub column: usize,
    /// The instruction as written, for messages.
    pub text: String,
    /// The image history entry exactly as BuildKit writes it.
    pub created_by: String,
    /// Whether the step appears in the image history at all (BuildKit records no entry for
    /// ONBUILD).
    pub in_history: bool,
    /// What to do.
    pub kind: StepKind,
    /// Image config after this step.
    pub state: ImageState,
    /// Content-addressed key, set by [`crate::Plan::assign_keys`].
    pub key: Option<NodeKey>,
}

impl Step {
    /// Whether the step's history entry is marked `empty_layer` (it changes no files).
    pub fn empty_layer(&self) -> bool {
        matches!(self.kind, StepKind::Config)
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Runs a process in the stage's root filesystem.
    Run(RunStep),
    /// Copies files into the stage.
    Copy(CopyStep),
    /// Creates the working directory (BuildKit creates it as the current USER).
    Workdir {
        /// Absolute directory to create.
        path: String,
        /// Owner of created directories; `None` is root.
        user: Option<String>,
    },
    /// Changes only the image config; an `empty_layer` history entry.
    Config,
}

/// A RUN, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// The argv; shell form is already wrapped with the stage's SHELL.
    pub argv: Vec<String>,
    /// The full process environment: config ENV, then ARGs in scope that ENV does not
    /// override. Always contains PATH.
    pub env: Vec<(String, String)>,
    /// USER to run as; `None` is the image default (root).
    pub user: Option<String>,
    /// Absolute working directory.
    pub workdir: String,
    /// Proxy build args (`HTTP_PROXY`, ...) given without an ARG: in the process environment,
    /// as Docker does, but kept out of the history, the image config and the node key.
    pub proxy_env: Vec<(String, String)>,
    /// A `RUN <<EOF` script starting with `#!`: mounted read-only at `/dev/pipes/<name>`
    /// (mode 0755) and run by path, as BuildKit does.
    pub script: Option<InlineFile>,
    /// `--mount` flags.
    pub mounts: Vec<Mount>,
    /// Where each bind or cache mount with `from=` reads, by its index in `mounts`, resolved
    /// like `COPY --from` (a stage of this build or an external image).
    pub mount_sources: std::collections::BTreeMap<usize, CopyFrom>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
}

/// A file whose content is written in the Dockerfile (a heredoc), expanded when it should be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct InlineFile {
    /// File name (the heredoc's delimiter).
    pub name: String,
    /// Content.
    pub data: String,
}

impl StepKind {
    /// Stages whose final filesystem this step reads: `COPY --from=<stage>` and RUN mounts with
    /// `from=<stage>`.
    pub fn source_stages(&self) -> Vec<usize> {
        match self {
            StepKind::Copy(CopyStep {
                from: CopyFrom::Stage(src),
                ..
            }) => vec![*src],
            StepKind::Run(run) => run
                .mount_sources
                .values()
                .filter_map(|from| match from {
                    CopyFrom::Stage(src) => Some(*src),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Where BuildKit mounts the script of a `RUN <<EOF` that starts with `#!`.
pub const SCRIPT_DIR: &str = "/dev/pipes";

/// Where a COPY reads from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CopyFrom {
    /// The build context.
    Context,
    /// The final filesystem of an earlier stage (index into [`crate::Plan::stages`]).
    Stage(usize),
    /// An external image, by the reference returned from [`crate::Planner::external_images`].
    Image(String),
}

impl CopyStep {
    /// `ADD <url>... <dest>`: every source is an `http(s)://` download (the planner refuses a
    /// mix of URLs and local sources).
    pub fn downloads(&self) -> bool {
        self.add && self.sources.iter().any(|s| crate::dispatch::is_http_url(s))
    }

    /// `ADD <git repository>[#ref[:subdir]] <dest>` (its only source).
    pub fn clones(&self) -> bool {
        self.add && self.sources.iter().any(|s| crate::dispatch::is_git_url(s))
    }
}

/// A COPY or ADD, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CopyStep {
    /// Source of the files.
    pub from: CopyFrom,
    /// Source paths/patterns, expanded, relative to the source root.
    pub sources: Vec<String>,
    /// Heredoc sources: files created with mode 0644 (before `--chmod`) and copied like a
    /// source named after their delimiter.
    pub contents: Vec<InlineFile>,
    /// Absolute destination; a trailing `/` is kept (it means "into this directory").
    pub dest: String,
    /// Owner as `user[:group]`, expanded.
    pub chown: Option<String>,
    /// `--chmod`, octal or symbolic.
    pub chmod: Option<Chmod>,
    /// ADD rather than COPY: the executor must refuse local archives until extraction lands.
    pub add: bool,
    /// `--link` (the layer is the same without it).
    pub link: bool,
    /// `--parents`: keep each source's parent directories (from a `./` marker, or the whole
    /// relative path) below the destination.
    pub parents: bool,
    /// `--exclude` patterns, expanded: `.dockerignore` syntax, relative to the source root.
    pub excludes: Vec<String>,
    /// ADD `--checksum` (`algorithm:hex`) of its single URL source, verified after download.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`: keep the clone's `.git` directory.
    pub keep_git_dir: bool,
}
