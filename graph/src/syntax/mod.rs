//! Dockerfile syntax: directives, logical lines, instructions and their flags.
//!
//! Parsing is purely syntactic: it never expands variables or resolves stages, so a parsed
//! [`Dockerfile`] can be planned many times with different build arguments.

mod directives;
mod flags;
mod format;
mod heredoc;
mod instruction;
mod lexer;
mod parse;
mod words;

pub use directives::Directives;
pub use heredoc::Heredoc;
pub use instruction::{
    AddInstruction, ArgDecl, CommandLine, CopyInstruction, FromInstruction, Instruction,
    InstructionKind, KeyValue, RunInstruction,
};

use crate::error::Error;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The label used in messages (usually the path).
    pub file: String,
    /// The escape character in effect (`\` or `` ` ``).
    pub escape: char,
    /// Instructions in source order.
    pub instructions: Vec<Instruction>,
    /// All parser directives, including `escape`.
    pub directives: Directives,
}

/// Parses Dockerfile text. `file` labels error messages. Fails on the first unknown or
/// malformed instruction (an unterminated heredoc included), and on anything kiln does not
/// implement yet (`RUN --device`, `ADD --unpack`),
/// so that no instruction is ever silently skipped.
pub fn parse(source: &str, file: &str) -> Result<Dockerfile, Error> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let lines: Vec<&str> = source.lines().collect();
    let directives = directives::parse(&lines, file)?;
    let instructions = lexer::logical_lines(&lines, directives.escape, file)?
        .iter()
        .map(|line| parse::instruction(line, directives.escape, file))
        .collect::<Result<Vec<_>, _>>()?;
    if instructions.is_empty() {
        return Err(Error::whole(
            file,
            "the Dockerfile is empty: it needs at least a FROM instruction",
        ));
    }
    Ok(Dockerfile {
        file: file.to_owned(),
        escape: directives.escape,
        instructions,
        directives,
    })
}

pub(crate) use parse::{trigger as parse_trigger, validate_checksum as parse_checksum};

/// Whether a whole command is one heredoc marker (`<<EOF`), which BuildKit runs as a script.
pub(crate) fn is_heredoc_marker(text: &str) -> bool {
    heredoc::marker(text).is_some()
}

#[cfg(test)]
mod tests;
