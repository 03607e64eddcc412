//! Registry authentication: answering `WWW-Authenticate` challenges with Basic credentials
//! or Bearer tokens, caching tokens per (registry, scope) until they expire.
//!
//! Credentials come from `config.json` first, then from the native sources
//! `--credential-helpers` enables, in its order (see [`sources`]).

mod acr;
mod aws;
mod buildkite;
pub mod challenge;
mod clock;
pub mod cloud;
mod cloud_http;
pub mod docker_config;
mod ecr;
pub mod env;
pub mod google;
pub mod helper;
pub mod login_store;
pub mod secret;
pub mod sources;
pub(crate) mod token;
mod vars;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use reqwest::header::HeaderValue;

use crate::client::Access;
use crate::error::{AuthHint, Error};
use challenge::Challenge;
use docker_config::{DockerConfig, Lookup};
use secret::Credential;
use sources::{CredentialSource, CredentialSources};

/// The variable holding a whole Docker config, as GitLab CI sets it.
const DOCKER_AUTH_CONFIG: &str = "DOCKER_AUTH_CONFIG";
/// How errors name it where they would name a file.
const DOCKER_AUTH_CONFIG_SHOWN: &str = "$DOCKER_AUTH_CONFIG";

/// What one Docker config provides for `repository` on `registry`, asking its helper if it
/// names one.
async fn from_config(
    config: &DockerConfig,
    registry: &str,
    repository: &str,
) -> Result<Option<Credential>, Error> {
    Ok(match config.lookup(registry, repository) {
        Lookup::Inline(credential) => Some(credential),
        Lookup::Helper { helper, server_url } => helper::get(&helper, &server_url).await?,
        Lookup::Anonymous => None,
    })
}

/// The token scope for `repository` and `access`, e.g. `repository:library/busybox:pull`.
pub(crate) fn scope(repository: &str, access: Access) -> String {
    let actions = match access {
        Access::Pull => "pull",
        Access::Push => "pull,push",
    };
    format!("repository:{repository}:{actions}")
}

#[derive(Debug, Clone)]
enum CachedAuth {
    Bearer(token::Token),
    Basic(HeaderValue),
    /// A `registrytoken` from the Docker config: a Bearer header with no known expiry.
    RegistryToken(HeaderValue),
}

/// Holds credentials and tokens for every registry a client talks to.
#[derive(Debug)]
pub(crate) struct Authenticator {
    config_dir: Option<PathBuf>,
    config: tokio::sync::OnceCell<Option<DockerConfig>>,
    /// `DOCKER_AUTH_CONFIG`: a whole `config.json` in a variable (GitLab's convention).
    env_config: tokio::sync::OnceCell<Option<DockerConfig>>,
    /// What `config.json` and `DOCKER_AUTH_CONFIG` hold per `(config, registry, repository)`:
    /// helpers run once per repository, and path-scoped entries make the answer depend on it.
    credentials: tokio::sync::Mutex<HashMap<(WhichConfig, String, String), Option<Credential>>>,
    cache: Mutex<HashMap<(String, String), CachedAuth>>,
    /// The native sources after `config.json`, in order (`--credential-helpers`).
    sources: CredentialSources,
    /// Credentials from cloud identities, cached until shortly before they expire.
    cloud: cloud::Cloud,
}

/// Which Docker config a credential is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WhichConfig {
    /// `config.json`, always consulted first.
    File,
    /// `DOCKER_AUTH_CONFIG`, part of the `env` source.
    Variable,
}

/// One 401 to answer.
pub(crate) struct ChallengeContext<'a> {
    pub registry: &'a str,
    /// The registry the image was named with; cloud sources are chosen by it.
    pub origin: &'a str,
    pub repository: &'a str,
    /// Whether the request carried cached authorization the registry refused (so cached
    /// cloud credentials are stale).
    pub rejected: bool,
    pub scope: &'a str,
    pub target: &'a str,
    pub client: &'a reqwest::Client,
}

impl Authenticator {
    pub(crate) fn new(config_dir: Option<PathBuf>, sources: CredentialSources) -> Authenticator {
        Authenticator {
            config_dir: DockerConfig::default_dir(config_dir.as_deref()),
            config: tokio::sync::OnceCell::new(),
            env_config: tokio::sync::OnceCell::new(),
            credentials: tokio::sync::Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            sources,
            cloud: cloud::Cloud::default(),
        }
    }

