//! Buildkite Package Registries (`packages.buildkite.com`): inside a Buildkite job
//! (`BUILDKITE_AGENT_ACCESS_TOKEN` and `BUILDKITE_JOB_ID` set) with `buildkite-agent` on
//! `PATH`, kiln asks the agent for a short-lived OIDC token whose audience is the package
//! registry (`https://packages.buildkite.com/<org>/<registry>`) and sends it as the password
//! of user `buildkite`. Without an agent, the usual hook writing the token into
//! `config.json` keeps working: `config.json` is consulted first.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::secret::{Credential, Secret};
use super::vars::Vars;

const HOST: &str = "packages.buildkite.com";
/// The user Buildkite's registries expect with an OIDC token as password.
pub(crate) const USER: &str = "buildkite";
/// Requested token lifetime (seconds), as in Buildkite's documentation.
const LIFETIME_SECS: u64 = 300;
const EARLY_RENEWAL: Duration = Duration::from_secs(60);
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `registry` is Buildkite's package registry host (exactly).
pub(crate) fn is_buildkite_registry(registry: &str) -> bool {
    registry.eq_ignore_ascii_case(HOST)
}

/// `<org>/<registry>`: the first two components of a repository on Buildkite's host.
pub(crate) fn audience_path(repository: &str) -> Option<String> {
    let mut parts = repository.split('/');
    let (org, registry) = (parts.next()?, parts.next()?);
    (!org.is_empty() && !registry.is_empty()).then(|| format!("{org}/{registry}"))
}

/// A token from `buildkite-agent oidc request-token`, or `None` outside a Buildkite job or
/// without the agent.
pub(crate) async fn credential(
    origin: &str,
    repository: &str,
    vars: Vars<'_>,
) -> Result<Option<(Credential, Instant, String)>, String> {
    if vars("BUILDKITE_AGENT_ACCESS_TOKEN").is_none() || vars("BUILDKITE_JOB_ID").is_none() {
        return Ok(None);
    }
    let Some(path) = audience_path(repository) else {
        return Ok(None);
    };
    let audience = format!("https://{}/{path}", origin.to_ascii_lowercase());
    let child = tokio::process::Command::new("buildkite-agent")
        .args([
            "oidc",
            "request-token",
            "--audience",
            &audience,
            "--lifetime",
        ])
        .arg(LIFETIME_SECS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("running buildkite-agent: {e}")),
    };
    let output = tokio::time::timeout(AGENT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "buildkite-agent oidc request-token did not answer within {}s",
                AGENT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("running buildkite-agent: {e}"))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr);
        let first = message.lines().next().unwrap_or_default();
        return Err(format!(
            "buildkite-agent oidc request-token --audience {audience} failed ({}): {first}",
            output.status
        ));
    }
    let token = String::from_utf8(output.stdout)
        .map_err(|_| "buildkite-agent printed a token that is not UTF-8".to_owned())?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err("buildkite-agent oidc request-token printed no token".to_owned());
    }
    let credential = Credential::Basic {
        username: USER.to_owned(),
        password: Secret::new(token),
    };
    let renew_at = Instant::now() + Duration::from_secs(LIFETIME_SECS) - EARLY_RENEWAL;
    Ok(Some((
        credential,
        renew_at,
        format!("a Buildkite OIDC token for {audience} from buildkite-agent"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_host_and_org_registry_paths_qualify() {
        assert!(is_buildkite_registry("packages.buildkite.com"));
        assert!(is_buildkite_registry("PACKAGES.buildkite.com"));
        for host in [
            "packages.buildkite.com.attacker.net",
            "evilpackages.buildkite.com",
            "x.packages.buildkite.com",
            "packages.buildkite.com:443",
        ] {
            assert!(!is_buildkite_registry(host), "{host}");
        }
        assert_eq!(
            audience_path("acme/images/app").as_deref(),
            Some("acme/images")
        );
        assert_eq!(audience_path("acme"), None);
    }
}
