//! Monolithic blob upload streamed from a file: `POST /blobs/uploads/`, then
//! `PUT <location>?digest=` with the whole file as the body.

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::client::{Access, Call, Client};
use crate::digest;
use crate::error::{Error, Operation};
use crate::reference::Reference;
use crate::transport::{Body, RequestSpec, Target};

/// Resolves an upload `Location` (absolute, or relative to the URL that returned it) and
/// adds the `digest` parameter, keeping any query the registry put there (upload state).
pub(crate) fn put_url(base: &Url, location: &str, digest: &str) -> Result<Url, String> {
    let mut url = base
        .join(location)
        .map_err(|e| format!("invalid upload location {location:?}: {e}"))?;
    url.query_pairs_mut().append_pair("digest", digest);
    Ok(url)
}

impl Client {
    /// Monolithic upload streamed from a file: POST /blobs/uploads/ then PUT ?digest= with
    /// Content-Length. Never reads the file into memory.
    pub async fn push_blob(
        &self,
        repo: &Reference,
        digest: &str,
        size: u64,
        path: &std::path::Path,
    ) -> Result<(), Error> {
        let op = Operation::PushBlob;
        let target = repo.blob_display(digest);
        digest::validate(digest).map_err(|reason| Error::InvalidDigest {
            operation: op,
            target: repo.repo_ref(),
            digest: digest.to_owned(),
            reason,
        })?;
        let metadata = tokio::fs::metadata(path)
            .await
            .map_err(|source| Error::File {
                operation: op,
                target: target.clone(),
                path: path.to_path_buf(),
                source,
            })?;
        if metadata.len() != size {
            return Err(Error::FileSize {
                operation: op,
                target,
                path: path.to_path_buf(),
                expected: size,
                actual: metadata.len(),
            });
        }
        let call = Call {
            operation: op,
            target: &target,
            registry: repo.registry(),
            repository: repo.repository(),
            access: Access::Push,
        };

        let start = RequestSpec::new(
            Method::POST,
            Target::Path(format!("/v2/{}/blobs/uploads/", repo.repository())),
        )
        .header(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self
            .execute_expecting(&call, &start, &[StatusCode::ACCEPTED])
            .await?;
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| {
                Error::protocol(op, &target, "registry did not return an upload Location")
            })?;
        let url = put_url(response.url(), location, digest)
            .map_err(|detail| Error::protocol(op, &target, detail))?;
        tracing::debug!(%target, size, "uploading blob");

        let put = RequestSpec::new(Method::PUT, Target::Absolute(url))
            .header(header::CONTENT_LENGTH, HeaderValue::from(size))
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .body(Body::File(path.to_path_buf()));
        self.execute_expecting(&call, &put, &[StatusCode::CREATED])
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn relative_location_is_resolved_against_the_registry() {
        let base = Url::parse("http://127.0.0.1:5000/v2/a/blobs/uploads/").unwrap();
        let url = put_url(&base, "/v2/a/blobs/uploads/uuid?_state=abc", D).unwrap();
        assert_eq!(
            url.as_str(),
            format!(
                "http://127.0.0.1:5000/v2/a/blobs/uploads/uuid?_state=abc&digest=sha256%3A{}",
                &D[7..]
            )
        );
    }

    #[test]
    fn absolute_location_is_used_as_is_with_digest_appended() {
        let base = Url::parse("https://reg.io/v2/a/blobs/uploads/").unwrap();
        let url = put_url(&base, "https://storage.example/upload/1", D).unwrap();
        assert_eq!(url.host_str(), Some("storage.example"));
        assert_eq!(
            url.query_pairs()
                .find(|(k, _)| k == "digest")
                .map(|(_, v)| v.into_owned()),
            Some(D.to_owned())
        );
    }

    #[test]
    fn location_without_query_gets_one() {
        let base = Url::parse("https://reg.io/v2/a/blobs/uploads/").unwrap();
        let url = put_url(&base, "uuid", D).unwrap();
        assert_eq!(url.path(), "/v2/a/blobs/uploads/uuid");
        assert_eq!(url.query().map(|q| q.starts_with("digest=")), Some(true));
    }
}
