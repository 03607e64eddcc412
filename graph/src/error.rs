//! The one error type of the crate: every failure names the Dockerfile, the position and the
//! instruction at fault, because a user fixing a build needs to know *where* first.

use std::fmt;

/// A position in a Dockerfile together with the source text it points at.
///
/// Kept separate from [`Error`] so that errors about the build as a whole (an unknown
/// `--target`, say) can exist without inventing a fake line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// 1-based line of the instruction.
    pub line: usize,
    /// 1-based column (in characters) where the instruction starts.
    pub column: usize,
    /// The instruction's source text (continuations joined), quoted under the message.
    pub source: String,
}

/// Why a Dockerfile could not be parsed or planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(self))]
pub struct Error {
    /// The label the caller gave the Dockerfile (usually its path).
    pub file: String,
    /// Where in the file, when the problem has a position.
    pub span: Option<Span>,
    /// What is wrong, in words that name the offending thing.
    pub message: String,
}

impl Error {
    /// An error at a known position.
    pub(crate) fn at(
        file: &str,
        line: usize,
        column: usize,
        source: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            span: Some(Span {
                line,
                column,
                source: source.to_owned(),
            }),
            message: message.into(),
        }
    }

    /// An error about the Dockerfile as a whole.
    pub(crate) fn whole(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            span: None,
            message: message.into(),
        }
    }

    /// 1-based line of the error, 0 when it has no position.
    pub fn line(&self) -> usize {
        self.span.as_ref().map_or(0, |s| s.line)
    }

    /// 1-based column of the error, 0 when it has no position.
    pub fn column(&self) -> usize {
        self.span.as_ref().map_or(0, |s| s.column)
    }
}

fn render(e: &Error) -> String {
    match &e.span {
        None => format!("{}: {}", e.file, e.message),
        Some(span) => {
            let mut out = String::new();
            let _ = write_span(&mut out, e, span);
            out
        }
    }
}

fn write_span(out: &mut impl fmt::Write, e: &Error, span: &Span) -> fmt::Result {
    write!(
        out,
        "{}:{}:{}: {}",
        e.file, span.line, span.column, e.message
    )?;
    // Quote only the first physical line: continued instructions can be very long.
    let first = span.source.lines().next().unwrap_or("");
    write!(out, "\n    {} | {}", span.line, first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_position_and_quotes_the_line() {
        let e = Error::at("Dockerfile", 3, 1, "FOO bar", "unknown instruction: FOO");
        assert_eq!(
            e.to_string(),
            "Dockerfile:3:1: unknown instruction: FOO\n    3 | FOO bar"
        );
    }

    #[test]
    fn display_without_position_names_only_the_file() {
        let e = Error::whole("Dockerfile", "no stage named \"x\"");
        assert_eq!(e.to_string(), "Dockerfile: no stage named \"x\"");
        assert_eq!((e.line(), e.column()), (0, 0));
    }
}
