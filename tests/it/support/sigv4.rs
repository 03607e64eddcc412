//! Checks an AWS Signature Version 4 the way AWS does: the canonical request rebuilt from the
//! request exactly as received (method, path, the signed headers, the body), signed with the
//! secret key the fake issued. Written independently of kiln's signer.

use aws_lc_rs::hmac;
use sha2::{Digest, Sha256};

use super::fake_cloud::Request;

/// What a valid signature was made for.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed {
    pub access_key: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// Verifies `request`'s signature with `secret`; `Err` says what does not match.
pub fn verify(request: &Request, secret: &str) -> Result<Signed, String> {
    let authorization = request
        .header("authorization")
        .ok_or("no Authorization header")?;
    let rest = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim) {
        let (k, v) = part.split_once('=').ok_or("malformed Authorization")?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(format!("unexpected {k}")),
        }
    }
    let (credential, signed_headers, signature) = (
        credential.ok_or("no Credential")?,
        signed_headers.ok_or("no SignedHeaders")?,
        signature.ok_or("no Signature")?,
    );
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("bad credential scope {credential}"));
    };
    let amz_date = request.header("x-amz-date").ok_or("no X-Amz-Date")?;
    if !amz_date.starts_with(date) {
        return Err("X-Amz-Date does not match the credential scope".into());
    }
    let names: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    for required in ["host", "x-amz-date"] {
        if !names.iter().any(|n| n == required) {
            return Err(format!("{required} is not signed"));
        }
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<&str> = request
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} was not sent"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let canonical = format!(
        "{}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        hex(&Sha256::digest(request.body.as_bytes()))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let key = mac(format!("AWS4{secret}").as_bytes(), date);
    let key = mac(&key, region);
    let key = mac(&key, service);
    let key = mac(&key, "aws4_request");
    let expected = hex(&mac(&key, &to_sign));
    if expected != signature {
        return Err("signature mismatch".into());
    }
    Ok(Signed {
        access_key: access_key.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: names,
    })
}
