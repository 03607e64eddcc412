//! `.dockerignore`, with the exact semantics of `moby/patternmatcher` and its `ignorefile` reader.
//!
//! Users' ignore files were written against Docker's matcher, quirks included (`**file` is a plain
//! suffix test, `dir/**` does not match `dir` itself, a path is excluded when any parent directory
//! matches, the last matching line wins), so this is a port rather than a gitignore library.
//! Patterns are compiled once, when the file is parsed, which also reports every malformed pattern
//! up front instead of on the first file that reaches it.

use std::io::BufRead;

use thiserror::Error;

use crate::glob;

/// Why an ignore file was rejected.
#[derive(Debug, Error)]
pub enum DockerignoreError {
    /// A line is not a valid pattern (as Go's `filepath.Match` or `regexp` would reject it).
    #[error(".dockerignore line {line}: invalid pattern {pattern:?}: {reason}")]
    BadPattern {
        /// 1-based line number.
        line: usize,
        /// The pattern after cleaning.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file could not be read.
    #[error("reading .dockerignore: {0}")]
    Read(#[from] std::io::Error),
}

/// A parsed ignore file: decides which build-context paths `COPY` may see.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

/// One line: a matcher and whether it re-includes (`!`).
#[derive(Debug, Clone)]
struct Pattern {
    exception: bool,
    matcher: Matcher,
}

/// The shapes `patternmatcher` compiles a pattern into; the cheap ones are kept because they do
/// not always agree with the regexp the same pattern would give (`**file` matches `xfile`).
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Tokens(Vec<Token>),
}

/// One element of the regular expression `patternmatcher` would build.
#[derive(Debug, Clone)]
enum Token {
    /// A literal character.
    Char(char),
    /// `[^/]`: `?`.
    One,
    /// `[^/]*`: `*`.
    Star,
    /// `(.*/)?`: `**` followed by more pattern.
    Dirs,
    /// `.*`: a trailing `**` after other wildcards.
    Any,
    /// `[...]`, possibly negated.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Dockerignore {
    /// Parses the text of an ignore file.
    pub fn parse(text: &str) -> Result<Dockerignore, DockerignoreError> {
        Self::from_reader(text.as_bytes())
    }

    /// Parses an ignore file line by line, without reading it whole into memory.
    pub fn from_reader(reader: impl BufRead) -> Result<Dockerignore, DockerignoreError> {
        let mut patterns = Vec::new();
        for (index, line) in reader.lines().enumerate() {
            let line = line?;
            let line = if index == 0 {
                line.strip_prefix('\u{feff}').unwrap_or(&line).to_owned()
            } else {
                line
            };
            if let Some(pattern) = Pattern::from_line(&line, index + 1)? {
                patterns.push(pattern);
            }
        }
        Ok(Dockerignore { patterns })
    }

    /// Whether there are no patterns: nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is excluded: the last
    /// pattern that matches it or one of its parent directories decides.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let file = go_clean(rel_path);
        let file = file.strip_prefix('/').unwrap_or(&file);
        if file == "." || file.is_empty() {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(end) => file[..end].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exception != matched {
                continue;
            }
            let mut hit = pattern.matcher.matches(file);
            if !hit {
                let mut prefix_len = 0;
                for (i, dir) in parents.iter().enumerate() {
                    prefix_len += dir.len() + usize::from(i > 0);
                    if pattern.matcher.matches(&file[..prefix_len]) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !pattern.exception;
            }
        }
        matched
    }

