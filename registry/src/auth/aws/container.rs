//! The container credentials endpoint (ECS task roles, EKS Pod Identity):
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`, or `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` below
//! `http://169.254.170.2`, with `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)` as the
//! `Authorization` header when set.

use serde::Deserialize;

use super::AwsCredentials;
use crate::auth::clock;
use crate::auth::cloud_http;
use crate::auth::secret::Secret;
use crate::auth::vars::Vars;

const ECS_HOST: &str = "http://169.254.170.2";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
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
    let url = match (
        vars("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        vars("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => format!("{ECS_HOST}{relative}"),
        (None, Some(full)) => full,
        (None, None) => return Ok(None),
    };
    let failed = |detail: String| format!("container credentials from {url}: {detail}");
    let token = match vars("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| failed(format!("reading {path}: {e}")))?
                .trim()
                .to_owned(),
        ),
        None => vars("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    };
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.header(reqwest::header::AUTHORIZATION, token);
    }
    let answer = cloud_http::send(request).await.map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    let parsed: Answer = answer.json("container credentials").map_err(failed)?;
    Ok(Some(AwsCredentials {
        access_key_id: parsed.access_key_id,
        secret_access_key: Secret::new(parsed.secret_access_key),
        session_token: parsed.token.map(Secret::new),
        expires_unix: parsed.expiration.as_deref().and_then(clock::parse_rfc3339),
    }))
}
