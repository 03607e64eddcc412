//! Blob uploads streamed from a file.
//!
//! `POST /blobs/uploads/` opens a session (or, with `?mount=<digest>&from=<repo>`, asks the
//! registry to link a blob another repository already holds: 201 means done, 202 means "send
//! it" and opens the session anyway). Small blobs then go in one `PUT ?digest=`; large ones in
//! `PATCH` chunks read from disk, each carrying `Content-Range`, then an empty closing `PUT`.
//! A chunk that fails is resumed from the offset the registry reports for the session; a
//! session that cannot be resumed is abandoned and the whole upload starts again, within the
//! push retry budget. Nothing is ever read whole into memory.

use std::path::Path;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};

use crate::auth;
use crate::client::{Access, Call, Client};
use crate::digest;
use crate::error::{Error, Operation};
use crate::progress::{Direction, Meter};
use crate::reference::Reference;
use crate::transport::{Body, RequestSpec, Target};

/// Blobs up to this size go in one `PUT`: a lost request costs little to resend, and one
/// round trip beats several. Most config blobs and many layers are far smaller.
const MONOLITHIC_LIMIT: u64 = 16 * 1024 * 1024;

/// Bytes per `PATCH` of a chunked upload: under the 100 MB request limit of proxies such as
/// Cloudflare (Kaniko #2978 got 413s once it stopped chunking), above ECR's 5 MiB minimum
/// part size, and small enough that a failed chunk costs seconds, not minutes, to resend.
const CHUNK_SIZE: u64 = 16 * 1024 * 1024;

/// A registry's minimum chunk size (OCI distribution spec 1.1).
const CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");

/// A blob to put into a repository.
#[derive(Debug, Clone, Copy)]
pub struct BlobUpload<'a> {
    /// Its digest, `algorithm:hex`.
    pub digest: &'a str,
    /// Its size in bytes; the file must have exactly this size.
    pub size: u64,
    /// The file holding it.
    pub path: &'a Path,
    /// A repository on the same registry that probably holds the blob (the base image's,
    /// or a destination pushed earlier). The registry is asked to mount it from there, which
    /// costs one request instead of the blob's bytes; registries that cannot mount say so
    /// and the blob is uploaded.
    pub mount_from: Option<&'a str>,
}

/// How a blob reached the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Linked from another repository by the registry; no bytes sent.
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
}

/// Resolves an upload `Location` (absolute, or relative to the URL that returned it).
pub(crate) fn resolve_location(base: &Url, location: &str) -> Result<Url, String> {
    base.join(location)
        .map_err(|e| format!("invalid upload location {location:?}: {e}"))
}

/// Adds the `digest` parameter that closes an upload, keeping any query the registry put
/// there (upload state).
fn with_digest(mut url: Url, digest: &str) -> Url {
    url.query_pairs_mut().append_pair("digest", digest);
    url
}

/// The offset after the last byte a registry holds, from its `Range: 0-<last>` header
/// (`bytes=` tolerated). Distribution writes `0-0` for an empty session too; chunks are
/// never one byte, so `0-0` is read as empty.
fn range_end(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::RANGE)?.to_str().ok()?.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    let (first, last) = value.split_once('-')?;
    let last: u64 = last.trim().parse().ok()?;
    if first.trim() != "0" {
        return None;
    }
    Some(if last == 0 { 0 } else { last + 1 })
}

