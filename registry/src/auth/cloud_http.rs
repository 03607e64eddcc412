//! The small HTTP exchanges cloud credential sources make (OAuth token endpoints, STS, ECR,
//! metadata servers): bounded answers, and failures described without echoing secrets.

use reqwest::StatusCode;

/// Cloud token answers are small; anything larger is refused rather than buffered.
const ANSWER_LIMIT: usize = 256 * 1024;

/// A status and body read in full (bounded).
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON of type `T`, or a message naming what was expected (never the body,
    /// which may hold a token).
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "the answer is not the expected {what} JSON (line {} column {})",
                e.line(),
                e.column()
            )
        })
    }

    /// `HTTP <status>`, with an OAuth-style `error` code when the body has one.
    pub(crate) fn failure(&self) -> String {
        #[derive(serde::Deserialize)]
        struct OAuthError {
            #[serde(default)]
            error: Option<serde_json::Value>,
            #[serde(default, rename = "__type")]
            aws_type: Option<String>,
        }
        let code = serde_json::from_slice::<OAuthError>(&self.body)
            .ok()
            .and_then(|e| {
                e.aws_type.or(match e.error {
                    Some(serde_json::Value::String(code)) => Some(code),
                    Some(serde_json::Value::Object(o)) => o
                        .get("status")
                        .or_else(|| o.get("code"))
                        .map(|v| v.to_string().trim_matches('"').to_owned()),
                    _ => None,
                })
            })
            .or_else(|| xml_tag(&self.body, "Code"))
            .filter(|c| c.len() < 100 && !c.contains(char::is_whitespace))
            .map(|code| format!(" ({code})"))
            .unwrap_or_default();
        format!("HTTP {}{code}", self.status)
    }
}

/// The text of the first `<tag>...</tag>` in an XML body (AWS STS answers), entities
/// decoded.
pub(crate) fn xml_tag(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{tag}>"))?;
    Some(
        text[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Sends `request` and reads the answer (at most [`ANSWER_LIMIT`] bytes).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let mut response = request
        .send()
        .await
        .map_err(|e| crate::error::root_cause(&e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| crate::error::root_cause(&e))?
    {
        if body.len() + chunk.len() > ANSWER_LIMIT {
            return Err(format!("the answer exceeds {ANSWER_LIMIT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 percent-encoding of everything but unreserved characters (what both form
/// bodies and SigV4 canonical query strings need).
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded_except_unreserved() {
        assert_eq!(
            form(&[("grant_type", "urn:a:b"), ("x", "a b/+=~")]),
            "grant_type=urn%3Aa%3Ab&x=a%20b%2F%2B%3D~"
        );
    }

    #[test]
    fn failures_show_status_and_error_code_but_not_bodies() {
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            headers: Default::default(),
            body: br#"{"error":"invalid_grant","error_description":"token ya29.secret"}"#.to_vec(),
        };
        assert_eq!(answer.failure(), "HTTP 400 Bad Request (invalid_grant)");
        let xml = Answer {
            status: StatusCode::FORBIDDEN,
            headers: Default::default(),
            body: b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>".to_vec(),
        };
        assert_eq!(xml.failure(), "HTTP 403 Forbidden (AccessDenied)");
        assert_eq!(
            xml_tag(b"<A><B> x&amp;y </B></A>", "B").as_deref(),
            Some("x&y")
        );
    }
}
