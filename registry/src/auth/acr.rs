//! Azure Container Registry (`<name>.azurecr.io`, and the `.cn`/`.us` clouds; whole-host
//! match): a Microsoft Entra ID token for the service principal in `AZURE_CLIENT_ID` /
//! `AZURE_TENANT_ID`, authenticated by `AZURE_CLIENT_SECRET` or, under workload identity,
//! the federated token in `AZURE_FEDERATED_TOKEN_FILE` (`AZURE_AUTHORITY_HOST` honoured), is
//! exchanged at the registry's `/oauth2/exchange` for an ACR refresh token. That refresh
//! token then answers the registry's Bearer challenge as an identity token does.
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
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ExchangeAnswer {
    refresh_token: String,
}

/// An ACR refresh token for `origin`, obtained through the exchange next to `realm`;
/// `None` without Azure service-principal variables or without a realm.
pub(crate) async fn credential(
    client: &reqwest::Client,
    want: Want<'_>,
    vars: Vars<'_>,
) -> Result<Option<(Credential, Instant, String)>, String> {
    let origin = want.origin;
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
    let Some(realm) = want.realm else {
        return Ok(None);
    };
    let exchange_url = exchange_url(realm, origin, want.registry)?;
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
    let aad: AadAnswer = answer.json("Entra ID token").map_err(failed)?;

    let failed = |detail: String| format!("ACR token exchange at {exchange_url}: {detail}");
    let service = origin.to_ascii_lowercase();
    let answer = cloud_http::send(
        client
            .post(exchange_url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(cloud_http::form(&[
                ("grant_type", "access_token"),
                ("service", &service),
                ("tenant", &tenant),
                ("access_token", &aad.access_token),
            ])),
    )
    .await
    .map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    let exchanged: ExchangeAnswer = answer.json("ACR exchange").map_err(failed)?;
    let lifetime = Duration::from_secs(aad.expires_in.unwrap_or(3600));
    Ok(Some((
        Credential::IdentityToken(Secret::new(exchanged.refresh_token)),
        Instant::now() + lifetime.saturating_sub(EARLY_RENEWAL),
        format!("an ACR refresh token for Azure client {client_id} ({via})"),
    )))
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
