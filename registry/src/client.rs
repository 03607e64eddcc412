//! The registry client: options, the shared state behind a cheap `Clone`, and the
//! authenticated request path every operation goes through.

use std::path::PathBuf;
use std::sync::Arc;

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Response, StatusCode};

use crate::auth::{self, Authenticator, ChallengeContext, challenge};
use crate::client_cert_probe;
use crate::error::{
    AuthHint, Error, Operation, is_certificate_error, is_client_certificate_rejection, root_cause,
};
use crate::mirrors::RegistryMaps;
use crate::progress::Progress;
use crate::response::status_error;
use crate::retry::RetryPolicy;
use crate::tls::{ClientCertificate, RegistryCertificate};
use crate::transport::{RequestSpec, SendError, Transport};

/// Kaniko-equivalent connection settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Plain HTTP for push destinations (Kaniko `--insecure`).
    pub insecure_push: bool,
    /// Plain HTTP for pulls (`--insecure-pull`).
    pub insecure_pull: bool,
    /// Registries (`host[:port]`) to reach over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Accept invalid certificates when pushing (`--skip-tls-verify`).
    pub skip_tls_verify_push: bool,
    /// Accept invalid certificates when pulling (`--skip-tls-verify-pull`).
    pub skip_tls_verify_pull: bool,
    /// Registries whose certificates are not verified (`--skip-tls-verify-registry`).
    pub skip_tls_verify_registries: Vec<String>,
    /// Extra CAs trusted per registry (`--registry-certificate`).
    pub registry_certificates: Vec<RegistryCertificate>,
    /// Client certificates per registry (`--registry-client-cert`).
    pub client_certificates: Vec<ClientCertificate>,
    /// Mirrors tried before an image's own registry when pulling (`--registry-map`,
    /// `--registry-mirror`).
    pub registry_maps: RegistryMaps,
    /// Fail a pull that no mirror could serve instead of using the image's own registry
    /// (`--skip-default-registry-fallback`).
    pub skip_default_registry_fallback: bool,
    /// Directory holding `config.json`; else `$DOCKER_CONFIG`, else `~/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    /// Native credential sources tried after `config.json`, in order
    /// (`--credential-helpers`).
    pub credential_sources: auth::sources::CredentialSources,
    /// `User-Agent` sent with every request.
    pub user_agent: String,
    /// Retries of uploads and manifest pushes (`--push-retry`).
    pub push_retry: RetryPolicy,
    /// Retries of manifest and blob downloads (`--image-download-retry`).
    pub pull_retry: RetryPolicy,
    /// Called as blobs move, so the application can show progress.
    pub progress: Option<Progress>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            insecure_push: false,
            insecure_pull: false,
            insecure_registries: Vec::new(),
            skip_tls_verify_push: false,
            skip_tls_verify_pull: false,
            skip_tls_verify_registries: Vec::new(),
            registry_certificates: Vec::new(),
            client_certificates: Vec::new(),
            registry_maps: RegistryMaps::default(),
            skip_default_registry_fallback: false,
            docker_config_dir: None,
            credential_sources: auth::sources::CredentialSources::default(),
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_owned(),
            push_retry: RetryPolicy::none(),
            pull_retry: RetryPolicy::none(),
            progress: None,
        }
    }
}

/// Whether an operation reads or writes; selects insecure/TLS policy and token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading (base images, cache lookups).
    Pull,
    /// Writing (destinations, cache pushes).
    Push,
}

/// A client for OCI distribution registries. Clones share connections and tokens.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    auth: Authenticator,
    registry_maps: RegistryMaps,
    skip_default_registry_fallback: bool,
    push_retry: RetryPolicy,
    pull_retry: RetryPolicy,
    progress: Option<Progress>,
}

/// Who and what a request is for, so failures can say so.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub operation: Operation,
    /// Image or blob named in messages.
    pub target: &'a str,
    pub registry: &'a str,
    /// The registry the image was named with (differs from `registry` for a mirror).
    pub origin: &'a str,
    pub repository: &'a str,
    pub access: Access,
}

