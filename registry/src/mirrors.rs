//! Registry mirrors and maps: where pulls are tried before the registry an image names.
//!
//! Follows Kaniko (`pkg/image/remote/remote.go`): `--registry-map orig=target` (several per
//! flag, separated by `;`) lists targets for pulls from `orig`; `--registry-mirror target` is
//! `--registry-map index.docker.io=target`, added after the maps. A target may carry a path
//! prefix (`mirror.local/dockerhub` pulls `busybox` as `mirror.local/dockerhub/library/busybox`).
//! Targets are tried in order; a failing one (unreachable, 404, 5xx, refused) is logged and the
//! next tried, then the original registry, unless the fallback is switched off. Only pulls of
//! images are redirected: pushes always go to the destination as named.

use std::fmt;

use crate::client::Client;
use crate::error::Error;
use crate::platform::Platform;
use crate::reference::{DOCKER_HUB, Reference, valid_registry, valid_repository};
use crate::resolve::ResolvedImage;

/// Docker Hub's other names, accepted as map keys for `index.docker.io`.
const DOCKER_HUB_ALIASES: [&str; 2] = ["docker.io", "registry-1.docker.io"];

/// One place a registry's images may also be pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port]`.
    registry: String,
    /// Empty, or a repository prefix ending in `/`.
    prefix: String,
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.registry)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix.trim_end_matches('/'))?;
        }
        Ok(())
    }
}

impl Mirror {
    /// The mirror's registry (`host[:port]`).
    pub fn registry(&self) -> &str {
        &self.registry
    }
}

/// A `--registry-map` / `--registry-mirror` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: {reason}")]
pub struct MirrorFlagError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The mirrors of every mapped registry, in the order they are tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryMaps {
    /// `(original registry, its mirrors)`.
    entries: Vec<(String, Vec<Mirror>)>,
}

impl RegistryMaps {
    /// Adds a `--registry-map` value (or `KANIKO_REGISTRY_MAP`): `orig=target`, several
    /// separated by `;`. As an extension, a `;`-separated part without `=` is one more target
    /// for the key before it (`orig=a;b`), which Kaniko would reject.
    pub fn add_map(&mut self, value: &str) -> Result<(), MirrorFlagError> {
        let mut key: Option<String> = None;
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let target = match part.split_once('=') {
                Some((orig, target)) => {
                    let orig = normalise_key(orig);
                    if !valid_registry(&orig) {
                        return Err(MirrorFlagError {
                            value: value.to_owned(),
                            reason: format!("{orig:?} is not a registry (expected HOST[:PORT])"),
                        });
                    }
                    key = Some(orig);
                    target
                }
                None => part,
            };
            let Some(orig) = &key else {
                return Err(MirrorFlagError {
                    value: value.to_owned(),
                    reason: "expected REGISTRY=MIRROR[;REGISTRY=MIRROR...]".to_owned(),
                });
            };
            let mirror = parse_mirror(target).map_err(|reason| MirrorFlagError {
                value: value.to_owned(),
                reason,
            })?;
            self.push(orig.clone(), mirror);
        }
        Ok(())
    }

    /// Adds a `--registry-mirror` value (or `KANIKO_REGISTRY_MIRROR`): a mirror of Docker Hub.
    pub fn add_mirror(&mut self, value: &str) -> Result<(), MirrorFlagError> {
        let mirror = parse_mirror(value.trim()).map_err(|reason| MirrorFlagError {
            value: value.to_owned(),
            reason,
        })?;
        self.push(DOCKER_HUB.to_owned(), mirror);
        Ok(())
    }

    fn push(&mut self, orig: String, mirror: Mirror) {
        match self.entries.iter_mut().find(|(key, _)| *key == orig) {
            Some((_, mirrors)) => mirrors.push(mirror),
            None => self.entries.push((orig, vec![mirror])),
        }
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The mirrors configured for `registry`, in order.
    pub fn mirrors_of(&self, registry: &str) -> &[Mirror] {
        self.entries
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(registry))
            .map_or(&[], |(_, mirrors)| mirrors.as_slice())
    }
}

/// `docker.io` and friends mean Docker Hub, which references call `index.docker.io`.
fn normalise_key(key: &str) -> String {
    let key = key.trim().to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&key.as_str()) {
        DOCKER_HUB.to_owned()
    } else {
        key
    }
}

