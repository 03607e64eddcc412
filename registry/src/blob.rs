//! Blob reads: streaming downloads that verify what they deliver and survive dropped
//! connections, and existence checks.
//!
//! A download that loses its connection asks for the rest with `Range: bytes=<received>-`
//! and accepts the answer only if it is a 206 whose `Content-Range` starts exactly there; a
//! registry that ignores the range (200) sends the whole blob again and the part already
//! delivered is skipped. Either way the caller sees one uninterrupted stream, hashed as it
//! passes, that ends in an error unless it had exactly the announced size and digest.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Response, StatusCode};

use crate::client::{Access, Call, Client};
use crate::digest::{self, Hasher};
use crate::error::{Error, Operation, root_cause};
use crate::progress::{Direction, Meter};
use crate::reference::Reference;
use crate::retry::retryable_transport;
use crate::transport::{RequestSpec, Target};

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// A blob being downloaded. Chunks arrive as the network delivers them; nothing is
/// buffered beyond one chunk. The last call to [`BlobStream::next_chunk`] fails unless the
/// bytes delivered have the blob's size and digest, so a caller that stores chunks as they
/// come must discard them on error.
pub struct BlobStream {
    client: Client,
    repo: Reference,
    digest: String,
    target: String,
    body: ByteStream,
    /// The size the descriptor or the first response announced.
    expected: Option<u64>,
    /// Bytes handed to the caller.
    received: u64,
    /// Bytes still to drop from the current body (a restart after a range was ignored).
    discard: u64,
    hasher: Hasher,
    resumes: u32,
    meter: Meter,
    finished: bool,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("target", &self.target)
            .field("expected", &self.expected)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// The blob's size, for progress and preallocation.
    pub fn content_length(&self) -> Option<u64> {
        self.expected
    }

