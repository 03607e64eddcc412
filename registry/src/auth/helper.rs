//! Running `docker-credential-<name> get`, the protocol shared by credential stores
//! (desktop, pass, secretservice) and cloud helpers (ecr-login, gcr, acr-env).

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::secret::{Credential, Secret};

const HELPER_TIMEOUT: Duration = Duration::from_secs(60);
/// What helpers print on stdout when they hold nothing for the server.
const NOT_FOUND: &str = "credentials not found";
/// Helpers report identity tokens with this user name.
const TOKEN_USERNAME: &str = "<token>";

/// A credential helper could not be run or gave an unusable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialHelperError {
    /// The helper name would not form a safe program name.
    #[error("credential helper name {helper:?} is invalid")]
    InvalidName {
        /// Configured helper name.
        helper: String,
    },
    /// The helper could not be started (usually: not in PATH).
    #[error("running docker-credential-{helper} for {server}: {source}")]
    Spawn {
        /// Helper name.
        helper: String,
        /// Server URL asked for.
        server: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The helper did not finish in time.
    #[error("docker-credential-{helper} for {server} did not answer within {}s", HELPER_TIMEOUT.as_secs())]
    Timeout {
        /// Helper name.
        helper: String,
        /// Server URL asked for.
        server: String,
    },
    /// The helper exited with an error.
    #[error("docker-credential-{helper} get for {server} failed ({status}): {message}")]
    Failed {
        /// Helper name.
        helper: String,
        /// Server URL asked for.
        server: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// First line of its output (helpers print errors, not secrets, on failure).
        message: String,
    },
    /// The helper's output is not the expected JSON.
    #[error("docker-credential-{helper} get for {server}: unreadable output: {source}")]
    Output {
        /// Helper name.
        helper: String,
        /// Server URL asked for.
        server: String,
        /// Parse error (serde_json does not echo the input).
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Asks `docker-credential-<helper>` for `server_url`'s credentials. `Ok(None)` when the
/// helper has none, which means anonymous access, as with Docker.
pub async fn get(
    helper: &str,
    server_url: &str,
) -> Result<Option<Credential>, CredentialHelperError> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(CredentialHelperError::InvalidName {
            helper: helper.to_owned(),
        });
    }
    let program = format!("docker-credential-{helper}");
    run(std::ffi::OsStr::new(&program), helper, server_url).await
}

/// Runs `program get` speaking the helper protocol; split from [`get`] for tests.
async fn run(
    program: &std::ffi::OsStr,
    helper: &str,
    server_url: &str,
) -> Result<Option<Credential>, CredentialHelperError> {
    tracing::debug!(program = %program.to_string_lossy(), server = server_url, "asking credential helper");
    let spawn_err = |source| CredentialHelperError::Spawn {
        helper: helper.to_owned(),
        server: server_url.to_owned(),
        source,
    };
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(server_url.as_bytes()).await {
            // A helper that answers without reading its input is fine.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.map_err(spawn_err)?,
        }
        // Dropping stdin closes it so the helper sees EOF.
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| CredentialHelperError::Timeout {
            helper: helper.to_owned(),
            server: server_url.to_owned(),
        })?
        .map_err(spawn_err)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains(NOT_FOUND) {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .chars()
            .take(200)
            .collect();
        return Err(CredentialHelperError::Failed {
            helper: helper.to_owned(),
            server: server_url.to_owned(),
            status: output.status,
            message,
        });
    }
    let parsed: HelperOutput =
        serde_json::from_slice(&output.stdout).map_err(|source| CredentialHelperError::Output {
            helper: helper.to_owned(),
            server: server_url.to_owned(),
            source,
        })?;
    Ok(match (parsed.username.as_str(), parsed.secret) {
        (_, secret) if secret.is_empty() => None,
        (TOKEN_USERNAME, secret) => Some(Credential::IdentityToken(Secret::new(secret))),
        (username, secret) => Some(Credential::Basic {
            username: username.to_owned(),
            password: Secret::new(secret),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Runs a freshly written script, retrying the rare ETXTBSY caused by another test
    /// thread forking while the script was still open for writing.
    async fn run(
        program: &std::ffi::OsStr,
        helper: &str,
        server: &str,
    ) -> Result<Option<Credential>, CredentialHelperError> {
        for _ in 0..20 {
            match super::run(program, helper, server).await {
                Err(CredentialHelperError::Spawn { source, .. })
                    if source.raw_os_error() == Some(26) =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
        super::run(program, helper, server).await
    }

    fn script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("docker-credential-test");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn helper_receives_server_url_on_stdin_and_returns_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(
            dir.path(),
            r#"[ "$1" = get ] || exit 3; read url; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"s"}' "$url" "$url""#,
        );
        let got = run(path.as_os_str(), "test", "reg.io").await.unwrap();
        assert_eq!(
            got,
            Some(Credential::Basic {
                username: "u-reg.io".to_owned(),
                password: Secret::new("s")
            })
        );
    }

    #[tokio::test]
    async fn token_username_means_identity_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(
            dir.path(),
            r#"echo '{"Username":"<token>","Secret":"refresh"}'"#,
        );
        let got = run(path.as_os_str(), "test", "reg.io").await.unwrap();
        assert_eq!(got, Some(Credential::IdentityToken(Secret::new("refresh"))));
    }

    #[tokio::test]
    async fn not_found_is_anonymous_and_other_failures_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(
            dir.path(),
            "echo 'credentials not found in native keychain'; exit 1",
        );
        assert_eq!(run(path.as_os_str(), "test", "reg.io").await.unwrap(), None);
        let path = script(dir.path(), "echo 'keychain locked' >&2; exit 1");
        let err = run(path.as_os_str(), "test", "reg.io").await.unwrap_err();
        assert!(
            err.to_string().contains("keychain locked") && err.to_string().contains("reg.io"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn missing_helper_and_bad_names_are_errors() {
        let err = get("kiln-does-not-exist", "reg.io").await.unwrap_err();
        assert!(
            err.to_string()
                .contains("docker-credential-kiln-does-not-exist"),
            "{err}"
        );
        assert!(matches!(
            get("../evil", "reg.io").await,
            Err(CredentialHelperError::InvalidName { .. })
        ));
    }
}
