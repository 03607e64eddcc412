//! STOPSIGNAL validation: a signal number or a Linux signal name, with or without `SIG`.

const NAMES: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN",
    "RTMAX",
];

/// Checks a STOPSIGNAL value the way Docker's `signal.ParseSignal` does; the value is kept as
/// written because runtimes parse it again.
pub(crate) fn validate(raw: &str) -> Result<(), String> {
    if let Ok(n) = raw.parse::<i64>() {
        return if (1..=64).contains(&n) {
            Ok(())
        } else {
            Err(format!("invalid signal: {raw}"))
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |prefix: &str, sep: char| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(sep))
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n))
    };
    if NAMES.contains(&name) || realtime("RTMIN", '+') || realtime("RTMAX", '-') {
        Ok(())
    } else {
        Err(format!("invalid signal: {raw}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_numbers_and_realtime_signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "SIGQUIT"] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in ["SIGFOO", "0", "65", "RTMIN+20", ""] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