    /// Whether any `!` line exists, i.e. whether an excluded directory may still hold included
    /// files and must be walked.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

impl Pattern {
    /// `ignorefile.ReadAll` followed by `patternmatcher.New` for one line.
    fn from_line(line: &str, number: usize) -> Result<Option<Pattern>, DockerignoreError> {
        if line.starts_with('#') {
            return Ok(None);
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            return Ok(None);
        }
        let exception = pattern.starts_with('!');
        if exception {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = go_clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        let bad = |pattern: &str, reason| DockerignoreError::BadPattern {
            line: number,
            pattern: pattern.to_owned(),
            reason,
        };
        // patternmatcher.New cleans again and treats a leading `!` of the result as an exception.
        let mut text = if exception {
            format!("!{cleaned}")
        } else {
            cleaned
        };
        text = go_clean(text.trim());
        let exception = text.starts_with('!');
        if exception {
            if text.len() == 1 {
                return Err(bad("!", "illegal exclusion pattern"));
            }
            text.remove(0);
        }
        glob::matches(&text, ".").map_err(|_| bad(&text, "syntax error in pattern"))?;
        let matcher = Matcher::compile(&text).map_err(|reason| bad(&text, reason))?;
        Ok(Some(Pattern { exception, matcher }))
    }
}

impl Matcher {
    /// `Pattern.compile` with `/` as the separator.
    fn compile(pattern: &str) -> Result<Matcher, &'static str> {
        #[derive(PartialEq)]
        enum Kind {
            Exact,
            Prefix,
            Suffix,
            Regexp,
        }
        let mut kind = Kind::Exact;
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        let mut i = 0;
        while let Some(ch) = chars.next() {
            match ch {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                    }
                    if chars.peek().is_none() {
                        if kind == Kind::Exact {
                            kind = Kind::Prefix;
                        } else {
                            tokens.push(Token::Any);
                            kind = Kind::Regexp;
                        }
                    } else {
                        tokens.push(Token::Dirs);
                        kind = Kind::Regexp;
                    }
                    if i == 0 {
                        kind = Kind::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    kind = Kind::Regexp;
                }
                '?' => {
                    tokens.push(Token::One);
                    kind = Kind::Regexp;
                }
                '\\' => match chars.next() {
                    Some(next) => {
                        tokens.push(Token::Char(next));
                        kind = Kind::Regexp;
                    }
                    None => tokens.push(Token::Char('\\')),
                },
                '[' => {
                    tokens.push(parse_class(&mut chars)?);
                    kind = Kind::Regexp;
                }
                ']' => {
                    tokens.push(Token::Char(']'));
                    kind = Kind::Regexp;
                }
                other => tokens.push(Token::Char(other)),
            }
            i += 1;
        }
        Ok(match kind {
            Kind::Exact => Matcher::Exact(pattern.to_owned()),
            Kind::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_owned()),
            Kind::Suffix => Matcher::Suffix(pattern[2..].to_owned()),
            Kind::Regexp => Matcher::Tokens(tokens),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(exact) => path == exact,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Matcher::Tokens(tokens) => run(tokens, path),
        }
    }
}

/// Parses the inside of `[...]` (the `[` already consumed) the way Go's regexp would read it.
fn parse_class(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Token, &'static str> {
    let negated = chars.peek() == Some(&'^');
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let ch = chars.next().ok_or("missing closing ]")?;
        if ch == ']' && !first {
            break;
        }
        first = false;
        let lo = if ch == '\\' {
            chars.next().ok_or("trailing backslash")?
        } else {
            ch
        };
        let mut hi = lo;
        if chars.peek() == Some(&'-') {
            let mut ahead = chars.clone();
            ahead.next();
            if ahead.peek().is_some_and(|c| *c != ']') {
                chars.next();
                let end = chars.next().ok_or("missing closing ]")?;
                hi = if end == '\\' {
                    chars.next().ok_or("trailing backslash")?
                } else {
                    end
                };
                if hi < lo {
                    return Err("invalid character class range");
                }
            }
        }
        ranges.push((lo, hi));
    }
    Ok(Token::Class { negated, ranges })
}

/// Anchored match of the token program against `path`, simulated as a set of positions so that
/// no pattern can make it backtrack exponentially.
fn run(tokens: &[Token], path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    let n = chars.len();
    let mut states = vec![false; n + 1];
    states[0] = true;
    for token in tokens {
        let mut next = vec![false; n + 1];
        match token {
            Token::Char(_) | Token::One | Token::Class { .. } => {
                for i in 0..n {
                    if states[i] && token.accepts(chars[i]) {
                        next[i + 1] = true;
                    }
                }
            }
            Token::Star => {
                let mut live = false;
                for j in 0..=n {
                    live |= states[j];
                    next[j] = live;
                    if j < n && chars[j] == '/' {
                        live = false;
                    }
                }
            }
            Token::Any => {
                let mut live = false;
                for j in 0..=n {
                    live |= states[j];
                    next[j] = live;
                }
            }
            Token::Dirs => {
                let mut live = false;
                for j in 0..=n {
                    next[j] = states[j] || (live && j > 0 && chars[j - 1] == '/');
                    live |= states[j];
                }
            }
        }
        states = next;
        if !states.contains(&true) {
            return false;
        }
    }
    states[n]
}

