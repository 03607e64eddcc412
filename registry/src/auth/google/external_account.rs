//! An external-account file (workload identity federation): a subject token from another
//! identity provider (read from a file or URL, as text or a JSON field) exchanged at
//! Google's STS for a federated access token, optionally impersonating a service account.
//! AWS-sourced subject tokens (`environment_id: aws1`) are not supported.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{AccessToken, EARLY_RENEWAL, GoogleAuthError, SCOPE, exchange};
use crate::auth::cloud_http;
use crate::auth::{clock, secret::Secret};

const DEFAULT_STS: &str = "https://sts.googleapis.com/v1/token";
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

#[derive(Deserialize)]
struct ExternalAccount {
    #[serde(default)]
    audience: String,
    #[serde(default)]
    subject_token_type: String,
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    service_account_impersonation_url: Option<String>,
    credential_source: CredentialSource,
}

#[derive(Deserialize)]
struct CredentialSource {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    environment_id: Option<String>,
    #[serde(default)]
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Format {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    subject_token_field_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Impersonated {
    access_token: String,
    #[serde(default)]
    expire_time: Option<String>,
}

pub(super) async fn access_token(
    client: &reqwest::Client,
    path: &Path,
    text: &[u8],
) -> Result<AccessToken, GoogleAuthError> {
    let key_error = |detail: String| GoogleAuthError::Key {
        path: path.to_path_buf(),
        detail,
    };
    let account: ExternalAccount = serde_json::from_slice(text).map_err(|e| {
        key_error(format!(
            "not an external-account file (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    if account.audience.is_empty() || account.subject_token_type.is_empty() {
        return Err(key_error(
            "\"audience\" and \"subject_token_type\" are required".to_owned(),
        ));
    }
    let subject_token = subject_token(client, &account.credential_source)
        .await
        .map_err(key_error)?;
    let token_url = account
        .token_url
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_STS.to_owned());
    let body = cloud_http::form(&[
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("audience", &account.audience),
        ("scope", SCOPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("subject_token", subject_token.expose()),
        ("subject_token_type", &account.subject_token_type),
    ]);
    let federated = exchange(client, "STS token exchange", &token_url, body).await?;
    match account
        .service_account_impersonation_url
        .filter(|u| !u.is_empty())
    {
        Some(url) => impersonate(client, &url, &federated.token).await,
        None => Ok(federated),
    }
}

/// The subject token from the file or URL the credential source names.
async fn subject_token(
    client: &reqwest::Client,
    source: &CredentialSource,
) -> Result<Secret, String> {
    if source.environment_id.is_some() {
        return Err(
            "credential_source.environment_id (AWS-sourced subject tokens) is not supported"
                .to_owned(),
        );
    }
    let raw = match (&source.file, &source.url) {
        (Some(file), _) => std::fs::read_to_string(file)
            .map_err(|e| format!("reading the subject token file {file}: {e}"))?,
        (None, Some(url)) => {
            let mut request = client.get(url);
            for (name, value) in &source.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let answer = cloud_http::send(request)
                .await
                .map_err(|e| format!("fetching the subject token from {url}: {e}"))?;
            if !answer.status.is_success() {
                return Err(format!(
                    "fetching the subject token from {url}: {}",
                    answer.failure()
                ));
            }
            String::from_utf8(answer.body)
                .map_err(|_| format!("the subject token from {url} is not UTF-8"))?
        }
        (None, None) => {
            return Err("credential_source names neither \"file\" nor \"url\"".to_owned());
        }
    };
    let token = match &source.format {
        Some(Format {
            kind,
            subject_token_field_name,
        }) if kind == "json" => {
            let field = subject_token_field_name
                .as_deref()
                .ok_or("credential_source.format has no \"subject_token_field_name\"")?;
            let value: serde_json::Value = serde_json::from_str(&raw)
                .map_err(|_| "the subject token source is not JSON".to_owned())?;
            value
                .get(field)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("the subject token JSON has no string field {field:?}"))?
                .to_owned()
        }
        _ => raw.trim().to_owned(),
    };
    if token.is_empty() {
        return Err("the subject token is empty".to_owned());
    }
    Ok(Secret::new(token))
}

/// Exchanges the federated token for a service account's access token.
async fn impersonate(
    client: &reqwest::Client,
    url: &str,
    federated: &Secret,
) -> Result<AccessToken, GoogleAuthError> {
    let failed = |detail: String| GoogleAuthError::Exchange {
        what: "service account impersonation",
        token_uri: url.to_owned(),
        detail,
    };
    let answer = cloud_http::send(
        client
            .post(url)
            .bearer_auth(federated.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "scope": [SCOPE] }).to_string()),
    )
    .await
    .map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    let parsed: Impersonated = answer.json("generateAccessToken").map_err(failed)?;
    let expires = parsed
        .expire_time
        .as_deref()
        .and_then(clock::parse_rfc3339)
        .unwrap_or_else(|| clock::now_unix() + 3600);
    Ok(AccessToken {
        token: Secret::new(parsed.access_token),
        renew_at: clock::renew_at(expires, EARLY_RENEWAL),
    })
}