fn header_u64(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Where the session continues: the `Location` of `response`, else where it was.
fn next_location(response: &Response, current: &Url, target: &str) -> Result<Url, Error> {
    match response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
    {
        Some(location) => resolve_location(response.url(), location)
            .map_err(|detail| Error::protocol(Operation::PushBlob, target, detail)),
        None => Ok(current.clone()),
    }
}

impl Client {
    /// Uploads a blob from a file (no mount). See [`Client::upload_blob`].
    pub async fn push_blob(
        &self,
        repo: &Reference,
        digest: &str,
        size: u64,
        path: &Path,
    ) -> Result<(), Error> {
        self.upload_blob(
            repo,
            &BlobUpload {
                digest,
                size,
                path,
                mount_from: None,
            },
        )
        .await
        .map(|_| ())
    }

    /// Links a blob into `repo` from repository `from` of the same registry, without its bytes.
    /// `Ok(false)` when the registry would not mount it (it opened an upload session instead,
    /// which is cancelled): the caller must then upload the bytes.
    pub async fn mount_blob(
        &self,
        repo: &Reference,
        digest: &str,
        from: &str,
    ) -> Result<bool, Error> {
        let op = Operation::PushBlob;
        let target = repo.blob_display(digest);
        digest::validate(digest).map_err(|reason| Error::InvalidDigest {
            operation: op,
            target: repo.repo_ref(),
            digest: digest.to_owned(),
            reason,
        })?;
        let call = Call {
            operation: op,
            target: &target,
            registry: repo.registry(),
            origin: repo.origin(),
            repository: repo.repository(),
            access: Access::Push,
        };
        let scope = format!(
            "{} {}",
            auth::scope(repo.repository(), Access::Push),
            auth::scope(from, Access::Pull)
        );
        let start = RequestSpec::new(
            Method::POST,
            Target::Path(format!(
                "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
                repo.repository()
            )),
        )
        .header(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self
            .with_retries(Access::Push, || self.execute_scoped(&call, &start, &scope))
            .await?;
        match response.status() {
            StatusCode::CREATED => {
                tracing::debug!(%target, from, "blob mounted");
                Ok(true)
            }
            StatusCode::ACCEPTED => {
                let session = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| resolve_location(response.url(), l).ok());
                if let Some(session) = session {
                    let cancel = RequestSpec::new(Method::DELETE, Target::Absolute(session));
                    // Registries that cannot cancel let the session expire; that is harmless.
                    if let Err(error) = self.execute_scoped(&call, &cancel, &scope).await {
                        tracing::debug!("cancelling the upload the mount opened: {error}");
                    }
                }
                Ok(false)
            }
            _ => Err(self.status_error(&call, response).await),
        }
    }

    /// Puts a blob into `repo`: by mount when `mount_from` holds it, else streamed from its
    /// file, in one request or in chunks by size. Retried as a whole within the push budget.
    pub async fn upload_blob(
        &self,
        repo: &Reference,
        blob: &BlobUpload<'_>,
    ) -> Result<Pushed, Error> {
        let op = Operation::PushBlob;
        let target = repo.blob_display(blob.digest);
        digest::validate(blob.digest).map_err(|reason| Error::InvalidDigest {
            operation: op,
            target: repo.repo_ref(),
            digest: blob.digest.to_owned(),
            reason,
        })?;
        let metadata = tokio::fs::metadata(blob.path)
            .await
            .map_err(|source| Error::File {
                operation: op,
                target: target.clone(),
                path: blob.path.to_path_buf(),
                source,
            })?;
        if metadata.len() != blob.size {
            return Err(Error::FileSize {
                operation: op,
                target,
                path: blob.path.to_path_buf(),
                expected: blob.size,
                actual: metadata.len(),
            });
        }
        self.with_retries(Access::Push, || self.upload_attempt(repo, blob, &target))
            .await
    }

    async fn upload_attempt(
        &self,
        repo: &Reference,
        blob: &BlobUpload<'_>,
        target: &str,
    ) -> Result<Pushed, Error> {
        let op = Operation::PushBlob;
        let call = Call {
            operation: op,
            target,
            registry: repo.registry(),
            origin: repo.origin(),
            repository: repo.repository(),
            access: Access::Push,
        };
        let mut path = format!("/v2/{}/blobs/uploads/", repo.repository());
        let mut scope = auth::scope(repo.repository(), Access::Push);
        if let Some(from) = blob.mount_from {
            path.push_str(&format!("?mount={}&from={from}", blob.digest));
            scope = format!("{scope} {}", auth::scope(from, Access::Pull));
        }
        let start = RequestSpec::new(Method::POST, Target::Path(path))
            .header(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self.execute_scoped(&call, &start, &scope).await?;
        match response.status() {
            StatusCode::CREATED if blob.mount_from.is_some() => {
                tracing::debug!(%target, from = blob.mount_from, "blob mounted");
                return Ok(Pushed::Mounted);
            }
            StatusCode::ACCEPTED => {}
            _ => return Err(self.status_error(&call, response).await),
        }
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| {
                Error::protocol(op, target, "registry did not return an upload Location")
            })?;
        let mut session = resolve_location(response.url(), location)
            .map_err(|detail| Error::protocol(op, target, detail))?;
        let min_chunk = header_u64(response.headers(), &CHUNK_MIN_LENGTH);
        let mut meter = Meter::new(self.progress(), Direction::Push, target, Some(blob.size));
        // The closing PUT carries the whole blob, or nothing after the chunks.
        let (body, length) = if blob.size <= MONOLITHIC_LIMIT {
            tracing::debug!(%target, size = blob.size, "uploading blob");
            (Body::File(blob.path.to_path_buf()), blob.size)
        } else {
            let chunk = CHUNK_SIZE.max(min_chunk.unwrap_or(0));
            tracing::debug!(%target, size = blob.size, chunk, "uploading blob in chunks");
            session = self
                .upload_chunks(&call, &scope, blob, session, chunk, &mut meter)
                .await?;
            (Body::Empty, 0)
        };
        let put = RequestSpec::new(
            Method::PUT,
            Target::Absolute(with_digest(session, blob.digest)),
        )
        .header(header::CONTENT_LENGTH, HeaderValue::from(length))
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )
        .body(body);
        // The whole session uses the mount's token: it covers this repository too.
        let response = self.execute_scoped(&call, &put, &scope).await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_error(&call, response).await);
        }
        meter.set(blob.size);
        Ok(Pushed::Uploaded)
    }

    /// Sends the file in `chunk`-byte `PATCH`es; returns where the session continues.
    async fn upload_chunks(
        &self,
        call: &Call<'_>,
        scope: &str,
        blob: &BlobUpload<'_>,
        mut session: Url,
        chunk: u64,
        meter: &mut Meter,
    ) -> Result<Url, Error> {
        let policy = self.retry_policy(Access::Push);
        let mut resumes = 0;
        let mut offset = 0;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            let patch = RequestSpec::new(Method::PATCH, Target::Absolute(session.clone()))
                .header(header::CONTENT_LENGTH, HeaderValue::from(len))
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )
                .header(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1))
                        .map_err(|e| Error::protocol(call.operation, call.target, e.to_string()))?,
                )
                .body(Body::FileRange {
                    path: blob.path.to_path_buf(),
                    offset,
                    len,
                });
            let failure = match self.execute_scoped(call, &patch, scope).await {
                // ECR answers a chunk with 201 rather than the spec's 202.
                Ok(response)
                    if matches!(
                        response.status(),
                        StatusCode::ACCEPTED | StatusCode::CREATED
                    ) =>
                {
                    session = next_location(&response, &session, call.target)?;
                    offset = range_end(response.headers()).unwrap_or(offset + len);
                    meter.set(offset);
                    continue;
                }
                Ok(response) => self.status_error(call, response).await,
                Err(error) => error,
            };
            if !failure.is_transient() || resumes >= policy.retries {
                return Err(failure);
            }
            resumes += 1;
            let delay = policy.delay(resumes, failure.retry_after());
            tracing::warn!(
                "{failure}; resuming the upload in {:.1} s ({resumes}/{})",
                delay.as_secs_f64(),
                policy.retries
            );
            tokio::time::sleep(delay).await;
            // A session the registry cannot resume fails the attempt with the chunk's error;
            // the caller then starts a fresh session.
            (session, offset) = self
                .upload_status(call, scope, &session)
                .await
                .ok_or(failure)?;
            if offset > blob.size {
                return Err(Error::protocol(
                    call.operation,
                    call.target,
                    format!("registry holds {offset} bytes of a {}-byte blob", blob.size),
                ));
            }
            meter.set(offset);
        }
        Ok(session)
    }

    /// Where an interrupted session stands: `GET <location>` answers 204 with its `Range`.
    async fn upload_status(
        &self,
        call: &Call<'_>,
        scope: &str,
        session: &Url,
    ) -> Option<(Url, u64)> {
        let spec = RequestSpec::new(Method::GET, Target::Absolute(session.clone()));
        let response = self.execute_scoped(call, &spec, scope).await.ok()?;
        if response.status() != StatusCode::NO_CONTENT {
            tracing::debug!(status = %response.status(), "upload session cannot be resumed");
            return None;
        }
        let offset = range_end(response.headers()).unwrap_or(0);
        let session = next_location(&response, session, call.target).ok()?;
        tracing::debug!(offset, "resuming upload session");
        Some((session, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_url(base: &Url, location: &str, digest: &str) -> Result<Url, String> {
        Ok(with_digest(resolve_location(base, location)?, digest))
    }

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
    fn range_header_gives_the_next_offset() {
        let headers = |value: &'static str| {
            let mut map = HeaderMap::new();
            map.insert(header::RANGE, HeaderValue::from_static(value));
            map
        };
        assert_eq!(range_end(&headers("0-16777215")), Some(16_777_216));
        assert_eq!(range_end(&headers("bytes=0-99")), Some(100));
        assert_eq!(range_end(&headers("0-0")), Some(0));
        assert_eq!(range_end(&headers("5-9")), None);
        assert_eq!(range_end(&HeaderMap::new()), None);
    }

    #[test]
    fn chunks_fit_under_proxy_limits_and_over_ecr_minimum() {
        const { assert!(CHUNK_SIZE >= 5 * 1024 * 1024 && CHUNK_SIZE < 100 * 1000 * 1000) };
        const { assert!(MONOLITHIC_LIMIT <= CHUNK_SIZE) };
    }

    #[test]
    fn location_without_query_gets_one() {
        let base = Url::parse("https://reg.io/v2/a/blobs/uploads/").unwrap();
        let url = put_url(&base, "uuid", D).unwrap();
        assert_eq!(url.path(), "/v2/a/blobs/uploads/uuid");
        assert_eq!(url.query().map(|q| q.starts_with("digest=")), Some(true));
    }
}
