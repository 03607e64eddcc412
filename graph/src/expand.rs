//! Shell-like word expansion as the Dockerfile front end does it (BuildKit's `shell.Lex`).
//!
//! Dockerfile instructions that the builder itself interprets (COPY, ENV, WORKDIR, ...) expand
//! `$VAR` references before use; RUN/CMD/ENTRYPOINT are left to the shell at run time. Quotes
//! group and are removed, the escape character makes the next character literal, and an
//! undefined variable expands to the empty string.

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
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        vars,
    };
    let mut out = Out::new(false);
    lexer.process(None, &mut out)?;
    Ok(out.cur)
}

/// Expands `text` and splits it into words at unquoted whitespace, including whitespace that
/// comes from unquoted variable values (EXPOSE `$PORTS` with `PORTS="80 443"` gives two).
pub fn expand_words(text: &str, escape: char, vars: &dyn Vars) -> Result<Vec<String>, ExpandError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        escape,
        vars,
    };
    let mut out = Out::new(true);
    lexer.process(None, &mut out)?;
    Ok(out.finish())
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
}

impl Lexer<'_> {
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
            Some(s) => Err(ExpandError(format!("syntax error: missing '{s}'"))),
            None => Ok(()),
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
                Some(c) if c == self.escape => match self.peek() {
                    // Only these can be escaped inside double quotes; other escapes stay as-is.
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        s.push(n);
                    }
                    _ => s.push(c),
                },
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

    fn braced(&mut self) -> Result<String, ExpandError> {
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError(
                "bad substitution: empty variable name in ${}".into(),
            ));
        }
        let value = self.lookup(&name);
        let colon = self.peek() == Some(':');
        if colon {
            self.pos += 1;
        }
        let op = self.next();
        match op {
            Some('}') if !colon => return Ok(value.unwrap_or_default()),
            Some('-' | '+' | '?') => {}
            Some(c @ ('#' | '%' | '/')) if !colon => {
                return Err(ExpandError(format!(
                    "unsupported modifier '{c}' in ${{{name}{c}...}}: pattern substitutions are not supported yet"
                )));
            }
            Some(c) => {
                return Err(ExpandError(format!(
                    "bad substitution: unsupported modifier '{c}' in ${{{name}...}}"
                )));
            }
            None => return Err(ExpandError("syntax error: missing '}'".into())),
        }
        let mut inner = Out::new(false);
        self.process(Some('}'), &mut inner)?;
        let word = inner.cur;
        let set = value.is_some();
        let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        let present = if colon { non_empty } else { set };
        Ok(match op {
            Some('-') => {
                if present {
                    value.unwrap_or_default()
                } else {
                    word
                }
            }
            Some('+') => {
                if present {
                    word
                } else {
                    String::new()
                }
            }
            _ => {
                if present {
                    value.unwrap_or_default()
                } else if word.is_empty() {
                    return Err(ExpandError(format!("{name}: is not allowed to be unset")));
                } else {
                    return Err(ExpandError(format!("{name}: {word}")));
                }
            }
        })
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
        for (input, want) in cases {
            assert_eq!(
                expand_word(input, '\\', &vars()).as_deref(),
                Ok(*want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn backtick_escape_makes_backslash_literal() {
        assert_eq!(
            expand_word("C:\\dir`$A", '`', &vars()).as_deref(),
            Ok("C:\\dir$A")
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
            ("${A#x}", "pattern substitutions are not supported yet"),
            ("${UNSET?must be set}", "UNSET: must be set"),
            ("${}", "empty variable name"),
        ];
        for (input, want) in cases {
            let err = expand_word(input, '\\', &vars()).expect_err(input);
            assert!(err.0.contains(want), "{input:?}: {err}");
        }
    }
}
