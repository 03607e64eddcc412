//! `created_by` strings exactly as BuildKit writes them into the image history.
//!
//! BuildKit formats several of these with Go's `fmt` verbs (`%q` on slices, `%v` on maps and
//! structs), so the helpers here reproduce Go's quoting and printing rules; registries, `docker
//! history` and diffing tools show these strings verbatim.

use std::fmt::Write as _;

use crate::duration;
use crate::state::Healthcheck;

/// BuildKit appends this to entries of steps that produce a layer.
const LAYER_SUFFIX: &str = " # buildkit";

/// `RUN |2 A=1 B=2 /bin/sh -c make # buildkit`: the ARGs in scope, then the argv.
pub(crate) fn run(args: &[(String, String)], argv: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !args.is_empty() {
        parts.push(format!("|{}", args.len()));
        parts.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(argv.iter().cloned());
    format!("RUN {}{LAYER_SUFFIX}", parts.join(" "))
}

/// `COPY --parents --chown=u --chmod=644 a b <<EOF /dst/ # buildkit` (BuildKit omits `--from`,
/// `--link` and `--exclude`; heredoc sources come after path sources).
pub(crate) fn copy(
    add: bool,
    parents: bool,
    chown: Option<&str>,
    chmod: Option<&str>,
    sources: &[String],
    dest: &str,
) -> String {
    let mut out = String::from(if add { "ADD" } else { "COPY" });
    if parents {
        out.push_str(" --parents");
    }
    if let Some(c) = chown {
        let _ = write!(out, " --chown={c}");
    }
    if let Some(m) = chmod {
        let _ = write!(out, " --chmod={m}");
    }
    for s in sources {
        let _ = write!(out, " {s}");
    }
    let _ = write!(out, " {dest}{LAYER_SUFFIX}");
    out
}

/// `ENV A=1 B=2`, `LABEL a=b`, `ARG A=1 B`: the keyword and pairs.
pub(crate) fn pairs<'a>(
    keyword: &str,
    items: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    let mut out = String::from(keyword);
    for (k, v) in items {
        let _ = write!(out, " {k}");
        if let Some(v) = v {
            let _ = write!(out, "={v}");
        }
    }
    out
}

/// Go's `%q` of a `[]string`: `["sh" "-c" "echo hi"]` (used by CMD and ENTRYPOINT).
pub(crate) fn quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s, '"')).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[/bin/bash -c]` (used by SHELL and VOLUME).
pub(crate) fn plain_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%v` of the port set: `map[443/tcp:{} 80/tcp:{}]`, keys sorted as Go sorts strings.
pub(crate) fn port_map(ports: &[String]) -> String {
    let mut sorted: Vec<&String> = ports.iter().collect();
    sorted.sort();
    sorted.dedup();
    let items: Vec<String> = sorted.iter().map(|p| format!("{p}:{{}}")).collect();
    format!("map[{}]", items.join(" "))
}

/// Go's `%q` of `*HealthcheckConfig`:
/// `&{["CMD-SHELL" "curl x"] "30s" "0s" "0s" "0s" '\x03'}`.
pub(crate) fn healthcheck(h: &Healthcheck) -> String {
    let d = |v: Option<i64>| go_quote(&duration::format(v.unwrap_or(0)), '"');
    format!(
        "&{{{} {} {} {} {} {}}}",
        quoted_list(&h.test),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        d(h.start_interval),
        go_quote_rune(h.retries.unwrap_or(0)),
    )
}

/// Go's `strconv.Quote` (with `quote` = `"`) / `QuoteRune` (with `'`) escaping rules.
fn go_quote(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        escape_into(&mut out, c, quote);
    }
    out.push(quote);
    out
}

/// Go prints an integer under `%q` as a quoted rune (so `Retries: 3` reads `'\x03'`).
fn go_quote_rune(n: i64) -> String {
    let c = u32::try_from(n)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{fffd}');
    go_quote(&c.to_string(), '\'')
}

fn escape_into(out: &mut String, c: char, quote: char) {
    match c {
        c if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_go_printable(c) => out.push(c),
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Approximates Go's `unicode.IsPrint`: graphic characters plus the ASCII space.
fn is_go_printable(c: char) -> bool {
    c == ' ' || !(c.is_control() || c.is_whitespace() || ('\u{80}'..='\u{9f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn run_entries_list_args_in_scope_then_argv() {
        assert_eq!(
            run(&[], &v(&["/bin/sh", "-c", "echo hi"])),
            "RUN /bin/sh -c echo hi # buildkit"
        );
        assert_eq!(
            run(
                &[("A".into(), "b".into())],
                &v(&["/bin/sh", "-c", "echo $A"])
            ),
            "RUN |1 A=b /bin/sh -c echo $A # buildkit"
        );
    }

    #[test]
    fn copy_entries_keep_chown_and_chmod_but_not_from() {
        assert_eq!(
            copy(false, false, None, None, &v(&["a.txt"]), "/app/"),
            "COPY a.txt /app/ # buildkit"
        );
        assert_eq!(
            copy(true, false, Some("1:1"), Some("755"), &v(&["a", "b"]), "d"),
            "ADD --chown=1:1 --chmod=755 a b d # buildkit"
        );
    }

    #[test]
    fn go_formatting_of_lists_maps_and_structs() {
        assert_eq!(
            quoted_list(&v(&["sh", "-c", "echo \"hi\"\t"])),
            r#"["sh" "-c" "echo \"hi\"\t"]"#
        );
        assert_eq!(quoted_list(&[]), "[]");
        assert_eq!(plain_list(&v(&["/bin/bash", "-c"])), "[/bin/bash -c]");
        assert_eq!(
            port_map(&v(&["80/tcp", "443/tcp"])),
            "map[443/tcp:{} 80/tcp:{}]"
        );
        let h = Healthcheck {
            test: v(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"]),
            interval: Some(300_000_000_000),
            timeout: Some(3_000_000_000),
            retries: Some(3),
            ..Default::default()
        };
        assert_eq!(
            healthcheck(&h),
            r#"&{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "5m0s" "3s" "0s" "0s" '\x03'}"#
        );
        assert_eq!(go_quote_rune(65), "'A'");
        assert_eq!(go_quote_rune(39), r"'\''");
    }

    #[test]
    fn pairs_render_optional_values() {
        assert_eq!(pairs("ARG", [("A", Some("1")), ("B", None)]), "ARG A=1 B");
        assert_eq!(pairs("ENV", [("A", Some(""))]), "ENV A=");
    }
}
