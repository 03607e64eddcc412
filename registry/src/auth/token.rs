//! Docker token authentication: exchanging credentials (or nothing, for anonymous pulls)
//! for a short-lived Bearer token at the realm a registry names.

use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::secret::{Credential, Secret};
use crate::error::{AuthHint, Error, Operation};
use crate::response::{read_limited, status_error};

/// Docker's minimum and default token lifetime.
const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// Renew this long before the registry's stated expiry to absorb clock skew and latency.
const EARLY_RENEWAL: Duration = Duration::from_secs(5);
const TOKEN_RESPONSE_LIMIT: u64 = 1024 * 1024;
const CLIENT_ID: &str = "kiln";

/// A Bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub header: HeaderValue,
    pub renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Extracts the token and its lifetime from a token endpoint's JSON answer.
pub(crate) fn parse_response(body: &[u8]) -> Result<(Secret, Duration), String> {
    let parsed: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| format!("token response is not valid JSON: {e}"))?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or("token response has neither \"token\" nor \"access_token\"")?;
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(MIN_LIFETIME)
        .max(MIN_LIFETIME);
    Ok((Secret::new(token), lifetime))
}

/// What the token request is for; `target` is only used in messages.
pub(crate) struct TokenRequest<'a> {
    pub realm: &'a str,
    pub service: Option<&'a str>,
    pub scopes: &'a [String],
    pub credential: Option<&'a Credential>,
    pub target: &'a str,
    pub hint: AuthHint,
}

/// Fetches a token: OAuth2 refresh-token grant (POST) for identity tokens, otherwise the
/// classic GET with Basic credentials when we have them.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    request: TokenRequest<'_>,
) -> Result<Token, Error> {
    let op = Operation::Authenticate;
    let mut url = Url::parse(request.realm).map_err(|e| {
        Error::protocol(
            op,
            request.target,
            format!("invalid token realm {:?}: {e}", request.realm),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::protocol(
            op,
            request.target,
            format!("token realm {:?} is not an http(s) URL", request.realm),
        ));
    }
    tracing::debug!(realm = %url, scopes = ?request.scopes, "fetching registry token");
    let builder = match request.credential {
        Some(Credential::IdentityToken(refresh)) => {
            let form = form_body(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose()),
                ("service", request.service.unwrap_or_default()),
                ("scope", &request.scopes.join(" ")),
                ("client_id", CLIENT_ID),
            ]);
            client
                .post(url)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form)
        }
        credential => {
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = request.service {
                    query.append_pair("service", service);
                }
                for scope in request.scopes {
                    query.append_pair("scope", scope);
                }
            }
            let mut builder = client.get(url);
            if let Some(basic) = credential.and_then(Credential::basic_header) {
                builder = builder.header(header::AUTHORIZATION, basic);
            }
            builder
        }
    };
    let response = builder.send().await.map_err(|source| Error::Transport {
        operation: op,
        target: request.target.to_owned(),
        detail: format!(
            "token request to {}: {}",
            request.realm,
            crate::error::root_cause(&source)
        ),
        source,
    })?;
    if response.status() != StatusCode::OK {
        let hint = if matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            request.hint
        } else {
            AuthHint::default()
        };
        return Err(status_error(response, op, request.target, hint).await);
    }
    let body = read_limited(response, TOKEN_RESPONSE_LIMIT, op, request.target).await?;
    let (token, lifetime) =
        parse_response(&body).map_err(|detail| Error::protocol(op, request.target, detail))?;
    let mut header =
        HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
            Error::protocol(
                op,
                request.target,
                "token contains characters not allowed in a header",
            )
        })?;
    header.set_sensitive(true);
    Ok(Token {
        header,
        renew_at: Instant::now() + lifetime.saturating_sub(EARLY_RENEWAL),
    })
}

/// `application/x-www-form-urlencoded` encoding (WHATWG rules).
fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                    out.push(char::from(b))
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_response_accepts_token_or_access_token_and_defaults_lifetime() {
        let (t, life) = parse_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((t.expose(), life), ("abc", Duration::from_secs(300)));
        let (t, life) = parse_response(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!((t.expose(), life), ("xyz", MIN_LIFETIME));
        let (_, life) = parse_response(br#"{"token":"a","expires_in":3}"#).unwrap();
        assert_eq!(life, MIN_LIFETIME);
        assert!(parse_response(br#"{"token":""}"#).is_err());
        assert!(parse_response(b"nope").is_err());
    }

    #[test]
    fn form_body_is_url_encoded() {
        assert_eq!(
            form_body(&[("scope", "repository:a/b:pull,push"), ("x", "a b&c")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&x=a+b%26c"
        );
    }
}
