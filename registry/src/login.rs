//! Checking credentials before `kiln login` saves them, as `docker login` does: a `GET /v2/`
//! answered through the registry's own challenge (Basic, or a Bearer token fetched with the
//! credentials), so a typo fails at login rather than in the middle of a build.

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode};

use crate::auth::challenge::{self, Challenge};
use crate::auth::secret::Credential;
use crate::auth::token;
use crate::client::{Access, Call, Client};
use crate::error::{AuthHint, Error, Operation};
use crate::transport::{RequestSpec, Target};

impl Client {
    /// Verifies `credential` against `registry` (`host[:port]`): `Ok` when the registry
    /// accepts it (or asks for no credentials at all), else the registry's refusal.
    pub async fn verify_login(&self, registry: &str, credential: &Credential) -> Result<(), Error> {
        let call = Call {
            operation: Operation::Login,
            target: registry,
            registry,
            origin: registry,
            repository: "",
            access: Access::Pull,
        };
        let ping = RequestSpec::new(Method::GET, Target::Path("/v2/".to_owned()));
        let response = self.send(&call, &ping, None).await?;
        if response.status() == StatusCode::OK {
            return Ok(());
        }
        if response.status() != StatusCode::UNAUTHORIZED {
            return Err(self.status_error(&call, response).await);
        }
        let challenges = challenge::parse(
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let hint = AuthHint(Some(format!(
            "the registry refused the user name and password given for {registry}"
        )));
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => Some((realm, service, scope)),
            _ => None,
        });
        let header = if let Some((realm, service, scope)) = bearer {
            let scopes: Vec<String> = scope.iter().filter(|s| !s.is_empty()).cloned().collect();
            let token = token::fetch(
                self.http_client(registry, Access::Pull),
                token::TokenRequest {
                    realm,
                    service: service.as_deref(),
                    scopes: &scopes,
                    credential: Some(credential),
                    target: registry,
                    hint: hint.clone(),
                },
            )
            .await?;
            Some(token.header)
        } else if challenges.contains(&Challenge::Basic) {
            credential.basic_header()
        } else {
            None
        };
        let Some(header) = header else {
            return Err(Error::protocol(
                Operation::Login,
                registry,
                "the registry asks for credentials in a way kiln cannot answer",
            ));
        };
        let response = self.send(&call, &ping, Some(&header)).await?;
        if response.status() == StatusCode::OK {
            return Ok(());
        }
        Err(crate::response::status_error(response, Operation::Login, registry, hint).await)
    }
}
