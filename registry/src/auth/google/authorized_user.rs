//! An authorized-user file (what `gcloud auth application-default login` writes): its
//! refresh token exchanged for an access token at `token_uri` (Google's by default).

use std::path::Path;

use serde::Deserialize;

use super::{AccessToken, DEFAULT_TOKEN_URI, GoogleAuthError, exchange};
use crate::auth::cloud_http;

#[derive(Deserialize)]
struct AuthorizedUser {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    token_uri: Option<String>,
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
    let user: AuthorizedUser = serde_json::from_slice(text).map_err(|e| {
        key_error(format!(
            "not an authorized-user file (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    for (field, value) in [
        ("client_id", &user.client_id),
        ("client_secret", &user.client_secret),
        ("refresh_token", &user.refresh_token),
    ] {
        if value.is_empty() {
            return Err(key_error(format!("\"{field}\" is missing")));
        }
    }
    let token_uri = user
        .token_uri
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
    let body = cloud_http::form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &user.client_id),
        ("client_secret", &user.client_secret),
        ("refresh_token", &user.refresh_token),
    ]);
    exchange(client, "refresh token", &token_uri, body).await
}

#[cfg(test)]
mod tests {
    use super::super::exchange_tests::token_endpoint;
    use crate::auth::google::application_default;

    #[tokio::test]
    async fn an_authorized_user_refresh_token_is_exchanged_at_its_token_uri() {
        let (token_uri, bodies) = token_endpoint(1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adc.json");
        std::fs::write(
            &path,
            serde_json::json!({
                "type": "authorized_user",
                "client_id": "client.apps.googleusercontent.com",
                "client_secret": "client-secret",
                "refresh_token": "1//refresh/token",
                "token_uri": token_uri,
            })
            .to_string(),
        )
        .unwrap();
        let shown = path.to_str().unwrap().to_owned();
        let vars =
            move |name: &str| (name == "GOOGLE_APPLICATION_CREDENTIALS").then(|| shown.clone());
        let (token, via) = application_default(&reqwest::Client::new(), &vars)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(token.token.expose(), "ya29.fake-access-token");
        assert!(via.contains("authorized_user"), "{via}");
        assert_eq!(
            bodies.lock().unwrap()[0],
            "grant_type=refresh_token&client_id=client.apps.googleusercontent.com\
             &client_secret=client-secret&refresh_token=1%2F%2Frefresh%2Ftoken"
        );
    }
}
