//! Credentials from cloud identity (Google, AWS ECR, Azure ACR, Buildkite OIDC): fetched on
//! the first challenge from a registry a source covers, reused until shortly before they
//! expire, and dropped when the registry refuses them so the next attempt fetches anew.
//!
//! Each source is gated on the registry the image was *named* with (its origin), so a
//! `--registry-map` target is reached with the credentials of the registry it stands in
//! for, and a look-alike host never gets any.

use std::collections::HashMap;
use std::time::Instant;

use super::aws::{self, AwsCredentials, AwsSource};
use super::secret::Credential;
use super::sources::CredentialSource;
use super::vars::Vars;
use super::{acr, buildkite, ecr, google};
use crate::error::Error;

/// No cloud credential could be obtained; names the source, the registry and the endpoint,
/// never a token.
#[derive(Debug, thiserror::Error)]
#[error("obtaining {source_name} credentials for {registry}: {detail}")]
pub struct CloudAuthError {
    /// The `--credential-helpers` name of the source.
    pub source_name: CredentialSource,
    /// The registry the credentials were for.
    pub registry: String,
    /// What failed.
    pub detail: String,
}

#[derive(Debug, Clone)]
struct Cached {
    credential: Credential,
    renew_at: Instant,
    /// Where it came from, for hints.
    via: String,
}

/// What a source gave for one key during this build.
#[derive(Debug, Clone)]
enum Entry {
    Found(Cached),
    /// Nothing configured: not asked again this build (a metadata probe off Google Cloud
    /// costs seconds), unless a refusal makes [`Cloud::forget`] drop it.
    Absent,
}

/// What a credential is wanted for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want<'a> {
    /// The registry the image was named with: sources are chosen by it.
    pub origin: &'a str,
    /// The registry actually contacted (a mirror's address when mapped).
    pub registry: &'a str,
    pub repository: &'a str,
    /// The Bearer challenge's realm, if the registry sent one.
    pub realm: Option<&'a str>,
}

/// A fetched credential, when to renew it and where it came from.
type Fetched = (Credential, Instant, String);

/// The cloud credentials of one client.
#[derive(Debug, Default)]
pub(crate) struct Cloud {
    tokens: tokio::sync::Mutex<HashMap<(CredentialSource, String), Entry>>,
    /// AWS credentials, shared by every ECR registry (one STS call per build).
    aws: tokio::sync::Mutex<Option<(AwsCredentials, AwsSource)>>,
    /// Which source answered for a registry, for 401/403 hints.
    tried: std::sync::Mutex<HashMap<String, String>>,
}

/// Whether `source` covers `origin`.
pub(crate) fn covers(source: CredentialSource, origin: &str) -> bool {
    match source {
        CredentialSource::Google => google::is_google_registry(origin),
        CredentialSource::Ecr => ecr::parse_host(origin).is_some(),
        CredentialSource::Acr => acr::is_acr_registry(origin),
        CredentialSource::Buildkite => buildkite::is_buildkite_registry(origin),
        CredentialSource::Env | CredentialSource::GitLab => false,
    }
}

/// What to set up when `source` covers a registry but found nothing.
pub(crate) fn missing_hint(source: CredentialSource) -> &'static str {
    match source {
        CredentialSource::Google => {
            "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS or run on Google Cloud"
        }
        CredentialSource::Ecr => {
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
             AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, or run with container credentials \
             or an EC2 instance profile"
        }
        CredentialSource::Acr => {
            "no Azure credentials: set AZURE_CLIENT_ID and AZURE_TENANT_ID with \
             AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE"
        }
        CredentialSource::Buildkite => {
            "no Buildkite credentials: run inside a Buildkite job with buildkite-agent on PATH, \
             or log in with the OIDC token"
        }
        CredentialSource::Env | CredentialSource::GitLab => "",
    }
}

impl Cloud {
    /// `source`'s credential for `repository` on `origin`, if it covers it and has one.
    pub(crate) async fn credential(
        &self,
        source: CredentialSource,
        want: Want<'_>,
        client: &reqwest::Client,
        vars: Vars<'_>,
    ) -> Result<Option<Credential>, Error> {
        let Want {
            origin,
            repository,
            realm,
            ..
        } = want;
        if !covers(source, origin) {
            return Ok(None);
        }
        let key = match source {
            // One Google identity serves every Google registry.
            CredentialSource::Google => String::new(),
            CredentialSource::Buildkite => {
                format!(
                    "{origin}/{}",
                    buildkite::audience_path(repository).unwrap_or_default()
                )
            }
            _ => origin.to_ascii_lowercase(),
        };
        // ACR's exchange lives next to the Bearer realm: nothing to do (or remember) without.
        if source == CredentialSource::Acr && realm.is_none() {
            return Ok(None);
        }
        let mut tokens = self.tokens.lock().await;
        match tokens.get(&(source, key.clone())) {
            Some(Entry::Found(cached)) if cached.renew_at > Instant::now() => {
                self.remember(origin, &cached.via);
                return Ok(Some(cached.credential.clone()));
            }
            Some(Entry::Absent) => return Ok(None),
            _ => {}
        }
        let Some((credential, renew_at, via)) = self.fetch(source, want, client, vars).await?
        else {
            tokens.insert((source, key), Entry::Absent);
            return Ok(None);
        };
        tracing::debug!(registry = origin, %source, via = %via, "obtained cloud credentials");
        self.remember(origin, &via);
        tokens.insert(
            (source, key),
            Entry::Found(Cached {
                credential: credential.clone(),
                renew_at,
                via,
            }),
        );
        Ok(Some(credential))
    }

