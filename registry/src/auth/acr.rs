//! Azure Container Registry (`<name>.azurecr.io`, and the `.cn`/`.us` clouds; whole-host
//! match): a Microsoft Entra ID token for the service principal in `AZURE_CLIENT_ID` /
//! `AZURE_TENANT_ID`, authenticated by `AZURE_CLIENT_SECRET` or, under workload identity,
//! the federated token in `AZURE_FEDERATED_TOKEN_FILE` (`AZURE_AUTHORITY_HOST` honoured), or
//! else a managed identity's token from the instance metadata service, is exchanged at the
//! registry's `/oauth2/exchange` for an ACR refresh token. That refresh token then answers the
//! registry's Bearer challenge as an identity token does.
//!
//! The exchange endpoint is the origin of the registry's token realm
//! (`https://<name>.azurecr.io/oauth2/token` -> `/oauth2/exchange`), so it is only
//! attempted when answering a Bearer challenge, and only when the realm is on the ACR host
//! itself or on the host actually contacted (a `--registry-map` target the user chose): the
//! Entra ID token is good for every registry of the tenant and must not go to a third host a
//! challenge names.

use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header;
use serde::Deserialize;

use super::cloud::Want;
use super::cloud_http;
use super::secret::{Credential, Secret};
use super::vars::Vars;

const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const DEFAULT_IMDS: &str = "http://169.254.169.254";
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The resource managed identities ask for (the v1 form of [`SCOPE`]).
const RESOURCE: &str = "https://containerregistry.azure.net";
const SCOPE: &str = "https://containerregistry.azure.net/.default";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const EARLY_RENEWAL: Duration = Duration::from_secs(300);
const DOMAINS: [&str; 3] = [".azurecr.io", ".azurecr.cn", ".azurecr.us"];

/// Whether `registry` is an ACR registry: one alphanumeric label before an ACR domain.
pub(crate) fn is_acr_registry(registry: &str) -> bool {
    let host = registry.to_ascii_lowercase();
    DOMAINS.iter().any(|domain| {
        host.strip_suffix(domain)
            .is_some_and(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric()))
    })
}

#[derive(Deserialize)]
struct AadAnswer {
    access_token: String,
    /// A number from Entra ID, a string from the instance metadata service.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl AadAnswer {
    fn lifetime(&self) -> Duration {
        let seconds = match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        Duration::from_secs(seconds.unwrap_or(3600))
    }
}

#[derive(Deserialize)]
struct ExchangeAnswer {
    refresh_token: String,
}

/// An Entra ID access token for ACR and what it came from.
struct EntraToken {
    answer: AadAnswer,
    /// Sent with the exchange when known (service principals); managed identities omit it.
    tenant: Option<String>,
    via: String,
}

/// An ACR refresh token for `origin`, obtained through the exchange next to the Bearer
/// realm; `None` without an Azure identity or without a realm.
pub(crate) async fn credential(
    client: &reqwest::Client,
    want: Want<'_>,
    vars: Vars<'_>,
) -> Result<Option<(Credential, Instant, String)>, String> {
    let origin = want.origin;
    let Some(realm) = want.realm else {
        return Ok(None);
    };
    let exchange_url = exchange_url(realm, origin, want.registry)?;
    let entra = match service_principal(client, vars).await? {
        Some(token) => token,
        None => match managed_identity(client, vars).await? {
            Some(token) => token,
            None => return Ok(None),
        },
    };
    let failed = |detail: String| format!("ACR token exchange at {exchange_url}: {detail}");
    let service = origin.to_ascii_lowercase();
    let mut form = vec![
        ("grant_type", "access_token"),
        ("service", service.as_str()),
        ("access_token", entra.answer.access_token.as_str()),
    ];
    if let Some(tenant) = &entra.tenant {
        form.push(("tenant", tenant.as_str()));
    }
    let answer = cloud_http::send(
        client
            .post(exchange_url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(cloud_http::form(&form)),
    )
    .await
    .map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    let exchanged: ExchangeAnswer = answer.json("ACR exchange").map_err(failed)?;
    Ok(Some((
        Credential::IdentityToken(Secret::new(exchanged.refresh_token)),
        Instant::now() + entra.answer.lifetime().saturating_sub(EARLY_RENEWAL),
        format!("an ACR refresh token for {}", entra.via),
    )))
}

/// A service principal's token: `AZURE_CLIENT_ID` + `AZURE_TENANT_ID` with a secret or a
/// federated token file (workload identity).
async fn service_principal(
    client: &reqwest::Client,
    vars: Vars<'_>,
) -> Result<Option<EntraToken>, String> {
    let (Some(client_id), Some(tenant)) = (vars("AZURE_CLIENT_ID"), vars("AZURE_TENANT_ID")) else {
        return Ok(None);
    };
    let (secret_pair, via) = if let Some(secret) = vars("AZURE_CLIENT_SECRET") {
        (("client_secret", secret), "AZURE_CLIENT_SECRET")
    } else if let Some(file) = vars("AZURE_FEDERATED_TOKEN_FILE") {
        let assertion = std::fs::read_to_string(&file)
            .map_err(|e| format!("reading AZURE_FEDERATED_TOKEN_FILE {file}: {e}"))?;
        (
            ("client_assertion", assertion.trim().to_owned()),
            "AZURE_FEDERATED_TOKEN_FILE",
        )
    } else {
        return Ok(None);
    };
    let authority = vars("AZURE_AUTHORITY_HOST")
        .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned())
        .trim_end_matches('/')
        .to_owned();
    let token_url = format!("{authority}/{tenant}/oauth2/v2.0/token");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id.as_str()),
        ("scope", SCOPE),
    ];
    if secret_pair.0 == "client_assertion" {
        form.push(("client_assertion_type", ASSERTION_TYPE));
    }
    form.push((secret_pair.0, secret_pair.1.as_str()));
    let failed = |detail: String| format!("Entra ID token at {token_url}: {detail}");
    let answer = cloud_http::send(
        client
            .post(&token_url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(cloud_http::form(&form)),
    )
    .await
    .map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    Ok(Some(EntraToken {
        answer: answer.json("Entra ID token").map_err(failed)?,
        tenant: Some(tenant),
        via: format!("Azure client {client_id} ({via})"),
    }))
}