impl Client {
    /// Builds a client. Credentials are read lazily, on the first authentication
    /// challenge, so anonymous use never depends on the Docker config.
    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        Ok(Client {
            inner: Arc::new(Inner {
                transport: Transport::new(&options)?,
                auth: Authenticator::new(
                    options.docker_config_dir.clone(),
                    options.credential_sources.clone(),
                ),
                registry_maps: options.registry_maps,
                skip_default_registry_fallback: options.skip_default_registry_fallback,
                push_retry: options.push_retry,
                pull_retry: options.pull_retry,
                progress: options.progress,
            }),
        })
    }

    pub(crate) fn registry_maps(&self) -> &RegistryMaps {
        &self.inner.registry_maps
    }

    pub(crate) fn skip_default_registry_fallback(&self) -> bool {
        self.inner.skip_default_registry_fallback
    }

    /// The retry policy for traffic in direction `access`.
    pub(crate) fn retry_policy(&self, access: Access) -> RetryPolicy {
        match access {
            Access::Push => self.inner.push_retry,
            Access::Pull => self.inner.pull_retry,
        }
    }

    /// The application's progress callback, if any.
    pub(crate) fn progress(&self) -> Option<Progress> {
        self.inner.progress.clone()
    }

    /// Sends `spec` with cached authorization; on 401 answers the challenge and retries
    /// once. Returns whatever response results (callers check the status).
    pub(crate) async fn execute(
        &self,
        call: &Call<'_>,
        spec: &RequestSpec,
    ) -> Result<Response, Error> {
        self.execute_scoped(call, spec, &auth::scope(call.repository, call.access))
            .await
    }

    /// [`Client::execute`] with an explicit token scope, e.g. the two repositories of a
    /// cross-repository mount (`repository:dst:pull,push repository:src:pull`).
    pub(crate) async fn execute_scoped(
        &self,
        call: &Call<'_>,
        spec: &RequestSpec,
        scope: &str,
    ) -> Result<Response, Error> {
        let cached = self.inner.auth.cached(call.registry, scope);
        let response = self.send(call, spec, cached.as_ref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenges = challenge::parse(
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let ctx = ChallengeContext {
            registry: call.registry,
            origin: call.origin,
            repository: call.repository,
            scope,
            rejected: cached.is_some(),
            target: call.target,
            client: self.inner.transport.client(call.registry, call.access),
        };
        match self.inner.auth.respond(&ctx, &challenges).await? {
            Some(header) => self.send(call, spec, Some(&header)).await,
            None => Ok(response),
        }
    }

    /// [`Client::execute`], then turns any status not in `ok` into an error.
    pub(crate) async fn execute_expecting(
        &self,
        call: &Call<'_>,
        spec: &RequestSpec,
        ok: &[StatusCode],
    ) -> Result<Response, Error> {
        let response = self.execute(call, spec).await?;
        if ok.contains(&response.status()) {
            Ok(response)
        } else {
            Err(self.status_error(call, response).await)
        }
    }

    /// The error for an unexpected response, with a credentials hint for 401/403.
    pub(crate) async fn status_error(&self, call: &Call<'_>, response: Response) -> Error {
        let hint = if matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            self.inner
                .auth
                .hint(call.registry, call.origin, call.repository)
                .await
        } else {
            AuthHint::default()
        };
        status_error(response, call.operation, call.target, hint).await
    }

    /// The HTTP client for `registry` in direction `access` (for token requests).
    pub(crate) fn http_client(&self, registry: &str, access: Access) -> &reqwest::Client {
        self.inner.transport.client(registry, access)
    }

    /// Sends `spec` once with `authorization`, turning transport failures into errors that
    /// name the registry.
    pub(crate) async fn send(
        &self,
        call: &Call<'_>,
        spec: &RequestSpec,
        authorization: Option<&reqwest::header::HeaderValue>,
    ) -> Result<Response, Error> {
        let error = match self
            .inner
            .transport
            .send(call.registry, call.access, spec, authorization)
            .await
        {
            Ok(response) => return Ok(response),
            Err(error) => error,
        };
        Err(match error {
            SendError::Http(source) if is_certificate_error(&source) => {
                Error::UntrustedCertificate {
                    registry: call.registry.to_owned(),
                    detail: root_cause(&source),
                    source,
                }
            }
            SendError::Http(source)
                if is_client_certificate_rejection(&source)
                    || (!source.is_timeout()
                        && !source.is_connect()
                        && self.wants_client_certificate(call).await) =>
            {
                Error::ClientCertificateRejected {
                    registry: call.registry.to_owned(),
                    detail: root_cause(&source),
                    source,
                }
            }
            SendError::Http(source) if source.is_connect() => Error::Unreachable {
                registry: call.registry.to_owned(),
                detail: root_cause(&source),
                source,
            },
            SendError::Http(source) => Error::Transport {
                operation: call.operation,
                target: call.target.to_owned(),
                detail: root_cause(&source),
                source,
            },
            SendError::Url(detail) => Error::protocol(call.operation, call.target, detail),
            SendError::TooManyRedirects => {
                Error::protocol(call.operation, call.target, "too many redirects")
            }
        })
    }

    /// After an HTTPS connection dropped once established: whether the registry asks for
    /// client certificates, which under TLS 1.3 is the usual reason a refused client sees
    /// only a closed connection.
    async fn wants_client_certificate(&self, call: &Call<'_>) -> bool {
        let Some(origin) = self
            .inner
            .transport
            .registry_origin(call.registry, call.access)
        else {
            return false;
        };
        match (
            origin.scheme(),
            origin.host_str(),
            origin.port_or_known_default(),
        ) {
            ("https", Some(host), Some(port)) => {
                client_cert_probe::requests_client_certificate(host.to_owned(), port).await
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_cheap_to_clone_and_thread_safe() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Client>();
        let client = Client::new(ClientOptions::default()).unwrap();
        let clone = client.clone();
        assert!(Arc::ptr_eq(&client.inner, &clone.inner));
    }

    #[test]
    fn default_user_agent_names_kiln() {
        assert!(ClientOptions::default().user_agent.starts_with("kiln/"));
    }
}
