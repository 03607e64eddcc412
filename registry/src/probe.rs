//! The push-access probe: Kaniko's `CheckPushPermissions`, so a build that could never be
//! pushed fails in seconds instead of after its last step.

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::client::{Access, Call, Client};
use crate::error::{Error, Operation};
use crate::reference::Reference;
use crate::transport::{RequestSpec, Target};
use crate::upload::resolve_location;

impl Client {
    /// Kaniko's `CheckPushPermissions`: opens an upload session and cancels it, so a build
    /// that could never be pushed fails before it runs rather than after.
    pub async fn check_push_access(&self, repo: &Reference) -> Result<(), Error> {
        let target = repo.to_string();
        let call = Call {
            operation: Operation::CheckPushAccess,
            target: &target,
            registry: repo.registry(),
            origin: repo.origin(),
            repository: repo.repository(),
            access: Access::Push,
        };
        let start = RequestSpec::new(
            Method::POST,
            Target::Path(format!("/v2/{}/blobs/uploads/", repo.repository())),
        )
        .header(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self
            .with_retries(Access::Push, || {
                self.execute_expecting(&call, &start, &[StatusCode::ACCEPTED])
            })
            .await?;
        let session = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| resolve_location(response.url(), l).ok());
        if let Some(session) = session {
            let cancel = RequestSpec::new(Method::DELETE, Target::Absolute(session));
            // Registries that cannot cancel let the session expire; that is harmless.
            match self.execute(&call, &cancel).await {
                Ok(response) => {
                    tracing::debug!(status = %response.status(), "cancelled the probe upload")
                }
                Err(error) => tracing::debug!("cancelling the probe upload: {error}"),
            }
        }
        Ok(())
    }
}
