//! EXPOSE port specifications (`80`, `80/udp`, `8000-8002`), normalised to `port/proto`.

/// Expands one EXPOSE word into `port/proto` entries.
pub(crate) fn parse(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid proto {proto:?} in EXPOSE {spec:?}: expected tcp, udp or sctp"
        ));
    }
    if ports.contains(':') {
        return Err(format!(
            "EXPOSE {spec:?}: publishing to a host port is not possible in a Dockerfile"
        ));
    }
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (number(a, spec)?, number(b, spec)?),
        None => {
            let p = number(ports, spec)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!(
            "invalid range in EXPOSE {spec:?}: end is before start"
        ));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn number(text: &str, spec: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("invalid port {text:?} in EXPOSE {spec:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_ports_protocols_and_ranges() {
        assert_eq!(parse("80"), Ok(vec!["80/tcp".to_owned()]));
        assert_eq!(parse("53/UDP"), Ok(vec!["53/udp".to_owned()]));
        assert_eq!(
            parse("8000-8002"),
            Ok(vec![
                "8000/tcp".into(),
                "8001/tcp".into(),
                "8002/tcp".into()
            ])
        );
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in ["http", "80/xyz", "70000", "9-1", "1.2.3.4:80:80"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
