//! The crate's error type. Every message names the operation, the image or blob, and for
//! HTTP failures the status plus the registry's own error code and message, because "404"
//! alone does not tell a user whether the tag, the repository or their access is wrong.

use std::fmt;
use std::path::PathBuf;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::auth::docker_config::DockerConfigError;
use crate::auth::helper::CredentialHelperError;
use crate::platform::Platform;
use crate::reference::ReferenceError;

/// What the client was doing when it failed; the first words of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// GET of a manifest or index.
    PullManifest,
    /// GET of an image config blob.
    PullConfig,
    /// GET of a layer blob.
    PullBlob,
    /// HEAD of a blob.
    CheckBlob,
    /// Blob upload (POST + PUT).
    PushBlob,
    /// PUT of a manifest.
    PushManifest,
    /// Token request to an authorization server.
    Authenticate,
    /// Starting and cancelling an upload to learn whether pushing is allowed.
    CheckPushAccess,
    /// `GET /v2/` with the credentials `kiln login` is about to save.
    Login,
    /// GET of a plain URL (`ADD <url>`).
    Download,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::PullManifest => "pulling manifest",
            Operation::PullConfig => "pulling config",
            Operation::PullBlob => "pulling blob",
            Operation::CheckBlob => "checking blob",
            Operation::PushBlob => "pushing blob",
            Operation::PushManifest => "pushing manifest",
            Operation::Authenticate => "authenticating for",
            Operation::CheckPushAccess => "checking push access to",
            Operation::Login => "logging in to",
            Operation::Download => "downloading",
        })
    }
}

/// One entry of an OCI distribution error body (`{"errors":[{"code","message"}]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegistryError {
    /// Machine-readable code, e.g. `MANIFEST_UNKNOWN`, `DENIED`.
    pub code: String,
    /// Human-readable message from the registry.
    #[serde(default)]
    pub message: String,
}

/// What a registry said in the body of a failed response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// Structured errors, when the body followed the distribution spec.
    pub errors: Vec<RegistryError>,
    /// A short, sanitised excerpt of the body otherwise.
    pub text: Option<String>,
}

impl ErrorBody {
    const EXCERPT: usize = 200;

