//! The EC2 instance metadata service (IMDSv2): the instance profile's role credentials, as on
//! EC2-hosted CI runners. A session token is fetched with `PUT /latest/api/token` and sent on
//! each read. `AWS_EC2_METADATA_SERVICE_ENDPOINT` names another endpoint and
//! `AWS_EC2_METADATA_DISABLED=true` switches it off. Off EC2 the default address does not
//! answer within a second, or answers as another cloud's metadata server; both count as
//! absent, so anonymous pulls (public ECR) keep working elsewhere.

use std::time::Duration;

use serde::Deserialize;

use super::AwsCredentials;
use crate::auth::clock;
use crate::auth::cloud_http;
use crate::auth::secret::Secret;
use crate::auth::vars::Vars;

const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    #[serde(default)]
    code: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

pub(super) async fn credentials(
    client: &reqwest::Client,
    vars: Vars<'_>,
) -> Result<Option<AwsCredentials>, String> {
    if vars("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let configured = vars("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    let explicit = configured.is_some();
    let endpoint = configured
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
        .trim_end_matches('/')
        .to_owned();
    let failed = |detail: String| format!("instance metadata at {endpoint}: {detail}");
    let session = client
        .put(format!("{endpoint}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .timeout(PROBE_TIMEOUT);
    let answer = match cloud_http::send(session).await {
        Ok(answer) => answer,
        Err(_) if !explicit => return Ok(None),
        Err(detail) => return Err(failed(detail)),
    };
    if !answer.status.is_success() {
        // Another cloud's metadata server answers on the same address: not EC2.
        if !explicit {
            return Ok(None);
        }
        return Err(failed(format!("session token: {}", answer.failure())));
    }
    let token = String::from_utf8(answer.body)
        .map_err(|_| failed("the session token is not UTF-8".to_owned()))?;
    let token = Secret::new(token.trim());
    let roles = cloud_http::send(
        client
            .get(format!("{endpoint}{CREDENTIALS_PATH}"))
            .header(TOKEN_HEADER, token.expose()),
    )
    .await
    .map_err(failed)?;
    if roles.status == reqwest::StatusCode::NOT_FOUND {
        // An instance without an instance profile.
        return Ok(None);
    }
    if !roles.status.is_success() {
        return Err(failed(format!("role name: {}", roles.failure())));
    }
    let role = String::from_utf8_lossy(&roles.body)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if role.is_empty() || role.contains('/') {
        return Ok(None);
    }
    let answer = cloud_http::send(
        client
            .get(format!("{endpoint}{CREDENTIALS_PATH}{role}"))
            .header(TOKEN_HEADER, token.expose()),
    )
    .await
    .map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(format!(
            "credentials of role {role}: {}",
            answer.failure()
        )));
    }
    let parsed: Answer = answer.json("instance credentials").map_err(failed)?;
    if parsed.code.as_deref().is_some_and(|c| c != "Success") {
        return Err(failed(format!(
            "credentials of role {role}: Code {}",
            parsed.code.unwrap_or_default()
        )));
    }
    Ok(Some(AwsCredentials {
        access_key_id: parsed.access_key_id,
        secret_access_key: Secret::new(parsed.secret_access_key),
        session_token: parsed.token.map(Secret::new),
        expires_unix: parsed.expiration.as_deref().and_then(clock::parse_rfc3339),
    }))
}
