//! Splits Dockerfile text into logical lines: comments and blank lines dropped, continuation
//! lines (ending in the escape character) joined, heredoc bodies attached to their instruction.

use super::flags::split_flags;
use super::heredoc::{Heredoc, markers};
use super::words::json_array;
use crate::error::Error;

/// One instruction's worth of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// 1-based column of the instruction keyword.
    pub column: usize,
    /// The text with continuations joined and surrounding whitespace trimmed.
    pub text: String,
    /// Heredoc bodies that followed the instruction, in the order of their markers.
    pub heredocs: Vec<Heredoc>,
}

/// Joins continuation lines as BuildKit's parser does: the escape character and trailing
/// blanks are removed and the next line appended directly; comment lines and blank lines
/// inside a continued instruction are skipped. The bodies of heredocs opened on a RUN, COPY or
/// ADD line are read next; a body that never meets its terminator is an error.
pub(crate) fn logical_lines(
    lines: &[&str],
    escape: char,
    file: &str,
) -> Result<Vec<LogicalLine>, Error> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let column = raw[..raw.len() - trimmed.len()].chars().count() + 1;
        let line = i;
        let (mut text, mut continued) = strip_continuation(trimmed, escape);
        while continued && i < lines.len() {
            let next = lines[i];
            i += 1;
            let next_trimmed = next.trim_start();
            if next_trimmed.starts_with('#') || next_trimmed.is_empty() {
                continue;
            }
            let (part, more) = strip_continuation(next, escape);
            text.push_str(&part);
            continued = more;
        }
        let text = text.trim().to_owned();
        let mut heredocs = Vec::new();
        if can_contain_heredoc(&text) {
            for marker in markers(&text) {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let body = lines[i];
                    i += 1;
                    let candidate = if marker.chomp {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    if candidate == marker.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                if !terminated {
                    return Err(Error::at(
                        file,
                        line,
                        column,
                        &text,
                        format!(
                            "unterminated heredoc: no line {:?} ends the heredoc opened here",
                            marker.name
                        ),
                    ));
                }
                heredocs.push(Heredoc {
                    name: marker.name,
                    expand: marker.expand,
                    chomp: marker.chomp,
                    content,
                });
            }
        }
        out.push(LogicalLine {
            line,
            column,
            text,
            heredocs,
        });
    }
    Ok(out)
}

/// RUN, COPY and ADD in shell form (directly or as an ONBUILD trigger), as BuildKit's
/// `canContainHeredoc`.
fn can_contain_heredoc(text: &str) -> bool {
    let (keyword, rest) = split_keyword(text);
    let (keyword, rest) = if keyword.eq_ignore_ascii_case("ONBUILD") {
        // The trigger follows ONBUILD's own flags (only `--` can be there), as the parser reads it.
        split_keyword(split_flags(rest).1)
    } else {
        (keyword, rest)
    };
    if !["RUN", "COPY", "ADD"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(keyword))
    {
        return false;
    }
    let (_, args) = split_flags(rest);
    json_array(args).is_none()
}

fn split_keyword(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim_start()),
        None => (text, ""),
    }
}

fn strip_continuation(s: &str, escape: char) -> (String, bool) {
    let t = s.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(body) => (body.to_owned(), true),
        None => (s.to_owned(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, escape: char) -> Vec<(usize, usize, String)> {
        let lines: Vec<&str> = src.lines().collect();
        logical_lines(&lines, escape, "Dockerfile")
            .unwrap()
            .into_iter()
            .map(|l| (l.line, l.column, l.text))
            .collect()
    }

    #[test]
    fn joins_continuations_skipping_comments_and_blank_lines() {
        let src = "FROM a\nRUN echo a \\\n# comment\n\n    && echo b \\  \n  # indented comment\n c\n  CMD x";
        assert_eq!(
            run(src, '\\'),
            vec![
                (1, 1, "FROM a".into()),
                (2, 1, "RUN echo a     && echo b  c".into()),
                (8, 3, "CMD x".into()),
            ]
        );
    }

    #[test]
    fn backtick_escape_continues_and_backslash_does_not() {
        let src = "RUN dir c:\\ `\n  /w\nRUN x";
        assert_eq!(
            run(src, '`'),
            vec![(1, 1, "RUN dir c:\\   /w".into()), (3, 1, "RUN x".into())]
        );
    }

    #[test]
    fn heredoc_bodies_follow_their_instruction_in_marker_order() {
        let src = "COPY <<a <<-b /d/\none\nhello # not a comment\na\n\ttwo\n\tb\nRUN x";
        let lines: Vec<&str> = src.lines().collect();
        let out = logical_lines(&lines, '\\', "Dockerfile").unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].heredocs[0].content, "one\nhello # not a comment\n");
        assert_eq!(out[0].heredocs[1].content, "\ttwo\n");
        assert!(out[0].heredocs[1].chomp);
        assert_eq!((out[1].line, out[1].text.as_str()), (7, "RUN x"));
    }

    #[test]
    fn exec_form_and_other_instructions_have_no_heredocs() {
        let src = "RUN [\"cat\", \"<<EOF\"]\nLABEL a=<<EOF\nEOF";
        let lines: Vec<&str> = src.lines().collect();
        let out = logical_lines(&lines, '\\', "Dockerfile").unwrap();
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|l| l.heredocs.is_empty()));
    }

    #[test]
    fn an_unterminated_heredoc_names_its_line_and_column() {
        let lines = ["FROM a", "  RUN <<EOF", "echo hi"];
        let e = logical_lines(&lines, '\\', "Dockerfile").unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 3));
        assert!(
            e.to_string()
                .starts_with("Dockerfile:2:3: unterminated heredoc"),
            "{e}"
        );
    }

    #[test]
    fn continuation_at_end_of_file_is_accepted() {
        assert_eq!(run("RUN a \\", '\\'), vec![(1, 1, "RUN a".into())]);
    }
}
