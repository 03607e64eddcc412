//! Manifests: which media types we accept, telling images from indexes, fetching with
//! digest verification, and pushing.

use bytes::Bytes;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use crate::client::{Access, Call, Client};
use crate::digest;
use crate::error::{Error, Operation};
use crate::reference::Reference;
use crate::response::read_limited;
use crate::transport::{Body, RequestSpec, Target};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Largest manifest or config we will buffer: far above real ones (a few KiB), far below
/// what would hurt.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Whether a manifest describes one image or a set of per-platform images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Image,
    Index,
}

/// A manifest as received: raw bytes (digests are over these exact bytes), its media
/// type and its verified digest.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub bytes: Bytes,
    pub media_type: String,
    pub kind: Kind,
    pub digest: String,
}

/// What a fetched manifest must be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect<'a> {
    /// Digest it must hash to (pinned reference or index descriptor).
    pub digest: Option<&'a str>,
    /// Exact size from a descriptor.
    pub size: Option<u64>,
}

/// Decides image vs index from the Content-Type, falling back to the body's own
/// `mediaType`/shape when registries send a generic type. Rejects schema 1.
pub(crate) fn classify(
    content_type: Option<&str>,
    body: &[u8],
    target: &str,
) -> Result<(Kind, String), Error> {
    #[derive(Deserialize)]
    struct Sniff {
        #[serde(rename = "schemaVersion", default)]
        schema_version: Option<u64>,
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        config: Option<serde::de::IgnoredAny>,
    }
    let declared = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or(ct)
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|ct| !ct.is_empty());
    let generic = matches!(
        declared.as_deref(),
        None | Some("application/json" | "text/plain" | "application/octet-stream")
    );
    let media_type = if generic {
        let sniff: Sniff = serde_json::from_slice(body).map_err(|source| Error::Malformed {
            operation: Operation::PullManifest,
            target: target.to_owned(),
            what: "manifest",
            source,
        })?;
        if sniff.schema_version == Some(1) {
            return Err(Error::Schema1 {
                target: target.to_owned(),
            });
        }
        match (sniff.media_type, sniff.manifests, sniff.config) {
            (Some(mt), _, _) => mt,
            (None, Some(_), _) => OCI_INDEX.to_owned(),
            (None, None, Some(_)) => OCI_MANIFEST.to_owned(),
            (None, None, None) => declared.unwrap_or_default(),
        }
    } else {
        declared.unwrap_or_default()
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok((Kind::Image, media_type)),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok((Kind::Index, media_type)),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(Error::Schema1 {
            target: target.to_owned(),
        }),
        _ => Err(Error::UnsupportedMediaType {
            operation: Operation::PullManifest,
            target: target.to_owned(),
            media_type,
        }),
    }
}

fn header_str<'a>(response: &'a Response, name: &header::HeaderName) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

impl Client {
    /// GETs `/manifests/<selector>` and verifies it against `expect`, or against the
    /// registry's `Docker-Content-Digest` when nothing is pinned; retried as a whole.
    pub(crate) async fn fetch_manifest(
        &self,
        image: &Reference,
        selector: &str,
        expect: Expect<'_>,
    ) -> Result<Fetched, Error> {
        self.with_retries(Access::Pull, || {
            self.fetch_manifest_once(image, selector, expect)
        })
        .await
    }

