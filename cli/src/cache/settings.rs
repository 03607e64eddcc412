//! What the cache flags ask for, checked once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kiln_registry::Reference;

/// Where remote cache records and layers live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRepo {
    /// A repository in a registry (tags are chosen by kiln).
    Registry(Reference),
    /// An OCI image layout directory (`--cache-repo oci:/path`).
    Layout(PathBuf),
}

/// The cache settings of a build.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `--cache`: look up and record step results at all.
    pub enabled: bool,
    /// The remote cache, if any: `--cache-repo`, else `<first destination>/cache`.
    pub repo: Option<CacheRepo>,
    /// `--cache-ttl`: older results are ignored.
    pub ttl: Duration,
    /// `--cache-copy-layers`.
    pub copy_layers: bool,
    /// `--cache-run-layers`.
    pub run_layers: bool,
    /// Push new results to the remote (not `--no-push-cache`).
    pub push: bool,
}

impl CacheSettings {
    /// Checks the flags; `destinations` are the parsed `--destination`s.
    pub fn new(
        options: &crate::args::BuildOptions,
        destinations: &[Reference],
    ) -> anyhow::Result<CacheSettings> {
        let repo = match options.cache_repo.as_deref() {
            Some(text) => Some(parse_repo(text)?),
            None => destinations
                .first()
                .map(|first| {
                    format!("{}/{}/cache", first.registry(), first.repository())
                        .parse::<Reference>()
                        .map(CacheRepo::Registry)
                        .with_context(|| format!("deriving the cache repository from {first}"))
                })
                .transpose()?,
        };
        Ok(CacheSettings {
            enabled: options.cache,
            repo: repo.filter(|_| options.cache),
            ttl: options.cache_ttl,
            copy_layers: options.cache_copy_layers,
            run_layers: options.cache_run_layers,
            push: !options.no_push_cache,
        })
    }
}

/// `oci:/path`, or a repository name without tag or digest (kiln picks the tags).
fn parse_repo(text: &str) -> anyhow::Result<CacheRepo> {
    if let Some(path) = text.strip_prefix("oci:") {
        if path.is_empty() {
            bail!("--cache-repo oci: needs a directory, as in oci:/cache/layout");
        }
        return Ok(CacheRepo::Layout(PathBuf::from(path)));
    }
    let reference: Reference = text
        .parse()
        .with_context(|| format!("--cache-repo {text:?} is not a repository name"))?;
    if reference.digest().is_some() {
        bail!("--cache-repo {text:?} names a digest: give a repository, kiln chooses the tags");
    }
    Ok(CacheRepo::Registry(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oci_prefix_means_a_local_layout() {
        assert_eq!(
            parse_repo("oci:/var/cache/kiln-layout").expect("parse"),
            CacheRepo::Layout(PathBuf::from("/var/cache/kiln-layout"))
        );
        assert!(parse_repo("oci:").is_err());
    }

    #[test]
    fn a_registry_repository_is_taken_as_is() {
        let CacheRepo::Registry(reference) =
            parse_repo("localhost:5000/team/app/cache").expect("parse")
        else {
            panic!("not a registry repo");
        };
        assert_eq!(reference.registry(), "localhost:5000");
        assert_eq!(reference.repository(), "team/app/cache");
    }
}
