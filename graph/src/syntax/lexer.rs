//! Splits Dockerfile text into logical lines: comments and blank lines dropped, continuation
//! lines (ending in the escape character) joined.

/// One instruction's worth of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// 1-based column of the instruction keyword.
    pub column: usize,
    /// The text with continuations joined and surrounding whitespace trimmed.
    pub text: String,
}

/// Joins continuation lines as BuildKit's parser does: the escape character and trailing
/// blanks are removed and the next line appended directly; comment lines and blank lines
/// inside a continued instruction are skipped.
pub(crate) fn logical_lines(lines: &[&str], escape: char) -> Vec<LogicalLine> {
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
        out.push(LogicalLine {
            line,
            column,
            text: text.trim().to_owned(),
        });
    }
    out
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
        logical_lines(&lines, escape)
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
    fn continuation_at_end_of_file_is_accepted() {
        assert_eq!(run("RUN a \\", '\\'), vec![(1, 1, "RUN a".into())]);
    }
}
