//! Amazon ECR: `<account>.dkr.ecr(-fips)?.<region>.amazonaws.com(.cn)?` (the host pattern
//! of amazon-ecr-credential-helper, anchored at both ends) and public ECR
//! (`public.ecr.aws`). AWS credentials from the default chain sign a
//! `GetAuthorizationToken` call (SigV4); its token is `AWS:<password>` for Basic auth.
//!
//! `AWS_ENDPOINT_URL_ECR` / `AWS_ENDPOINT_URL_ECR_PUBLIC` / `AWS_ENDPOINT_URL` point the
//! call elsewhere (VPC endpoints, tests).

use std::time::Duration;

use base64::Engine as _;
use reqwest::Url;
use serde::Deserialize;

use super::aws::{self, AwsCredentials, sigv4};
use super::clock;
use super::cloud_http;
use super::secret::{Credential, Secret};
use super::vars::Vars;

/// Stop using an ECR token this long before it expires (they last 12 hours).
const EARLY_RENEWAL: Duration = Duration::from_secs(15 * 60);
/// The region public ECR's API lives in.
const PUBLIC_REGION: &str = "us-east-1";
pub(crate) const PUBLIC_HOST: &str = "public.ecr.aws";

/// An ECR registry host, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EcrHost {
    /// A private registry in `region`.
    Private {
        region: String,
        fips: bool,
        china: bool,
    },
    /// `public.ecr.aws`.
    Public,
}

/// The ECR registry `registry` names, if it is one. Whole-host match: no port, no extra
/// labels before the account or after the domain.
pub(crate) fn parse_host(registry: &str) -> Option<EcrHost> {
    let host = registry.to_ascii_lowercase();
    if host == PUBLIC_HOST {
        return Some(EcrHost::Public);
    }
    let (rest, china) = match host.strip_suffix(".amazonaws.com.cn") {
        Some(rest) => (rest, true),
        None => (host.strip_suffix(".amazonaws.com")?, false),
    };
    let (account, rest) = rest.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = rest
        .strip_prefix("dkr.ecr")
        .or_else(|| rest.strip_prefix("dkr-ecr"))?;
    let (fips, rest) = match rest.strip_prefix("-fips") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let region = rest.strip_prefix('.')?;
    let valid_region = region
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid_region.then(|| EcrHost::Private {
        region: region.to_owned(),
        fips,
        china,
    })
}

impl EcrHost {
    fn region(&self) -> &str {
        match self {
            EcrHost::Private { region, .. } => region,
            EcrHost::Public => PUBLIC_REGION,
        }
    }

    /// The API endpoint, honouring the `AWS_ENDPOINT_URL*` overrides.
    fn endpoint(&self, vars: Vars<'_>) -> String {
        match self {
            EcrHost::Public => aws::endpoint_override(vars, "ECR_PUBLIC")
                .unwrap_or_else(|| format!("https://api.ecr-public.{PUBLIC_REGION}.amazonaws.com")),
            EcrHost::Private {
                region,
                fips,
                china,
            } => aws::endpoint_override(vars, "ECR").unwrap_or_else(|| {
                let name = if *fips { "ecr-fips" } else { "api.ecr" };
                let domain = if *china {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://{name}.{region}.{domain}")
            }),
        }
    }

    fn service(&self) -> &'static str {
        match self {
            EcrHost::Private { .. } => "ecr",
            EcrHost::Public => "ecr-public",
        }
    }

