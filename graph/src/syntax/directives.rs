//! Parser directives (`# syntax=`, `# escape=`, `# check=`): comments at the very top of a
//! Dockerfile that change how the rest is read.

use crate::error::Error;

/// Directives found at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` (default) or `` ` `` (handy on Windows paths).
    pub escape: char,
    /// `# syntax=` frontend image; recorded so `kiln plan` can warn, never used to fetch code.
    pub syntax: Option<String>,
    /// `# check=` linter configuration, kept verbatim.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// Reads directives from the leading lines. Stops at the first line that is not a known
/// directive (an ordinary comment, a blank line, an instruction or an unknown directive), as
/// BuildKit does: directives further down are plain comments.
pub(crate) fn parse(lines: &[&str], file: &str) -> Result<Directives, Error> {
    let mut found = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let Some((name, value)) = split_directive(raw) else {
            break;
        };
        let key = name.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            break;
        }
        let column = raw.len() - raw.trim_start().len() + 1;
        if seen.contains(&key) {
            return Err(Error::at(
                file,
                i + 1,
                column,
                raw,
                format!("only one {key} parser directive can be used"),
            ));
        }
        seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                found.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(Error::at(
                            file,
                            i + 1,
                            column,
                            raw,
                            format!("invalid escape token '{other}' does not match ` or \\"),
                        ));
                    }
                }
            }
            "syntax" => found.syntax = Some(value.to_owned()),
            _ => found.check = Some(value.to_owned()),
        }
    }
    Ok(found)
}

/// `# name = value` -> (name, value), the shape BuildKit's directive regexp accepts.
fn split_directive(raw: &str) -> Option<(&str, &str)> {
    let rest = raw.trim().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    let value = value.trim();
    let mut chars = name.chars();
    let starts_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_alpha || !chars.all(|c| c.is_ascii_alphanumeric()) || value.is_empty() {
        return None;
    }
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str) -> Result<Directives, Error> {
        let lines: Vec<&str> = src.lines().collect();
        parse(&lines, "Dockerfile")
    }

    #[test]
    fn reads_directives_until_the_first_other_line() {
        let d =
            run("# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM a").expect("ok");
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.check.as_deref(), Some("skip=all"));
    }

    #[test]
    fn directives_after_a_comment_or_blank_line_are_comments() {
        assert_eq!(run("# hello\n# escape=`\nFROM a").expect("ok").escape, '\\');
        assert_eq!(run("\n# escape=`\nFROM a").expect("ok").escape, '\\');
        assert_eq!(
            run("# unknown=1\n# escape=`\nFROM a").expect("ok").escape,
            '\\'
        );
    }

    #[test]
    fn bad_escape_and_duplicates_are_errors() {
        let e = run("# escape=x\nFROM a").expect_err("bad escape");
        assert_eq!(e.line(), 1);
        assert!(e.message.contains("invalid escape token 'x'"));
        let e = run("# escape=`\n# escape=\\\nFROM a").expect_err("dup");
        assert_eq!(e.line(), 2);
        assert!(e.message.contains("only one escape"));
    }
}
