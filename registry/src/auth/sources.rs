//! Which native credential sources are consulted after `config.json`, and in what order:
//! `--credential-helpers`, as in the maintained Kaniko fork (default: all of them; an empty
//! value switches them all off). `config.json` (auths, credHelpers, credsStore) always
//! comes first and cannot be switched off here.

use std::fmt;
use std::str::FromStr;

/// One native source of registry credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `DOCKER_AUTH_CONFIG` and `KANIKO_<HOST>_USER`/`_PASSWORD`.
    Env,
    /// GitLab CI's `CI_REGISTRY*` variables.
    GitLab,
    /// Google Artifact Registry / Container Registry: application default credentials.
    Google,
    /// Amazon ECR: the default AWS credential chain and `GetAuthorizationToken`.
    Ecr,
    /// Azure Container Registry: an Entra ID (AAD) token exchanged for an ACR refresh token.
    Acr,
    /// Buildkite Package Registries: an OIDC token from `buildkite-agent`.
    Buildkite,
}

impl CredentialSource {
    /// Every source, in the default order.
    pub const ALL: [CredentialSource; 6] = [
        CredentialSource::Env,
        CredentialSource::Google,
        CredentialSource::Ecr,
        CredentialSource::Acr,
        CredentialSource::GitLab,
        CredentialSource::Buildkite,
    ];

    /// The name `--credential-helpers` uses.
    pub fn name(self) -> &'static str {
        match self {
            CredentialSource::Env => "env",
            CredentialSource::GitLab => "gitlab",
            CredentialSource::Google => "google",
            CredentialSource::Ecr => "ecr",
            CredentialSource::Acr => "acr",
            CredentialSource::Buildkite => "buildkite",
        }
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--credential-helpers` name kiln does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown credential helper {name:?} (known: env, google, ecr, acr, gitlab, buildkite; \
     aliases gcr, ecr-login, acr-env)"
)]
pub struct UnknownCredentialSource {
    /// The name as given.
    pub name: String,
}

impl FromStr for CredentialSource {
    type Err = UnknownCredentialSource;

    fn from_str(name: &str) -> Result<CredentialSource, UnknownCredentialSource> {
        // The aliases are the names of the credential helper binaries Kaniko ships.
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "env" => CredentialSource::Env,
            "gitlab" => CredentialSource::GitLab,
            "google" | "gcr" => CredentialSource::Google,
            "ecr" | "ecr-login" => CredentialSource::Ecr,
            "acr" | "acr-env" => CredentialSource::Acr,
            "buildkite" => CredentialSource::Buildkite,
            _ => {
                return Err(UnknownCredentialSource {
                    name: name.to_owned(),
                });
            }
        })
    }
}

/// The sources to try, in order, each at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSources(Vec<CredentialSource>);

impl Default for CredentialSources {
    fn default() -> CredentialSources {
        CredentialSources(CredentialSource::ALL.to_vec())
    }
}

impl CredentialSources {
    /// No native source: `config.json` only.
    pub fn none() -> CredentialSources {
        CredentialSources(Vec::new())
    }

    /// Parses a comma-separated list (`env,ecr-login`); empty means none. Repeats are
    /// dropped, keeping the first position.
    pub fn parse(list: &str) -> Result<CredentialSources, UnknownCredentialSource> {
        let mut sources = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let source: CredentialSource = name.parse()?;
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        Ok(CredentialSources(sources))
    }

    /// The sources in order.
    pub fn iter(&self) -> impl Iterator<Item = CredentialSource> + '_ {
        self.0.iter().copied()
    }

    /// Whether `source` is enabled.
    pub fn contains(&self, source: CredentialSource) -> bool {
        self.0.contains(&source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keep_order_accept_kaniko_helper_names_and_refuse_unknown_ones() {
        let parsed = CredentialSources::parse(" ecr-login, env,gcr,ecr ,acr-env").unwrap();
        assert_eq!(
            parsed.iter().collect::<Vec<_>>(),
            [
                CredentialSource::Ecr,
                CredentialSource::Env,
                CredentialSource::Google,
                CredentialSource::Acr
            ]
        );
        assert_eq!(
            CredentialSources::parse("").unwrap(),
            CredentialSources::none()
        );
        let err = CredentialSources::parse("env,acr-docker").unwrap_err();
        assert!(err.to_string().contains("\"acr-docker\""), "{err}");
        assert_eq!(CredentialSources::default().iter().count(), 6);
    }
}