    async fn fetch_manifest_once(
        &self,
        image: &Reference,
        selector: &str,
        expect: Expect<'_>,
    ) -> Result<Fetched, Error> {
        let target = if image.manifest_selector() == selector {
            image.to_string()
        } else {
            image.blob_display(selector)
        };
        let call = Call {
            operation: Operation::PullManifest,
            target: &target,
            registry: image.registry(),
            origin: image.origin(),
            repository: image.repository(),
            access: Access::Pull,
        };
        let spec = RequestSpec::new(
            Method::GET,
            Target::Path(format!("/v2/{}/manifests/{selector}", image.repository())),
        )
        .header(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        let response = self
            .execute_expecting(&call, &spec, &[StatusCode::OK])
            .await?;
        let content_type = header_str(&response, &header::CONTENT_TYPE).map(str::to_owned);
        let announced = header_str(
            &response,
            &header::HeaderName::from_static("docker-content-digest"),
        )
        .map(str::to_owned);
        let limit = expect
            .size
            .unwrap_or(MAX_MANIFEST_BYTES)
            .min(MAX_MANIFEST_BYTES);
        if expect.size.is_some_and(|size| size > MAX_MANIFEST_BYTES) {
            return Err(Error::TooLarge {
                operation: Operation::PullManifest,
                target,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let bytes = read_limited(response, limit, Operation::PullManifest, &target).await?;
        let expected = expect.digest.map(str::to_owned).or(announced);
        let digest = match expected {
            Some(expected) => {
                digest::verify(&expected, &bytes).map_err(|actual| Error::DigestMismatch {
                    operation: Operation::PullManifest,
                    target: target.clone(),
                    expected: expected.clone(),
                    actual,
                })?;
                expected
            }
            None => digest::sha256(&bytes),
        };
        if let Some(size) = expect.size
            && bytes.len() as u64 != size
        {
            return Err(Error::protocol(
                Operation::PullManifest,
                &target,
                format!(
                    "manifest is {} bytes, its descriptor says {size}",
                    bytes.len()
                ),
            ));
        }
        let (kind, media_type) = classify(content_type.as_deref(), &bytes, &target)?;
        tracing::debug!(%target, %digest, %media_type, "fetched manifest");
        Ok(Fetched {
            bytes,
            media_type,
            kind,
            digest,
        })
    }

    /// PUT a manifest (to the reference's tag, or its digest when it has no tag); returns
    /// the digest the registry reports, or the computed one when it reports none.
    pub async fn push_manifest(
        &self,
        target: &Reference,
        media_type: &str,
        body: Bytes,
    ) -> Result<String, Error> {
        let display = target.to_string();
        let op = Operation::PushManifest;
        let computed = match target.digest().and_then(digest::algorithm_of) {
            Some(algorithm) => digest::compute(algorithm, &body),
            None => digest::sha256(&body),
        };
        if let Some(pinned) = target.digest()
            && pinned != computed
        {
            return Err(Error::DigestMismatch {
                operation: op,
                target: display,
                expected: pinned.to_owned(),
                actual: computed,
            });
        }
        let selector = target
            .tag()
            .or(target.digest())
            .unwrap_or(&computed)
            .to_owned();
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            Error::protocol(op, &display, format!("invalid media type {media_type:?}"))
        })?;
        let call = Call {
            operation: op,
            target: &display,
            registry: target.registry(),
            origin: target.origin(),
            repository: target.repository(),
            access: Access::Push,
        };
        let spec = RequestSpec::new(
            Method::PUT,
            Target::Path(format!("/v2/{}/manifests/{selector}", target.repository())),
        )
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::Bytes(body));
        // The digest check is part of the attempt: a registry that stored other bytes than
        // those sent (damaged in flight) now has the tag on them, and only sending the
        // manifest again puts it right.
        self.with_retries(Access::Push, || async {
            let response = self
                .execute_expecting(
                    &call,
                    &spec,
                    &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
                )
                .await?;
            let reported = header_str(
                &response,
                &header::HeaderName::from_static("docker-content-digest"),
            )
            .filter(|d| digest::validate(d).is_ok())
            .map(str::to_owned);
            match reported {
                Some(reported)
                    if digest::algorithm_of(&reported) == digest::algorithm_of(&computed)
                        && reported != computed =>
                {
                    Err(Error::StoredOther {
                        operation: op,
                        target: display.clone(),
                        sent: computed.clone(),
                        stored: reported,
                    })
                }
                Some(reported) => Ok(reported),
                None => Ok(computed.clone()),
            }
        })
        .await
    }
}

/// An image manifest exactly as the registry served it, digest-verified but not interpreted:
/// for artifacts whose config is not an image config (kiln's cache records).
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The bytes (the digest is over these).
    pub bytes: Bytes,
    /// Its media type (OCI or Docker schema 2 image manifest).
    pub media_type: String,
    /// Its verified digest.
    pub digest: String,
}

impl Client {
    /// GETs the image manifest `image` names, verified against the pinned digest or the
    /// registry's `Docker-Content-Digest`, without fetching its config. An index is an error.
    /// A missing tag is an error whose [`Error::status`] is 404.
    pub async fn fetch_image_manifest(&self, image: &Reference) -> Result<RawManifest, Error> {
        let fetched = self
            .fetch_manifest(
                image,
                image.manifest_selector(),
                Expect {
                    digest: image.digest(),
                    size: None,
                },
            )
            .await?;
        if fetched.kind != Kind::Image {
            return Err(Error::protocol(
                Operation::PullManifest,
                &image.to_string(),
                format!("expected an image manifest, got {}", fetched.media_type),
            ));
        }
        Ok(RawManifest {
            bytes: fetched.bytes,
            media_type: fetched.media_type,
            digest: fetched.digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_decides_kind_and_parameters_are_ignored() {
        let (kind, mt) = classify(
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            b"{}",
            "t",
        )
        .unwrap();
        assert_eq!((kind, mt.as_str()), (Kind::Index, OCI_INDEX));
        let (kind, _) = classify(Some(DOCKER_MANIFEST), b"{}", "t").unwrap();
        assert_eq!(kind, Kind::Image);
        let (kind, _) = classify(Some(DOCKER_MANIFEST_LIST), b"{}", "t").unwrap();
        assert_eq!(kind, Kind::Index);
    }

    #[test]
    fn generic_content_type_is_resolved_from_the_body() {
        let (kind, mt) = classify(
            Some("application/json"),
            br#"{"schemaVersion":2,"manifests":[]}"#,
            "t",
        )
        .unwrap();
        assert_eq!((kind, mt.as_str()), (Kind::Index, OCI_INDEX));
        let body =
            format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{}}}}"#);
        let (kind, mt) = classify(None, body.as_bytes(), "t").unwrap();
        assert_eq!((kind, mt.as_str()), (Kind::Image, DOCKER_MANIFEST));
    }

    #[test]
    fn schema1_is_refused_with_a_clear_error() {
        for (ct, body) in [
            (Some(DOCKER_SCHEMA1_SIGNED), &b"{}"[..]),
            (Some(DOCKER_SCHEMA1), b"{}"),
            (
                Some("application/json"),
                br#"{"schemaVersion":1,"fsLayers":[]}"#,
            ),
        ] {
            let err = classify(ct, body, "r/a:old").unwrap_err();
            assert!(matches!(err, Error::Schema1 { .. }), "{err}");
            assert!(err.to_string().contains("schema 1"), "{err}");
        }
    }

    #[test]
    fn unknown_media_types_are_named_in_the_error() {
        let err = classify(Some("application/vnd.example+json"), b"{}", "r/a:x").unwrap_err();
        assert!(
            err.to_string().contains("application/vnd.example+json"),
            "{err}"
        );
    }
}
