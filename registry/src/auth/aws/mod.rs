//! AWS credentials for ECR, found the way the AWS SDKs' default chain finds them: access
//! keys in the environment, then the shared `credentials`/`config` files' profile, then web
//! identity (EKS IRSA: `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, exchanged at STS),
//! then the container credentials endpoint (ECS, EKS Pod Identity), then the EC2 instance
//! metadata service (IMDSv2).

mod container;
mod imds;
mod profile;
pub(crate) mod sigv4;
mod web_identity;

use std::fmt;

use super::secret::Secret;
use super::vars::Vars;

/// One set of AWS credentials.
#[derive(Clone)]
pub(crate) struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// When temporary credentials expire (seconds since the epoch).
    pub expires_unix: Option<u64>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_unix", &self.expires_unix)
            .finish_non_exhaustive()
    }
}

/// Which link of the chain provided credentials, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwsSource {
    Environment,
    Profile,
    WebIdentity,
    Container,
    InstanceMetadata,
}

impl fmt::Display for AwsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AwsSource::Environment => "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            AwsSource::Profile => "the shared AWS credentials/config files",
            AwsSource::WebIdentity => {
                "web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE via STS)"
            }
            AwsSource::Container => "the container credentials endpoint",
            AwsSource::InstanceMetadata => "the EC2 instance metadata service (instance profile)",
        })
    }
}

/// The region from `AWS_REGION`, else `AWS_DEFAULT_REGION`.
pub(crate) fn region(vars: Vars<'_>) -> Option<String> {
    vars("AWS_REGION").or_else(|| vars("AWS_DEFAULT_REGION"))
}

/// The endpoint for `service` (`ECR`, `ECR_PUBLIC`, `STS`) when overridden by
/// `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL`.
pub(crate) fn endpoint_override(vars: Vars<'_>, service: &str) -> Option<String> {
    vars(&format!("AWS_ENDPOINT_URL_{service}"))
        .or_else(|| vars("AWS_ENDPOINT_URL"))
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// The first credentials the chain yields, and where from; `Ok(None)` when no link applies.
pub(crate) async fn credentials(
    client: &reqwest::Client,
    vars: Vars<'_>,
) -> Result<Option<(AwsCredentials, AwsSource)>, String> {
    if let Some(credentials) = from_environment(vars) {
        return Ok(Some((credentials, AwsSource::Environment)));
    }
    if let Some(credentials) = profile::credentials(vars)? {
        return Ok(Some((credentials, AwsSource::Profile)));
    }
    if let Some(credentials) = web_identity::credentials(client, vars).await? {
        return Ok(Some((credentials, AwsSource::WebIdentity)));
    }
    if let Some(credentials) = container::credentials(client, vars).await? {
        return Ok(Some((credentials, AwsSource::Container)));
    }
    if let Some(credentials) = imds::credentials(client, vars).await? {
        return Ok(Some((credentials, AwsSource::InstanceMetadata)));
    }
    Ok(None)
}

fn from_environment(vars: Vars<'_>) -> Option<AwsCredentials> {
    Some(AwsCredentials {
        access_key_id: vars("AWS_ACCESS_KEY_ID")?,
        secret_access_key: Secret::new(vars("AWS_SECRET_ACCESS_KEY")?),
        session_token: vars("AWS_SESSION_TOKEN").map(Secret::new),
        expires_unix: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A variable lookup over a fixed table (empty values count as unset, as in [`Vars`]).
    pub(crate) fn table(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        }
    }

    #[tokio::test]
    async fn environment_keys_come_first_with_their_session_token() {
        let vars = table(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-session"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent"),
        ]);
        let (found, source) = credentials(&reqwest::Client::new(), &vars)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(source, AwsSource::Environment);
        assert_eq!(found.access_key_id, "AKIAENV");
        assert_eq!(found.session_token.unwrap().expose(), "env-session");
        assert!(!format!("{:?}", from_environment(&vars)).contains("env-secret"));
    }

    #[tokio::test]
    async fn nothing_configured_is_no_credentials() {
        let vars = table(&[
            ("HOME", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        assert!(
            credentials(&reqwest::Client::new(), &vars)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn endpoint_overrides_prefer_the_service_variable() {
        let vars = table(&[
            ("AWS_ENDPOINT_URL", "http://all.local/"),
            ("AWS_ENDPOINT_URL_STS", "http://sts.local"),
        ]);
        assert_eq!(
            endpoint_override(&vars, "STS").as_deref(),
            Some("http://sts.local")
        );
        assert_eq!(
            endpoint_override(&vars, "ECR").as_deref(),
            Some("http://all.local")
        );
    }
}