    fn target(&self) -> &'static str {
        match self {
            EcrHost::Private { .. } => "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            EcrHost::Public => "SpencerFrontendService.GetAuthorizationToken",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: String,
    #[serde(default)]
    expires_at: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrivateAnswer {
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicAnswer {
    authorization_data: AuthorizationData,
}

/// A registry credential from ECR and when to renew it.
#[derive(Debug)]
pub(crate) struct EcrToken {
    pub credential: Credential,
    pub renew_at: std::time::Instant,
}

/// Calls `GetAuthorizationToken` for `host` signed with `credentials`.
pub(crate) async fn authorization_token(
    client: &reqwest::Client,
    host: &EcrHost,
    credentials: &AwsCredentials,
    vars: Vars<'_>,
) -> Result<EcrToken, String> {
    let endpoint = host.endpoint(vars);
    let failed = |detail: String| format!("GetAuthorizationToken at {endpoint}: {detail}");
    let url = Url::parse(&format!("{endpoint}/")).map_err(|e| failed(e.to_string()))?;
    let host_header = match (url.host_str(), url.port()) {
        (Some(h), Some(port)) => format!("{h}:{port}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(failed("the endpoint has no host".to_owned())),
    };
    let body = b"{}";
    let content_type = "application/x-amz-json-1.1";
    let target = host.target();
    let amz_date = clock::amz_date(clock::now_unix());
    let signed = sigv4::sign(
        &sigv4::Request {
            method: "POST",
            host: &host_header,
            path: url.path(),
            headers: &[("content-type", content_type), ("x-amz-target", target)],
            body,
        },
        &sigv4::Scope {
            region: host.region(),
            service: host.service(),
            amz_date: &amz_date,
        },
        credentials,
    );
    let mut request = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header("x-amz-target", target)
        .body(body.as_slice());
    for (name, value) in signed {
        request = request.header(name, value);
    }
    let answer = cloud_http::send(request).await.map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    let data = match host {
        EcrHost::Private { .. } => answer
            .json::<PrivateAnswer>("GetAuthorizationToken")
            .map_err(failed)?
            .authorization_data
            .into_iter()
            .next()
            .ok_or_else(|| failed("the answer has no authorizationData".to_owned()))?,
        EcrHost::Public => {
            answer
                .json::<PublicAnswer>("GetAuthorizationToken")
                .map_err(failed)?
                .authorization_data
        }
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| failed("authorizationToken is not base64 of user:password".to_owned()))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| failed("authorizationToken is not base64 of user:password".to_owned()))?;
    let expires = data
        .expires_at
        .map_or(clock::now_unix() + 12 * 3600, |at| at.max(0.0) as u64);
    Ok(EcrToken {
        credential: Credential::Basic {
            username: username.to_owned(),
            password: Secret::new(password),
        },
        renew_at: clock::renew_at(expires, EARLY_RENEWAL),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts_match_the_whole_name_only() {
        let private = |region: &str, fips, china| {
            Some(EcrHost::Private {
                region: region.to_owned(),
                fips,
                china,
            })
        };
        for (host, want) in [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                private("us-east-1", false, false),
            ),
            (
                "123456789012.DKR.ECR.eu-west-1.amazonaws.com",
                private("eu-west-1", false, false),
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                private("us-gov-west-1", true, false),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                private("cn-north-1", false, true),
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.amazonaws.com",
                private("eu-west-1", false, false),
            ),
            ("public.ecr.aws", Some(EcrHost::Public)),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com.attacker.net",
                None,
            ),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", None),
            ("x.123456789012.dkr.ecr.us-east-1.amazonaws.com", None),
            ("12345678901.dkr.ecr.us-east-1.amazonaws.com", None),
            ("1234567890123.dkr.ecr.us-east-1.amazonaws.com", None),
            ("abcdefghijkl.dkr.ecr.us-east-1.amazonaws.com", None),
            ("123456789012.dkr.ecr.us-east-1.evil.amazonaws.com", None),
            ("123456789012.dkr.ecr..amazonaws.com", None),
            ("123456789012.dkr.ecrx.us-east-1.amazonaws.com", None),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.company", None),
            ("evil-amazonaws.com", None),
            ("public.ecr.aws.attacker.net", None),
            ("xpublic.ecr.aws", None),
        ] {
            assert_eq!(parse_host(host), want, "{host}");
        }
    }

    #[test]
    fn endpoints_follow_partition_and_fips_and_honour_overrides() {
        let none = |_: &str| None;
        let endpoint = |host: &str| parse_host(host).unwrap().endpoint(&none);
        assert_eq!(
            endpoint("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            "https://api.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
            "https://ecr-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            "https://api.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            endpoint("public.ecr.aws"),
            "https://api.ecr-public.us-east-1.amazonaws.com"
        );
        let vars =
            |name: &str| (name == "AWS_ENDPOINT_URL_ECR").then(|| "http://127.0.0.1:1".to_owned());
        assert_eq!(
            parse_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
                .unwrap()
                .endpoint(&vars),
            "http://127.0.0.1:1"
        );
    }
}
