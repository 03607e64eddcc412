//! Parsing `WWW-Authenticate` challenges (RFC 7235): several challenges per header,
//! quoted values with escapes and commas, case-insensitive schemes and parameter names.

use std::collections::HashMap;

/// One authentication challenge from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Docker token auth: fetch a token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to pass back.
        service: Option<String>,
        /// Scope the registry asked for, if it said.
        scope: Option<String>,
    },
    /// HTTP Basic: send the credentials with each request.
    Basic,
    /// A scheme this client does not speak.
    Other(String),
}

/// Parses every challenge in the given `WWW-Authenticate` header values, in order.
/// Bearer challenges without a realm are unusable and dropped.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    values
        .into_iter()
        .flat_map(parse_value)
        .filter_map(|(scheme, mut params)| match scheme.as_str() {
            "bearer" => params.remove("realm").map(|realm| Challenge::Bearer {
                realm,
                service: params.remove("service"),
                scope: params.remove("scope"),
            }),
            "basic" => Some(Challenge::Basic),
            _ => Some(Challenge::Other(scheme)),
        })
        .collect()
}

type RawChallenge = (String, HashMap<String, String>);

fn parse_value(value: &str) -> Vec<RawChallenge> {
    let mut cursor = Cursor {
        bytes: value.as_bytes(),
        pos: 0,
    };
    let mut out: Vec<RawChallenge> = Vec::new();
    loop {
        cursor.skip(|b| b == b' ' || b == b'\t' || b == b',');
        if cursor.peek().is_none() {
            break;
        }
        let scheme = cursor.token();
        if scheme.is_empty() {
            // Not a token character: skip it so parsing always makes progress.
            cursor.pos += 1;
            continue;
        }
        let mut params = HashMap::new();
        loop {
            cursor.skip_ws();
            let before = cursor.pos;
            let name = cursor.token();
            cursor.skip_ws();
            if name.is_empty() || !cursor.eat(b'=') {
                // Not a parameter: the start of the next challenge (or junk).
                cursor.pos = before;
                break;
            }
            cursor.skip_ws();
            let value = if cursor.peek() == Some(b'"') {
                cursor.quoted()
            } else {
                cursor.token()
            };
            params.insert(name.to_ascii_lowercase(), value);
            cursor.skip_ws();
            if !cursor.eat(b',') {
                break;
            }
        }
        out.push((scheme.to_ascii_lowercase(), params));
    }
    out
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
    }

    fn skip_ws(&mut self) {
        self.skip(|b| b == b' ' || b == b'\t');
    }

    fn token(&mut self) -> String {
        let start = self.pos;
        self.skip(is_tchar);
        String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned()
    }

    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        self.pos += 1; // opening quote
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// RFC 7230 `tchar`, plus `/` and `:` which appear unquoted in some realms.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse([
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        ]);
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".to_owned(),
                service: Some("registry.docker.io".to_owned()),
                scope: Some("repository:library/busybox:pull".to_owned()),
            }]
        );
    }

    #[test]
    fn commas_inside_quotes_do_not_split_parameters() {
        let c = parse([
            r#"Bearer realm="https://r/token", scope="repository:a:pull,push", service="svc""#,
        ]);
        let Challenge::Bearer { scope, service, .. } = &c[0] else {
            panic!("{c:?}")
        };
        assert_eq!(scope.as_deref(), Some("repository:a:pull,push"));
        assert_eq!(service.as_deref(), Some("svc"));
    }

    #[test]
    fn parses_multiple_challenges_in_one_header_and_across_headers() {
        let c = parse([
            r#"Basic realm="Registry Realm", Bearer realm="https://t/x",service=s"#,
            "Negotiate",
        ]);
        assert_eq!(
            c,
            vec![
                Challenge::Basic,
                Challenge::Bearer {
                    realm: "https://t/x".to_owned(),
                    service: Some("s".to_owned()),
                    scope: None
                },
                Challenge::Other("negotiate".to_owned()),
            ]
        );
    }

    #[test]
    fn scheme_and_parameter_names_are_case_insensitive_and_escapes_work() {
        let c = parse([r#"BEARER Realm="https://t/\"q\"", SERVICE = "a b""#]);
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: r#"https://t/"q""#.to_owned(),
                service: Some("a b".to_owned()),
                scope: None
            }]
        );
        assert_eq!(parse([r#"basic realm="r""#]), vec![Challenge::Basic]);
    }

    #[test]
    fn bearer_without_realm_is_dropped_and_garbage_terminates() {
        assert_eq!(parse([r#"Bearer service="x""#]), vec![]);
        assert_eq!(parse([""]), vec![]);
        let junk = parse(["\u{0}\u{1} ; ;; Basic"]);
        assert!(junk.contains(&Challenge::Basic), "{junk:?}");
        assert_eq!(parse([r#"Bearer realm="unterminated"#]).len(), 1);
    }
}
