//! `COPY --chmod` / `ADD --chmod`: an octal mode (`0644`) or a symbolic one (`u+x`, `g-w,o=r`,
//! `a+X`) as chmod(1) writes it.
//!
//! A symbolic mode is applied to each copied file's *source* mode, as BuildKit does (fsutil
//! applies the parsed mode set to the source's `FileMode`); an octal mode replaces it. It is
//! validated when the Dockerfile is read, so a typo fails before any image is pulled.

use std::fmt;

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Chmod {
    /// Replaces the permission bits (at most `0o7777`).
    Octal(u32),
    /// Changes the source's permission bits clause by clause.
    Symbolic(SymbolicMode),
}

/// `who op perms` clauses, separated by commas in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SymbolicMode {
    text: String,
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Clause {
    /// Mask of the classes the clause names (`u` 0o4700, `g` 0o2070, `o` 0o1007).
    who: u32,
    actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Action {
    op: char,
    perms: Perms,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Perms {
    /// `rwxXst` letters: `(rwx bits for all classes, X)`.
    Bits { bits: u32, big_x: bool },
    /// `u`, `g` or `o`: copy that class's current bits.
    Copy(char),
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    /// Parses an octal (`755`, `0644`) or symbolic (`u+x,go-w`) mode.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            return match u32::from_str_radix(text, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(Self::Octal(mode)),
                _ => Err(format!(
                    "invalid chmod parameter: '{text}'. it should be an octal string between 0 and 07777 or a symbolic mode like u+x"
                )),
            };
        }
        SymbolicMode::parse(text).map(Self::Symbolic)
    }

    /// The permission bits a copied entry gets, from its source mode.
    pub fn apply(&self, source_mode: u32, is_dir: bool) -> u32 {
        match self {
            Self::Octal(mode) => *mode,
            Self::Symbolic(symbolic) => symbolic.apply(source_mode & 0o7777, is_dir),
        }
    }
}

impl fmt::Display for Chmod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Octal(mode) => write!(f, "{mode:o}"),
            Self::Symbolic(symbolic) => f.write_str(&symbolic.text),
        }
    }
}

impl serde::Serialize for Chmod {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl SymbolicMode {
    fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "invalid chmod parameter: '{text}': {why} (expected an octal mode like 0644 or a symbolic one like u+x,g-w,o=r)"
            )
        };
        let mut clauses = Vec::new();
        for part in text.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => USER,
                    'g' => GROUP,
                    'o' => OTHER,
                    'a' => USER | GROUP | OTHER,
                    _ => break,
                };
                chars.next();
            }
            if who == 0 {
                who = USER | GROUP | OTHER;
            }
            let mut actions = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(invalid(&format!(
                        "unexpected {op:?} where +, - or = belongs"
                    )));
                }
                let mut bits = 0;
                let mut big_x = false;
                let mut copy = None;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' => bits |= 0o444,
                        'w' => bits |= 0o222,
                        'x' => bits |= 0o111,
                        'X' => big_x = true,
                        's' => bits |= 0o6000,
                        't' => bits |= 0o1000,
                        'u' | 'g' | 'o' if bits == 0 && !big_x && copy.is_none() => copy = Some(c),
                        '+' | '-' | '=' => break,
                        other => return Err(invalid(&format!("unknown permission {other:?}"))),
                    }
                    chars.next();
                }
                let perms = match copy {
                    Some(class) if bits == 0 && !big_x => Perms::Copy(class),
                    Some(_) => return Err(invalid("a class to copy cannot be mixed with letters")),
                    None => Perms::Bits { bits, big_x },
                };
                actions.push(Action { op, perms });
            }
            if actions.is_empty() {
                return Err(invalid(&format!("{part:?} has no +, - or =")));
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Self {
            text: text.to_owned(),
            clauses,
        })
    }

    fn apply(&self, mut mode: u32, is_dir: bool) -> u32 {
        for clause in &self.clauses {
            for action in &clause.actions {
                let change = match &action.perms {
                    Perms::Bits { bits, big_x } => {
                        let exec = *big_x && (is_dir || mode & 0o111 != 0);
                        (bits | if exec { 0o111 } else { 0 }) & clause.who
                    }
                    Perms::Copy(class) => {
                        let rwx = match class {
                            'u' => (mode >> 6) & 7,
                            'g' => (mode >> 3) & 7,
                            _ => mode & 7,
                        };
                        (rwx << 6 | rwx << 3 | rwx) & clause.who
                    }
                };
                mode = match action.op {
                    '+' => mode | change,
                    '-' => mode & !change,
                    _ => (mode & !(clause.who & 0o777)) | change,
                };
            }
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, mode: u32, is_dir: bool) -> u32 {
        Chmod::parse(text).expect(text).apply(mode, is_dir)
    }

    #[test]
    fn octal_modes_replace_the_bits() {
        assert_eq!(Chmod::parse("0644"), Ok(Chmod::Octal(0o644)));
        assert_eq!(apply("755", 0o600, false), 0o755);
        assert_eq!(Chmod::Octal(0o644).to_string(), "644");
        assert!(Chmod::parse("10000").is_err());
        assert!(Chmod::parse("888").is_err());
    }

    #[test]
    fn symbolic_modes_change_the_source_mode() {
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("g-w,o=r", 0o666, false), 0o644);
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("a=rw", 0o755, false), 0o666);
        assert_eq!(apply("go=u", 0o640, false), 0o666);
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
        assert_eq!(apply("u=rwx,g=rx,o=", 0o000, false), 0o750);
    }

    #[test]
    fn big_x_adds_execute_only_to_directories_and_executables() {
        assert_eq!(apply("a+X", 0o644, false), 0o644);
        assert_eq!(apply("a+X", 0o744, false), 0o755);
        assert_eq!(apply("a+X", 0o700, true), 0o711);
    }

    #[test]
    fn malformed_symbolic_modes_are_refused_with_the_text() {
        for bad in ["u", "u+q", "x+r", "", "u+x,", "u+rg"] {
            let e = Chmod::parse(bad).expect_err(bad);
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }
}