    /// Interprets a (bounded) error body.
    pub(crate) fn parse(body: &[u8]) -> ErrorBody {
        #[derive(Deserialize)]
        struct Envelope {
            errors: Vec<RegistryError>,
        }
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
            && !envelope.errors.is_empty()
        {
            return ErrorBody {
                errors: envelope.errors,
                text: None,
            };
        }
        let text: String = String::from_utf8_lossy(body)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(Self::EXCERPT)
            .collect();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        ErrorBody {
            errors: Vec::new(),
            text: (!text.is_empty()).then_some(text),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            if e.message.is_empty() {
                write!(f, "{}", e.code)?;
            } else {
                write!(f, "{}: {}", e.code, e.message)?;
            }
        }
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

/// Errors from registry operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference did not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The Docker config file could not be read or parsed.
    #[error(transparent)]
    DockerConfig(#[from] DockerConfigError),
    /// A `docker-credential-*` helper failed.
    #[error(transparent)]
    CredentialHelper(#[from] CredentialHelperError),
    /// No Google access token could be obtained for a Google registry.
    #[error(transparent)]
    GoogleAuth(#[from] crate::auth::google::GoogleAuthError),
    /// No credentials could be obtained from a cloud identity (AWS, Azure, Buildkite).
    #[error(transparent)]
    CloudAuth(#[from] crate::auth::cloud::CloudAuthError),
    /// The HTTP client could not be set up (TLS backend initialisation).
    #[error("setting up the HTTP client: {source}")]
    ClientSetup {
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// A `--registry-certificate` or `--registry-client-cert` file is missing or unusable.
    #[error("{what} {} for registry {registry}: {detail}", path.display())]
    TlsFile {
        /// Registry the file was given for.
        registry: String,
        /// `CA certificate`, `client certificate` or `client key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's contents).
        detail: String,
    },
    /// The registry refused the TLS connection because kiln presented no client certificate,
    /// or one it does not accept (mutual TLS).
    #[error(
        "registry {registry} requires a TLS client certificate it accepts ({detail}): pass \
         --registry-client-cert {registry}=/path/to/cert.pem,/path/to/key.pem"
    )]
    ClientCertificateRejected {
        /// Registry host.
        registry: String,
        /// The TLS alert, e.g. `received fatal alert: CertificateRequired`.
        detail: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// `--skip-default-registry-fallback` is set and no mapped registry served the image.
    #[error(
        "image {target} was not found on any mapped registry and --skip-default-registry-fallback \
         forbids pulling it from its own registry: {}", failures.join("; ")
    )]
    NotOnAnyMirror {
        /// The image as requested.
        target: String,
        /// `mirror: error` for each mirror tried.
        failures: Vec<String>,
    },
    /// No connection could be made to the registry.
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable {
        /// Registry host.
        registry: String,
        /// Root cause, e.g. `connection refused`.
        detail: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry speaks TLS with a certificate kiln does not trust.
    #[error(
        "TLS certificate of registry {registry} is not trusted ({detail}): pass \
         --registry-certificate {registry}=/path/to/ca.pem to trust its CA, --skip-tls-verify-pull \
         (pulls) or --skip-tls-verify (pushes) to accept it, or --insecure-pull/--insecure if the \
         registry speaks plain HTTP"
    )]
    UntrustedCertificate {
        /// Registry host.
        registry: String,
        /// What the TLS stack said, e.g. `invalid peer certificate: UnknownIssuer`.
        detail: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection failed after it was established (reset, timeout, bad body).
    #[error("{operation} {target}: {detail}")]
    Transport {
        /// What was being done.
        operation: Operation,
        /// Image or blob.
        target: String,
        /// Root cause.
        detail: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected HTTP status.
    #[error("{operation} {target}: HTTP {status}{body}{hint}")]
    Http {
        /// What was being done.
        operation: Operation,
        /// Image or blob.
        target: String,
        /// HTTP status.
        status: StatusCode,
        /// What the registry said.
        body: ErrorBody,
        /// For 401/403: where the credentials came from, so users know what to fix.
        hint: AuthHint,
        /// How long the registry asked us to wait (`Retry-After`), for 429 and 503.
        retry_after: Option<std::time::Duration>,
    },
    /// A blob ended before (or ran past) the size its descriptor or the registry announced.
    #[error("{operation} {target}: received {received} bytes, expected {expected}")]
    Incomplete {
        /// What was being done.
        operation: Operation,
        /// Blob.
        target: String,
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The caller's destination for a downloaded blob failed.
    #[error("{operation} {target}: writing it locally: {source}")]
    Sink {
        /// What was being done.
        operation: Operation,
        /// Blob.
        target: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Content did not hash to the digest it was fetched by or announced with.
    #[error(
        "{operation} {target}: digest mismatch: expected {expected}, got content with digest {actual}"
    )]
    DigestMismatch {
        /// What was being done.
        operation: Operation,
        /// Image or blob.
        target: String,
        /// Digest we asked for or were told.
        expected: String,
        /// Digest of what we received.
        actual: String,
    },
    /// The registry stored other content than the bytes sent (its `Docker-Content-Digest`
    /// differs from theirs): they were damaged on the way, and the tag points at the damaged
    /// manifest until the PUT is repeated.
    #[error(
        "{operation} {target}: the registry stored content with digest {stored}, not the {sent} sent (damaged in flight)"
    )]
    StoredOther {
        /// What was being done.
        operation: Operation,
        /// Image.
        target: String,
        /// Digest of the bytes sent.
        sent: String,
        /// Digest the registry reports for what it stored.
        stored: String,
    },
    /// A manifest or config was larger than its descriptor said or than we accept.
    #[error("{operation} {target}: response exceeds {limit} bytes")]
    TooLarge {
        /// What was being done.
        operation: Operation,
        /// Image or blob.
        target: String,
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The image uses Docker's long-deprecated schema 1 manifest format.
    #[error(
        "pulling manifest {target}: Docker schema 1 manifests are not supported (deprecated since Docker 1.10); re-push the image with a current Docker to convert it"
    )]
    Schema1 {
        /// Image.
        target: String,
    },
    /// The registry returned a manifest of a kind we do not handle.
    #[error("{operation} {target}: unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType {
        /// What was being done.
        operation: Operation,
        /// Image.
        target: String,
        /// The media type received.
        media_type: String,
    },
    /// A manifest, index or config is not valid JSON of the expected shape.
    #[error("{operation} {target}: malformed {what}: {source}")]
    Malformed {
        /// What was being done.
        operation: Operation,
        /// Image.
        target: String,
        /// `manifest`, `index` or `config`.
        what: &'static str,
        /// Parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The index has no manifest for the requested platform.
    #[error("pulling manifest {target}: no manifest for platform {wanted} (available: {})", available.join(", "))]
    PlatformNotFound {
        /// Image.
        target: String,
        /// Platform requested.
        wanted: Platform,
        /// Platforms the index offers.
        available: Vec<String>,
    },
    /// A digest argument is malformed.
    #[error("{operation} {target}: invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// What was being done.
        operation: Operation,
        /// Repository.
        target: String,
        /// The digest.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the local file to upload failed.
    #[error("{operation} {target}: reading {}: {source}", path.display())]
    File {
        /// What was being done.
        operation: Operation,
        /// Blob.
        target: String,
        /// Local file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The local file's size differs from the size the caller declared.
    #[error("{operation} {target}: {} is {actual} bytes, expected {expected}", path.display())]
    FileSize {
        /// What was being done.
        operation: Operation,
        /// Blob.
        target: String,
        /// Local file.
        path: PathBuf,
        /// Declared size.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// The registry broke the protocol (missing Location, unusable token response...).
    #[error("{operation} {target}: {detail}")]
    Protocol {
        /// What was being done.
        operation: Operation,
        /// Image, blob or registry.
        target: String,
        /// What was wrong.
        detail: String,
    },
}

impl Error {
    /// The HTTP status behind this error, so callers can treat e.g. 404 or 401 specially.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } => Some(status.as_u16()),
            Error::Transport { source, .. }
            | Error::Unreachable { source, .. }
            | Error::UntrustedCertificate { source, .. }
            | Error::ClientCertificateRejected { source, .. } => {
                source.status().map(|s| s.as_u16())
            }
            _ => None,
        }
    }

    /// Codes from the registry's error body (e.g. `MANIFEST_UNKNOWN`, `TAG_INVALID`), so
    /// callers can recognise conditions such as immutable tags without parsing text.
    pub fn registry_codes(&self) -> Vec<&str> {
        match self {
            Error::Http { body, .. } => body.errors.iter().map(|e| e.code.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether trying the same operation again may succeed: the network or the registry
    /// failed transiently (5xx, 408, 429, resets, timeouts, truncated bodies), or content was
    /// damaged in flight (a download whose digest does not match, an upload the registry
    /// refused as `DIGEST_INVALID`, an upload session that vanished, a manifest the registry
    /// stored as other bytes or refused for naming a blob it lacks). Other 4xx answers are
    /// never worth repeating.
    ///
    /// A manifest is only pushed once every blob it names was found in or put into the
    /// repository, so `MANIFEST_BLOB_UNKNOWN` means the manifest's bytes were damaged on the
    /// way (or the registry's storage has not caught up with its own upload yet): both pass.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http {
                status,
                operation,
                body,
                ..
            } => {
                let damaged =
                    |codes: &[&str]| body.errors.iter().any(|e| codes.contains(&e.code.as_str()));
                crate::retry::retryable_status(*status)
                    || (*operation == Operation::PushBlob
                        && damaged(&["DIGEST_INVALID", "BLOB_UPLOAD_UNKNOWN"]))
                    || (*operation == Operation::PushManifest
                        && damaged(&["DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN"]))
            }
            Error::StoredOther { .. } => true,
            Error::Transport { source, .. } | Error::Unreachable { source, .. } => {
                crate::retry::retryable_transport(source)
            }
            Error::DigestMismatch { operation, .. } | Error::Incomplete { operation, .. } => {
                matches!(
                    operation,
                    Operation::PullManifest | Operation::PullConfig | Operation::PullBlob
                )
            }
            _ => false,
        }
    }

    /// The wait the registry asked for, if it did.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn protocol(operation: Operation, target: &str, detail: impl Into<String>) -> Error {
        Error::Protocol {
            operation,
            target: target.to_owned(),
            detail: detail.into(),
        }
    }
}

