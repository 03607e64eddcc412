//! Shell-like word expansion as the Dockerfile front end does it (BuildKit's `shell.Lex`).
//!
//! Dockerfile instructions that the builder itself interprets (COPY, ENV, WORKDIR, ...) expand
//! `$VAR` references before use; RUN/CMD/ENTRYPOINT are left to the shell at run time. Quotes
//! group and are removed, the escape character makes the next character literal, and an
//! undefined variable expands to the empty string.
//!
//! The braced forms are exactly BuildKit's, quirks included, so that a Dockerfile means the same
//! thing here as under `docker build`:
//! - `${v:-w}` `${v-w}` `${v:+w}` `${v+w}`: defaults and alternatives (the colon forms treat an
//!   empty value as unset);
//! - `${v:?msg}` `${v?msg}`: fail with `v: msg` (or `v: is not allowed to be unset` / `... to be
//!   empty` when `msg` is empty);
//! - `${v#p}` `${v##p}` `${v%p}` `${v%%p}`: remove the shortest / longest prefix or suffix that
//!   matches the pattern `p` (BuildKit also accepts `${v:#p}` and `${v:%p}` as synonyms);
//! - `${v/p/r}` `${v//p/r}`: replace the first / every match of `p` with `r`. There are no `#`
//!   or `%` anchors, and as in BuildKit (which uses Go's `ReplaceAllString`) `$0` in the
//!   replacement of the `//` form stands for the matched text.
//!
//! Patterns and replacements are expanded like any word, keeping escape characters so that the
//! pattern can use them. Patterns know `*`, `?` and `\*` `\?` `\\` escapes (`\}` and `\/`
//! for the delimiters) but, like BuildKit, no `[...]` classes: brackets are literal. Wildcards
//! never match a newline, mirroring Go's regexp `.`.

use glob::{Matcher, Pattern, Star};

/// Variables visible to an expansion.
pub trait Vars {
    /// The value of `name`, or `None` when it is not set (which differs from set-but-empty for
    /// `${V-w}` and `${V+w}`).
    fn var(&self, name: &str) -> Option<&str>;
}

impl Vars for [(String, String)] {
    fn var(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<T: Vars + ?Sized> Vars for &T {
    fn var(&self, name: &str) -> Option<&str> {
        (**self).var(name)
    }
}

impl Vars for Vec<(String, String)> {
    fn var(&self, name: &str) -> Option<&str> {
        self.as_slice().var(name)
    }
}

/// Why a word could not be expanded; the caller adds the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExpandError(pub String);

/// Expands `word` into a single string (quotes removed, variables substituted).
pub fn expand_word(word: &str, escape: char, vars: &dyn Vars) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(word, escape, vars);
    let mut out = Out::new(false);
    lexer.process(None, &mut out)?;
    Ok(out.cur)
}

/// Expands `text` and splits it into words at unquoted whitespace, including whitespace that
/// comes from unquoted variable values (EXPOSE `$PORTS` with `PORTS="80 443"` gives two).
pub fn expand_words(text: &str, escape: char, vars: &dyn Vars) -> Result<Vec<String>, ExpandError> {
    let mut lexer = Lexer::new(text, escape, vars);
    let mut out = Out::new(true);
    lexer.process(None, &mut out)?;
    Ok(out.finish())
}

/// Expands variables in a heredoc body as BuildKit does for COPY/ADD heredocs
/// (`SkipProcessQuotes`): quotes are ordinary characters, `$VAR` and the braced forms are
/// substituted, and `\` still escapes the next character.
pub fn expand_heredoc(body: &str, vars: &dyn Vars) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(body, '\\', vars);
    lexer.skip_quotes = true;
    let mut out = Out::new(false);
    lexer.process(None, &mut out)?;
    Ok(out.cur)
}

/// Accumulates expansion output, optionally splitting it into words.
struct Out {
    split: bool,
    words: Vec<String>,
    cur: String,
    /// Whether the current word exists even if empty (`""` is a word, an unset `$X` is not).
    started: bool,
}