    fn config_path(&self) -> Option<PathBuf> {
        self.config_dir.as_ref().map(|d| d.join("config.json"))
    }

    /// The `Authorization` value to send proactively, if a still-valid one is cached.
    pub(crate) fn cached(&self, registry: &str, scope: &str) -> Option<HeaderValue> {
        let cache = self.cache.lock().ok()?;
        match cache.get(&(registry.to_owned(), scope.to_owned()))? {
            CachedAuth::Bearer(token) if token.renew_at > Instant::now() => {
                Some(token.header.clone())
            }
            CachedAuth::Bearer(_) => None,
            CachedAuth::Basic(header) | CachedAuth::RegistryToken(header) => Some(header.clone()),
        }
    }

    fn store(&self, registry: &str, scope: &str, auth: CachedAuth) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert((registry.to_owned(), scope.to_owned()), auth);
        }
    }

    async fn docker_config(&self) -> Result<Option<&DockerConfig>, Error> {
        let config = self
            .config
            .get_or_try_init(|| async {
                match &self.config_dir {
                    Some(dir) => DockerConfig::load(dir),
                    None => Ok(None),
                }
            })
            .await?;
        Ok(config.as_ref())
    }

    /// `DOCKER_AUTH_CONFIG`, parsed once; unset or empty means none.
    fn env_docker_config(&self) -> Result<Option<&DockerConfig>, Error> {
        if let Some(config) = self.env_config.get() {
            return Ok(config.as_ref());
        }
        let parsed = match std::env::var(DOCKER_AUTH_CONFIG) {
            Ok(text) if !text.trim().is_empty() => Some(DockerConfig::parse(
                std::path::Path::new(DOCKER_AUTH_CONFIG_SHOWN),
                text.as_bytes(),
            )?),
            _ => None,
        };
        // A concurrent caller may have set it first; both parsed the same variable.
        let _ = self.env_config.set(parsed);
        Ok(self.env_config.get().and_then(Option::as_ref))
    }

    /// What Docker config `which` holds for `repository` on `registry`, resolved once
    /// (helpers can be slow).
    async fn docker_config_credential(
        &self,
        which: WhichConfig,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, Error> {
        let key = (which, registry.to_owned(), repository.to_owned());
        let mut known = self.credentials.lock().await;
        if let Some(credential) = known.get(&key) {
            return Ok(credential.clone());
        }
        let config = match which {
            WhichConfig::Variable => self.env_docker_config()?,
            WhichConfig::File => self.docker_config().await?,
        };
        let credential = match config {
            Some(config) => from_config(config, registry, repository).await?,
            None => None,
        };
        known.insert(key, credential.clone());
        Ok(credential)
    }

    /// The credentials for the request in `ctx`: `config.json`, then each enabled source in
    /// order. `realm` is the Bearer challenge's, which ACR's exchange needs.
    async fn credential(
        &self,
        ctx: &ChallengeContext<'_>,
        realm: Option<&str>,
    ) -> Result<Option<Credential>, Error> {
        let (registry, repository) = (ctx.registry, ctx.repository);
        if let Some(credential) = self
            .docker_config_credential(WhichConfig::File, registry, repository)
            .await?
        {
            return Ok(Some(credential));
        }
        for source in self.sources.iter() {
            if let Some(credential) = self.native_credential(source, ctx, realm).await? {
                return Ok(Some(credential));
            }
        }
        tracing::debug!(registry, repository, "no credentials: anonymous");
        Ok(None)
    }

    /// What one native source holds for the request in `ctx`.
    async fn native_credential(
        &self,
        source: CredentialSource,
        ctx: &ChallengeContext<'_>,
        realm: Option<&str>,
    ) -> Result<Option<Credential>, Error> {
        let (registry, repository) = (ctx.registry, ctx.repository);
        let from_env = match source {
            CredentialSource::Env => {
                if let Some(credential) = self
                    .docker_config_credential(WhichConfig::Variable, registry, repository)
                    .await?
                {
                    return Ok(Some(credential));
                }
                env::kaniko(registry, vars::process)
            }
            CredentialSource::GitLab => env::gitlab(registry, vars::process),
            cloud_source => {
                return self
                    .cloud
                    .credential(
                        cloud_source,
                        cloud::Want {
                            origin: ctx.origin,
                            registry,
                            repository,
                            realm,
                        },
                        ctx.client,
                        &vars::process,
                    )
                    .await;
            }
        };
        Ok(from_env.map(|(credential, from)| {
            tracing::debug!(registry, %from, "credentials from the environment");
            credential
        }))
    }

    /// Where credentials for `registry` were (or would be) found, for 401/403 messages.
    pub(crate) async fn hint(&self, registry: &str, origin: &str, repository: &str) -> AuthHint {
        if let Some(via) = self.cloud.tried(origin) {
            return AuthHint(Some(format!(
                "credentials for {origin} came from {via}; check that this identity may access \
                 {repository}"
            )));
        }
        let path = match self.config_path() {
            Some(path) => path,
            None => {
                return AuthHint(Some(format!(
                    "no credentials for {registry}: neither DOCKER_CONFIG nor HOME is set"
                )));
            }
        };
        let shown = path.display();
        let text = match self.docker_config().await {
            Err(_) => format!("{shown} could not be read"),
            Ok(None) => format!("no credentials for {registry}: {shown} does not exist"),
            Ok(Some(config)) => match config.lookup(registry, repository) {
                Lookup::Inline(_) => format!("check credentials for {registry} in {shown}"),
                Lookup::Helper { helper, .. } => {
                    format!(
                        "check credentials for {registry} from docker-credential-{helper} (configured in {shown})"
                    )
                }
                Lookup::Anonymous => format!("no credentials for {registry} in {shown}"),
            },
        };
        let env_enabled = self.sources.contains(CredentialSource::Env);
        let from_env = match self.env_docker_config() {
            Ok(Some(config))
                if env_enabled && config.lookup(registry, repository) != Lookup::Anonymous =>
            {
                Some(DOCKER_AUTH_CONFIG.to_owned())
            }
            _ => env_enabled
                .then(|| env::kaniko(registry, vars::process))
                .flatten()
                .or_else(|| {
                    self.sources
                        .contains(CredentialSource::GitLab)
                        .then(|| env::gitlab(registry, vars::process))
                        .flatten()
                })
                .map(|(_, source)| source.to_string()),
        };
        let text = match from_env {
            Some(source) if text.starts_with("no credentials") => {
                format!("check credentials for {registry} from {source}")
            }
            _ => text,
        };
        let text = match self
            .sources
            .iter()
            .find(|source| cloud::covers(*source, origin))
        {
            Some(source) if text.starts_with("no credentials") => {
                format!("{text}; {}", cloud::missing_hint(source))
            }
            _ => text,
        };
        AuthHint(Some(text))
    }

    /// Answers a 401: picks a challenge (Bearer first, then Basic), obtains the header and
    /// caches it. `Ok(None)` means we have nothing better to send.
    pub(crate) async fn respond(
        &self,
        ctx: &ChallengeContext<'_>,
        challenges: &[Challenge],
    ) -> Result<Option<HeaderValue>, Error> {
        if ctx.rejected {
            self.cloud.forget(ctx.origin).await;
        }
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => Some((realm, service, scope)),
            _ => None,
        });
        if let Some((realm, service, challenge_scope)) = bearer {
            let credential = self.credential(ctx, Some(realm)).await?;
            // A `registrytoken` is the Bearer token itself: no token server involved.
            if let Some(header) = credential
                .as_ref()
                .and_then(Credential::registry_token_header)
            {
                self.store(
                    ctx.registry,
                    ctx.scope,
                    CachedAuth::RegistryToken(header.clone()),
                );
                return Ok(Some(header));
            }
            // A mount asks for two repositories at once; token servers expect one `scope`
            // parameter per repository.
            let mut scopes: Vec<String> = ctx.scope.split_whitespace().map(str::to_owned).collect();
            if let Some(extra) = challenge_scope.as_deref()
                && !extra.is_empty()
                && !scopes.iter().any(|s| s == extra)
            {
                scopes.push(extra.to_owned());
            }
            let token = token::fetch(
                ctx.client,
                token::TokenRequest {
                    realm,
                    service: service.as_deref(),
                    scopes: &scopes,
                    credential: credential.as_ref(),
                    target: ctx.target,
                    hint: self.hint(ctx.registry, ctx.origin, ctx.repository).await,
                },
            )
            .await?;
            let header = token.header.clone();
            self.store(ctx.registry, ctx.scope, CachedAuth::Bearer(token));
            return Ok(Some(header));
        }
        if challenges.contains(&Challenge::Basic) {
            let header = self
                .credential(ctx, None)
                .await?
                .as_ref()
                .and_then(Credential::basic_header);
            if let Some(header) = &header {
                self.store(ctx.registry, ctx.scope, CachedAuth::Basic(header.clone()));
            }
            return Ok(header);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_request_pull_or_pull_push() {
        assert_eq!(
            scope("library/busybox", Access::Pull),
            "repository:library/busybox:pull"
        );
        assert_eq!(scope("a/b", Access::Push), "repository:a/b:pull,push");
    }

    #[tokio::test]
    async fn basic_challenge_uses_config_credentials_and_caches_per_scope() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"reg.test:5000":{"auth":"dXNlcjpwYXNz"}}}"#,
        )
        .unwrap();
        let auth = Authenticator::new(Some(dir.path().to_path_buf()), CredentialSources::default());
        let client = reqwest::Client::new();
        let ctx = ChallengeContext {
            registry: "reg.test:5000",
            origin: "reg.test:5000",
            rejected: false,
            repository: "a",
            scope: "repository:a:pull",
            target: "reg.test:5000/a:latest",
            client: &client,
        };
        let header = auth
            .respond(&ctx, &[Challenge::Basic])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(header.to_str().unwrap(), "Basic dXNlcjpwYXNz");
        assert_eq!(
            auth.cached("reg.test:5000", "repository:a:pull"),
            Some(header)
        );
        assert_eq!(auth.cached("reg.test:5000", "repository:b:pull"), None);
        assert!(
            auth.hint("reg.test:5000", "reg.test:5000", "a")
                .await
                .0
                .unwrap()
                .contains("config.json")
        );
    }

    #[tokio::test]
    async fn registry_token_answers_a_bearer_challenge_without_a_token_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"reg.test":{"registrytoken":"opaque-bearer"}}}"#,
        )
        .unwrap();
        let auth = Authenticator::new(Some(dir.path().to_path_buf()), CredentialSources::default());
        let client = reqwest::Client::new();
        let ctx = ChallengeContext {
            registry: "reg.test",
            origin: "reg.test",
            rejected: false,
            repository: "a",
            scope: "repository:a:pull",
            target: "reg.test/a:latest",
            client: &client,
        };
        // The realm is unreachable: a token fetch would fail.
        let challenge = Challenge::Bearer {
            realm: "http://127.0.0.1:1/token".to_owned(),
            service: None,
            scope: None,
        };
        let header = auth.respond(&ctx, &[challenge]).await.unwrap().unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer opaque-bearer");
        assert!(header.is_sensitive());
    }

    #[tokio::test]
    async fn no_credentials_means_no_basic_header_and_a_helpful_hint() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::new(Some(dir.path().to_path_buf()), CredentialSources::default());
        let client = reqwest::Client::new();
        let ctx = ChallengeContext {
            registry: "reg.test",
            origin: "reg.test",
            rejected: false,
            repository: "a",
            scope: "repository:a:pull",
            target: "reg.test/a:latest",
            client: &client,
        };
        assert_eq!(auth.respond(&ctx, &[Challenge::Basic]).await.unwrap(), None);
        let hint = auth.hint("reg.test", "reg.test", "a").await.0.unwrap();
        assert!(
            hint.contains("no credentials for reg.test") && hint.contains("does not exist"),
            "{hint}"
        );
    }

    #[tokio::test]
    async fn malformed_config_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let auth = Authenticator::new(Some(dir.path().to_path_buf()), CredentialSources::default());
        let client = reqwest::Client::new();
        let ctx = ChallengeContext {
            registry: "reg.test",
            origin: "reg.test",
            rejected: false,
            repository: "a",
            scope: "repository:a:pull",
            target: "reg.test/a:latest",
            client: &client,
        };
        let err = auth.respond(&ctx, &[Challenge::Basic]).await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&dir.path().join("config.json").display().to_string()),
            "{err}"
        );
    }
}
