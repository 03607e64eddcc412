//! Reading response bodies with a size bound, and turning failed responses into errors
//! that carry the registry's own explanation.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::Response;

use crate::error::{AuthHint, Error, ErrorBody, Operation, root_cause};

/// Error bodies are only for messages; never read more than this of one.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Reads the whole body, failing as soon as it exceeds `limit` bytes, so a hostile or
/// broken registry cannot make us buffer an unbounded "manifest".
pub(crate) async fn read_limited(
    response: Response,
    limit: u64,
    operation: Operation,
    target: &str,
) -> Result<Bytes, Error> {
    let too_large = || Error::TooLarge {
        operation,
        target: target.to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| Error::Transport {
            operation,
            target: target.to_owned(),
            detail: root_cause(&source),
            source,
        })?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Builds the error for an unexpected status, including (a bounded excerpt of) the body.
pub(crate) async fn status_error(
    response: Response,
    operation: Operation,
    target: &str,
    hint: AuthHint,
) -> Error {
    let status = response.status();
    let retry_after = crate::retry::retry_after(response.headers());
    let body = match read_prefix(response, ERROR_BODY_LIMIT).await {
        Some(bytes) => ErrorBody::parse(&bytes),
        None => ErrorBody::default(),
    };
    Error::Http {
        operation,
        target: target.to_owned(),
        status,
        body,
        hint,
        retry_after,
    }
}

/// Up to `limit` bytes of the body; a broken body just ends the excerpt.
async fn read_prefix(response: Response, limit: u64) -> Option<Bytes> {
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = (limit as usize).saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() as u64 >= limit {
            break;
        }
    }
    Some(body.freeze())
}