/// Suffix for authentication failures that says where credentials were looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthHint(pub Option<String>);

impl fmt::Display for AuthHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(hint) => write!(f, " ({hint})"),
            None => Ok(()),
        }
    }
}

/// Whether a request failed because the server's TLS certificate was rejected: the server does
/// speak TLS, so falling back to plain HTTP would only hide the real problem.
pub(crate) fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    // `io::Error::source` skips the error it wraps (and hyper wraps rustls's error in two of
    // them), so `find_rustls_error` unwraps those by hand.
    find_rustls_error(err, &|e| {
        matches!(
            e,
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
        )
    })
}

/// Whether the server ended the TLS handshake because of kiln's client certificate (none
/// sent, or not one it accepts): alerts a client receives about certificates can only be
/// about its own. (`handshake_failure` is left out: it has too many other causes.)
pub(crate) fn is_client_certificate_rejection(err: &(dyn std::error::Error + 'static)) -> bool {
    use rustls::AlertDescription as A;
    find_rustls_error(err, &|e| {
        matches!(
            e,
            rustls::Error::AlertReceived(
                A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::CertificateUnknown
            )
        )
    })
}

fn find_rustls_error(
    err: &(dyn std::error::Error + 'static),
    wanted: &dyn Fn(&rustls::Error) -> bool,
) -> bool {
    let mut current = Some(err);
    while let Some(error) = current {
        let mut wrapped = Some(error);
        while let Some(inner) = wrapped {
            if inner.downcast_ref::<rustls::Error>().is_some_and(wanted) {
                return true;
            }
            wrapped = inner
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .map(|e| e as &(dyn std::error::Error + 'static));
        }
        current = error.source();
    }
    false
}

/// The innermost cause of an error chain, worded plainly (`connection refused`), because
/// reqwest's own message (`error sending request for url ...`) hides it.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current: &(dyn std::error::Error + 'static) = err;
    let mut io_kind = None;
    while let Some(next) = current.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        current = next;
    }
    use std::io::ErrorKind;
    match io_kind {
        Some(
            kind @ (ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::TimedOut
            | ErrorKind::AddrNotAvailable
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof),
        ) => kind.to_string(),
        _ => current.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificate_alerts_are_recognised_but_not_other_alerts() {
        let alert = |a| {
            std::io::Error::other(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::AlertReceived(a),
            ))
        };
        assert!(is_client_certificate_rejection(&alert(
            rustls::AlertDescription::CertificateRequired
        )));
        assert!(is_client_certificate_rejection(&alert(
            rustls::AlertDescription::BadCertificate
        )));
        assert!(!is_client_certificate_rejection(&alert(
            rustls::AlertDescription::HandshakeFailure
        )));
        assert!(!is_certificate_error(&alert(
            rustls::AlertDescription::BadCertificate
        )));
    }

    #[test]
    fn certificate_errors_are_recognised_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let outer = std::io::Error::other(inner);
        assert!(is_certificate_error(&outer));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_certificate_error(&std::io::Error::other(refused)));
    }

    #[test]
    fn http_error_names_operation_target_status_and_registry_error() {
        let err = Error::Http {
            operation: Operation::PullManifest,
            target: "127.0.0.1:5000/nope:latest".to_owned(),
            status: StatusCode::NOT_FOUND,
            body: ErrorBody::parse(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"latest"}}]}"#,
            ),
            hint: AuthHint::default(),
            retry_after: None,
        };
        assert_eq!(
            err.to_string(),
            "pulling manifest 127.0.0.1:5000/nope:latest: HTTP 404 Not Found: MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(err.status(), Some(404));
        assert_eq!(err.registry_codes(), vec!["MANIFEST_UNKNOWN"]);
    }

    #[test]
    fn non_json_error_body_is_excerpted_without_control_characters() {
        let body = ErrorBody::parse(b"<html>\n<b>Bad\tGateway</b>\n</html>");
        assert_eq!(body.to_string(), ": <html> <b>Bad Gateway</b> </html>");
        let long = ErrorBody::parse(&[b'x'; 1000]);
        assert_eq!(long.text.map(|t| t.len()), Some(ErrorBody::EXCERPT));
        assert_eq!(ErrorBody::parse(b"").to_string(), "");
    }

    #[test]
    fn auth_hint_is_appended_in_parentheses() {
        let err = Error::Http {
            operation: Operation::PushBlob,
            target: "r/a@sha256:x".to_owned(),
            status: StatusCode::UNAUTHORIZED,
            body: ErrorBody::default(),
            hint: AuthHint(Some(
                "check credentials in /root/.docker/config.json".to_owned(),
            )),
            retry_after: None,
        };
        assert_eq!(
            err.to_string(),
            "pushing blob r/a@sha256:x: HTTP 401 Unauthorized (check credentials in /root/.docker/config.json)"
        );
    }

    fn http(operation: Operation, status: u16, body: &[u8]) -> Error {
        Error::Http {
            operation,
            target: "r/a".to_owned(),
            status: StatusCode::from_u16(status).unwrap(),
            body: ErrorBody::parse(body),
            hint: AuthHint::default(),
            retry_after: None,
        }
    }

    #[test]
    fn transient_errors_are_server_side_throttling_or_damage_in_flight() {
        assert!(http(Operation::PullManifest, 503, b"").is_transient());
        assert!(http(Operation::PushManifest, 429, b"").is_transient());
        assert!(!http(Operation::PullManifest, 404, b"").is_transient());
        assert!(!http(Operation::PushManifest, 403, b"").is_transient());
        let digest_invalid = br#"{"errors":[{"code":"DIGEST_INVALID"}]}"#;
        assert!(http(Operation::PushBlob, 400, digest_invalid).is_transient());
        // A manifest whose bytes were damaged on the way: refused for its digest or for naming
        // a blob kiln had just confirmed (tests/it/faults/matrix.rs finds both).
        assert!(http(Operation::PushManifest, 400, digest_invalid).is_transient());
        let blob_unknown = br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN"}]}"#;
        assert!(http(Operation::PushManifest, 400, blob_unknown).is_transient());
        assert!(!http(Operation::PullManifest, 400, blob_unknown).is_transient());
        let invalid = br#"{"errors":[{"code":"MANIFEST_INVALID"}]}"#;
        assert!(!http(Operation::PushManifest, 400, invalid).is_transient());
        let mismatch = |operation| Error::DigestMismatch {
            operation,
            target: "r/a".to_owned(),
            expected: "sha256:a".to_owned(),
            actual: "sha256:b".to_owned(),
        };
        assert!(mismatch(Operation::PullBlob).is_transient());
        // The body does not match the digest the caller pinned: nothing in flight about it.
        assert!(!mismatch(Operation::PushManifest).is_transient());
        let stored_other = Error::StoredOther {
            operation: Operation::PushManifest,
            target: "r/a:1".to_owned(),
            sent: "sha256:a".to_owned(),
            stored: "sha256:b".to_owned(),
        };
        assert!(stored_other.is_transient());
    }
}
