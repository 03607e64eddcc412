//! Resolving an image reference to one platform's manifest and config, verified.

use bytes::Bytes;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use reqwest::{Method, StatusCode};

use crate::client::{Access, Call, Client};
use crate::digest;
use crate::error::{Error, Operation};
use crate::manifest::{Expect, Fetched, Kind, MAX_MANIFEST_BYTES};
use crate::platform::{self, Platform};
use crate::reference::Reference;
use crate::response::read_limited;
use crate::transport::{RequestSpec, Target};

/// Indexes may nest (an index entry pointing at another index); real images use one
/// level, this bounds hostile loops.
const MAX_INDEX_DEPTH: usize = 4;

/// A single-platform image: its manifest and config, both digest-verified.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The reference as requested.
    pub reference: Reference,
    /// Where the image was found: `reference` itself, or its copy on a mirror. Layers are
    /// fetched from here.
    pub source: Reference,
    /// Digest of the platform image manifest (`sha256:...`).
    pub manifest_digest: String,
    /// Digest of the index it was selected from, when the reference named an index.
    pub index_digest: Option<String>,
    /// Media type of the image manifest (OCI or Docker schema 2).
    pub manifest_media_type: String,
    /// The parsed manifest; Docker schema 2 media types appear as `MediaType::Other`.
    pub manifest: ImageManifest,
    /// The raw manifest JSON, exactly as hashed (what a store keeps to serve it again).
    pub manifest_bytes: Bytes,
    /// The raw config JSON, exactly as hashed.
    pub config_bytes: Bytes,
    /// The parsed config.
    pub config: ImageConfiguration,
}

impl Client {
    /// Fetch an image by tag or digest; if it is an index/manifest list, pick the manifest
    /// for `platform` (containerd-style matching). Verifies the manifest digest (against the
    /// reference digest when pinned, else against Docker-Content-Digest when sent) and the
    /// config blob digest.
    pub async fn resolve_image(
        &self,
        image: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage, Error> {
        let target = image.to_string();
        let mut fetched = self
            .fetch_manifest(
                image,
                image.manifest_selector(),
                Expect {
                    digest: image.digest(),
                    size: None,
                },
            )
            .await?;
        let mut index_digest = None;
        let mut depth = 0;
        while fetched.kind == Kind::Index {
            depth += 1;
            if depth > MAX_INDEX_DEPTH {
                return Err(Error::protocol(
                    Operation::PullManifest,
                    &target,
                    format!("indexes nested deeper than {MAX_INDEX_DEPTH} levels"),
                ));
            }
            index_digest.get_or_insert_with(|| fetched.digest.clone());
            fetched = self
                .select_from_index(image, &target, &fetched, platform)
                .await?;
        }
        let manifest: ImageManifest = parse_json(&fetched.bytes, &target, "manifest")?;
        let config_descriptor = manifest.config();
        let config_digest = config_descriptor.digest().to_string();
        let config_bytes = self
            .fetch_config(image, &config_digest, config_descriptor.size())
            .await?;
        let config: ImageConfiguration =
            parse_json(&config_bytes, &image.blob_display(&config_digest), "config")?;
        Ok(ResolvedImage {
            reference: image.clone(),
            source: image.clone(),
            manifest_digest: fetched.digest,
            index_digest,
            manifest_media_type: fetched.media_type,
            manifest,
            manifest_bytes: fetched.bytes,
            config_bytes,
            config,
        })
    }

    async fn select_from_index(
        &self,
        image: &Reference,
        target: &str,
        index: &Fetched,
        platform: &Platform,
    ) -> Result<Fetched, Error> {
        let parsed: ImageIndex = parse_json(&index.bytes, target, "index")?;
        let candidates: Vec<Option<Platform>> = parsed
            .manifests()
            .iter()
            .map(|d| {
                d.platform().as_ref().map(|p| Platform {
                    os: p.os().to_string(),
                    architecture: p.architecture().to_string(),
                    variant: p.variant().clone(),
                })
            })
            .collect();
        let Some(chosen) = platform::select(platform, &candidates) else {
            let mut available: Vec<String> = candidates
                .iter()
                .flatten()
                .map(Platform::to_string)
                .collect();
            available.dedup();
            return Err(Error::PlatformNotFound {
                target: target.to_owned(),
                wanted: platform.clone(),
                available,
            });
        };
        let descriptor = &parsed.manifests()[chosen];
        let digest = descriptor.digest().to_string();
        tracing::debug!(%target, %platform, %digest, "selected manifest from index");
        self.fetch_manifest(
            image,
            &digest,
            Expect {
                digest: Some(&digest),
                size: Some(descriptor.size()),
            },
        )
        .await
    }

    /// Fetches a small blob (an image config, or an artifact's config such as kiln's cache
    /// records) of the declared size, bounded and digest-verified; retried as a whole.
    pub async fn fetch_config_blob(
        &self,
        repo: &Reference,
        digest: &str,
        size: u64,
    ) -> Result<Bytes, Error> {
        self.fetch_config(repo, digest, size).await
    }

    /// Fetches a config blob of the declared size, bounded and digest-verified; retried as
    /// a whole.
    async fn fetch_config(
        &self,
        image: &Reference,
        config_digest: &str,
        size: u64,
    ) -> Result<Bytes, Error> {
        self.with_retries(Access::Pull, || {
            self.fetch_config_once(image, config_digest, size)
        })
        .await
    }

    async fn fetch_config_once(
        &self,
        image: &Reference,
        config_digest: &str,
        size: u64,
    ) -> Result<Bytes, Error> {
        let target = image.blob_display(config_digest);
        let op = Operation::PullConfig;
        if size > MAX_MANIFEST_BYTES {
            return Err(Error::TooLarge {
                operation: op,
                target,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let call = Call {
            operation: op,
            target: &target,
            registry: image.registry(),
            origin: image.origin(),
            repository: image.repository(),
            access: Access::Pull,
        };
        let spec = RequestSpec::new(
            Method::GET,
            Target::Path(format!("/v2/{}/blobs/{config_digest}", image.repository())),
        );
        let response = self
            .execute_expecting(&call, &spec, &[StatusCode::OK])
            .await?;
        let bytes = read_limited(response, size, op, &target).await?;
        digest::verify(config_digest, &bytes).map_err(|actual| Error::DigestMismatch {
            operation: op,
            target: target.clone(),
            expected: config_digest.to_owned(),
            actual,
        })?;
        Ok(bytes)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    target: &str,
    what: &'static str,
) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Malformed {
        operation: if what == "config" {
            Operation::PullConfig
        } else {
            Operation::PullManifest
        },
        target: target.to_owned(),
        what,
        source,
    })
}
