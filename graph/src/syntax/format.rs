//! Formats a parsed Dockerfile back into Dockerfile text.
//!
//! The output parses to the same instructions (pinned by a property test): arguments are
//! written exactly as they were kept (quotes and `$VAR` intact), flags in a canonical order,
//! heredoc bodies after their instruction, exec form as JSON. Positions and source text are not
//! preserved: the formatter is for tools that rewrite Dockerfiles and for checking the parser.
//! One shape has no faithful text: an instruction ending in the escape character, which only a
//! continuation at the end of a file produces; it is written as that continuation again.

use std::fmt::{self, Display, Formatter};

use super::Dockerfile;
use super::heredoc::{Heredoc, marker as heredoc_marker};
use super::instruction::{
    AddInstruction, CommandLine, CopyInstruction, FromInstruction, Instruction, InstructionKind,
    KeyValue, RunInstruction,
};
use super::words::quoted_words;
use crate::duration;
use crate::state::Healthcheck;

impl Display for Dockerfile {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(syntax) = &self.directives.syntax {
            writeln!(f, "# syntax={syntax}")?;
        }
        if self.escape != '\\' {
            writeln!(f, "# escape={}", self.escape)?;
        }
        if let Some(check) = &self.directives.check {
            writeln!(f, "# check={check}")?;
        }
        for instruction in &self.instructions {
            let text = instruction.to_string();
            let (line, bodies) = match text.split_once('\n') {
                Some((line, bodies)) => (line, Some(bodies)),
                None => (text.as_str(), None),
            };
            let mut line = line.to_owned();
            // The reader trims blanks off the end of an instruction, so a value ending in an
            // escaped blank (only word lists have them) gets a lone escape after it, which word
            // splitting drops.
            if line.ends_with(char::is_whitespace) {
                line.push(self.escape);
            }
            // A line ending in the escape character is a continuation, which drops one: only a
            // continuation at the end of a file produces such values, so write it back.
            if line.trim_end_matches([' ', '\t']).ends_with(self.escape) {
                line.push(self.escape);
            }
            f.write_str(&line)?;
            if let Some(bodies) = bodies {
                write!(f, "\n{bodies}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl Display for Instruction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl Display for InstructionKind {
    /// One instruction, followed by its heredoc bodies (without a final newline).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::From(from) => write_from(f, from),
            Self::Run(run) => write_run(f, run),
            Self::Cmd(cmd) => write!(f, "CMD{}", lead(&command(cmd))),
            Self::Entrypoint(cmd) => write!(f, "ENTRYPOINT{}", lead(&command(cmd))),
            Self::Shell(argv) => write!(f, "SHELL {}", json(argv)),
            Self::Copy(copy) => write_copy(f, copy),
            Self::Add(add) => write_add(f, add),
            Self::Env(pairs) => write_pairs(f, "ENV", pairs),
            Self::Label(pairs) => write_pairs(f, "LABEL", pairs),
            Self::Arg(decls) => {
                f.write_str("ARG")?;
                for (i, decl) in decls.iter().enumerate() {
                    match i {
                        0 => f.write_str(&lead(&decl.name))?,
                        _ => write!(f, " {}", decl.name)?,
                    }
                    if let Some(default) = &decl.default {
                        write!(f, "={default}")?;
                    }
                }
                Ok(())
            }
            Self::Expose(words) => write!(f, "EXPOSE{}", lead(&words.join(" "))),
            Self::Volume(paths) => write!(f, "VOLUME{}", lead(&words_or_json(paths))),
            Self::User(user) => write!(f, "USER{}", lead(user)),
            Self::Workdir(dir) => write!(f, "WORKDIR{}", lead(dir)),
            Self::StopSignal(signal) => write!(f, "STOPSIGNAL{}", lead(signal)),
            Self::Maintainer(name) => write!(f, "MAINTAINER{}", lead(name)),
            Self::Healthcheck(check) => write_healthcheck(f, check),
            Self::Onbuild { expression, .. } => write!(f, "ONBUILD{}", lead(expression)),
        }
    }
}

fn write_from(f: &mut Formatter<'_>, from: &FromInstruction) -> fmt::Result {
    f.write_str("FROM")?;
    flag(f, "platform", from.platform.as_deref())?;
    f.write_str(&lead(&from.image))?;
    if let Some(name) = &from.name {
        write!(f, " AS {name}")?;
    }
    Ok(())
}

fn write_run(f: &mut Formatter<'_>, run: &RunInstruction) -> fmt::Result {
    f.write_str("RUN")?;
    for mount in &run.mounts {
        flag(f, "mount", Some(&mount.to_string()))?;
    }
    flag(f, "network", run.network.map(|n| n.as_str()))?;
    flag(f, "security", run.security.map(|s| s.as_str()))?;
    f.write_str(&lead(&command(&run.command)))?;
    bodies(f, &run.heredocs)
}

fn write_copy(f: &mut Formatter<'_>, copy: &CopyInstruction) -> fmt::Result {
    f.write_str("COPY")?;
    flag(f, "from", copy.from.as_deref())?;
    flag(f, "chown", copy.chown.as_deref())?;
    flag(f, "chmod", copy.chmod.as_deref())?;
    switch(f, "link", copy.link)?;
    switch(f, "parents", copy.parents)?;
    for exclude in &copy.excludes {
        flag(f, "exclude", Some(exclude))?;
    }
    sources(f, &copy.sources, &copy.heredocs, &copy.dest)
}

fn write_add(f: &mut Formatter<'_>, add: &AddInstruction) -> fmt::Result {
    f.write_str("ADD")?;
    flag(f, "chown", add.chown.as_deref())?;
    flag(f, "chmod", add.chmod.as_deref())?;
    switch(f, "link", add.link)?;
    for exclude in &add.excludes {
        flag(f, "exclude", Some(exclude))?;
    }
    flag(f, "checksum", add.checksum.as_deref())?;
    if let Some(keep) = add.keep_git_dir {
        write!(f, " --keep-git-dir={keep}")?;
    }
    sources(f, &add.sources, &add.heredocs, &add.dest)
}

/// Heredoc markers, sources and the destination; JSON form when a path needs it (it cannot
/// carry heredocs, so those always use the word form).
fn sources(f: &mut Formatter<'_>, paths: &[String], docs: &[Heredoc], dest: &str) -> fmt::Result {
    let needs_json = paths
        .iter()
        .chain(std::iter::once(&dest.to_owned()))
        .any(|p| {
            p.is_empty()
                || p.contains(char::is_whitespace)
                || p.starts_with('[')
                || heredoc_marker(p).is_some()
        });
    if needs_json && docs.is_empty() {
        let mut all = paths.to_vec();
        all.push(dest.to_owned());
        return write!(f, " {}", json(&all));
    }
    // Markers first: a path with an unbalanced quote would hide a marker after it from the
    // heredoc scan, and the parser keeps paths and heredocs apart anyway.
    let mut words: Vec<String> = docs.iter().map(marker).collect();
    words.extend(paths.iter().cloned());
    words.push(dest.to_owned());
    f.write_str(&lead(&words.join(" ")))?;
    bodies(f, docs)
}

/// `<<NAME`, `<<-NAME`, `<<'NAME'`: what reads back as `doc`'s delimiter.
fn marker(doc: &Heredoc) -> String {
    let mut out = String::from("<<");
    if doc.chomp {
        out.push('-');
    }
    if doc.expand {
        out.push_str(&doc.name);
    } else {
        out.push_str(&quote(&doc.name));
    }
    out
}

/// Each body, then its terminator, on the lines after the instruction.
fn bodies(f: &mut Formatter<'_>, docs: &[Heredoc]) -> fmt::Result {
    for doc in docs {
        write!(f, "\n{}{}", doc.content, doc.name)?;
    }
    Ok(())
}

fn write_pairs(f: &mut Formatter<'_>, keyword: &str, pairs: &[KeyValue]) -> fmt::Result {
    let words: Vec<String> = pairs
        .iter()
        .map(|p| format!("{}={}", p.key, p.value))
        .collect();
    // `k=v` pairs survive only if each reads back as one word; otherwise the single pair came
    // from the legacy `ENV key value with spaces` form, which keeps unquoted blanks.
    let one_word_each = words
        .iter()
        .all(|w| quoted_words(w, '\\').as_slice() == std::slice::from_ref(w));
    if !one_word_each
        && let [pair] = pairs
        && !pair.key.is_empty()
        && !pair.key.contains(char::is_whitespace)
    {
        return write!(f, "{keyword}{} {}", lead(&pair.key), pair.value);
    }
    write!(f, "{keyword}{}", lead(&words.join(" ")))
}

fn write_healthcheck(f: &mut Formatter<'_>, check: &Healthcheck) -> fmt::Result {
    f.write_str("HEALTHCHECK")?;
    let durations = [
        ("interval", check.interval),
        ("timeout", check.timeout),
        ("start-period", check.start_period),
        ("start-interval", check.start_interval),
    ];
    for (name, value) in durations {
        if let Some(nanos) = value {
            write!(f, " --{name}={}", duration::format(nanos))?;
        }
    }
    if let Some(retries) = check.retries {
        write!(f, " --retries={retries}")?;
    }
    match check.test.split_first() {
        Some((kind, rest)) if kind == "CMD" => write!(f, " CMD {}", json(rest)),
        Some((kind, [shell])) if kind == "CMD-SHELL" => write!(f, " CMD {shell}"),
        _ => f.write_str(" NONE"),
    }
}

/// The space before an instruction's arguments, and `--` when they start like a flag (which
/// the parser would otherwise take them for).
fn lead(args: &str) -> String {
    if args.starts_with("--") {
        format!(" -- {args}")
    } else {
        format!(" {args}")
    }
}

fn command(cmd: &CommandLine) -> String {
    match cmd {
        CommandLine::Exec(argv) => json(argv),
        CommandLine::Shell(text) => text.clone(),
    }
}

fn words_or_json(items: &[String]) -> String {
    let plain = items
        .iter()
        .all(|i| !i.is_empty() && !i.contains(char::is_whitespace) && !i.starts_with('['));
    if plain { items.join(" ") } else { json(items) }
}

fn json(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

/// ` --name=value`, quoted when the value has blanks, quotes or backslashes (the flag splitter
/// removes quotes and keeps what they enclose; the heredoc scan reads backslashes as escapes).
fn flag(f: &mut Formatter<'_>, name: &str, value: Option<&str>) -> fmt::Result {
    match value {
        None => Ok(()),
        Some(v) if v.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\')) => {
            write!(f, " --{name}={}", quote(v))
        }
        Some(v) => write!(f, " --{name}={v}"),
    }
}

/// Single-quotes `text`; a `'` inside is written as `"'"` between two single-quoted parts.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\"'\"'"))
}

fn switch(f: &mut Formatter<'_>, name: &str, on: bool) -> fmt::Result {
    if on {
        write!(f, " --{name}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
