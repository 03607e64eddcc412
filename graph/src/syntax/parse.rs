//! Turns one logical line into a typed [`Instruction`].

use super::flags::{Flags, split_flags};
use super::heredoc::{Heredoc, marker};
use super::instruction::{
    AddInstruction, ArgDecl, CommandLine, CopyInstruction, FromInstruction, Instruction,
    InstructionKind, KeyValue, RunInstruction,
};
use super::lexer::LogicalLine;
use super::words::{json_array, quoted_words};
use crate::chmod::Chmod;
use crate::duration;
use crate::error::Error;
use crate::mount::{Mount, NetworkMode, SecurityMode};
use crate::state::Healthcheck;

/// Parses one logical line; errors carry the line's position.
pub(crate) fn instruction(
    line: &LogicalLine,
    escape: char,
    file: &str,
) -> Result<Instruction, Error> {
    let kind = kind(&line.text, escape, &line.heredocs)
        .map_err(|m| Error::at(file, line.line, line.column, &line.text, m))?;
    Ok(Instruction {
        line: line.line,
        column: line.column,
        text: line.text.clone(),
        kind,
    })
}

fn kind(text: &str, escape: char, heredocs: &[Heredoc]) -> Result<InstructionKind, String> {
    let (keyword, rest) = match text.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim_start()),
        None => (text, ""),
    };
    let upper = keyword.to_ascii_uppercase();
    let name = keyword_name(&upper).ok_or_else(|| format!("unknown instruction: {upper}"))?;
    let (flags, args) = split_flags(rest);
    let mut flags = Flags::new(name, flags);
    let kind = match name {
        "FROM" => from(&mut flags, args)?,
        "RUN" => run(&mut flags, args, heredocs)?,
        "CMD" => InstructionKind::Cmd(command_line(name, args)?),
        "ENTRYPOINT" => InstructionKind::Entrypoint(command_line(name, args)?),
        "SHELL" => shell(args)?,
        "COPY" => copy(&mut flags, args, heredocs)?,
        "ADD" => add(&mut flags, args, heredocs)?,
        "ENV" => InstructionKind::Env(key_values(name, args, escape)?),
        "LABEL" => InstructionKind::Label(key_values(name, args, escape)?),
        "ARG" => arg(args, escape)?,
        "EXPOSE" => InstructionKind::Expose(at_least_one(
            name,
            args.split_whitespace().map(str::to_owned).collect(),
        )?),
        "VOLUME" => InstructionKind::Volume(at_least_one(name, json_or_words(args))?),
        "USER" => InstructionKind::User(single(name, args)?),
        "WORKDIR" => InstructionKind::Workdir(whole(name, args)?),
        "STOPSIGNAL" => InstructionKind::StopSignal(single(name, args)?),
        "MAINTAINER" => InstructionKind::Maintainer(whole(name, args)?),
        "HEALTHCHECK" => healthcheck(&mut flags, args)?,
        _ if !heredocs.is_empty() => {
            return Err(
                "heredocs in ONBUILD triggers are not supported; COPY the script in a file instead"
                    .into(),
            );
        }
        _ => onbuild(args, escape)?,
    };
    flags.finish()?;
    Ok(kind)
}

fn keyword_name(upper: &str) -> Option<&'static str> {
    const ALL: [&str; 18] = [
        "FROM",
        "RUN",
        "CMD",
        "ENTRYPOINT",
        "SHELL",
        "COPY",
        "ADD",
        "ENV",
        "LABEL",
        "ARG",
        "EXPOSE",
        "VOLUME",
        "USER",
        "WORKDIR",
        "STOPSIGNAL",
        "MAINTAINER",
        "HEALTHCHECK",
        "ONBUILD",
    ];
    ALL.into_iter().find(|k| *k == upper)
}