    /// Asks `source` for a credential for `origin`.
    async fn fetch(
        &self,
        source: CredentialSource,
        want: Want<'_>,
        client: &reqwest::Client,
        vars: Vars<'_>,
    ) -> Result<Option<Fetched>, Error> {
        let Want {
            origin, repository, ..
        } = want;
        let failed = |detail: String| CloudAuthError {
            source_name: source,
            registry: origin.to_owned(),
            detail,
        };
        Ok(match source {
            CredentialSource::Google => {
                google::application_default(client, vars)
                    .await?
                    .map(|(token, via)| {
                        let credential = Credential::Basic {
                            username: google::ACCESS_TOKEN_USER.to_owned(),
                            password: token.token,
                        };
                        (credential, token.renew_at, via)
                    })
            }
            CredentialSource::Ecr => {
                let Some(host) = ecr::parse_host(origin) else {
                    return Ok(None);
                };
                let Some((aws_credentials, aws_source)) =
                    self.aws_credentials(client, vars).await.map_err(failed)?
                else {
                    return Ok(None);
                };
                let token = ecr::authorization_token(client, &host, &aws_credentials, vars)
                    .await
                    .map_err(failed)?;
                let via = format!(
                    "Amazon ECR GetAuthorizationToken with AWS credentials from {aws_source}"
                );
                Some((token.credential, token.renew_at, via))
            }
            CredentialSource::Acr => acr::credential(client, want, vars).await.map_err(failed)?,
            CredentialSource::Buildkite => buildkite::credential(origin, repository, vars)
                .await
                .map_err(failed)?,
            CredentialSource::Env | CredentialSource::GitLab => None,
        })
    }

    fn remember(&self, origin: &str, via: &str) {
        if let Ok(mut tried) = self.tried.lock() {
            tried.insert(origin.to_ascii_lowercase(), via.to_owned());
        }
    }

    /// The chain's AWS credentials, reused while valid.
    async fn aws_credentials(
        &self,
        client: &reqwest::Client,
        vars: Vars<'_>,
    ) -> Result<Option<(AwsCredentials, AwsSource)>, String> {
        let mut cached = self.aws.lock().await;
        if let Some((credentials, source)) = cached.as_ref().filter(|(c, _)| {
            c.expires_unix
                .is_none_or(|at| at > super::clock::now_unix() + 300)
        }) {
            return Ok(Some((credentials.clone(), *source)));
        }
        let found = aws::credentials(client, vars).await?;
        cached.clone_from(&found);
        Ok(found)
    }

    /// Drops what is cached for `origin` (the registry refused it), so the next challenge
    /// fetches fresh credentials.
    pub(crate) async fn forget(&self, origin: &str) {
        let origin = origin.to_ascii_lowercase();
        let google = google::is_google_registry(&origin);
        self.tokens.lock().await.retain(|(source, key), _| {
            !(key == &origin
                || key.starts_with(&format!("{origin}/"))
                || (google && *source == CredentialSource::Google))
        });
        if ecr::parse_host(&origin).is_some() {
            *self.aws.lock().await = None;
        }
    }

    /// How credentials for `origin` were obtained, if a cloud source provided them.
    pub(crate) fn tried(&self, origin: &str) -> Option<String> {
        self.tried
            .lock()
            .ok()?
            .get(&origin.to_ascii_lowercase())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::aws::tests::table;
    use crate::auth::google::exchange_tests::token_endpoint;

    fn want(origin: &str) -> Want<'_> {
        Want {
            origin,
            registry: origin,
            repository: "p/i",
            realm: None,
        }
    }

    #[tokio::test]
    async fn cloud_tokens_are_fetched_once_shared_and_fetched_again_after_a_refusal() {
        let (token_uri, bodies) = token_endpoint(2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adc.json");
        std::fs::write(
            &path,
            serde_json::json!({"type": "authorized_user", "client_id": "c",
                "client_secret": "s", "refresh_token": "r", "token_uri": token_uri})
            .to_string(),
        )
        .unwrap();
        let shown = path.to_str().unwrap().to_owned();
        let pairs = [("GOOGLE_APPLICATION_CREDENTIALS", shown.as_str())];
        let vars = table(&pairs);
        let (cloud, client) = (Cloud::default(), reqwest::Client::new());
        let google = CredentialSource::Google;
        for registry in ["gcr.io", "europe-docker.pkg.dev", "gcr.io"] {
            let credential = cloud
                .credential(google, want(registry), &client, &vars)
                .await
                .unwrap();
            assert!(
                matches!(credential, Some(Credential::Basic { ref username, .. }) if username == "oauth2accesstoken")
            );
        }
        assert_eq!(
            bodies.lock().unwrap().len(),
            1,
            "one token for every Google registry"
        );
        assert!(
            cloud
                .tried("europe-docker.pkg.dev")
                .unwrap()
                .contains("authorized_user")
        );

        cloud.forget("gcr.io").await;
        cloud
            .credential(google, want("gcr.io"), &client, &vars)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            bodies.lock().unwrap().len(),
            2,
            "fetched again after a refusal"
        );

        // Hosts a source does not cover get nothing, and nothing is asked.
        for (source, host) in [
            (google, "gcr.io.attacker.net"),
            (
                CredentialSource::Ecr,
                "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil",
            ),
            (CredentialSource::Acr, "contoso.azurecr.io.evil"),
            (CredentialSource::Buildkite, "packages.buildkite.com.evil"),
        ] {
            let found = cloud
                .credential(source, want(host), &client, &vars)
                .await
                .unwrap();
            assert!(found.is_none(), "{host}");
            assert!(cloud.tried(host).is_none());
        }
    }
}