impl Out {
    fn new(split: bool) -> Self {
        Self {
            split,
            words: Vec::new(),
            cur: String::new(),
            started: false,
        }
    }

    fn literal(&mut self, c: char) {
        self.cur.push(c);
        self.started = true;
    }

    fn quoted(&mut self, s: &str) {
        self.cur.push_str(s);
        self.started = true;
    }

    fn unquoted_value(&mut self, value: &str) {
        if !self.split {
            self.cur.push_str(value);
            return;
        }
        for c in value.chars() {
            if c.is_whitespace() {
                self.break_word();
            } else {
                self.literal(c);
            }
        }
    }

    fn break_word(&mut self) {
        if self.started {
            self.words.push(std::mem::take(&mut self.cur));
        }
        self.started = false;
    }

    fn finish(mut self) -> Vec<String> {
        self.break_word();
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    /// Whether escape characters are kept in the output (while reading a pattern or a
    /// replacement, where BuildKit keeps them so the pattern can use `\*` and friends).
    raw_escapes: bool,
    /// Whether quotes are plain characters (heredoc bodies).
    skip_quotes: bool,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, escape: char, vars: &'a dyn Vars) -> Self {
        Self {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            vars,
            raw_escapes: false,
            skip_quotes: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes until `stop` (consumed) or the end of input.
    fn process(&mut self, stop: Option<char>, out: &mut Out) -> Result<(), ExpandError> {
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok(());
            }
            self.pos += 1;
            match c {
                '\'' | '"' if self.skip_quotes => out.literal(c),
                '\'' => {
                    let s = self.single_quoted()?;
                    out.quoted(&s);
                }
                '"' => {
                    let s = self.double_quoted()?;
                    out.quoted(&s);
                }
                '$' => match self.dollar()? {
                    Some(value) => out.unquoted_value(&value),
                    None => out.literal('$'),
                },
                c if c == self.escape => {
                    if self.raw_escapes {
                        out.literal(c);
                    }
                    // A trailing escape has nothing to escape and is dropped, as in BuildKit.
                    if let Some(n) = self.next() {
                        out.literal(n);
                    }
                }
                c if out.split && c.is_whitespace() => out.break_word(),
                c => out.literal(c),
            }
        }
        match stop {
            Some(s) => Err(missing(s)),
            None => Ok(()),
        }
    }

