//! Blob reads: streaming downloads and existence checks.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::{Method, StatusCode};

use crate::client::{Access, Call, Client};
use crate::digest;
use crate::error::{Error, Operation, root_cause};
use crate::reference::Reference;
use crate::transport::{RequestSpec, Target};

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// A blob being downloaded. Chunks arrive as the network delivers them; nothing is
/// buffered beyond one chunk. The caller verifies the digest while storing.
pub struct BlobStream {
    inner: ByteStream,
    content_length: Option<u64>,
    target: String,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("target", &self.target)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// The size the registry announced, for progress and preallocation.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The next chunk, or `None` at the end of the blob.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        self.next().await.transpose()
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

impl Stream for BlobStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(self.map_error(e)))),
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
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
    /// Stream a blob. Redirects to blob storage are followed without forwarding the
    /// `Authorization` header to another origin.
    pub async fn blob(&self, repo: &Reference, digest: &str) -> Result<BlobStream, Error> {
        check_digest(Operation::PullBlob, repo, digest)?;
        let target = repo.blob_display(digest);
        let call = Call {
            operation: Operation::PullBlob,
            target: &target,
            registry: repo.registry(),
            repository: repo.repository(),
            access: Access::Pull,
        };
        let spec = RequestSpec::new(
            Method::GET,
            Target::Path(format!("/v2/{}/blobs/{digest}", repo.repository())),
        );
        let response = self
            .execute_expecting(&call, &spec, &[StatusCode::OK])
            .await?;
        Ok(BlobStream {
            content_length: response.content_length(),
            inner: Box::pin(response.bytes_stream()),
            target,
        })
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
            repository: repo.repository(),
            access,
        };
        let spec = RequestSpec::new(
            Method::HEAD,
            Target::Path(format!("/v2/{}/blobs/{digest}", repo.repository())),
        );
        let response = self.execute(&call, &spec).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&call, response).await),
        }
    }
}
