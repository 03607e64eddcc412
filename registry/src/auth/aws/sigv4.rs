//! AWS Signature Version 4 over one HTTP request, as the ECR API requires.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>. Pinned by
//! AWS's published example (the `get-vanilla` case of the SigV4 test suite).

use aws_lc_rs::hmac;
use sha2::{Digest as _, Sha256};

use super::AwsCredentials;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parts of a request SigV4 covers.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// `host[:port]` as sent in the `Host` header.
    pub host: &'a str,
    /// URI path, already normalised (`/` for the root).
    pub path: &'a str,
    /// Headers to sign besides `host` and the `x-amz-*` ones added here.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Where and when the signature is valid.
#[derive(Debug)]
pub(crate) struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

/// The headers to add to `request`: `x-amz-date`, `x-amz-security-token` (for temporary
/// credentials) and `authorization`.
pub(crate) fn sign(
    request: &Request<'_>,
    scope: &Scope<'_>,
    credentials: &AwsCredentials,
) -> Vec<(&'static str, String)> {
    let mut added = vec![("x-amz-date", scope.amz_date.to_owned())];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token", token.expose().to_owned()));
    }
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .chain(std::iter::once((
            "host".to_owned(),
            request.host.to_ascii_lowercase(),
        )))
        .chain(added.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical_request = format!(
        "{}\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        request.path,
        hex(&Sha256::digest(request.body))
    );
    let date = &scope.amz_date[..scope.amz_date.len().min(8)];
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{}",
        scope.amz_date,
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(
        credentials.secret_access_key.expose(),
        date,
        scope.region,
        scope.service,
    );
    let signature = hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
    added.push((
        "authorization",
        format!(
            "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    added
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k_date = step(format!("AWS4{secret}").as_bytes(), date);
    let k_region = step(k_date.as_ref(), region);
    let k_service = step(k_region.as_ref(), service);
    let k_signing = step(k_service.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::Secret;

    fn example_credentials(session_token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: session_token.map(Secret::new),
            expires_unix: None,
        }
    }

    /// `get-vanilla` from AWS's SigV4 test suite.
    #[test]
    fn signature_matches_aws_published_get_vanilla_vector() {
        let headers = sign(
            &Request {
                method: "GET",
                host: "example.amazonaws.com",
                path: "/",
                headers: &[],
                body: b"",
            },
            &Scope {
                region: "us-east-1",
                service: "service",
                amz_date: "20150830T123600Z",
            },
            &example_credentials(None),
        );
        assert_eq!(
            headers,
            vec![
                ("x-amz-date", "20150830T123600Z".to_owned()),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                     SignedHeaders=host;x-amz-date, \
                     Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                        .to_owned()
                ),
            ]
        );
    }

    /// The derived key of AWS's documentation example (`20150830/us-east-1/iam`).
    #[test]
    fn signing_key_matches_aws_documentation_example() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
        );
        // Signing the empty string with the derived key pins the key itself indirectly;
        // compare the derivation step by step instead.
        let step = |key: &[u8], data: &str| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        };
        let k = step(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830");
        let k = step(k.as_ref(), "us-east-1");
        let k = step(k.as_ref(), "iam");
        let k = step(k.as_ref(), "aws4_request");
        assert_eq!(
            hex(k.as_ref()),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        assert_eq!(
            hmac::sign(&key, b"x").as_ref(),
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k.as_ref()), b"x").as_ref()
        );
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let headers = sign(
            &Request {
                method: "POST",
                host: "api.ecr.eu-west-1.amazonaws.com",
                path: "/",
                headers: &[("Content-Type", "application/x-amz-json-1.1")],
                body: b"{}",
            },
            &Scope {
                region: "eu-west-1",
                service: "ecr",
                amz_date: "20150830T123600Z",
            },
            &example_credentials(Some("session")),
        );
        assert_eq!(headers[1], ("x-amz-security-token", "session".to_owned()));
        assert!(
            headers[2]
                .1
                .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"),
            "{}",
            headers[2].1
        );
    }
}
