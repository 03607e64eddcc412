//! The metadata server's access token for the instance's (or GKE workload identity's)
//! service account. `GCE_METADATA_HOST` names another host (as in Google's libraries);
//! without it, an unreachable default host simply means "not on Google Cloud".

use std::time::Duration;

use super::{AccessToken, GoogleAuthError, token_from};
use crate::auth::cloud_http;
use crate::auth::vars::Vars;

const DEFAULT_HOST: &str = "169.254.169.254";
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Off Google Cloud the link-local address does not answer; do not wait long for it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn access_token(
    client: &reqwest::Client,
    vars: Vars<'_>,
) -> Result<Option<AccessToken>, GoogleAuthError> {
    let configured = vars("GCE_METADATA_HOST").or_else(|| vars("GCE_METADATA_ROOT"));
    let explicit = configured.is_some();
    let host = configured.unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let url = format!("http://{host}{TOKEN_PATH}");
    let failed = |detail: String| GoogleAuthError::Exchange {
        what: "metadata server",
        token_uri: url.clone(),
        detail,
    };
    let mut request = client.get(&url).header("Metadata-Flavor", "Google");
    if !explicit {
        request = request.timeout(PROBE_TIMEOUT);
    }
    let answer = match cloud_http::send(request).await {
        Ok(answer) => answer,
        Err(_) if !explicit => return Ok(None),
        Err(detail) => return Err(failed(detail)),
    };
    let flavored = answer
        .headers
        .get("metadata-flavor")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Google"));
    if !flavored {
        return if explicit {
            Err(failed(
                "the answer lacks \"Metadata-Flavor: Google\" (not a metadata server)".to_owned(),
            ))
        } else {
            Ok(None)
        };
    }
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    token_from(&answer).map(Some).map_err(failed)
}
