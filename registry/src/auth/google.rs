//! Google Artifact Registry and Container Registry: a service-account key named by
//! `GOOGLE_APPLICATION_CREDENTIALS` is turned into an OAuth2 access token (an RS256-signed JWT
//! exchanged at the key's `token_uri`), sent as the password of user `oauth2accesstoken`.
//!
//! Only `gcr.io`, `*.gcr.io` and `*-docker.pkg.dev` get it, matched on whole labels, so
//! `gcr.io.attacker.net` or `evil-gcr.io` never see a Google token.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header;
use rustls::SignatureScheme;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Deserialize;

use super::secret::Secret;

/// The registry user Google expects with an access token as password.
pub const ACCESS_TOKEN_USER: &str = "oauth2accesstoken";
/// The variable naming the key file, as in Google's client libraries.
pub const CREDENTIALS_VARIABLE: &str = "GOOGLE_APPLICATION_CREDENTIALS";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime requested for the assertion (Google's maximum).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Stop using an access token this long before Google says it expires.
const EARLY_RENEWAL: Duration = Duration::from_secs(300);
const RESPONSE_LIMIT: usize = 64 * 1024;

/// Why no Google access token could be obtained; names the key file or token endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoogleAuthError {
    /// The key file could not be read.
    #[error("reading Google credentials {} (from GOOGLE_APPLICATION_CREDENTIALS): {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a usable service-account key.
    #[error("Google credentials {}: {detail}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never key material).
        detail: String,
    },
    /// The token endpoint could not be reached or answered badly.
    #[error(
        "exchanging the Google service-account key for an access token at {token_uri}: {detail}"
    )]
    Exchange {
        /// The endpoint.
        token_uri: String,
        /// What went wrong (status and Google's error code, never tokens).
        detail: String,
    },
}

/// Whether `registry` is a Google registry: `gcr.io`, `<x>.gcr.io`, `<x>-docker.pkg.dev`.
pub fn is_google_registry(registry: &str) -> bool {
    let host = registry.to_ascii_lowercase();
    if host == "gcr.io" {
        return true;
    }
    let single_label = |prefix: &str| {
        !prefix.is_empty()
            && !prefix.contains('.')
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if let Some(prefix) = host.strip_suffix(".gcr.io") {
        return single_label(prefix);
    }
    host.strip_suffix("-docker.pkg.dev")
        .is_some_and(single_label)
}

#[derive(Deserialize)]
struct RawKey {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// An access token and when to stop using it.
#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub token: Secret,
    pub renew_at: Instant,
}

/// Reads the service-account key at `path`, signs an assertion and exchanges it.
pub(crate) async fn access_token(
    client: &reqwest::Client,
    path: &Path,
) -> Result<AccessToken, GoogleAuthError> {
    let text = std::fs::read(path).map_err(|source| GoogleAuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let key_error = |detail: &str| GoogleAuthError::Key {
        path: path.to_path_buf(),
        detail: detail.to_owned(),
    };
    let raw: RawKey = serde_json::from_slice(&text).map_err(|e| GoogleAuthError::Key {
        path: path.to_path_buf(),
        detail: format!("not JSON (line {} column {})", e.line(), e.column()),
    })?;
    if raw.kind != "service_account" {
        return Err(key_error(
            "only \"type\": \"service_account\" keys are supported",
        ));
    }
    if raw.client_email.is_empty() {
        return Err(key_error("\"client_email\" is missing"));
    }
    let token_uri = raw
        .token_uri
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let assertion = sign_assertion(&raw, &token_uri, now).map_err(key_error)?;
    exchange(client, &token_uri, &assertion).await
}

/// The RS256 JWT Google's token endpoint accepts for a service account.
fn sign_assertion(key: &RawKey, token_uri: &str, now: u64) -> Result<String, &'static str> {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = serde_json::Value::String(kid.clone());
    }
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME.as_secs(),
    });
    let signing_input = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    );
    let der = PrivateKeyDer::from_pem_slice(key.private_key.as_bytes())
        .map_err(|_| "\"private_key\" is not a PEM private key")?;
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|_| "\"private_key\" is not a usable RSA key")?;
    let signer = signing_key
        .choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256])
        .ok_or("\"private_key\" cannot sign RS256 (not an RSA key)")?;
    let signature = signer
        .sign(signing_input.as_bytes())
        .map_err(|_| "signing the assertion failed")?;
    Ok(format!("{signing_input}.{}", encode(&signature)))
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

