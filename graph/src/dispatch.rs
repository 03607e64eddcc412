//! Applies one stage's instructions to its image config, producing fully expanded steps.
//!
//! Mirrors BuildKit's `dispatch*` functions: which instructions expand variables, how ARG/ENV
//! scope works, how CMD and ENTRYPOINT interact, and what each writes into the history.

use std::collections::BTreeMap;

use crate::chmod::Chmod;
use crate::error::Error;
use crate::expand::{Vars, expand_heredoc, expand_word, expand_words};
use crate::history;
use crate::paths;
use crate::ports;
use crate::signal;
use crate::stage::{CopySource, resolve_copy_from};
use crate::state::ImageState;
use crate::step::{CopyFrom, CopyStep, InlineFile, RunStep, SCRIPT_DIR, Step, StepKind};
use crate::syntax::{
    AddInstruction, ArgDecl, CommandLine, CopyInstruction, Heredoc, Instruction, InstructionKind,
    KeyValue, RunInstruction, parse_checksum,
};

/// Docker's predefined proxy ARGs: usable by RUN without an ARG instruction, and kept out of
/// the history unless the Dockerfile declares them.
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What the dispatcher needs to know about the build as a whole.
#[derive(Debug)]
pub(crate) struct Context<'p> {
    pub file: &'p str,
    pub escape: char,
    /// Global (pre-FROM) ARGs and the automatic platform ARGs.
    pub globals: &'p [(String, String)],
    pub build_args: &'p BTreeMap<String, String>,
    /// Stage names by Dockerfile index, to resolve `COPY --from`.
    pub stage_names: &'p [Option<String>],
    /// Plan position of each planned stage, by Dockerfile index.
    pub positions: &'p BTreeMap<usize, usize>,
    /// Resolved external images (an inherited ONBUILD COPY may only use one of these).
    pub images: &'p BTreeMap<String, ImageState>,
    /// Dockerfile index of the stage being dispatched.
    pub current: usize,
}

/// The ARG/ENV scope and config of a stage while it is dispatched.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub state: ImageState,
    /// ARGs in declaration order (a re-declaration appends, as in BuildKit).
    pub args: Vec<(String, Option<String>)>,
    /// Whether CMD was set in this stage: ENTRYPOINT only clears a CMD it did not see set.
    cmd_set: bool,
}

impl Scope {
    pub(crate) fn new(state: ImageState, args: Vec<(String, Option<String>)>) -> Self {
        Self {
            state,
            args,
            cmd_set: false,
        }
    }

    /// Process environment and expansion scope: config ENV, then ARGs that ENV does not
    /// define (ENV always wins over ARG).
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let mut env = self.state.env.clone();
        let config_len = env.len();
        for (k, v) in &self.args {
            let Some(v) = v else { continue };
            if self.state.env_var(k).is_some() {
                continue;
            }
            match env[config_len..].iter_mut().find(|(ek, _)| ek == k) {
                Some(entry) => entry.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        env
    }

    /// The `|N K=V` prefix of RUN history entries: each ARG once, at its first position, with
    /// the value the process sees.
    fn arg_record(&self, env: &[(String, String)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.args {
            let value = env
                .var(k)
                .map(str::to_owned)
                .or_else(|| v.clone())
                .unwrap_or_default();
            match out.iter_mut().find(|(ok, _)| ok == k) {
                Some(entry) => entry.1 = value,
                None => out.push((k.clone(), value)),
            }
        }
        out
    }
}

/// Dispatches a stage's instructions.
#[derive(Debug)]
pub(crate) struct StageBuilder<'p> {
    ctx: Context<'p>,
    scope: Scope,
    steps: Vec<Step>,
}

/// What one instruction produced.
struct Outcome {
    kind: StepKind,
    created_by: String,
    in_history: bool,
}

impl Outcome {
    fn config(created_by: String) -> Self {
        Self {
            kind: StepKind::Config,
            created_by,
            in_history: true,
        }
    }
}

impl<'p> StageBuilder<'p> {
    pub(crate) fn new(ctx: Context<'p>, scope: Scope) -> Self {
        Self {
            ctx,
            scope,
            steps: Vec::new(),
        }
    }

