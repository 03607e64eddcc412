//! Google Artifact Registry and Container Registry: application default credentials turned
//! into an OAuth2 access token, sent as the password of user `oauth2accesstoken`.
//!
//! Where the identity comes from, in the order Google's client libraries use:
//! `GOOGLE_APPLICATION_CREDENTIALS` (else gcloud's `application_default_credentials.json`)
//! holding a service-account key (an RS256-signed JWT exchanged at the key's `token_uri`),
//! an authorized-user file (refresh token, [`authorized_user`]) or an external-account file
//! (workload identity federation, [`external_account`]); else the metadata server
//! ([`metadata`], as on GKE and GCE).
//!
//! Only `gcr.io`, `*.gcr.io` and `*-docker.pkg.dev` get it, matched on whole labels, so
//! `gcr.io.attacker.net` or `evil-gcr.io` never see a Google token.

mod authorized_user;
mod external_account;
mod metadata;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::header;
use rustls::SignatureScheme;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Deserialize;

use super::cloud_http;
use super::secret::Secret;
use super::vars::Vars;

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

/// Why no Google access token could be obtained; names the key file or token endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoogleAuthError {
    /// The key file could not be read.
    #[error("reading Google credentials {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a usable credentials file.
    #[error("Google credentials {}: {detail}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never key material).
        detail: String,
    },
    /// The token endpoint could not be reached or answered badly.
    #[error("obtaining a Google access token ({what}) at {token_uri}: {detail}")]
    Exchange {
        /// Which exchange: `service-account key`, `refresh token`, `STS token exchange`, ...
        what: &'static str,
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

/// The credentials file Google's libraries would use: `GOOGLE_APPLICATION_CREDENTIALS`, else
/// gcloud's well-known file if it exists.
fn credentials_file(vars: Vars<'_>) -> Option<PathBuf> {
    if let Some(path) = vars(CREDENTIALS_VARIABLE) {
        return Some(PathBuf::from(path));
    }
    let config = vars("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| vars("HOME").map(|h| PathBuf::from(h).join(".config/gcloud")))?;
    let well_known = config.join("application_default_credentials.json");
    well_known.is_file().then_some(well_known)
}

/// An access token from application default credentials, and a description of where the
/// identity came from; `None` when there is no credentials file and no metadata server.
pub(crate) async fn application_default(
    client: &reqwest::Client,
    vars: Vars<'_>,
) -> Result<Option<(AccessToken, String)>, GoogleAuthError> {
    let Some(path) = credentials_file(vars) else {
        return Ok(metadata::access_token(client, vars)
            .await?
            .map(|token| (token, "the Google metadata server".to_owned())));
    };
    let text = std::fs::read(&path).map_err(|source| GoogleAuthError::Read {
        path: path.clone(),
        source,
    })?;
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type", default)]
        kind: String,
    }
    let kind: Kind = serde_json::from_slice(&text).map_err(|e| GoogleAuthError::Key {
        path: path.clone(),
        detail: format!("not JSON (line {} column {})", e.line(), e.column()),
    })?;
    let token = match kind.kind.as_str() {
        "service_account" => access_token(client, &path).await?,
        "authorized_user" => authorized_user::access_token(client, &path, &text).await?,
        "external_account" => external_account::access_token(client, &path, &text).await?,
        other => {
            return Err(GoogleAuthError::Key {
                path,
                detail: format!(
                    "\"type\": {other:?} is not supported (expected service_account, \
                     authorized_user or external_account)"
                ),
            });
        }
    };
    let via = format!("Google {} credentials {}", kind.kind, path.display());
    Ok(Some((token, via)))
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
    let body = cloud_http::form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)]);
    exchange(client, "service-account key", &token_uri, body).await
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

/// An OAuth2 token answer (`access_token`, `expires_in`).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// POSTs form `body` to an OAuth2 token endpoint and reads its access token.
async fn exchange(
    client: &reqwest::Client,
    what: &'static str,
    token_uri: &str,
    body: String,
) -> Result<AccessToken, GoogleAuthError> {
    let failed = |detail: String| GoogleAuthError::Exchange {
        what,
        token_uri: token_uri.to_owned(),
        detail,
    };
    let answer = cloud_http::send(
        client
            .post(token_uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body),
    )
    .await
    .map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    token_from(&answer).map_err(failed)
}

/// The access token in an OAuth2 answer, renewed [`EARLY_RENEWAL`] before `expires_in`.
fn token_from(answer: &cloud_http::Answer) -> Result<AccessToken, String> {
    let parsed: TokenAnswer = answer.json("OAuth2 token")?;
    if parsed.access_token.is_empty() {
        return Err("the response has no \"access_token\"".to_owned());
    }
    let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
    Ok(AccessToken {
        token: Secret::new(parsed.access_token),
        renew_at: Instant::now() + lifetime.saturating_sub(EARLY_RENEWAL),
    })
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
pub(crate) mod exchange_tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A token endpoint answering `requests` POSTs; records each request's form body.
    pub(crate) fn token_endpoint(requests: usize) -> (String, Arc<Mutex<Vec<String>>>) {
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
