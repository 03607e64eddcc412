//! Web identity (EKS IRSA): the projected service-account token in
//! `AWS_WEB_IDENTITY_TOKEN_FILE` exchanged for temporary credentials for `AWS_ROLE_ARN` with
//! STS `AssumeRoleWithWebIdentity` (an unsigned call). The STS endpoint is regional when
//! `AWS_REGION` is set, and `AWS_ENDPOINT_URL_STS`/`AWS_ENDPOINT_URL` override it.

use super::AwsCredentials;
use crate::auth::clock;
use crate::auth::cloud_http::{self, xml_tag};
use crate::auth::secret::Secret;
use crate::auth::vars::Vars;

const SESSION_SECONDS: &str = "3600";

/// The STS endpoint to call.
pub(crate) fn sts_endpoint(vars: Vars<'_>) -> String {
    if let Some(url) = super::endpoint_override(vars, "STS") {
        return url;
    }
    match super::region(vars) {
        Some(region) if region.starts_with("cn-") => {
            format!("https://sts.{region}.amazonaws.com.cn")
        }
        Some(region) => format!("https://sts.{region}.amazonaws.com"),
        None => "https://sts.amazonaws.com".to_owned(),
    }
}

pub(super) async fn credentials(
    client: &reqwest::Client,
    vars: Vars<'_>,
) -> Result<Option<AwsCredentials>, String> {
    let (Some(role_arn), Some(token_file)) =
        (vars("AWS_ROLE_ARN"), vars("AWS_WEB_IDENTITY_TOKEN_FILE"))
    else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(&token_file)
        .map_err(|e| format!("reading AWS_WEB_IDENTITY_TOKEN_FILE {token_file}: {e}"))?;
    let session_name =
        vars("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| format!("kiln-{}", clock::now_unix()));
    let endpoint = sts_endpoint(vars);
    let body = cloud_http::form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", &role_arn),
        ("RoleSessionName", &session_name),
        ("DurationSeconds", SESSION_SECONDS),
        ("WebIdentityToken", token.trim()),
    ]);
    let failed = |detail: String| {
        format!("AssumeRoleWithWebIdentity for {role_arn} at {endpoint}: {detail}")
    };
    let answer = cloud_http::send(
        client
            .post(format!("{endpoint}/"))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body),
    )
    .await
    .map_err(failed)?;
    if !answer.status.is_success() {
        return Err(failed(answer.failure()));
    }
    let field = |tag: &str| {
        xml_tag(&answer.body, tag)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| failed(format!("the answer has no <{tag}>")))
    };
    Ok(Some(AwsCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: Secret::new(field("SecretAccessKey")?),
        session_token: Some(Secret::new(field("SessionToken")?)),
        expires_unix: field("Expiration")
            .ok()
            .and_then(|e| clock::parse_rfc3339(&e)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::aws::tests::table;

    #[test]
    fn sts_is_regional_when_a_region_is_set_and_overridable() {
        assert_eq!(sts_endpoint(&table(&[])), "https://sts.amazonaws.com");
        assert_eq!(
            sts_endpoint(&table(&[("AWS_DEFAULT_REGION", "eu-west-1")])),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            sts_endpoint(&table(&[("AWS_REGION", "cn-north-1")])),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            sts_endpoint(&table(&[
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9/")
            ])),
            "http://127.0.0.1:9"
        );
    }
}