fn from(flags: &mut Flags, args: &str) -> Result<InstructionKind, String> {
    let platform = flags.string("platform")?;
    let words: Vec<&str> = args.split_whitespace().collect();
    let (image, name) = match words.as_slice() {
        [image] => (*image, None),
        [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            (*image, Some(stage_name(name)?))
        }
        _ => {
            return Err(
                "FROM requires either one or three arguments: FROM <image> [AS <name>]".into(),
            );
        }
    };
    Ok(InstructionKind::From(FromInstruction {
        image: image.to_owned(),
        name,
        platform,
    }))
}

/// Stage names are case-insensitive: BuildKit lowercases them and requires `[a-z][a-z0-9-_.]*`.
fn stage_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let mut chars = lower.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(format!(
            "invalid stage name {name:?}: names must start with a letter and contain only letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(lower)
}

fn run(flags: &mut Flags, args: &str, heredocs: &[Heredoc]) -> Result<InstructionKind, String> {
    flags.refuse("device", "RUN devices are planned")?;
    let mounts = flags
        .strings("mount")?
        .iter()
        .map(|m| Mount::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let network = flags
        .string("network")?
        .map(|n| NetworkMode::parse(&n))
        .transpose()?;
    let security = flags
        .string("security")?
        .map(|s| SecurityMode::parse(&s))
        .transpose()?;
    let command = command_line("RUN", args)?;
    Ok(InstructionKind::Run(RunInstruction {
        command,
        heredocs: heredocs.to_vec(),
        mounts,
        network,
        security,
    }))
}

fn command_line(keyword: &str, args: &str) -> Result<CommandLine, String> {
    if let Some(argv) = json_array(args) {
        return Ok(CommandLine::Exec(argv));
    }
    if args.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    Ok(CommandLine::Shell(args.to_owned()))
}

fn shell(args: &str) -> Result<InstructionKind, String> {
    match json_array(args) {
        Some(argv) if !argv.is_empty() => Ok(InstructionKind::Shell(argv)),
        Some(_) => Err("SHELL requires at least one argument".into()),
        None => Err(
            "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/bash\", \"-c\"]"
                .into(),
        ),
    }
}

fn json_or_words(args: &str) -> Vec<String> {
    json_array(args).unwrap_or_else(|| args.split_whitespace().map(str::to_owned).collect())
}

/// Splits sources from the destination and takes heredoc sources (`<<EOF`) out of the
/// sources, pairing each with its body in order, as BuildKit's `parseSourcesAndDest`.
fn sources_and_dest(
    keyword: &str,
    args: &str,
    heredocs: &[Heredoc],
) -> Result<(Vec<String>, Vec<Heredoc>, String), String> {
    let mut words = json_or_words(args);
    if words.len() < 2 {
        return Err(format!(
            "{keyword} requires at least two arguments, but only {} provided",
            words.len()
        ));
    }
    let dest = words.pop().unwrap_or_default();
    if !heredocs.is_empty() && marker(&dest).is_some() {
        return Err(format!(
            "{keyword} cannot accept a heredoc as a destination ({dest})"
        ));
    }
    let mut bodies = heredocs.iter();
    let mut sources = Vec::new();
    let mut contents = Vec::new();
    for word in words {
        match (marker(&word), heredocs.is_empty()) {
            (Some(_), false) => match bodies.next() {
                Some(body) => contents.push(body.clone()),
                None => return Err(format!("{keyword} heredoc {word} has no body")),
            },
            _ => sources.push(word),
        }
    }
    Ok((sources, contents, dest))
}

/// `--chmod`: validated now unless it uses variables, which only the planner can expand.
fn chmod_flag(flags: &mut Flags) -> Result<Option<String>, String> {
    let chmod = flags.string("chmod")?;
    if let Some(text) = chmod.as_deref().filter(|t| !t.contains('$')) {
        Chmod::parse(text)?;
    }
    Ok(chmod)
}

fn copy(flags: &mut Flags, args: &str, heredocs: &[Heredoc]) -> Result<InstructionKind, String> {
    let from = flags.string("from")?;
    if let Some(f) = &from {
        if f.contains('$') {
            return Err(format!(
                "COPY --from={f}: variables are not expanded in --from; name the stage or image"
            ));
        }
        if f.is_empty() {
            return Err("COPY --from needs a stage name, stage index or image".into());
        }
    }
    let chown = flags.string("chown")?;
    let chmod = chmod_flag(flags)?;
    let link = flags.boolean("link")?.unwrap_or(false);
    let parents = flags.boolean("parents")?.unwrap_or(false);
    let excludes = flags.strings("exclude")?;
    let (sources, heredocs, dest) = sources_and_dest("COPY", args, heredocs)?;
    Ok(InstructionKind::Copy(CopyInstruction {
        from,
        chown,
        chmod,
        link,
        parents,
        excludes,
        sources,
        heredocs,
        dest,
    }))
}

fn add(flags: &mut Flags, args: &str, heredocs: &[Heredoc]) -> Result<InstructionKind, String> {
    flags.refuse("unpack", "archive extraction by ADD is not supported yet")?;
    let chown = flags.string("chown")?;
    let chmod = chmod_flag(flags)?;
    let link = flags.boolean("link")?.unwrap_or(false);
    let excludes = flags.strings("exclude")?;
    let checksum = flags.string("checksum")?;
    if let Some(text) = checksum.as_deref().filter(|t| !t.contains('$')) {
        validate_checksum(text)?;
    }
    let keep_git_dir = flags.boolean("keep-git-dir")?;
    let (sources, heredocs, dest) = sources_and_dest("ADD", args, heredocs)?;
    Ok(InstructionKind::Add(AddInstruction {
        chown,
        chmod,
        link,
        excludes,
        checksum,
        keep_git_dir,
        sources,
        heredocs,
        dest,
    }))
}

/// `--checksum=sha256:<64 hex digits>` (or sha384/sha512 with their lengths).
pub(crate) fn validate_checksum(text: &str) -> Result<(), String> {
    let (algorithm, hex) = text.split_once(':').unwrap_or(("", text));
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "ADD --checksum={text}: expected <algorithm>:<hex digest> with sha256, sha384 or sha512"
            ));
        }
    };
    if hex.len() != len || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!(
            "ADD --checksum={text}: a {algorithm} digest is {len} lower-case hex digits"
        ));
    }
    Ok(())
}

