//! Credentials from environment variables, tried after `config.json` as the maintained Kaniko
//! fork does: `KANIKO_<HOST>_USER`/`_PASSWORD`, then GitLab CI's `CI_REGISTRY*` variables.
//! (`DOCKER_AUTH_CONFIG`, a whole `config.json` in a variable, is read by the authenticator
//! as a second Docker config.)
//!
//! Both are offered to one exact host only. The Kaniko fork also hands `KANIKO_GCR_IO_*` to
//! every subdomain of `gcr.io`; kiln does not, because `-` and `.` both mangle to `_` and a
//! parent-domain match would send one registry's secret to hosts the user never named.

use std::fmt;

use super::secret::{Credential, Secret};

/// The user GitLab accepts with `CI_JOB_TOKEN` as password.
const GITLAB_JOB_TOKEN_USER: &str = "gitlab-ci-token";

/// Which variables a credential came from, for messages (never the values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// `KANIKO_<HOST>_USER` and `KANIKO_<HOST>_PASSWORD`; holds the `KANIKO_<HOST>` prefix.
    Kaniko(String),
    /// `CI_REGISTRY_USER` and `CI_REGISTRY_PASSWORD`.
    GitLab,
    /// `CI_JOB_TOKEN` as user `gitlab-ci-token`.
    GitLabJobToken,
}

impl fmt::Display for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvSource::Kaniko(prefix) => write!(f, "{prefix}_USER and {prefix}_PASSWORD"),
            EnvSource::GitLab => f.write_str("CI_REGISTRY_USER and CI_REGISTRY_PASSWORD"),
            EnvSource::GitLabJobToken => f.write_str("CI_JOB_TOKEN"),
        }
    }
}

