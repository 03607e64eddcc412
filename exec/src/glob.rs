//! Go's `filepath.Match`, ported byte for byte.
//!
//! Dockerfile `COPY` sources are expanded with Go's matcher one path component at a time, and
//! `.dockerignore` patterns are validated with it, so its exact rules (no `**`, `[^...]` for
//! negation, `\` escapes, a malformed class is an error even when an earlier part already failed to
//! match) are what users' files rely on. A "close enough" glob crate would silently select
//! different files.

use thiserror::Error;

/// A pattern Go's `filepath.Match` rejects (`ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("syntax error in pattern {pattern:?}")]
pub struct BadPattern {
    /// The pattern as written.
    pub pattern: String,
}

/// Whether a path component contains unescaped wildcard characters (`*`, `?`, `[`), i.e. whether
/// BuildKit would expand it rather than look it up literally.
pub fn has_wildcards(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Removes the `\` escapes from a literal (wildcard-free) component.
pub fn unescape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        let escaped = if ch == '\\' { chars.next() } else { None };
        out.push(escaped.unwrap_or(ch));
    }
    out
}

/// `filepath.Match(pattern, name)` on Linux: `*` and `?` never match `/`.
pub fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let bad = || BadPattern {
        pattern: pattern.to_owned(),
    };
    let mut pat = pattern.as_bytes();
    let mut name = name.as_bytes();
    'chunks: while !pat.is_empty() {
        let (star, chunk, rest) = scan_chunk(pat);
        pat = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains(&b'/'));
        }
        let (tail, ok) = match_chunk(chunk, name).map_err(|()| bad())?;
        if ok && (tail.is_empty() || !pat.is_empty()) {
            name = tail;
            continue;
        }
        if star {
            // Try to match the chunk further along, never skipping a `/`.
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                let (tail, ok) = match_chunk(chunk, &name[i + 1..]).map_err(|()| bad())?;
                if ok && (!pat.is_empty() || tail.is_empty()) {
                    name = tail;
                    continue 'chunks;
                }
                i += 1;
            }
        }
        // No match: the rest of the pattern must still be well formed.
        while !pat.is_empty() {
            let (_, chunk, rest) = scan_chunk(pat);
            pat = rest;
            match_chunk(chunk, b"").map_err(|()| bad())?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk up to the next unbracketed star.
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let Some((b'*', rest)) = pattern.split_first() {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Matches one star-free chunk at the start of `s`; returns the unmatched rest of `s`.
/// Keeps parsing after a mismatch so that syntax errors are always reported.
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<(&'a [u8], bool), ()> {
    let mut failed = false;
    while let Some(&first) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match first {
            b'[' => {
                let mut r = '\0';
                if !failed {
                    let (ch, n) = decode(s);
                    r = ch;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_escaped(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, rest) = get_escaped(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if first == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(());
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { (&[], false) } else { (s, true) })
}

/// One possibly escaped character of a class; `-`, `]` or the end of the pattern are errors here.
fn get_escaped(chunk: &[u8]) -> Result<(char, &[u8]), ()> {
    let mut chunk = match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(()),
        Some(_) => chunk,
    };
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(());
        }
    }
    let (ch, n) = decode(chunk);
    if ch == char::REPLACEMENT_CHARACTER && n == 1 {
        return Err(());
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(());
    }
    Ok((ch, rest))
}

/// Decodes the first UTF-8 character of `bytes` (`U+FFFD`, length 1 when invalid), like Go's
/// `utf8.DecodeRune`.
pub(crate) fn decode(bytes: &[u8]) -> (char, usize) {
    let len = match bytes.first() {
        None => return (char::REPLACEMENT_CHARACTER, 0),
        Some(b) if *b < 0x80 => 1,
        Some(b) if *b >= 0xF0 => 4,
        Some(b) if *b >= 0xE0 => 3,
        Some(b) if *b >= 0xC0 => 2,
        Some(_) => 1,
    };
    match bytes.get(..len).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(s) => s
            .chars()
            .next()
            .map_or((char::REPLACEMENT_CHARACTER, 1), |c| (c, len)),
        None => (char::REPLACEMENT_CHARACTER, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's own `filepath.Match` table (`match_test.go`), Linux rows.
    #[test]
    fn go_filepath_match_table() {
        let table: &[(&str, &str, Result<bool, ()>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(())),
            ("[-]", "-", Err(())),
            ("[x-]", "x", Err(())),
            ("[x-]", "-", Err(())),
            ("[x-]", "z", Err(())),
            ("[-x]", "x", Err(())),
            ("[-x]", "-", Err(())),
            ("[-x]", "a", Err(())),
            ("\\", "a", Err(())),
            ("[a-b-c]", "a", Err(())),
            ("[", "a", Err(())),
            ("[^", "a", Err(())),
            ("[^bc", "a", Err(())),
            ("a[", "a", Err(())),
            ("a[", "ab", Err(())),
            ("a[", "x", Err(())),
            ("a/b[", "x", Err(())),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in table {
            let got = matches(pattern, name).map_err(|_| ());
            assert_eq!(&got, want, "Match({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn wildcards_are_detected_unless_escaped() {
        assert!(has_wildcards("*.txt"));
        assert!(has_wildcards("file[0-9]"));
        assert!(has_wildcards("a?"));
        assert!(!has_wildcards("plain.txt"));
        assert!(!has_wildcards("literal\\*star"));
        assert_eq!(unescape("literal\\*star"), "literal*star");
    }
}