/// ENV/LABEL: `k=v k2="v 2"` or the legacy single pair `k value with spaces`.
fn key_values(keyword: &str, args: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let words = quoted_words(args, escape);
    let Some(first) = words.first() else {
        return Err(format!("{keyword} requires at least one argument"));
    };
    if !first.contains('=') {
        let mut parts = args.splitn(2, char::is_whitespace);
        let key = parts.next().unwrap_or_default().to_owned();
        let value = parts.next().map(str::trim).unwrap_or_default().to_owned();
        if value.is_empty() {
            return Err(format!(
                "{keyword} must have two arguments: {keyword} <key> <value> or {keyword} <key>=<value>"
            ));
        }
        return Ok(vec![KeyValue { key, value }]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(format!("{keyword} names can not be blank: {word:?}")),
            Some((key, value)) => Ok(KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
            None => Err(format!(
                "syntax error - can't find = in {word:?}. Must be of the form: name=value"
            )),
        })
        .collect()
}

fn arg(args: &str, escape: char) -> Result<InstructionKind, String> {
    let words = quoted_words(args, escape);
    if words.is_empty() {
        return Err("ARG requires at least one argument".into());
    }
    let decls = words
        .into_iter()
        .map(|word| {
            let (name, default) = match word.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (word.clone(), None),
            };
            if name.is_empty() {
                return Err(format!("ARG names can not be blank: {word:?}"));
            }
            Ok(ArgDecl { name, default })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(InstructionKind::Arg(decls))
}

fn at_least_one(keyword: &str, words: Vec<String>) -> Result<Vec<String>, String> {
    if words.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    Ok(words)
}

fn whole(keyword: &str, args: &str) -> Result<String, String> {
    if args.is_empty() {
        return Err(format!("{keyword} requires exactly one argument"));
    }
    Ok(args.to_owned())
}

fn single(keyword: &str, args: &str) -> Result<String, String> {
    let mut words = args.split_whitespace();
    match (words.next(), words.next()) {
        (Some(word), None) => Ok(word.to_owned()),
        _ => Err(format!("{keyword} requires exactly one argument")),
    }
}

fn healthcheck(flags: &mut Flags, args: &str) -> Result<InstructionKind, String> {
    let (kind, rest) = match args.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim_start()),
        None => (args, ""),
    };
    let kind = kind.to_ascii_uppercase();
    let interval = duration_flag(flags, "interval")?;
    let timeout = duration_flag(flags, "timeout")?;
    let start_period = duration_flag(flags, "start-period")?;
    let start_interval = duration_flag(flags, "start-interval")?;
    let retries = match flags.string("retries")? {
        None => None,
        Some(v) => {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("HEALTHCHECK --retries={v}: not an integer"))?;
            if n < 0 {
                return Err(format!("HEALTHCHECK --retries cannot be negative ({n})"));
            }
            (n != 0).then_some(n)
        }
    };
    match kind.as_str() {
        "NONE" => {
            if !rest.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments".into());
            }
            let any_flag = [interval, timeout, start_period, start_interval, retries]
                .iter()
                .any(Option::is_some);
            if any_flag {
                return Err("HEALTHCHECK NONE takes no flags".into());
            }
            Ok(InstructionKind::Healthcheck(Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }))
        }
        "CMD" => {
            let test = match json_array(rest) {
                Some(argv) if !argv.is_empty() => {
                    std::iter::once("CMD".to_owned()).chain(argv).collect()
                }
                _ if rest.is_empty() || rest == "[]" => {
                    return Err("missing command after HEALTHCHECK CMD".into());
                }
                _ => vec!["CMD-SHELL".to_owned(), rest.to_owned()],
            };
            Ok(InstructionKind::Healthcheck(Healthcheck {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }))
        }
        other => Err(format!(
            "unknown type {other:?} in HEALTHCHECK (try CMD or NONE)"
        )),
    }
}