    pub(crate) fn finish(self) -> (Vec<Step>, Scope) {
        (self.steps, self.scope)
    }

    /// Applies one instruction and records its step.
    pub(crate) fn dispatch(&mut self, inst: &Instruction) -> Result<(), Error> {
        let outcome = self
            .outcome(&inst.kind)
            .map_err(|m| Error::at(self.ctx.file, inst.line, inst.column, &inst.text, m))?;
        self.steps.push(Step {
            line: inst.line,
            column: inst.column,
            text: inst.text.clone(),
            created_by: outcome.created_by,
            in_history: outcome.in_history,
            kind: outcome.kind,
            state: self.scope.state.clone(),
            key: None,
        });
        Ok(())
    }

    fn expand(&self, word: &str) -> Result<String, String> {
        expand_word(word, self.ctx.escape, &self.scope.env())
            .map_err(|e| format!("{e} (in {word:?})"))
    }

    fn outcome(&mut self, kind: &InstructionKind) -> Result<Outcome, String> {
        match kind {
            InstructionKind::From(_) => Err("FROM cannot be dispatched inside a stage".into()),
            InstructionKind::Run(run) => self.run(run),
            InstructionKind::Cmd(cmd) => {
                let argv = self.command(cmd);
                self.scope.state.cmd = Some(argv.clone());
                self.scope.cmd_set = true;
                Ok(Outcome::config(format!(
                    "CMD {}",
                    history::quoted_list(&argv)
                )))
            }
            InstructionKind::Entrypoint(cmd) => {
                let argv = self.command(cmd);
                self.scope.state.entrypoint = Some(argv.clone());
                if !self.scope.cmd_set {
                    self.scope.state.cmd = None;
                }
                Ok(Outcome::config(format!(
                    "ENTRYPOINT {}",
                    history::quoted_list(&argv)
                )))
            }
            InstructionKind::Shell(shell) => {
                self.scope.state.shell = Some(shell.clone());
                Ok(Outcome::config(format!(
                    "SHELL {}",
                    history::plain_list(shell)
                )))
            }
            InstructionKind::Copy(copy) => self.copy(copy),
            InstructionKind::Add(add) => self.add(add),
            InstructionKind::Env(pairs) => {
                let pairs = self.expand_pairs(pairs)?;
                for (k, v) in &pairs {
                    self.scope.state.set_env(k, v);
                }
                Ok(Outcome::config(history::pairs(
                    "ENV",
                    pairs.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
                )))
            }
            InstructionKind::Label(pairs) => {
                let pairs = self.expand_pairs(pairs)?;
                for (k, v) in &pairs {
                    self.scope.state.labels.insert(k.clone(), v.clone());
                }
                Ok(Outcome::config(history::pairs(
                    "LABEL",
                    pairs.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
                )))
            }
            InstructionKind::Arg(decls) => self.arg(decls),
            InstructionKind::Expose(words) => self.expose(words),
            InstructionKind::Volume(raw) => {
                let volumes = raw
                    .iter()
                    .map(|v| self.expand(v))
                    .collect::<Result<Vec<_>, _>>()?;
                if volumes.iter().any(String::is_empty) {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                self.scope.state.volumes.extend(volumes.iter().cloned());
                Ok(Outcome::config(format!(
                    "VOLUME {}",
                    history::plain_list(&volumes)
                )))
            }
            InstructionKind::User(raw) => {
                let user = self.expand(raw)?;
                self.scope.state.user = (!user.is_empty()).then(|| user.clone());
                Ok(Outcome::config(format!("USER {user}")))
            }
            InstructionKind::Workdir(raw) => self.workdir(raw),
            InstructionKind::StopSignal(raw) => {
                let sig = self.expand(raw)?;
                signal::validate(&sig)?;
                self.scope.state.stop_signal = Some(sig.clone());
                Ok(Outcome::config(format!("STOPSIGNAL {sig}")))
            }
            InstructionKind::Maintainer(name) => {
                self.scope.state.author = Some(name.clone());
                Ok(Outcome::config(format!("MAINTAINER {name}")))
            }
            InstructionKind::Healthcheck(h) => {
                self.scope.state.healthcheck = Some(h.clone());
                Ok(Outcome::config(format!(
                    "HEALTHCHECK {}",
                    history::healthcheck(h)
                )))
            }
            InstructionKind::Onbuild { expression, .. } => {
                self.scope.state.onbuild.push(expression.clone());
                Ok(Outcome {
                    kind: StepKind::Config,
                    created_by: format!("ONBUILD {expression}"),
                    in_history: false,
                })
            }
        }
    }

    /// Exec form as-is; shell form wrapped with the stage's SHELL.
    fn command(&self, cmd: &CommandLine) -> Vec<String> {
        match cmd {
            CommandLine::Exec(argv) => argv.clone(),
            CommandLine::Shell(text) => {
                let mut argv = self.scope.state.shell_or_default();
                argv.push(text.clone());
                argv
            }
        }
    }

    fn run(&self, run: &RunInstruction) -> Result<Outcome, String> {
        let mut mount_sources = std::collections::BTreeMap::new();
        for (index, mount) in run.mounts.iter().enumerate() {
            if let Some(from) = mount.from() {
                let source = self
                    .copy_from(from)
                    .map_err(|err| format!("RUN --mount={mount}: {err}"))?;
                mount_sources.insert(index, source);
            }
        }
        let (command, script) = heredoc_command(&run.command, &run.heredocs);
        let argv = self.command(&command);
        let env = self.scope.env();
        let created_by = history::run(&self.scope.arg_record(&env), &argv);
        let proxy_env = PROXY_ARGS
            .iter()
            .filter(|name| env.var(name).is_none())
            .filter_map(|name| {
                let value = self.ctx.build_args.get(*name)?;
                Some(((*name).to_owned(), value.clone()))
            })
            .collect();
        let run = RunStep {
            argv,
            env,
            user: self.scope.state.user.clone(),
            workdir: self
                .scope
                .state
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".to_owned()),
            proxy_env,
            script,
            mounts: run.mounts.clone(),
            mount_sources,
            network: run.network.unwrap_or_default(),
            security: run.security.unwrap_or_default(),
        };
        Ok(Outcome {
            kind: StepKind::Run(run),
            created_by,
            in_history: true,
        })
    }

    fn expand_pairs(&self, pairs: &[KeyValue]) -> Result<Vec<(String, String)>, String> {
        // All pairs see the scope from before the instruction: `ENV a=1 b=$a` uses the old a.
        pairs
            .iter()
            .map(|p| Ok((self.expand(&p.key)?, self.expand(&p.value)?)))
            .collect()
    }

    fn arg(&mut self, decls: &[ArgDecl]) -> Result<Outcome, String> {
        let mut record = Vec::new();
        for decl in decls {
            let value = match (self.ctx.build_args.get(&decl.name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(self.expand(default)?),
                (None, None) => self.ctx.globals.var(&decl.name).map(str::to_owned),
            };
            self.scope.args.push((decl.name.clone(), value.clone()));
            record.push((decl.name.clone(), value));
        }
        Ok(Outcome::config(history::pairs(
            "ARG",
            record.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
        )))
    }

    fn expose(&mut self, words: &[String]) -> Result<Outcome, String> {
        let env = self.scope.env();
        let mut ports = Vec::new();
        for word in words {
            for spec in expand_words(word, self.ctx.escape, &env)
                .map_err(|e| format!("{e} (in {word:?})"))?
            {
                ports.extend(ports::parse(&spec)?);
            }
        }
        self.scope.state.exposed_ports.extend(ports.iter().cloned());
        Ok(Outcome::config(format!(
            "EXPOSE {}",
            history::port_map(&ports)
        )))
    }

    fn workdir(&mut self, raw: &str) -> Result<Outcome, String> {
        let dir = self.expand(raw)?;
        if dir.is_empty() {
            return Err(format!("WORKDIR {raw:?} expands to an empty path"));
        }
        let base = self
            .scope
            .state
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_owned());
        let path = paths::resolve(&base, &dir);
        self.scope.state.working_dir = Some(path.clone());
        let created_by = format!("WORKDIR {path}");
        // BuildKit creates no layer for "/", which always exists.
        if path == "/" {
            return Ok(Outcome::config(created_by));
        }
        let kind = StepKind::Workdir {
            path,
            user: self.scope.state.user.clone(),
        };
        Ok(Outcome {
            kind,
            created_by,
            in_history: true,
        })
    }

    fn copy(&self, copy: &CopyInstruction) -> Result<Outcome, String> {
        let from = match &copy.from {
            None => CopyFrom::Context,
            Some(value) => self.copy_from(value)?,
        };
        self.copy_like(CopyArgs {
            from,
            add: false,
            chown: copy.chown.as_deref(),
            chmod: copy.chmod.as_deref(),
            link: copy.link,
            parents: copy.parents,
            excludes: &copy.excludes,
            checksum: None,
            keep_git_dir: false,
            sources: &copy.sources,
            heredocs: &copy.heredocs,
            dest: &copy.dest,
        })
    }

    fn copy_from(&self, value: &str) -> Result<CopyFrom, String> {
        match resolve_copy_from(value, self.ctx.current, self.ctx.stage_names)? {
            CopySource::Stage(i) => match self.ctx.positions.get(&i) {
                Some(&pos) => Ok(CopyFrom::Stage(pos)),
                None => Err(format!(
                    "COPY --from={value}: stage {i} is not part of this build (an inherited ONBUILD trigger \
                     cannot add stage dependencies yet)"
                )),
            },
            CopySource::Image(image) if self.ctx.images.contains_key(&image) => {
                Ok(CopyFrom::Image(image))
            }
            CopySource::Image(image) => Err(format!(
                "COPY --from={image}: the image was not resolved before planning (COPY --from=<image> in an \
                 inherited ONBUILD trigger is not supported yet)"
            )),
        }
    }

    fn add(&self, add: &AddInstruction) -> Result<Outcome, String> {
        self.copy_like(CopyArgs {
            from: CopyFrom::Context,
            add: true,
            chown: add.chown.as_deref(),
            chmod: add.chmod.as_deref(),
            link: add.link,
            parents: false,
            excludes: &add.excludes,
            checksum: add.checksum.as_deref(),
            keep_git_dir: add.keep_git_dir.unwrap_or(false),
            sources: &add.sources,
            heredocs: &add.heredocs,
            dest: &add.dest,
        })
    }

    fn copy_like(&self, args: CopyArgs<'_>) -> Result<Outcome, String> {
        let keyword = if args.add { "ADD" } else { "COPY" };
        let sources = args
            .sources
            .iter()
            .map(|s| self.expand(s))
            .collect::<Result<Vec<_>, _>>()?;
        for (raw, src) in args.sources.iter().zip(&sources) {
            if src.is_empty() {
                return Err(format!("{keyword} source {raw:?} expands to an empty path"));
            }
            if args.add && is_git_url(src) && sources.len() > 1 {
                return Err(format!(
                    "ADD {src}: a git repository must be the only source of its ADD"
                ));
            }
        }
        let urls = sources
            .iter()
            .filter(|s| args.add && is_http_url(s))
            .count();
        if urls > 0 && urls < sources.len() {
            return Err(
                "ADD mixes URLs with local sources, which kiln does not support yet: use one ADD for the URLs and one for the local files"
                    .to_owned(),
            );
        }
        if urls > 0 && !args.heredocs.is_empty() {
            return Err("ADD mixes URLs with heredocs, which kiln does not support yet".to_owned());
        }
        let checksum = args.checksum.map(|c| self.expand(c)).transpose()?;
        if let Some(checksum) = &checksum {
            parse_checksum(checksum)?;
            if urls == 0 {
                return Err(format!(
                    "ADD --checksum={checksum}: checksum can't be specified for non-HTTP(S) sources; it verifies downloads, and local files are already content-addressed"
                ));
            }
            if sources.len() > 1 {
                return Err(format!(
                    "ADD --checksum={checksum}: checksum can't be specified for multiple sources"
                ));
            }
        }
        let env = self.scope.env();
        let contents = args
            .heredocs
            .iter()
            .map(|doc| {
                let data = doc.data();
                let data = if doc.expand {
                    expand_heredoc(&data, &env)
                        .map_err(|e| format!("{e} (in heredoc {:?})", doc.name))?
                } else {
                    data
                };
                Ok(InlineFile {
                    name: doc.name.clone(),
                    data,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let excludes = args
            .excludes
            .iter()
            .map(|e| self.expand(e))
            .collect::<Result<Vec<_>, _>>()?;
        let dest_word = self.expand(args.dest)?;
        let chown = args
            .chown
            .map(|c| self.expand(c))
            .transpose()?
            .filter(|c| !c.is_empty());
        let chmod_text = args
            .chmod
            .map(|c| self.expand(c))
            .transpose()?
            .filter(|c| !c.is_empty());
        let chmod = chmod_text.as_deref().map(Chmod::parse).transpose()?;
        let workdir = self.scope.state.working_dir.as_deref().unwrap_or("/");
        let mut listed = sources.clone();
        listed.extend(contents.iter().map(|c| format!("<<{}", c.name)));
        let created_by = history::copy(
            args.add,
            args.parents,
            chown.as_deref(),
            chmod_text.as_deref(),
            &listed,
            &dest_word,
        );
        let step = CopyStep {
            from: args.from,
            sources,
            contents,
            dest: paths::resolve_dest(workdir, &dest_word),
            chown,
            chmod,
            add: args.add,
            link: args.link,
            parents: args.parents,
            excludes,
            checksum,
            keep_git_dir: args.keep_git_dir,
        };
        Ok(Outcome {
            kind: StepKind::Copy(step),
            created_by,
            in_history: true,
        })
    }
}

/// What COPY and ADD have in common, unexpanded.
struct CopyArgs<'a> {
    from: CopyFrom,
    add: bool,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    link: bool,
    parents: bool,
    excludes: &'a [String],
    checksum: Option<&'a str>,
    keep_git_dir: bool,
    sources: &'a [String],
    heredocs: &'a [Heredoc],
    dest: &'a str,
}

/// BuildKit's `dispatchRun` for heredocs: a command that is exactly one heredoc marker runs
/// its body (the script file in [`SCRIPT_DIR`] when it starts with `#!`); any other command
/// gets its bodies appended after it so that the shell reads them as real heredocs.
fn heredoc_command(
    command: &CommandLine,
    heredocs: &[Heredoc],
) -> (CommandLine, Option<InlineFile>) {
    let (CommandLine::Shell(text), Some(first)) = (command, heredocs.first()) else {
        return (command.clone(), None);
    };
    if crate::syntax::is_heredoc_marker(text) {
        let data = first.data();
        if data.starts_with("#!") {
            let path = format!("{SCRIPT_DIR}/{}", first.name);
            let script = InlineFile {
                name: first.name.clone(),
                data,
            };
            return (CommandLine::Shell(path), Some(script));
        }
        return (CommandLine::Shell(data), None);
    }
    let mut full = text.clone();
    for doc in heredocs {
        full.push('\n');
        full.push_str(&doc.content);
        full.push_str(&doc.name);
    }
    (CommandLine::Shell(full), None)
}

/// A git repository source as BuildKit recognises one: `git://`, `git@host:path`, `ssh://`, or
/// an `http(s)://` URL whose path ends in `.git`; `#ref:subdir` may follow.
pub fn is_git_url(src: &str) -> bool {
    ["git://", "git@", "ssh://"]
        .iter()
        .any(|p| src.starts_with(p))
        || ((src.starts_with("http://") || src.starts_with("https://")) && !is_http_url(src))
}

/// An `http(s)://` source that is a plain download rather than a git repository (BuildKit's
/// rule: a URL whose path ends in `.git` is a repository).
pub fn is_http_url(src: &str) -> bool {
    let Some(rest) = src
        .strip_prefix("http://")
        .or_else(|| src.strip_prefix("https://"))
    else {
        return false;
    };
    let path = rest.split('#').next().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    !path.trim_end_matches('/').ends_with(".git")
}
