//! Image references (`registry/repository[:tag][@digest]`) with Docker's normalisation.
//!
//! Users write `busybox` and mean `index.docker.io/library/busybox:latest`; every other
//! part of the client needs the fully qualified form, so parsing normalises once here.

use std::fmt;
use std::str::FromStr;

use crate::digest;

/// The registry that Docker Hub references resolve to, as go-containerregistry names it.
pub const DOCKER_HUB: &str = "index.docker.io";
const DOCKER_HUB_ALIAS: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A fully qualified image reference.
///
/// Invariant (kept by every constructor): at least one of tag and digest is present, the
/// registry, repository, tag and digest are syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    /// The registry this copy was relocated from (a mirror or `--registry-map` target):
    /// cloud credential sources are chosen by the name the user wrote, not the mirror's.
    mapped_from: Option<String>,
}

/// Why a string is not a valid image reference; each variant names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The reference was empty.
    #[error("invalid image reference \"\": the reference is empty")]
    Empty,
    /// The registry part (`host[:port]`) is malformed.
    #[error("invalid image reference {input:?}: invalid registry {registry:?}")]
    Registry {
        /// The full input.
        input: String,
        /// The offending registry part.
        registry: String,
    },
    /// The repository contains upper-case letters, which registries reject.
    #[error("invalid image reference {input:?}: repository name {repository:?} must be lowercase")]
    Uppercase {
        /// The full input.
        input: String,
        /// The offending repository.
        repository: String,
    },
    /// The repository path is malformed.
    #[error(
        "invalid image reference {input:?}: invalid repository name {repository:?} (path components are lowercase letters and digits separated by '.', '_', '__' or '-', joined by '/')"
    )]
    Repository {
        /// The full input.
        input: String,
        /// The offending repository.
        repository: String,
    },
    /// The name is longer than registries accept.
    #[error("invalid image reference {input:?}: name is longer than {MAX_NAME_LEN} characters")]
    NameTooLong {
        /// The full input.
        input: String,
    },
    /// The tag is malformed.
    #[error(
        "invalid image reference {input:?}: invalid tag {tag:?} (a tag is up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-')"
    )]
    Tag {
        /// The full input.
        input: String,
        /// The offending tag.
        tag: String,
    },
    /// The digest is malformed.
    #[error("invalid image reference {input:?}: invalid digest {digest:?}: {reason}")]
    Digest {
        /// The full input.
        input: String,
        /// The offending digest.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Reference {
    /// The registry host (with port), e.g. `index.docker.io` or `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The registry whose cloud credentials apply: the one this reference was relocated
    /// from, else its own.
    pub fn origin(&self) -> &str {
        self.mapped_from.as_deref().unwrap_or(&self.registry)
    }

    /// The tag, if the reference names one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference is pinned.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same repository pinned to `digest`, keeping the tag (so logs still show it).
    ///
    /// The digest is expected to come from a registry response or a local hash; an
    /// ill-formed one is rejected by the registry rather than here, so this stays
    /// infallible for the common case. Use [`Reference::try_with_digest`] for user input.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// Like [`Reference::with_digest`], but validates the digest first.
    pub fn try_with_digest(&self, digest: &str) -> Result<Reference, ReferenceError> {
        digest::validate(digest).map_err(|reason| ReferenceError::Digest {
            input: format!("{}@{digest}", self.repo_ref()),
            digest: digest.to_owned(),
            reason,
        })?;
        Ok(self.with_digest(digest))
    }

    /// `registry/repository@digest` with no tag: the form for pushing manifests by digest
    /// (index children) and for pinned pulls.
    pub fn pinned(&self, digest: &str) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// The same repository with `tag` and no digest: the form pushes go to.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same image on another registry, with `prefix` (empty or ending in `/`) put in
    /// front of the repository: where a registry mirror or `--registry-map` target holds it
    /// (`index.docker.io/library/busybox` -> `mirror.local/dockerhub/library/busybox`).
    pub fn relocated(&self, registry: &str, prefix: &str) -> Result<Reference, ReferenceError> {
        let repository = format!("{prefix}{}", self.repository);
        let input = format!("{registry}/{repository}");
        if !valid_registry(registry) {
            return Err(ReferenceError::Registry {
                input,
                registry: registry.to_owned(),
            });
        }
        if !valid_repository(&repository) {
            return Err(ReferenceError::Repository { input, repository });
        }
        Ok(Reference {
            registry: registry.to_owned(),
            repository,
            mapped_from: Some(self.origin().to_owned()),
            ..self.clone()
        })
    }

    /// `registry/repository`, the key for per-repository state such as upload targets.
    pub fn repo_ref(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to put after `/manifests/` when fetching: the digest if pinned, else the tag.
    pub(crate) fn manifest_selector(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// `registry/repository@digest`, how blobs are named in messages.
    pub(crate) fn blob_display(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repo_ref())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (input, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        let (registry, path) = split_registry(name);

        if !valid_registry(registry) {
            return Err(ReferenceError::Registry {
                input: input.to_owned(),
                registry: registry.to_owned(),
            });
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: input.to_owned(),
                repository: path.to_owned(),
            });
        }
        if !valid_repository(path) {
            return Err(ReferenceError::Repository {
                input: input.to_owned(),
                repository: path.to_owned(),
            });
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::Tag {
                input: input.to_owned(),
                tag: tag.to_owned(),
            });
        }
        if let Some(d) = digest {
            digest::validate(d).map_err(|reason| ReferenceError::Digest {
                input: input.to_owned(),
                digest: d.to_owned(),
                reason,
            })?;
        }

        let (registry, repository) = normalise_docker_hub(registry, path);
        // Docker's limit applies to the normalised name, spelt with `docker.io`
        // (distribution/reference's ParseNormalizedNamed): `foo` counts as
        // `docker.io/library/foo`. Counting the input instead accepted names whose own display
        // (`index.docker.io/library/...`) was then refused (found by the `reference` fuzz target).
        let counted_registry = if registry == DOCKER_HUB {
            DOCKER_HUB_ALIAS
        } else {
            registry.as_str()
        };
        if counted_registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong {
                input: input.to_owned(),
            });
        }
        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_owned),
            mapped_from: None,
        })
    }
}