async fn exchange(
    client: &reqwest::Client,
    token_uri: &str,
    assertion: &str,
) -> Result<AccessToken, GoogleAuthError> {
    let failed = |detail: String| GoogleAuthError::Exchange {
        token_uri: token_uri.to_owned(),
        detail,
    };
    let body = format!(
        "grant_type={}&assertion={assertion}",
        form_encode(JWT_BEARER_GRANT)
    );
    let response = client
        .post(token_uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| failed(crate::error::root_cause(&e)))?;
    let status = response.status();
    let mut response = response;
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(crate::error::root_cause(&e)))?
    {
        if bytes.len() + chunk.len() > RESPONSE_LIMIT {
            return Err(failed(format!("response exceeds {RESPONSE_LIMIT} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    let answer: Option<TokenAnswer> = serde_json::from_slice(&bytes).ok();
    if status != StatusCode::OK {
        let code = answer
            .and_then(|a| a.error)
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(failed(format!("HTTP {status}{code}")));
    }
    let answer = answer
        .filter(|a| !a.access_token.is_empty())
        .ok_or_else(|| failed("the response has no \"access_token\"".to_owned()))?;
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
    Ok(AccessToken {
        token: Secret::new(answer.access_token),
        renew_at: Instant::now() + lifetime.saturating_sub(EARLY_RENEWAL),
    })
}

/// Percent-encoding for the one fixed form value with reserved characters (`:`).
fn form_encode(value: &str) -> String {
    value.replace(':', "%3A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_hosts_match_whole_labels_only() {
        for (host, want) in [
            ("gcr.io", true),
            ("eu.gcr.io", true),
            ("GCR.IO", true),
            ("europe-west1-docker.pkg.dev", true),
            ("us-docker.pkg.dev", true),
            ("gcr.io.attacker.net", false),
            ("evil-gcr.io", false),
            ("evilgcr.io", false),
            ("a.b.gcr.io", false),
            ("gcr.io:5000", false),
            ("docker.pkg.dev", false),
            ("-docker.pkg.dev", false),
            ("x.europe-docker.pkg.dev", false),
            ("europe-docker.pkg.dev.attacker.net", false),
            ("europe-docker.pkg.devx", false),
        ] {
            assert_eq!(is_google_registry(host), want, "{host}");
        }
    }
}

#[cfg(test)]
mod exchange_tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A token endpoint answering `requests` POSTs; records each request's form body.
    fn token_endpoint(requests: usize) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}/token", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(String::from_utf8(body).unwrap());
                let answer = r#"{"access_token":"ya29.fake-access-token","expires_in":3599,"token_type":"Bearer"}"#;
                write!(
                    &stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .unwrap();
            }
        });
        (uri, bodies)
    }

    fn rsa_key() -> rcgen::KeyPair {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
    }

    /// Checks an assertion as Google does: RS256 signature by `key`, audience, scope, issuer.
    fn verify_assertion(form: &str, key: &rcgen::KeyPair, token_uri: &str) {
        let assertion = form
            .strip_prefix(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
            )
            .unwrap();
        let (signing_input, signature) = assertion.rsplit_once('.').unwrap();
        let decode = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let algorithm = rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == SignatureScheme::RSA_PKCS1_SHA256)
            .unwrap()
            .1[0];
        algorithm
            .verify_signature(
                key.public_key_raw(),
                signing_input.as_bytes(),
                &decode(signature),
            )
            .unwrap();
        let (header, claims) = signing_input.split_once('.').unwrap();
        let header: serde_json::Value = serde_json::from_slice(&decode(header)).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "key-1");
        let claims: serde_json::Value = serde_json::from_slice(&decode(claims)).unwrap();
        assert_eq!(claims["aud"], token_uri);
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["iss"], "builder@project.iam.gserviceaccount.com");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 3600);
    }

    fn key_file(dir: &Path, key: &rcgen::KeyPair, token_uri: &str) -> PathBuf {
        let path = dir.join("sa.json");
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "project",
            "private_key_id": "key-1",
            "private_key": key.serialize_pem(),
            "client_email": "builder@project.iam.gserviceaccount.com",
            "token_uri": token_uri,
        });
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    #[tokio::test]
    async fn a_service_account_key_is_exchanged_for_an_access_token_with_a_signed_jwt() {
        let (token_uri, bodies) = token_endpoint(1);
        let key = rsa_key();
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), &key, &token_uri);
        let token = access_token(&reqwest::Client::new(), &path).await.unwrap();
        assert_eq!(token.token.expose(), "ya29.fake-access-token");
        assert!(token.renew_at > Instant::now() + Duration::from_secs(3000));
        assert!(token.renew_at < Instant::now() + Duration::from_secs(3599));
        let bodies = bodies.lock().unwrap();
        verify_assertion(&bodies[0], &key, &token_uri);
    }

    #[tokio::test]
    async fn a_key_that_is_not_a_service_account_is_refused_naming_the_file_not_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.json");
        std::fs::write(
            &path,
            r#"{"type":"authorized_user","refresh_token":"secret-refresh"}"#,
        )
        .unwrap();
        let err = access_token(&reqwest::Client::new(), &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains("secret-refresh"), "{err}");
    }
}
