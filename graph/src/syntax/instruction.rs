//! The typed form of each Dockerfile instruction, before variable expansion.
//!
//! Arguments are kept as written (quotes and `$VAR` intact) because their meaning depends on
//! the ARG/ENV scope at the point of use, which only the planner knows.

use super::heredoc::Heredoc;
use crate::mount::{Mount, NetworkMode, SecurityMode};
use crate::state::Healthcheck;

/// One instruction with its position and source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// 1-based column of the keyword.
    pub column: usize,
    /// The source text, continuation lines joined; quoted in error messages.
    pub text: String,
    /// What the instruction says.
    pub kind: InstructionKind,
}

/// Exec form (`["a", "b"]`) or shell form (`a b`) of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// Run as-is, no shell.
    Exec(Vec<String>),
    /// Wrapped with the stage's SHELL at plan time.
    Shell(String),
}

/// A `key=value` pair of ENV or LABEL, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Variable or label name.
    pub key: String,
    /// Value, still quoted/unexpanded.
    pub value: String,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The argument name.
    pub name: String,
    /// The default, unexpanded; `None` for a bare `ARG NAME`.
    pub default: Option<String>,
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInstruction {
    /// Image reference or earlier stage name, unexpanded.
    pub image: String,
    /// Stage name, lowercased (stage names are case-insensitive).
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// `RUN [--mount=...]... [--network=n] [--security=s] command`, with its heredoc bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    /// The command; in shell form it still contains the heredoc markers (`python3 <<EOF`).
    pub command: CommandLine,
    /// Heredoc bodies, in marker order.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` flags, in order.
    pub mounts: Vec<Mount>,
    /// `--network`, when given.
    pub network: Option<NetworkMode>,
    /// `--security`, when given.
    pub security: Option<SecurityMode>,
}

impl RunInstruction {
    /// A RUN with no flags and no heredocs.
    pub fn plain(command: CommandLine) -> Self {
        Self {
            command,
            heredocs: Vec::new(),
            mounts: Vec::new(),
            network: None,
            security: None,
        }
    }
}

/// `COPY [--from=x] [--chown=u] [--chmod=m] [--link] [--parents] [--exclude=p]... src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyInstruction {
    /// Stage name, stage index or image to copy from; `None` is the build context.
    pub from: Option<String>,
    /// Owner for the copied files, unexpanded.
    pub chown: Option<String>,
    /// Mode for the copied files (octal or symbolic), unexpanded.
    pub chmod: Option<String>,
    /// `--link`: accepted; kiln's layer is the same either way.
    pub link: bool,
    /// `--parents`: keep the sources' parent directories below the destination.
    pub parents: bool,
    /// `--exclude` patterns, unexpanded, in order.
    pub excludes: Vec<String>,
    /// Path sources, unexpanded (heredoc sources are in `heredocs`).
    pub sources: Vec<String>,
    /// Heredoc sources: files named after their delimiter.
    pub heredocs: Vec<Heredoc>,
    /// Destination, unexpanded.
    pub dest: String,
}

/// `ADD [--chown=u] [--chmod=m] [--link] [--exclude=p]... [--checksum=d] [--keep-git-dir]
/// src... dest` (local sources only for now).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddInstruction {
    /// Owner for the added files, unexpanded.
    pub chown: Option<String>,
    /// Mode for the added files (octal or symbolic), unexpanded.
    pub chmod: Option<String>,
    /// `--link`: accepted; kiln's layer is the same either way.
    pub link: bool,
    /// `--exclude` patterns, unexpanded, in order.
    pub excludes: Vec<String>,
    /// `--checksum`, unexpanded: only meaningful for URL sources (a later issue).
    pub checksum: Option<String>,
    /// `--keep-git-dir`, when given: only meaningful for git sources (a later issue).
    pub keep_git_dir: Option<bool>,
    /// Path sources, unexpanded (heredoc sources are in `heredocs`).
    pub sources: Vec<String>,
    /// Heredoc sources: files named after their delimiter.
    pub heredocs: Vec<Heredoc>,
    /// Destination, unexpanded.
    pub dest: String,
}

/// The 18 Dockerfile instructions.
#[derive(Debug, Clone, PartialEq)]
pub enum InstructionKind {
    /// Starts a stage.
    From(FromInstruction),
    /// Runs a command in the stage's filesystem.
    Run(RunInstruction),
    /// Default command.
    Cmd(CommandLine),
    /// Entrypoint.
    Entrypoint(CommandLine),
    /// Shell for shell-form commands (always JSON).
    Shell(Vec<String>),
    /// Copies files from the context, a stage or an image.
    Copy(CopyInstruction),
    /// Copies local files (URLs, git and archive extraction are refused for now).
    Add(AddInstruction),
    /// Sets environment variables.
    Env(Vec<KeyValue>),
    /// Sets labels.
    Label(Vec<KeyValue>),
    /// Declares build arguments.
    Arg(Vec<ArgDecl>),
    /// Exposes ports, unexpanded words.
    Expose(Vec<String>),
    /// Declares volumes, unexpanded.
    Volume(Vec<String>),
    /// Sets the user, unexpanded.
    User(String),
    /// Sets the working directory, unexpanded.
    Workdir(String),
    /// Sets the stop signal, unexpanded.
    StopSignal(String),
    /// Sets the (deprecated) author.
    Maintainer(String),
    /// Sets or disables (`test == ["NONE"]`) the health check.
    Healthcheck(Healthcheck),
    /// Records a trigger for images built from this one.
    Onbuild {
        /// The trigger as written after `ONBUILD`, stored in the image config.
        expression: String,
        /// The trigger parsed, so mistakes surface when it is declared rather than used.
        trigger: Box<InstructionKind>,
    },
}

impl InstructionKind {
    /// The keyword, upper-case, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::From(_) => "FROM",
            Self::Run(_) => "RUN",
            Self::Cmd(_) => "CMD",
            Self::Entrypoint(_) => "ENTRYPOINT",
            Self::Shell(_) => "SHELL",
            Self::Copy(_) => "COPY",
            Self::Add(_) => "ADD",
            Self::Env(_) => "ENV",
            Self::Label(_) => "LABEL",
            Self::Arg(_) => "ARG",
            Self::Expose(_) => "EXPOSE",
            Self::Volume(_) => "VOLUME",
            Self::User(_) => "USER",
            Self::Workdir(_) => "WORKDIR",
            Self::StopSignal(_) => "STOPSIGNAL",
            Self::Maintainer(_) => "MAINTAINER",
            Self::Healthcheck(_) => "HEALTHCHECK",
            Self::Onbuild { .. } => "ONBUILD",
        }
    }
}