/// Splits `name[:tag]`; a colon before the last `/` belongs to a registry port.
fn split_tag(name: &str) -> (&str, Option<&str>) {
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => (&name[..colon], Some(&name[colon + 1..])),
        _ => (name, None),
    }
}

/// Docker's rule: the first component is a registry if it has a `.` or `:`, is
/// `localhost`, or has upper-case letters (repositories cannot); otherwise Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB_ALIAS, name),
    }
}

fn normalise_docker_hub(registry: &str, path: &str) -> (String, String) {
    if registry == DOCKER_HUB_ALIAS || registry == DOCKER_HUB {
        let repository = if path.contains('/') {
            path.to_owned()
        } else {
            format!("library/{path}")
        };
        (DOCKER_HUB.to_owned(), repository)
    } else {
        (registry.to_owned(), path.to_owned())
    }
}

pub(crate) fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // [IPv6]:port
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if let Some(port) = port
        && !port
            .parse::<u16>()
            .is_ok_and(|p| p > 0 && port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if registry.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub(crate) fn valid_repository(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(valid_path_component)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes().split_first() {
        Some((&first, rest)) => {
            tag.len() <= MAX_TAG_LEN
                && word(first)
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        s.parse()
            .unwrap_or_else(|e| panic!("{s} should parse: {e}"))
    }

    #[test]
    fn normalises_references_like_docker() {
        let d = format!("@{D}");
        // (input, registry, repository, tag, digest)
        type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let table: &[Row] = &[
            (
                "busybox",
                DOCKER_HUB,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "busybox:1.36",
                DOCKER_HUB,
                "library/busybox",
                Some("1.36"),
                None,
            ),
            (
                "docker.io/busybox",
                DOCKER_HUB,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/library/busybox",
                DOCKER_HUB,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "bitnami/redis",
                DOCKER_HUB,
                "bitnami/redis",
                Some("latest"),
                None,
            ),
            ("localhost/a", "localhost", "a", Some("latest"), None),
            (
                "localhost:5000/a/b:tag",
                "localhost:5000",
                "a/b",
                Some("tag"),
                None,
            ),
            (
                "127.0.0.1:5000/x",
                "127.0.0.1:5000",
                "x",
                Some("latest"),
                None,
            ),
            ("[::1]:5000/x:v1", "[::1]:5000", "x", Some("v1"), None),
            ("gcr.io/p/a/b/c", "gcr.io", "p/a/b/c", Some("latest"), None),
            (
                "Host.Example.COM/x",
                "Host.Example.COM",
                "x",
                Some("latest"),
                None,
            ),
            (
                "localhost",
                DOCKER_HUB,
                "library/localhost",
                Some("latest"),
                None,
            ),
            (
                "localhost:65535/x",
                "localhost:65535",
                "x",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/busybox",
                DOCKER_HUB,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "docker.io/org/app:v_1.2-rc",
                DOCKER_HUB,
                "org/app",
                Some("v_1.2-rc"),
                None,
            ),
            (
                "a.b_c__d-e--f",
                DOCKER_HUB,
                "library/a.b_c__d-e--f",
                Some("latest"),
                None,
            ),
        ];
        for &(input, registry, repository, tag, digest) in table {
            let r = parse(input);
            assert_eq!(
                (r.registry(), r.repository(), r.tag(), r.digest()),
                (registry, repository, tag, digest),
                "{input}"
            );
        }
        let r = parse(&format!("host/a{d}"));
        assert_eq!(
            (r.registry(), r.repository(), r.tag(), r.digest()),
            (DOCKER_HUB, "host/a", None, Some(D))
        );
        let r = parse(&format!("host.example:443/a{d}"));
        assert_eq!(
            (r.registry(), r.repository(), r.tag(), r.digest()),
            ("host.example:443", "a", None, Some(D))
        );
    }

    #[test]
    fn digest_only_reference_has_no_default_tag() {
        let r = parse(&format!("registry.example.com/a@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.manifest_selector(), D);
    }

    #[test]
    fn tag_and_digest_are_both_kept_and_digest_wins_for_fetching() {
        let r = parse(&format!("a:tag@{D}"));
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.manifest_selector(), D);
        assert_eq!(r.to_string(), format!("index.docker.io/library/a:tag@{D}"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "localhost:5000/a/b:tag",
            "index.docker.io/library/busybox:latest",
            &format!("gcr.io/x/y:1@{D}"),
            &format!("[::1]:5000/x@{D}"),
        ] {
            assert_eq!(parse(s).to_string(), s);
            assert_eq!(parse(&parse(s).to_string()), parse(s));
        }
    }

    #[test]
    fn with_digest_and_with_tag_derive_new_references() {
        let r = parse("localhost:5000/a:v1");
        assert_eq!(
            r.with_digest(D).to_string(),
            format!("localhost:5000/a:v1@{D}")
        );
        assert_eq!(
            r.with_digest(D).with_tag("v2").to_string(),
            "localhost:5000/a:v2"
        );
        assert_eq!(r.repo_ref(), "localhost:5000/a");
        assert_eq!(r.pinned(D).to_string(), format!("localhost:5000/a@{D}"));
        assert!(r.try_with_digest("sha256:nothex").is_err());
    }

    #[test]
    fn relocation_keeps_tag_and_digest_and_validates_the_new_name() {
        let r = parse(&format!("busybox:1.36@{D}"));
        let moved = r.relocated("mirror.local:5000", "hub/").unwrap();
        assert_eq!(
            moved.to_string(),
            format!("mirror.local:5000/hub/library/busybox:1.36@{D}")
        );
        assert_eq!(
            r.relocated("mirror.local", "").unwrap().repository(),
            "library/busybox"
        );
        assert!(matches!(
            r.relocated("bad host", ""),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            r.relocated("m.io", "Up/"),
            Err(ReferenceError::Repository { .. })
        ));
    }

    #[test]
    fn rejects_invalid_references_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Busybox", "must be lowercase"),
            ("example.com/Foo/bar", "must be lowercase"),
            ("a//b", "invalid repository"),
            ("-a", "invalid repository"),
            ("a-", "invalid repository"),
            ("a...b", "invalid repository"),
            ("a b", "invalid repository"),
            ("a:", "invalid tag"),
            ("a:.tag", "invalid tag"),
            ("a:tag!", "invalid tag"),
            ("a@sha256:123", "invalid digest"),
            ("a@notadigest", "invalid digest"),
            ("host:port/a", "invalid registry"),
            ("-host.com/a", "invalid registry"),
            ("host.com:/a", "invalid registry"),
            ("[zz]:5000/a", "invalid registry"),
            ("host.com:65536/a", "invalid registry"),
            ("host.com:0/a", "invalid registry"),
            ("host.com:+80/a", "invalid registry"),
            ("localhost:/a", "invalid registry"),
            (":5000/a", "invalid registry"),
            ("a/", "invalid repository"),
            ("/a", "invalid repository"),
            ("a/b c:tag", "invalid repository"),
            ("a:tag@", "invalid digest"),
            (
                "a@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "invalid digest",
            ),
        ];
        for &(input, want) in cases {
            match input.parse::<Reference>() {
                Ok(r) => panic!("{input:?} should be rejected, parsed as {r}"),
                Err(e) => assert!(
                    e.to_string().contains(want),
                    "{input:?}: error {e:?} should mention {want:?}"
                ),
            }
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(matches!(
            long.parse::<Reference>(),
            Err(ReferenceError::NameTooLong { .. })
        ));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(matches!(
            long_tag.parse::<Reference>(),
            Err(ReferenceError::Tag { .. })
        ));
    }

    /// Found by the `reference` fuzz target: a Docker Hub name of 232 characters parsed, but
    /// its display, `index.docker.io/library/<name>`, was longer than 255 and did not. The limit
    /// counts the normalised name as Docker does (`docker.io/library/<name>`), for the input and
    /// the display alike.
    #[test]
    fn the_name_limit_counts_the_normalised_name_so_every_display_parses_again() {
        let fuzzed = "lh-c_b__j_b__j-cb-clh-c_b__j-cb-c_b__j_j-cb-clh__40coco-cb-clh-c_j_j-cb-clh__04coco-cb-clh_b__j-cb-c_b__jlh-c_b__j_b__ber.i0000j-cb-clh-c_b__j-cb-c_b__j_j-cb-clh__04coco-cb-clh-c_b__j-cb-c_b__j_j-cb-clh__04cococo_j-cb-clh__04cocococ";
        let parsed: Reference = fuzzed.parse().unwrap();
        let again: Reference = parsed.to_string().parse().unwrap();
        assert_eq!(again, parsed);
        // `docker.io/library/` is 18 characters: 237 more make exactly 255.
        let at_limit = "a".repeat(255 - "docker.io/library/".len());
        let parsed: Reference = at_limit.parse().unwrap();
        let again: Reference = parsed.to_string().parse().unwrap();
        assert_eq!(again, parsed);
        assert!(matches!(
            format!("{at_limit}b").parse::<Reference>(),
            Err(ReferenceError::NameTooLong { .. })
        ));
        // Other registries count as written.
        let own = format!("r.example/{}", "c".repeat(255 - "r.example/".len()));
        assert!(own.parse::<Reference>().is_ok());
        assert!(format!("{own}c").parse::<Reference>().is_err());
    }
}