    /// Expands the word up to `stop` (consumed) on its own, as the argument of a `${...}` form.
    fn word_until(&mut self, stop: char, raw_escapes: bool) -> Result<String, ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let mut inner = Out::new(false);
        let result = self.process(Some(stop), &mut inner);
        self.raw_escapes = saved;
        match result {
            Ok(()) => Ok(inner.cur),
            // Whatever went wrong, running out of input means the form was never closed.
            Err(_) if self.peek().is_none() => Err(missing(stop)),
            Err(e) => Err(e),
        }
    }

    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let mut s = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    ));
                }
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        let mut s = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    ));
                }
                Some('"') => return Ok(s),
                Some('$') => match self.dollar()? {
                    Some(value) => s.push_str(&value),
                    None => s.push('$'),
                },
                Some(c) if c == self.escape => {
                    if self.raw_escapes {
                        s.push(c);
                    }
                    match self.peek() {
                        // Nothing to escape: the missing quote is reported on the next turn.
                        None => {}
                        // Only these can be escaped inside double quotes; other escapes stay
                        // as-is (so a raw `"\a"` keeps the escape twice, as in BuildKit).
                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                            self.pos += 1;
                            s.push(n);
                        }
                        Some(_) => s.push(c),
                    }
                }
                Some(c) => s.push(c),
            }
        }
    }

    /// After a `$`: the substituted value, or `None` when the `$` is literal.
    fn dollar(&mut self) -> Result<Option<String>, ExpandError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced().map(Some)
            }
            Some(c) if is_name_char(c) => {
                let name = self.name();
                Ok(Some(self.lookup(&name).unwrap_or_default()))
            }
            _ => Ok(None),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        // `$1`-style positional names are digits only, as in BuildKit.
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                name.push(c);
                self.pos += 1;
            }
            return name;
        }
        while let Some(c) = self.peek().filter(|c| is_name_char(*c)) {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.var(name).map(str::to_owned)
    }

    /// After `${`: dispatches on the character that follows the name.
    fn braced(&mut self) -> Result<String, ExpandError> {
        let name = self.name();
        if name.is_empty() {
            return Err(match self.peek() {
                None => missing('}'),
                Some(_) => ExpandError("bad substitution: empty variable name in ${}".into()),
            });
        }
        match self.next() {
            None => Err(missing('}')),
            Some('}') => Ok(self.lookup(&name).unwrap_or_default()),
            Some('/') => self.replace(&name),
            Some(':') => {
                let op = self.next();
                self.modifier(&name, op, true)
            }
            Some(op @ ('-' | '+' | '?' | '#' | '%')) => self.modifier(&name, Some(op), false),
            Some(c) => Err(ExpandError(format!(
                "unsupported modifier ({c}) in substitution ${{{name}{c}...}}"
            ))),
        }
    }

    /// `${name<op>word}` and `${name:<op>word}`, `op` being the character after the name (and
    /// colon); the word is read first, as BuildKit does, even when `op` turns out unsupported.
    fn modifier(
        &mut self,
        name: &str,
        op: Option<char>,
        colon: bool,
    ) -> Result<String, ExpandError> {
        let Some(op) = op else {
            return Err(missing('}'));
        };
        let word = self.word_until('}', matches!(op, '#' | '%'))?;
        let value = self.lookup(name);
        let unset = value.is_none();
        let empty = value.as_deref().is_some_and(str::is_empty);
        let absent = unset || (colon && empty);
        match op {
            '-' => Ok(if absent {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if absent { String::new() } else { word }),
            '?' if absent => {
                let message = match (word.is_empty(), unset) {
                    (false, _) => word.as_str(),
                    (true, true) => "is not allowed to be unset",
                    (true, false) => "is not allowed to be empty",
                };
                Err(ExpandError(format!("{name}: {message}")))
            }
            '?' => Ok(value.unwrap_or_default()),
            '#' | '%' => {
                // A doubled operator (`##`, `%%`) asks for the longest match; BuildKit checks
                // this after expansion, so `${v#$P}` with `P=#x` is a longest match of `x`.
                let (star, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (Star::Longest, rest),
                    None => (Star::Shortest, word.as_str()),
                };
                let value = value.unwrap_or_default();
                if op == '#' {
                    trim_prefix(pattern, &value, star)
                } else {
                    trim_suffix(pattern, &value, star)
                }
            }
            other => Err(ExpandError(format!(
                "unsupported modifier (:{other}) in substitution ${{{name}:{other}...}}"
            ))),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`, after the first `/`.
    fn replace(&mut self, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = self.word_until('/', true)?;
        let replacement = self.word_until('}', true)?;
        let value: Vec<char> = self.lookup(name).unwrap_or_default().chars().collect();
        let pattern = Pattern::parse(&pattern, Star::Longest)?;
        let mut matcher = Matcher::new(&pattern, &value);
        Ok(if all {
            replace_all(&mut matcher, &value, &replacement)
        } else {
            match matcher.find(0) {
                Some((start, end)) => {
                    let mut out: String = value.get(..start).unwrap_or_default().iter().collect();
                    out.push_str(&replacement);
                    out.extend(value.get(end..).unwrap_or_default());
                    out
                }
                None => value.iter().collect(),
            }
        })
    }
}

/// The error for a `${...}` form whose `stop` character never came.
fn missing(stop: char) -> ExpandError {
    match stop {
        '/' => ExpandError("syntax error: missing '/' in ${}".into()),
        s => ExpandError(format!("syntax error: missing '{s}'")),
    }
}

/// Removes the part of `value` that `pattern` matches at its start (BuildKit's `trimPrefix`).
fn trim_prefix(pattern: &str, value: &str, star: Star) -> Result<String, ExpandError> {
    let pattern = Pattern::parse(pattern, star)?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match Matcher::new(&pattern, &chars).match_at(0) {
        Some(end) => chars.get(end..).unwrap_or_default().iter().collect(),
        None => value.to_owned(),
    })
}

/// Removes a matching suffix by reversing pattern and value and trimming a prefix, exactly as
/// BuildKit does (a regexp cannot find the shortest rightmost match directly).
fn trim_suffix(pattern: &str, value: &str, star: Star) -> Result<String, ExpandError> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, star)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` escape pair in order (`a\*c` becomes `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        units.push(&chars[i..i + len]);
        i += len;
    }
    units.iter().rev().flat_map(|unit| unit.iter()).collect()
}

/// Go's `Regexp.ReplaceAllString` over `value`: every non-overlapping match is replaced, an
/// empty match right after a previous match is skipped, and `replacement` is a Go template.
fn replace_all(matcher: &mut Matcher<'_>, value: &[char], replacement: &str) -> String {
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((start, end)) = matcher.find(search) else {
            break;
        };
        out.extend(value.get(last_end..start).unwrap_or_default());
        if end > last_end || start == 0 {
            expand_template(
                replacement,
                value.get(start..end).unwrap_or_default(),
                &mut out,
            );
        }
        last_end = end;
        search = if search + 1 > end { search + 1 } else { end };
    }
    out.extend(value.get(last_end..).unwrap_or_default());
    out
}

/// Go's `Regexp.Expand` for a pattern without capture groups: `$$` is a dollar, `$0` / `${0}`
/// the matched text, any other `$name` / `${name}` nothing, and a malformed `$` stays literal.
fn expand_template(template: &str, matched: &[char], out: &mut String) {
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.get(i) == Some(&'$') {
            out.push('$');
            i += 1;
            continue;
        }
        let braced = chars.get(i) == Some(&'{');
        let start = if braced { i + 1 } else { i };
        let mut end = start;
        while chars
            .get(end)
            .is_some_and(|c| c.is_alphabetic() || c.is_numeric() || *c == '_')
        {
            end += 1;
        }
        let closed = !braced || chars.get(end) == Some(&'}');
        if end == start || !closed {
            out.push('$');
            continue;
        }
        if chars.get(start..end) == Some(&['0'][..]) {
            out.extend(matched);
        }
        i = if braced { end + 1 } else { end };
    }
}

/// BuildKit's shell patterns, matched the way the Go regexp it compiles them to would match.
///
/// BuildKit turns `*` into `.*` (or `.*?`), `?` into `.` and everything else into literals, then
/// relies on Go's leftmost-first regexp semantics; this backtracking matcher explores
/// alternatives in the same priority order, so its answers agree with BuildKit's, and memoises
/// each `*` state so that backtracking stays polynomial.
mod glob {
    use super::ExpandError;
    use std::collections::HashMap;

    /// One element of a compiled pattern.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Token {
        Literal(char),
        /// `?`: any one character except a newline.
        AnyChar,
        /// `*`: any run of characters without a newline.
        AnyRun,
    }

    /// Which lengths a `*` tries first, and so which match wins (`#` vs `##`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Star {
        Shortest,
        Longest,
    }

    /// A parsed pattern; only valid escapes get this far.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Pattern {
        tokens: Vec<Token>,
        star: Star,
    }

    impl Pattern {
        /// Parses `source` as BuildKit's `convertShellPatternToRegex` does: `\` may only escape
        /// `*`, `?` and `\`, and is silently dropped before `}` and `/`, the `${}` delimiters.
        pub(super) fn parse(source: &str, star: Star) -> Result<Self, ExpandError> {
            let invalid = |detail: String| {
                ExpandError(format!(
                    "invalid pattern ({source}) in substitution: {detail}"
                ))
            };
            let mut tokens = Vec::new();
            let mut chars = source.chars().peekable();
            while let Some(c) = chars.next() {
                let token = match c {
                    '*' => Token::AnyRun,
                    '?' => Token::AnyChar,
                    '\\' => match chars.peek().copied() {
                        Some('}' | '/') => continue,
                        Some(n @ ('*' | '?' | '\\')) => {
                            chars.next();
                            Token::Literal(n)
                        }
                        Some(n) => return Err(invalid(format!("invalid escape '\\{n}'"))),
                        None => return Err(invalid("trailing escape '\\'".into())),
                    },
                    c => Token::Literal(c),
                };
                tokens.push(token);
            }
            Ok(Self { tokens, star })
        }
    }

    /// Matches one pattern against one text, remembering the outcome of each `*` state.
    pub(super) struct Matcher<'a> {
        pattern: &'a Pattern,
        text: &'a [char],
        /// `(token index of a *, text position)` -> end of the match from there, if any.
        memo: HashMap<(usize, usize), Option<usize>>,
    }

    impl<'a> Matcher<'a> {
        pub(super) fn new(pattern: &'a Pattern, text: &'a [char]) -> Self {
            Self {
                pattern,
                text,
                memo: HashMap::new(),
            }
        }

        /// The end of the match that starts exactly at `start`, if the pattern matches there.
        pub(super) fn match_at(&mut self, start: usize) -> Option<usize> {
            self.from(0, start)
        }

        /// The leftmost match starting at or after `from`, as `(start, end)`.
        pub(super) fn find(&mut self, from: usize) -> Option<(usize, usize)> {
            (from..=self.text.len()).find_map(|start| self.match_at(start).map(|end| (start, end)))
        }

        fn from(&mut self, mut token: usize, mut pos: usize) -> Option<usize> {
            loop {
                let ok = match self.pattern.tokens.get(token) {
                    None => return Some(pos),
                    Some(Token::AnyRun) => return self.star(token, pos),
                    Some(Token::Literal(c)) => self.text.get(pos) == Some(c),
                    Some(Token::AnyChar) => self.text.get(pos).is_some_and(|c| *c != '\n'),
                };
                if !ok {
                    return None;
                }
                token += 1;
                pos += 1;
            }
        }

        fn star(&mut self, token: usize, pos: usize) -> Option<usize> {
            if let Some(known) = self.memo.get(&(token, pos)) {
                return *known;
            }
            let rest = self.text.get(pos..).unwrap_or_default();
            let limit = pos + rest.iter().position(|c| *c == '\n').unwrap_or(rest.len());
            let end = match self.pattern.star {
                Star::Shortest => (pos..=limit).find_map(|k| self.from(token + 1, k)),
                Star::Longest => (pos..=limit).rev().find_map(|k| self.from(token + 1, k)),
            };
            self.memo.insert((token, pos), end);
            end
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        [("A", "a"), ("EMPTY", ""), ("SP", "x y"), ("P", "80 443")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_words_like_buildkit() {
        let cases: &[(&str, &str)] = &[
            ("$A", "a"),
            ("${A}", "a"),
            ("pre${A}post", "preapost"),
            ("$UNSET", ""),
            ("${UNSET:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${UNSET-dflt}", "dflt"),
            ("${A:-dflt}", "a"),
            ("${A:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:-$A}", "a"),
            ("${UNSET:-\"q w\"}", "q w"),
            ("'$A'", "$A"),
            ("\"$A\"", "a"),
            ("\"\\$A\"", "$A"),
            ("\\$A", "$A"),
            ("\"a\\nb\"", "a\\nb"),
            ("a\\ b", "a b"),
            ("$", "$"),
            ("a$-b", "a$-b"),
            ("$1x", "x"),
            ("\"it's\"", "it's"),
        ];
        assert_expansions(&vars(), cases);
    }

    #[test]
    fn backtick_escape_makes_backslash_literal() {
        assert_eq!(
            expand_word("C:\\dir`$A", '`', &vars()).as_deref(),
            Ok("C:\\dir$A")
        );
    }

    #[test]
    fn heredoc_bodies_keep_quotes_and_expand_variables() {
        let vars = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(
            expand_heredoc("echo '$A' \"${A:-x}\" \\$A\n", &vars),
            Ok("echo '1' \"1\" $A\n".to_owned())
        );
    }

    #[test]
    fn splitting_honours_quotes_and_variable_values() {
        assert_eq!(
            expand_words("$P 8080", '\\', &vars()),
            Ok(vec!["80".into(), "443".into(), "8080".into()])
        );
        assert_eq!(
            expand_words("\"$SP\" z", '\\', &vars()),
            Ok(vec!["x y".into(), "z".into()])
        );
        assert_eq!(
            expand_words("$UNSET", '\\', &vars()),
            Ok(Vec::<String>::new())
        );
        assert_eq!(expand_words("\"\"", '\\', &vars()), Ok(vec![String::new()]));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("'abc", "single-quote"),
            ("\"abc", "double-quote"),
            ("${A", "missing '}'"),
            ("${A:-x", "missing '}'"),
            ("${UNSET?must be set}", "UNSET: must be set"),
            ("${UNSET?}", "UNSET: is not allowed to be unset"),
            ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
            ("${UNSET:?}", "UNSET: is not allowed to be unset"),
            (
                "${A#\\x}",
                "invalid pattern (\\x) in substitution: invalid escape '\\x'",
            ),
            ("${A/a\\b/c}", "invalid escape '\\b'"),
            ("${A//ww}", "missing '/' in ${}"),
            ("${A//}", "missing '/' in ${}"),
            ("${A/x/y", "missing '}'"),
            ("${A#x", "missing '}'"),
            ("${A:/x/y}", "unsupported modifier (:/)"),
            ("${A:=x}", "unsupported modifier (:=)"),
            ("${A=x}", "unsupported modifier (=)"),
            ("${}", "empty variable name"),
        ];
        for (input, want) in cases {
            let err = expand_word(input, '\\', &vars()).expect_err(input);
            assert!(err.0.contains(want), "{input:?}: {err}");
        }
    }

    /// Expands each input with `vars` and checks it against the expected output.
    fn assert_expansions(vars: &dyn Vars, cases: &[(&str, &str)]) {
        for (input, want) in cases {
            assert_eq!(
                expand_word(input, '\\', vars).as_deref(),
                Ok(*want),
                "input {input:?}"
            );
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Rows of BuildKit's `TestProcessWithMatches` (lex_test.go) that cover `?`, `#`, `%`, `/`.
    #[test]
    fn matches_buildkit_process_with_matches_table() {
        type Row = (
            &'static str,
            &'static [(&'static str, &'static str)],
            Option<&'static str>,
        );
        let xxx_bar: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
        let rows: &[Row] = &[
            ("${FOO?aaa}", xxx_bar, Some("xxx")),
            ("${BAR?bbb}", xxx_bar, Some("")),
            ("${BAZ?ccc}", xxx_bar, None),
            ("${FOO:?aaa}", xxx_bar, Some("xxx")),
            ("${BAR:?bbb}", xxx_bar, None),
            ("${BAZ:?ccc}", xxx_bar, None),
            ("${BAZ:?}", xxx_bar, None),
            ("${FOO=aaa}", xxx_bar, None),
            ("${FOO=:aaa}", xxx_bar, None),
            ("${FOO=}", &[], None),
            (
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")],
                Some("x"),
            ),
            ("${FOO%%\\**}", &[("FOO", "xx**")], Some("xx")),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y")),
            ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
            ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy")),
            ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y")),
            (
                "${ABC:-.}${FOO%x}${ABC:-.}",
                &[("FOO", "xxyy")],
                Some(".xxyy."),
            ),
            ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], Some("a")),
            ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy")),
            (
                "${FOO%%$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("xxyy"),
            ),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
                Some("/foo.*/*.txt - /foo..*.txt"),
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                Some("/tmp/bar.txt - /bar.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                Some("/foo/b/c.txt - /foo/c.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                Some("https://google.de"),
            ),
            (
                "${FOO//\\//\\/}",
                &[("FOO", "/tmp/foo.txt")],
                Some("\\/tmp\\/foo.txt"),
            ),
            (
                "${FOO/$BAR/ww}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("wwxxyy"),
            ),
            ("${FOO//ww}", &[("FOO", "xxyy")], None),
            ("${FOO//}", &[("FOO", "xxyy")], None),
            ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO///}", &[], Some("")),
        ];
        for (input, pairs, want) in rows {
            let got = expand_word(input, '\\', &env(pairs));
            match want {
                Some(want) => assert_eq!(got.as_deref(), Ok(*want), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    /// BuildKit's `TestShellParserMandatoryEnvVars`.
    #[test]
    fn mandatory_forms_report_the_expanded_message() {
        let set = env(&[("VAR", "plain"), ("ARG", "x")]);
        let empty = env(&[("VAR", ""), ("ARG", "x")]);
        let unset = env(&[("ARG", "x")]);
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        let fails = |input: &str, vars: &Vec<(String, String)>| {
            expand_word(input, '\\', vars).map_err(|e| e.0)
        };
        assert_eq!(fails(no_empty, &set).as_deref(), Ok("plain"));
        assert_eq!(fails(no_empty, &empty), Err("VAR: message herex".into()));
        assert_eq!(fails(no_empty, &unset), Err("VAR: message herex".into()));
        assert_eq!(fails(no_unset, &set).as_deref(), Ok("plain"));
        assert_eq!(fails(no_unset, &empty).as_deref(), Ok(""));
        assert_eq!(fails(no_unset, &unset), Err("VAR: message herex".into()));
    }

    #[test]
    fn single_and_double_operators_pick_shortest_and_longest_matches() {
        let vars = env(&[("P", "/usr/local/lib/file.tar.gz")]);
        let cases: &[(&str, &str)] = &[
            ("${P#*/}", "usr/local/lib/file.tar.gz"),
            ("${P##*/}", "file.tar.gz"),
            ("${P%.*}", "/usr/local/lib/file.tar"),
            ("${P%%.*}", "/usr/local/lib/file"),
            ("${P%/*}", "/usr/local/lib"),
            ("${P#/usr}", "/local/lib/file.tar.gz"),
            ("${P#nomatch}", "/usr/local/lib/file.tar.gz"),
            ("${P/l/L}", "/usr/Local/lib/file.tar.gz"),
            ("${P//l/L}", "/usr/LocaL/Lib/fiLe.tar.gz"),
            ("${P/l*b/X}", "/usr/X/file.tar.gz"),
            ("${P:#*/}", "usr/local/lib/file.tar.gz"),
            ("${P:%%.*}", "/usr/local/lib/file"),
            ("${UNSET#x}", ""),
            ("${UNSET/x/y}", ""),
        ];
        assert_expansions(&vars, cases);
    }

    #[test]
    fn patterns_follow_buildkit_rather_than_bash() {
        let vars = env(&[
            ("B", "[a]b"),
            ("N", "a\nb"),
            ("O", "foo"),
            ("H", "#x#y"),
            ("D", "#"),
        ]);
        let cases: &[(&str, &str)] = &[
            // No bracket expressions: `[` and `]` are literal.
            ("${B#[a]}", "b"),
            // Wildcards never cross a newline, like Go's regexp `.`.
            ("${N#*b}", "a\nb"),
            ("${N/?/-}", "-\nb"),
            // Quotes group but do not make wildcards literal.
            ("${O#'f*'}", "oo"),
            ("${O##'f*'}", ""),
            // The doubled operator is recognised after expansion.
            ("${H#$D*#}", "y"),
            // `//` behaves like Go's ReplaceAllString, including its `$0` template.
            ("${O//o/'[$0]'}", "f[o][o]"),
            ("${O/o/'[$0]'}", "f[$0]o"),
            ("${O///-}", "-f-o-o-"),
            ("${O//*/-}", "-"),
        ];
        assert_expansions(&vars, cases);
    }

    #[test]
    fn suffix_patterns_reverse_escape_pairs_intact() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("\\\\b"), "b\\\\");
    }

    #[test]
    fn pattern_escapes_are_raw_with_a_backtick_escape_too() {
        let vars = env(&[("W", "C:\\a\\b")]);
        assert_eq!(expand_word("${W##*\\\\}", '`', &vars).as_deref(), Ok("b"));
        assert_eq!(
            expand_word("${W%`}}", '`', &vars).as_deref(),
            Ok("C:\\a\\b")
        );
    }
}