/// The `KANIKO_<HOST>` prefix for `registry`: upper case, `.`, `-` and `:` as `_`
/// (`my-registry.example.com:5000` -> `KANIKO_MY_REGISTRY_EXAMPLE_COM_5000`).
pub fn kaniko_prefix(registry: &str) -> String {
    let host: String = registry
        .chars()
        .map(|c| match c {
            '.' | '-' | ':' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("KANIKO_{host}")
}

/// The `host[:port]` a `CI_REGISTRY` value names (GitLab sets a bare host; a scheme or path
/// some pipelines add is ignored).
fn gitlab_host(value: &str) -> String {
    let value = value.trim();
    let without_scheme = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .unwrap_or(value);
    without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Credentials for `registry` from the variables `get` returns, and where they came from:
/// [`kaniko`], then [`gitlab`].
pub fn lookup(
    registry: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Option<(Credential, EnvSource)> {
    kaniko(registry, &get).or_else(|| gitlab(registry, &get))
}

/// `KANIKO_<HOST>_USER` and `KANIKO_<HOST>_PASSWORD` for exactly `registry`.
pub fn kaniko(
    registry: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Option<(Credential, EnvSource)> {
    let prefix = kaniko_prefix(&registry.to_ascii_lowercase());
    let username = get(&format!("{prefix}_USER"))?;
    let password = get(&format!("{prefix}_PASSWORD"))?;
    Some((basic(username, password), EnvSource::Kaniko(prefix)))
}

/// GitLab CI's variables, when `CI_REGISTRY` names exactly `registry`.
pub fn gitlab(
    registry: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Option<(Credential, EnvSource)> {
    let registry = registry.to_ascii_lowercase();
    get("CI_REGISTRY").filter(|host| gitlab_host(host) == registry)?;
    if let (Some(username), Some(password)) = (
        get("CI_REGISTRY_USER").filter(|u| !u.is_empty()),
        get("CI_REGISTRY_PASSWORD").filter(|p| !p.is_empty()),
    ) {
        return Some((basic(username, password), EnvSource::GitLab));
    }
    get("CI_JOB_TOKEN").filter(|t| !t.is_empty()).map(|token| {
        (
            basic(GITLAB_JOB_TOKEN_USER.to_owned(), token),
            EnvSource::GitLabJobToken,
        )
    })
}

fn basic(username: String, password: String) -> Credential {
    Credential::Basic {
        username,
        password: Secret::new(password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Vars<'a> = [(&'a str, &'a str)];

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn user_for(registry: &str, vars: &[(&str, &str)]) -> Option<String> {
        lookup(registry, env(vars)).map(|(credential, _)| match credential {
            Credential::Basic { username, .. } => username,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn kaniko_prefix_mangles_dots_dashes_and_colons() {
        assert_eq!(
            kaniko_prefix("my-registry.Example.com:5000"),
            "KANIKO_MY_REGISTRY_EXAMPLE_COM_5000"
        );
        assert_eq!(kaniko_prefix("gcr.io"), "KANIKO_GCR_IO");
    }

    #[test]
    fn env_credentials_go_to_their_exact_host_only() {
        let kaniko = [
            ("KANIKO_REG_EXAMPLE_COM_USER", "k-user"),
            ("KANIKO_REG_EXAMPLE_COM_PASSWORD", "k-pass"),
        ];
        let gitlab = [
            ("CI_REGISTRY", "registry.gitlab.example:5050"),
            ("CI_REGISTRY_USER", "gl-user"),
            ("CI_REGISTRY_PASSWORD", "gl-pass"),
        ];
        let job_token = [
            ("CI_REGISTRY", "https://registry.gitlab.com/"),
            ("CI_JOB_TOKEN", "job-token"),
        ];
        let table: [(&str, &Vars, Option<&str>); 14] = [
            ("reg.example.com", &kaniko, Some("k-user")),
            ("REG.example.com", &kaniko, Some("k-user")),
            ("sub.reg.example.com", &kaniko, None),
            ("reg.example.com.attacker.net", &kaniko, None),
            ("evilreg.example.com", &kaniko, None),
            ("reg.example.com:5000", &kaniko, None),
            ("registry.gitlab.example:5050", &gitlab, Some("gl-user")),
            ("registry.gitlab.example", &gitlab, None),
            ("registry.gitlab.example:50501", &gitlab, None),
            ("registry.gitlab.example.attacker.net:5050", &gitlab, None),
            ("registry.gitlab.com", &job_token, Some("gitlab-ci-token")),
            ("x.registry.gitlab.com", &job_token, None),
            ("registry.gitlab.com.evil", &job_token, None),
            ("registry-gitlab.com", &job_token, None),
        ];
        for (registry, vars, want) in table {
            assert_eq!(
                user_for(registry, vars).as_deref(),
                want,
                "{registry} with {vars:?}"
            );
        }
    }

    #[test]
    fn a_user_without_a_password_is_not_a_credential() {
        assert_eq!(
            user_for("reg.example.com", &[("KANIKO_REG_EXAMPLE_COM_USER", "u")]),
            None
        );
        assert_eq!(
            user_for(
                "registry.gitlab.com",
                &[
                    ("CI_REGISTRY", "registry.gitlab.com"),
                    ("CI_REGISTRY_USER", "u")
                ]
            ),
            None
        );
    }

    #[test]
    fn kaniko_variables_win_over_gitlab_ones_and_sources_name_variables_only() {
        let vars = [
            ("CI_REGISTRY", "registry.gitlab.com"),
            ("CI_JOB_TOKEN", "job-token"),
            ("KANIKO_REGISTRY_GITLAB_COM_USER", "k"),
            ("KANIKO_REGISTRY_GITLAB_COM_PASSWORD", "k-secret"),
        ];
        let (_, source) = lookup("registry.gitlab.com", env(&vars)).unwrap();
        assert_eq!(
            source.to_string(),
            "KANIKO_REGISTRY_GITLAB_COM_USER and KANIKO_REGISTRY_GITLAB_COM_PASSWORD"
        );
    }
}
