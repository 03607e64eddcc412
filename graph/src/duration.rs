//! Go `time.Duration` parsing and printing. HEALTHCHECK flags are Go durations, and BuildKit
//! writes them into the image history with Go's `String()` format, so both directions must
//! match Go exactly.

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const S: u128 = 1_000_000_000;
const M: u128 = 60 * S;
const H: u128 = 60 * M;

/// Parses a Go duration such as `30s`, `1m30s`, `1.5h` or `100ms` into nanoseconds.
pub fn parse(text: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after) = rest.strip_prefix('.') {
            let frac_len = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            frac_part = &after[..frac_len];
            rest = &after[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => NS,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => S,
            "m" => M,
            "h" => H,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            other => return Err(format!("time: unknown unit {other:?} in duration {text:?}")),
        };
        rest = &rest[unit_len..];
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut value = whole.checked_mul(unit).ok_or_else(bad)?;
        let mut scale = unit;
        for digit in frac_part.chars().filter_map(|c| c.to_digit(10)) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            value += u128::from(digit) * scale;
        }
        total = total.checked_add(value).ok_or_else(bad)?;
    }
    let total = i64::try_from(total).map_err(|_| bad())?;
    Ok(if negative { -total } else { total })
}

/// Formats nanoseconds like Go's `Duration.String()`: `0s`, `500ms`, `1.5s`, `1m30s`, `1h0m0s`.
pub(crate) fn format(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = u128::from(nanos.unsigned_abs());
    if u < S {
        let (unit, prec) = if u < US {
            ("ns", 0)
        } else if u < MS {
            ("µs", 3)
        } else {
            ("ms", 6)
        };
        let (frac, whole) = fraction(u, prec);
        return format!("{sign}{whole}{frac}{unit}");
    }
    let (frac, secs) = fraction(u, 9);
    let mut out = format!("{}{frac}s", secs % 60);
    let minutes = secs / 60;
    if minutes > 0 {
        out = format!("{}m{out}", minutes % 60);
        let hours = minutes / 60;
        if hours > 0 {
            out = format!("{hours}h{out}");
        }
    }
    format!("{sign}{out}")
}

/// Splits `v` into its integer part and a `.ddd` fraction of `prec` digits with trailing zeros
/// removed (empty when the fraction is zero), like Go's `fmtFrac`.
fn fraction(v: u128, prec: u32) -> (String, u128) {
    if prec == 0 {
        return (String::new(), v);
    }
    let div = 10u128.pow(prec);
    let digits = format!("{:0width$}", v % div, width = prec as usize);
    let digits = digits.trim_end_matches('0');
    let frac = if digits.is_empty() {
        String::new()
    } else {
        format!(".{digits}")
    };
    (frac, v / div)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5s", 1_500_000_000),
            ("100ms", 100_000_000),
            ("2h", 7_200_000_000_000),
            ("1us", 1_000),
            (".5s", 500_000_000),
            ("-1s", -1_000_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in ["", "10", "1x", "s", "1.s.", "99999999999999999999h"] {
            assert!(parse(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (30_000_000_000, "30s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (1_500_000_000, "1.5s"),
            (500_000_000, "500ms"),
            (1_500, "1.5µs"),
            (12, "12ns"),
            (-2_000_000_000, "-2s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format(*nanos), *want, "{nanos}");
        }
    }
}