/// `host[:port][/prefix]`, an `https://` scheme and trailing `/` tolerated.
fn parse_mirror(value: &str) -> Result<Mirror, String> {
    let value = value.strip_prefix("https://").unwrap_or(value);
    let value = value.trim_end_matches('/');
    if value.contains("://") {
        return Err(
            "a mirror is HOST[:PORT][/PREFIX] (use --insecure-registry for plain HTTP)".to_owned(),
        );
    }
    let (registry, prefix) = match value.split_once('/') {
        Some((registry, prefix)) if valid_repository(prefix) => (registry, format!("{prefix}/")),
        Some((_, prefix)) => {
            return Err(format!(
                "{prefix:?} is not a repository prefix (lowercase path components)"
            ));
        }
        None => (value, String::new()),
    };
    if !valid_registry(registry) {
        return Err(format!(
            "{registry:?} is not a registry (expected HOST[:PORT][/PREFIX])"
        ));
    }
    Ok(Mirror {
        registry: registry.to_ascii_lowercase(),
        prefix,
    })
}

impl Client {
    /// Resolves an image to pull, trying the mirrors mapped for its registry first (see the
    /// module docs). The result's `reference` is `image`; its `source` is where the manifest
    /// came from and where its layers must be fetched.
    pub async fn resolve_pull(
        &self,
        image: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage, Error> {
        let mirrors = self.registry_maps().mirrors_of(image.registry());
        let mut failures = Vec::new();
        for mirror in mirrors {
            let mapped = image.relocated(&mirror.registry, &mirror.prefix)?;
            tracing::info!("Retrieving image {mapped} from mapped registry {mirror}");
            match self.resolve_image(&mapped, platform).await {
                Ok(mut resolved) => {
                    resolved.reference = image.clone();
                    resolved.source = mapped;
                    return Ok(resolved);
                }
                Err(err) => {
                    tracing::warn!(
                        "Failed to retrieve image {mapped} from mapped registry {mirror}: {err}; \
                         trying the next mirror, or {}",
                        image.registry()
                    );
                    failures.push(format!("{mirror}: {err}"));
                }
            }
        }
        if !mirrors.is_empty() && self.skip_default_registry_fallback() {
            return Err(Error::NotOnAnyMirror {
                target: image.to_string(),
                failures,
            });
        }
        self.resolve_image(image, platform).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn maps_follow_kaniko_syntax_in_order_and_mirrors_come_after_maps() {
        let mut maps = RegistryMaps::default();
        maps.add_map("index.docker.io=first.local;gcr.io=gcr-mirror.local:5000/gcr")
            .unwrap();
        maps.add_map("docker.io=second.local;third.local").unwrap();
        maps.add_mirror("https://mirror.gcr.io/").unwrap();
        let shown: Vec<String> = maps
            .mirrors_of(DOCKER_HUB)
            .iter()
            .map(Mirror::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "first.local",
                "second.local",
                "third.local",
                "mirror.gcr.io"
            ]
        );
        assert_eq!(
            maps.mirrors_of("gcr.io")[0].to_string(),
            "gcr-mirror.local:5000/gcr"
        );
        assert!(maps.mirrors_of("quay.io").is_empty());
        assert!(maps.mirrors_of("gcr.io.attacker.net").is_empty());
    }

    #[test]
    fn mirrored_references_keep_docker_hub_library_prefix_and_path_prefixes() {
        let mut maps = RegistryMaps::default();
        maps.add_mirror("mirror.local:5000/hub").unwrap();
        let mirror = &maps.mirrors_of(DOCKER_HUB)[0];
        let mapped = reference("busybox:1.36")
            .relocated(&mirror.registry, &mirror.prefix)
            .unwrap();
        assert_eq!(
            mapped.to_string(),
            "mirror.local:5000/hub/library/busybox:1.36"
        );
    }

    #[test]
    fn malformed_values_are_refused_with_the_value_and_reason() {
        let mut maps = RegistryMaps::default();
        for bad in [
            "mirror.local",
            "=m.local",
            "bad host=m.local",
            "a.io=http://m.local",
        ] {
            let err = maps.add_map(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(maps.add_mirror("not a host").is_err());
        assert!(maps.add_mirror("http://m.local").is_err());
        assert!(maps.is_empty());
    }
}
