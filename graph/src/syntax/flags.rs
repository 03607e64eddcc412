//! Instruction flags (`--name=value`), which precede an instruction's arguments.

/// One `--name[=value]` flag as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// Splits leading `--flag` words off `rest`, returning them and the remaining arguments.
/// A bare `--` ends the flags. Quotes inside a flag word group and are removed.
pub(crate) fn split_flags(rest: &str) -> (Vec<Flag>, &str) {
    let mut flags = Vec::new();
    let mut rest = rest.trim_start();
    while rest.starts_with("--") {
        let (word, after) = take_word(rest);
        rest = after.trim_start();
        if word == "--" {
            break;
        }
        let body = &word[2..];
        let flag = match body.split_once('=') {
            Some((name, value)) => Flag {
                name: name.to_owned(),
                value: Some(value.to_owned()),
            },
            None => Flag {
                name: body.to_owned(),
                value: None,
            },
        };
        flags.push(flag);
    }
    (flags, rest)
}

fn take_word(s: &str) -> (String, &str) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => return (word, &s[i..]),
            None => word.push(c),
        }
    }
    (word, "")
}

/// The flags of one instruction, consumed by name so that anything left over is reported.
#[derive(Debug)]
pub(crate) struct Flags {
    instruction: &'static str,
    items: Vec<Flag>,
}

impl Flags {
    pub(crate) fn new(instruction: &'static str, items: Vec<Flag>) -> Self {
        Self { instruction, items }
    }

    /// Refuses a flag BuildKit knows but kiln does not implement yet.
    pub(crate) fn refuse(&self, name: &str, why: &str) -> Result<(), String> {
        if self.items.iter().any(|f| f.name == name) {
            return Err(format!(
                "{} --{name} is not supported yet: {why}",
                self.instruction
            ));
        }
        Ok(())
    }

    /// Removes every occurrence of `name`; errors if it was given more than once.
    fn take_once(&mut self, name: &str) -> Result<Option<Flag>, String> {
        let mut found: Vec<Flag> = Vec::new();
        self.items.retain(|f| {
            if f.name == name {
                found.push(f.clone());
                false
            } else {
                true
            }
        });
        if found.len() > 1 {
            return Err(format!(
                "duplicate flag specified: --{name} for {}",
                self.instruction
            ));
        }
        Ok(found.pop())
    }

    /// Takes a flag that needs a value and may appear at most once.
    pub(crate) fn string(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.take_once(name)? {
            None => Ok(None),
            Some(Flag { value: Some(v), .. }) => Ok(Some(v)),
            Some(Flag { value: None, .. }) => Err(format!(
                "missing a value on flag --{name} for {}",
                self.instruction
            )),
        }
    }

    /// Takes a flag that needs a value and may repeat (`--mount`, `--exclude`), in order.
    pub(crate) fn strings(&mut self, name: &str) -> Result<Vec<String>, String> {
        let mut found = Vec::new();
        let mut missing = false;
        self.items.retain(|f| {
            if f.name != name {
                return true;
            }
            match &f.value {
                Some(v) => found.push(v.clone()),
                None => missing = true,
            }
            false
        });
        if missing {
            return Err(format!(
                "missing a value on flag --{name} for {}",
                self.instruction
            ));
        }
        Ok(found)
    }

    /// Takes a boolean flag: bare (`--link`) or `--link=true|false`; `None` when absent.
    pub(crate) fn boolean(&mut self, name: &str) -> Result<Option<bool>, String> {
        match self.take_once(name)?.map(|f| f.value) {
            None => Ok(None),
            Some(None) => Ok(Some(true)),
            Some(Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(format!(
                    "expecting boolean value for flag --{name} of {}, not: {v}",
                    self.instruction
                )),
            },
        }
    }

    /// Errors on the first flag nobody consumed.
    pub(crate) fn finish(self) -> Result<(), String> {
        match self.items.first() {
            None => Ok(()),
            Some(f) => Err(format!(
                "unknown flag --{} for {}",
                f.name, self.instruction
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_leading_flags_only() {
        let (flags, rest) = split_flags("--from=build --chown=\"a b\" src --x dest");
        assert_eq!(
            flags,
            vec![
                Flag {
                    name: "from".into(),
                    value: Some("build".into())
                },
                Flag {
                    name: "chown".into(),
                    value: Some("a b".into())
                },
            ]
        );
        assert_eq!(rest, "src --x dest");
    }

    #[test]
    fn double_dash_ends_flags() {
        let (flags, rest) = split_flags("--link -- --weird dest");
        assert_eq!(flags.len(), 1);
        assert_eq!(rest, "--weird dest");
    }

    #[test]
    fn unknown_duplicate_and_valueless_flags_are_errors() {
        let (items, _) = split_flags("--from=a --from=b x y");
        let mut f = Flags::new("COPY", items);
        assert!(
            f.string("from")
                .expect_err("dup")
                .contains("duplicate flag specified: --from")
        );
        let (items, _) = split_flags("--from x y");
        let mut f = Flags::new("COPY", items);
        assert!(
            f.string("from")
                .expect_err("no value")
                .contains("missing a value on flag --from")
        );
        let (items, _) = split_flags("--bogus=1 x y");
        let f = Flags::new("COPY", items);
        assert_eq!(
            f.finish().expect_err("unknown"),
            "unknown flag --bogus for COPY"
        );
    }
}