    /// The next chunk, or `None` at the verified end of the blob.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            if self.finished {
                return Ok(None);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    if let Some(chunk) = self.accept(chunk)? {
                        return Ok(Some(chunk));
                    }
                }
                None => {
                    self.finished = true;
                    self.verify()?;
                    return Ok(None);
                }
                Some(Err(source)) => self.resume(source).await?,
            }
        }
    }

    /// The blob as a `Stream` of chunks, for combinators; it ends after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Error>> + Send {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut blob = state?;
            match blob.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(blob))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        })
    }

    /// Counts and hashes a chunk, dropping what a restarted body repeats.
    fn accept(&mut self, mut chunk: Bytes) -> Result<Option<Bytes>, Error> {
        if self.discard > 0 {
            let skip = usize::try_from(self.discard)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            chunk = chunk.slice(skip..);
            self.discard -= skip as u64;
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        self.received += chunk.len() as u64;
        if let Some(expected) = self.expected
            && self.received > expected
        {
            self.finished = true;
            return Err(self.incomplete(expected));
        }
        self.hasher.update(&chunk);
        self.meter.advance(chunk.len() as u64);
        Ok(Some(chunk))
    }

    fn verify(&self) -> Result<(), Error> {
        if let Some(expected) = self.expected
            && self.received != expected
        {
            return Err(self.incomplete(expected));
        }
        let actual = self.hasher.finish();
        if actual != self.digest {
            return Err(Error::DigestMismatch {
                operation: Operation::PullBlob,
                target: self.target.clone(),
                expected: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    fn incomplete(&self, expected: u64) -> Error {
        Error::Incomplete {
            operation: Operation::PullBlob,
            target: self.target.clone(),
            expected,
            received: self.received,
        }
    }

    /// After the body failed: wait, then ask for the rest, within the pull retry budget.
    async fn resume(&mut self, source: reqwest::Error) -> Result<(), Error> {
        let policy = self.client.retry_policy(Access::Pull);
        if !retryable_transport(&source) || self.resumes >= policy.retries {
            self.finished = true;
            return Err(self.map_error(source));
        }
        self.resumes += 1;
        let delay = policy.delay(self.resumes, None);
        tracing::warn!(
            "pulling blob {}: connection lost after {} bytes ({}); resuming in {:.1} s ({}/{})",
            self.target,
            self.received,
            root_cause(&source),
            delay.as_secs_f64(),
            self.resumes,
            policy.retries
        );
        tokio::time::sleep(delay).await;
        let response = match self
            .client
            .get_blob(&self.repo, &self.digest, &self.target, self.received)
            .await
        {
            Ok(response) => response,
            Err(error) => {
                self.finished = true;
                return Err(error);
            }
        };
        if response.status() == StatusCode::PARTIAL_CONTENT {
            let start = content_range_start(response.headers());
            if start != Some(self.received) {
                self.finished = true;
                return Err(Error::protocol(
                    Operation::PullBlob,
                    &self.target,
                    format!(
                        "asked for bytes {}- but the registry sent Content-Range {:?}",
                        self.received,
                        response.headers().get(header::CONTENT_RANGE)
                    ),
                ));
            }
            self.discard = 0;
        } else {
            tracing::debug!(target = %self.target, "registry ignored the range; restarting the blob");
            self.discard = self.received;
        }
        self.body = Box::pin(response.bytes_stream());
        Ok(())
    }

    fn map_error(&self, source: reqwest::Error) -> Error {
        Error::Transport {
            operation: Operation::PullBlob,
            target: self.target.clone(),
            detail: root_cause(&source),
            source,
        }
    }
}

/// The first byte position of a `Content-Range: bytes <first>-<last>/<size>` header.
fn content_range_start(headers: &header::HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

fn check_digest(operation: Operation, repo: &Reference, digest: &str) -> Result<(), Error> {
    digest::validate(digest).map_err(|reason| Error::InvalidDigest {
        operation,
        target: repo.repo_ref(),
        digest: digest.to_owned(),
        reason,
    })
}

impl Client {
    /// Stream a blob, verified against `digest` as it arrives. Redirects to blob storage are
    /// followed without forwarding the `Authorization` header to another origin.
    pub async fn blob(&self, repo: &Reference, digest: &str) -> Result<BlobStream, Error> {
        self.with_retries(Access::Pull, || self.open_blob(repo, digest, None))
            .await
    }

    /// Downloads a blob of `size` bytes into a sink, verifying size and digest. Each attempt
    /// writes into a fresh sink from `open`, so a sink holding a damaged or partial copy is
    /// simply dropped; the sink of the attempt that verified is returned for the caller to
    /// commit. Dropped connections resume where they broke; a blob that arrives with the
    /// wrong digest is fetched again, within the pull retry budget.
    pub async fn pull_blob<W, F>(
        &self,
        repo: &Reference,
        digest: &str,
        size: u64,
        mut open: F,
    ) -> Result<W, Error>
    where
        W: std::io::Write,
        F: FnMut() -> std::io::Result<W>,
    {
        let target = repo.blob_display(digest);
        self.with_retries(Access::Pull, || {
            let sink = open();
            let target = &target;
            async move {
                let sink_error = |source| Error::Sink {
                    operation: Operation::PullBlob,
                    target: target.clone(),
                    source,
                };
                let mut sink = sink.map_err(sink_error)?;
                let mut stream = self.open_blob(repo, digest, Some(size)).await?;
                while let Some(chunk) = stream.next_chunk().await? {
                    // One network chunk lands in the page cache; blocking here is cheaper
                    // than a thread hop per chunk.
                    sink.write_all(&chunk).map_err(sink_error)?;
                }
                Ok(sink)
            }
        })
        .await
    }

    async fn open_blob(
        &self,
        repo: &Reference,
        digest: &str,
        size: Option<u64>,
    ) -> Result<BlobStream, Error> {
        check_digest(Operation::PullBlob, repo, digest)?;
        let target = repo.blob_display(digest);
        let hasher = Hasher::for_digest(digest).ok_or_else(|| Error::InvalidDigest {
            operation: Operation::PullBlob,
            target: repo.repo_ref(),
            digest: digest.to_owned(),
            reason: "kiln cannot compute this digest algorithm, so cannot verify the blob"
                .to_owned(),
        })?;
        let response = self.get_blob(repo, digest, &target, 0).await?;
        let expected = size.or(response.content_length());
        if let (Some(size), Some(announced)) = (size, response.content_length())
            && size != announced
        {
            return Err(Error::protocol(
                Operation::PullBlob,
                &target,
                format!("the registry announces {announced} bytes, the manifest says {size}"),
            ));
        }
        Ok(BlobStream {
            meter: Meter::new(self.progress(), Direction::Pull, &target, expected),
            client: self.clone(),
            repo: repo.clone(),
            digest: digest.to_owned(),
            target,
            body: Box::pin(response.bytes_stream()),
            expected,
            received: 0,
            discard: 0,
            hasher,
            resumes: 0,
            finished: false,
        })
    }

    /// GET of a blob from byte `from` on (a `Range` request unless 0).
    async fn get_blob(
        &self,
        repo: &Reference,
        digest: &str,
        target: &str,
        from: u64,
    ) -> Result<Response, Error> {
        let call = Call {
            operation: Operation::PullBlob,
            target,
            registry: repo.registry(),
            origin: repo.origin(),
            repository: repo.repository(),
            access: Access::Pull,
        };
        let mut spec = RequestSpec::new(
            Method::GET,
            Target::Path(format!("/v2/{}/blobs/{digest}", repo.repository())),
        );
        let mut ok = vec![StatusCode::OK];
        if from > 0 {
            let range = HeaderValue::from_str(&format!("bytes={from}-"))
                .map_err(|e| Error::protocol(Operation::PullBlob, target, e.to_string()))?;
            spec = spec.header(header::RANGE, range);
            ok.push(StatusCode::PARTIAL_CONTENT);
        }
        self.execute_expecting(&call, &spec, &ok).await
    }

    /// Whether the repository has the blob (HEAD). `access` picks the token scope, so a
    /// push can check with the push token it already holds.
    pub async fn blob_exists(
        &self,
        repo: &Reference,
        digest: &str,
        access: Access,
    ) -> Result<bool, Error> {
        check_digest(Operation::CheckBlob, repo, digest)?;
        let target = repo.blob_display(digest);
        let call = Call {
            operation: Operation::CheckBlob,
            target: &target,
            registry: repo.registry(),
            origin: repo.origin(),
            repository: repo.repository(),
            access,
        };
        let spec = RequestSpec::new(
            Method::HEAD,
            Target::Path(format!("/v2/{}/blobs/{digest}", repo.repository())),
        );
        self.with_retries(access, || async {
            let response = self.execute(&call, &spec).await?;
            match response.status() {
                StatusCode::OK => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(self.status_error(&call, response).await),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_reads_the_first_byte_position() {
        let headers = |value: &'static str| {
            let mut map = header::HeaderMap::new();
            map.insert(header::CONTENT_RANGE, HeaderValue::from_static(value));
            map
        };
        assert_eq!(
            content_range_start(&headers("bytes 100-199/200")),
            Some(100)
        );
        assert_eq!(content_range_start(&headers("bytes */200")), None);
        assert_eq!(content_range_start(&headers("items 1-2/3")), None);
        assert_eq!(content_range_start(&header::HeaderMap::new()), None);
    }
}
