//! Argument shapes shared by several instructions: JSON (exec) form, whitespace-separated
//! words and quote-aware words.

/// Parses `["a", "b"]`. `None` means "not a JSON string array", in which case Docker falls back
/// to shell form rather than failing.
pub(crate) fn json_array(rest: &str) -> Option<Vec<String>> {
    let t = rest.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// Splits on whitespace, keeping quotes and escapes inside words (BuildKit's `parseWords`):
/// `a="b c" d` gives `a="b c"` and `d`; expansion removes the quotes later.
pub(crate) fn quoted_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if let Some(q) = quote {
            if c == q {
                quote = None;
                word.push(c);
            } else if c == escape && q != '\'' {
                if let Some(&n) = chars.get(i) {
                    word.push(c);
                    word.push(n);
                    i += 1;
                }
            } else {
                word.push(c);
            }
            continue;
        }
        if c.is_whitespace() {
            if in_word && (blank_ok || !word.is_empty()) {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        in_word = true;
        if c == '\'' || c == '"' {
            quote = Some(c);
            blank_ok = true;
            word.push(c);
        } else if c == escape {
            if let Some(&n) = chars.get(i) {
                word.push(c);
                word.push(n);
                i += 1;
            }
        } else {
            word.push(c);
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_and_fallback() {
        assert_eq!(
            json_array(r#"["a", "b c"]"#),
            Some(vec!["a".into(), "b c".into()])
        );
        assert_eq!(json_array("[]"), Some(vec![]));
        assert_eq!(
            json_array("[a, b]"),
            None,
            "malformed JSON falls back to shell form"
        );
        assert_eq!(
            json_array(r#"["a", 1]"#),
            None,
            "non-strings fall back to shell form"
        );
        assert_eq!(json_array("echo [a]"), None);
    }

    #[test]
    fn quoted_words_keep_quotes_and_escapes() {
        assert_eq!(
            quoted_words(r#"a="b c" d=e"#, '\\'),
            vec![r#"a="b c""#.to_string(), "d=e".into()]
        );
        assert_eq!(
            quoted_words(r"a=b\ c d", '\\'),
            vec![r"a=b\ c".to_string(), "d".into()]
        );
        assert_eq!(
            quoted_words("a='x \\' b", '\\'),
            vec!["a='x \\'".to_string(), "b".into()]
        );
        assert_eq!(quoted_words("  ", '\\'), Vec::<String>::new());
    }
}