impl Token {
    fn accepts(&self, ch: char) -> bool {
        match self {
            Token::Char(c) => *c == ch,
            Token::One => ch != '/',
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| *lo <= ch && ch <= *hi) != *negated
            }
            Token::Star | Token::Any | Token::Dirs => false,
        }
    }
}

/// Go's `filepath.Clean`: lexical, keeps a leading `/` and leading `..` of relative paths.
pub(crate) fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(last) if *last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &[&str], path: &str) -> bool {
        Dockerignore::parse(&patterns.join("\n"))
            .unwrap()
            .is_excluded(path)
    }

    /// `TestMatches` from moby/patternmatcher (MatchesOrParentMatches: exact and inexact pass).
    /// The two rows matching the bare path `/` are left out: here that is the context root, which
    /// is never excluded (see `the_context_root_is_never_excluded`).
    #[test]
    fn upstream_single_pattern_table() {
        let table: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\\\", "a\\", true),
            ("a\\*b", "a*b", true),
        ];
        for (pattern, path, want) in table {
            assert_eq!(
                excluded(&[pattern], path),
                *want,
                "pattern {pattern:?} path {path:?}"
            );
        }
    }

    /// The multi-pattern rows of the same upstream test.
    #[test]
    fn upstream_multi_pattern_table() {
        assert!(!excluded(
            &["**", "!util/docker/web"],
            "util/docker/web/foo"
        ));
        assert!(excluded(
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo"
        ));
        assert!(!excluded(
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
        ));
        assert!(!excluded(
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
        ));
    }

    /// `TestMatch` from upstream: Go's `filepath.Match` table run through the matcher.
    #[test]
    fn upstream_filepath_match_table() {
        let ok: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", true),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ];
        for (pattern, path, want) in ok {
            assert_eq!(
                excluded(&[pattern], path),
                *want,
                "pattern {pattern:?} path {path:?}"
            );
        }
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
        ] {
            assert!(
                Dockerignore::parse(bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn folder_patterns_with_exceptions() {
        assert!(!excluded(&["docs", "!docs/README.md"], "docs/README.md"));
        assert!(!excluded(&["docs/", "!docs/README.md"], "docs/README.md"));
        assert!(!excluded(&["docs/*", "!docs/README.md"], "docs/README.md"));
        assert!(excluded(&["docs/*", "!docs/README.md"], "docs/other.md"));
        assert!(excluded(&["!fileutils.go", "*.go"], "fileutils.go"));
        assert!(!excluded(&["*.go", "!fileutils.go"], "fileutils.go"));
    }

    #[test]
    fn the_context_root_is_never_excluded() {
        assert!(!excluded(&["*"], "."));
        assert!(!excluded(&["**"], ""));
    }

    #[test]
    fn comments_blank_lines_bom_and_leading_slashes() {
        let ignore =
            Dockerignore::parse("\u{feff}# comment\n\n  /secret.txt  \n! /secret.txt/../keep\n")
                .unwrap();
        assert!(ignore.is_excluded("secret.txt"));
        assert!(ignore.is_excluded("/secret.txt"));
        assert!(!ignore.is_excluded("keep"));
        assert!(!ignore.is_excluded("other"));
        assert!(ignore.has_exceptions());
    }

    #[test]
    fn a_lone_exclamation_mark_is_an_error_naming_the_line() {
        let err = Dockerignore::parse("ok\n!\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn regexp_only_errors_are_reported_at_parse_time() {
        // Passes filepath.Match but is an invalid regexp range (l > O): moby/moby#52203.
        assert!(Dockerignore::parse("[Local-Only]/").is_err());
    }

    #[test]
    fn go_clean_matches_filepath_clean() {
        assert_eq!(go_clean("a/../../b"), "../b");
        assert_eq!(go_clean("/../a/./b/"), "/a/b");
        assert_eq!(go_clean(""), ".");
        assert_eq!(go_clean("./"), ".");
    }
}