/// A managed identity's token from the instance metadata service (Azure VMs, AKS node
/// identity); `AZURE_CLIENT_ID` picks a user-assigned identity and
/// `AZURE_POD_IDENTITY_AUTHORITY_HOST` another endpoint (as in Azure's SDKs). Off Azure the
/// default address does not answer within a second and counts as absent.
async fn managed_identity(
    client: &reqwest::Client,
    vars: Vars<'_>,
) -> Result<Option<EntraToken>, String> {
    let configured = vars("AZURE_POD_IDENTITY_AUTHORITY_HOST");
    let explicit = configured.is_some();
    let endpoint = configured
        .unwrap_or_else(|| DEFAULT_IMDS.to_owned())
        .trim_end_matches('/')
        .to_owned();
    let url = format!("{endpoint}/metadata/identity/oauth2/token");
    let failed = |detail: String| format!("managed identity token at {url}: {detail}");
    let client_id = vars("AZURE_CLIENT_ID");
    let mut query = vec![("api-version", "2018-02-01"), ("resource", RESOURCE)];
    if let Some(id) = &client_id {
        query.push(("client_id", id.as_str()));
    }
    let mut request = client
        .get(format!("{url}?{}", cloud_http::form(&query)))
        .header("Metadata", "true");
    if !explicit {
        request = request.timeout(IMDS_PROBE_TIMEOUT);
    }
    let answer = match cloud_http::send(request).await {
        Ok(answer) => answer,
        Err(_) if !explicit => return Ok(None),
        Err(detail) => return Err(failed(detail)),
    };
    if !answer.status.is_success() {
        // No managed identity here, or another cloud's metadata server on the same address.
        if !explicit {
            return Ok(None);
        }
        return Err(failed(answer.failure()));
    }
    let who = client_id.map_or_else(
        || "the system-assigned managed identity".to_owned(),
        |id| format!("managed identity {id}"),
    );
    Ok(Some(EntraToken {
        answer: answer.json("managed identity token").map_err(failed)?,
        tenant: None,
        via: who,
    }))
}

/// `/oauth2/exchange` next to `realm`, if the realm is on the ACR host or the contacted host.
fn exchange_url(realm: &str, origin: &str, contacted: &str) -> Result<Url, String> {
    let url = Url::parse(realm)
        .and_then(|u| u.join("/oauth2/exchange"))
        .map_err(|e| format!("the registry's token realm {realm:?} is not a URL: {e}"))?;
    let host_of = |registry: &str| {
        registry
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(registry, |(host, _)| host)
            .to_ascii_lowercase()
    };
    let realm_host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if realm_host != host_of(origin) && realm_host != host_of(contacted) {
        return Err(format!(
            "the registry's token realm is on {realm_host}, neither {origin} nor {contacted}: \
             the Entra ID token is not sent there"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_hosts_match_one_label_before_the_domain_only() {
        for (host, want) in [
            ("myregistry.azurecr.io", true),
            ("MyRegistry.AzureCR.io", true),
            ("contoso.azurecr.cn", true),
            ("azurecr.io", false),
            (".azurecr.io", false),
            ("a.b.azurecr.io", false),
            ("my-registry.azurecr.io", false),
            ("myregistry.azurecr.io.attacker.net", false),
            ("myregistry.azurecr.io:443", false),
            ("evilazurecr.io", false),
            ("myregistry.azurecr.iox", false),
        ] {
            assert_eq!(is_acr_registry(host), want, "{host}");
        }
    }

    #[test]
    fn the_exchange_is_next_to_a_realm_on_the_acr_host_or_the_mirror_only() {
        let url = |realm: &str, contacted: &str| {
            exchange_url(realm, "contoso.azurecr.io", contacted).map(|u| u.to_string())
        };
        assert_eq!(
            url(
                "https://contoso.azurecr.io/oauth2/token",
                "contoso.azurecr.io"
            )
            .unwrap(),
            "https://contoso.azurecr.io/oauth2/exchange"
        );
        assert_eq!(
            url("http://127.0.0.1:5001/token", "127.0.0.1:5000").unwrap(),
            "http://127.0.0.1:5001/oauth2/exchange"
        );
        let refused = url("https://attacker.net/oauth2/token", "contoso.azurecr.io").unwrap_err();
        assert!(refused.contains("attacker.net"), "{refused}");
        assert!(
            url(
                "https://contoso.azurecr.io.attacker.net/t",
                "contoso.azurecr.io"
            )
            .is_err()
        );
    }
}