/// A HEALTHCHECK duration; zero means "unset" and anything else must be at least 1ms.
fn duration_flag(flags: &mut Flags, name: &str) -> Result<Option<i64>, String> {
    let Some(text) = flags.string(name)? else {
        return Ok(None);
    };
    let nanos = duration::parse(&text).map_err(|e| format!("HEALTHCHECK --{name}: {e}"))?;
    if nanos == 0 {
        return Ok(None);
    }
    if nanos < 1_000_000 {
        return Err(format!(
            "HEALTHCHECK --{name}={text} cannot be less than 1ms"
        ));
    }
    Ok(Some(nanos))
}

fn onbuild(args: &str, escape: char) -> Result<InstructionKind, String> {
    let expression = args.trim();
    if expression.is_empty() {
        return Err("ONBUILD requires at least one argument".into());
    }
    let first = expression
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    match first.as_str() {
        "ONBUILD" => return Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "FROM" | "MAINTAINER" => {
            return Err(format!("{first} isn't allowed as an ONBUILD trigger"));
        }
        _ => {}
    }
    let trigger = kind(expression, escape, &[]).map_err(|m| format!("ONBUILD trigger: {m}"))?;
    Ok(InstructionKind::Onbuild {
        expression: expression.to_owned(),
        trigger: Box::new(trigger),
    })
}

/// Parses an ONBUILD trigger inherited from a base image, positioned at the stage's FROM.
pub(crate) fn trigger(
    text: &str,
    line: usize,
    column: usize,
    file: &str,
) -> Result<Instruction, Error> {
    // Triggers are stored without their Dockerfile's escape directive; BuildKit reads them
    // with the default escape character.
    let kind = onbuild(text, '\\')
        .and_then(|k| match k {
            InstructionKind::Onbuild { trigger, .. } => Ok(*trigger),
            _ => Err("ONBUILD trigger did not parse".to_owned()),
        })
        .map_err(|m| Error::at(file, line, column, text, format!("inherited {m}")))?;
    Ok(Instruction {
        line,
        column,
        text: text.to_owned(),
        kind,
    })
}
