//! Heredocs (`<<EOF` ... `EOF`) as BuildKit's parser reads them.
//!
//! Only RUN, COPY and ADD in shell form (and those as ONBUILD triggers) can carry heredocs. The
//! instruction line is split into words (quotes and escapes kept); every word of the form
//! `[fd]<<[-]name` opens a heredoc, and the bodies follow the instruction line in the order of
//! their markers, each ending at a line that is exactly its name (after leading tabs for
//! `<<-`). A quoted name (`<<"EOF"`, `<<'EOF'`, `<<E"O"F`) turns expansion off.

use super::words::quoted_words;

/// One heredoc body attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Heredoc {
    /// The delimiter, unquoted: the file name for COPY/ADD, the terminator for RUN.
    pub name: String,
    /// Whether variables in the body are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from every body line.
    pub chomp: bool,
    /// The body exactly as written: every line with its newline.
    pub content: String,
}

impl Heredoc {
    /// The body with `<<-` applied (leading tabs removed from every line), as BuildKit's
    /// `ChompHeredocContent` does for COPY files and RUN scripts.
    pub fn data(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// A heredoc opener found on an instruction line, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    pub expand: bool,
    pub chomp: bool,
}

/// Parses one word as a heredoc marker: BuildKit's `^(\d*)<<(-?)([^<]*)$` where the rest is a
/// single non-empty word once quotes are removed.
pub(crate) fn marker(word: &str) -> Option<Marker> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let after = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = unquote(rest)?;
    if name.is_empty() {
        return None;
    }
    Some(Marker {
        name,
        expand: !quoted,
        chomp,
    })
}

/// Every heredoc marker among the words of `line`, in order.
pub(crate) fn markers(line: &str) -> Vec<Marker> {
    quoted_words(line, '\\')
        .iter()
        .filter_map(|word| marker(word))
        .collect()
}

/// Removes quotes and escapes from a word; `None` when it is not exactly one word (unquoted
/// whitespace or an unterminated quote), and whether any quote was removed.
fn unquote(word: &str) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => out.push(chars.next()?),
            Some(_) => out.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                quoted = true;
            }
            None if c == '\\' => out.push(chars.next()?),
            None if c.is_whitespace() => return None,
            None => out.push(c),
        }
    }
    quote.is_none().then_some((out, quoted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, expand: bool, chomp: bool) -> Option<Marker> {
        Some(Marker {
            name: name.to_owned(),
            expand,
            chomp,
        })
    }

    #[test]
    fn markers_follow_buildkits_pattern() {
        assert_eq!(marker("<<EOF"), m("EOF", true, false));
        assert_eq!(marker("<<-EOF"), m("EOF", true, true));
        assert_eq!(marker("<<'EOF'"), m("EOF", false, false));
        assert_eq!(marker("<<-\"EOF\""), m("EOF", false, true));
        assert_eq!(marker("<<E\"O\"F"), m("EOF", false, false));
        assert_eq!(marker("3<<FD"), m("FD", true, false));
        assert_eq!(marker("<<<here"), None);
        assert_eq!(marker("<<"), None);
        assert_eq!(marker("<<''"), None);
        assert_eq!(marker("a<<EOF"), None);
        assert_eq!(marker("$((1<<2))"), None);
    }

    #[test]
    fn markers_are_found_in_word_order() {
        let found = markers("COPY <<a \"<<not\" <<-'b' /dir/");
        let names: Vec<&str> = found.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn chomping_strips_leading_tabs_of_every_line() {
        let doc = Heredoc {
            name: "EOF".into(),
            expand: true,
            chomp: true,
            content: "\t\tone\n\ttwo\n  three\n".into(),
        };
        assert_eq!(doc.data(), "one\ntwo\n  three\n");
    }
}
