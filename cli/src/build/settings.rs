//! Turning flags into a validated build: every path resolved, every image name parsed, every
//! contradiction refused before anything is pulled or run.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_registry::{ClientOptions, Reference};

use crate::args::BuildOptions;

/// A build request that has passed validation.
#[derive(Debug)]
pub struct Settings {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile.
    pub dockerfile: PathBuf,
    /// `--build-arg` values, with bare names filled from the environment.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--custom-platform`, else the host's platform.
    pub platform: kiln_graph::Platform,
    /// `--label` pairs, applied to the final image.
    pub labels: Vec<(String, String)>,
    /// Where the blob store and work area live.
    pub cache_dir: PathBuf,
    /// Parsed `--destination`s, in order.
    pub destinations: Vec<Reference>,
    /// `--no-push`.
    pub no_push: bool,
    /// `--tar-path`.
    pub tar_path: Option<PathBuf>,
    /// `--oci-layout-path`.
    pub oci_layout_path: Option<PathBuf>,
    /// `--digest-file`.
    pub digest_file: Option<PathBuf>,
    /// `--image-name-with-digest-file`.
    pub image_name_with_digest_file: Option<PathBuf>,
    /// `--image-name-tag-with-digest-file`.
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// Registry client settings.
    pub registry: ClientOptions,
}

impl Settings {
    /// Validates `options` against the filesystem and environment.
    pub fn new(options: BuildOptions) -> anyhow::Result<Settings> {
        let context = context_dir(&options.context)?;
        let dockerfile = dockerfile_path(&options.dockerfile, &context)?;
        if options.destinations.is_empty() && !options.no_push {
            bail!("no --destination given: name where to push the image, or pass --no-push");
        }
        let destinations = options
            .destinations
            .iter()
            .map(|name| {
                name.parse::<Reference>()
                    .with_context(|| format!("--destination {name:?} is not a valid image name"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if destinations.is_empty()
            && (options.image_name_with_digest_file.is_some()
                || options.image_name_tag_with_digest_file.is_some())
        {
            bail!(
                "--image-name-with-digest-file and --image-name-tag-with-digest-file need a --destination"
            );
        }
        let build_args = options
            .build_args
            .iter()
            .map(|arg| build_arg(arg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let labels = options
            .labels
            .iter()
            .map(|label| {
                label
                    .split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .with_context(|| format!("--label {label:?} must be KEY=VALUE"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cache_dir = match options.cache_dir {
            Some(dir) => absolute(&dir)?,
            None => default_cache_dir()?,
        };
        let registry = ClientOptions {
            insecure_push: options.insecure,
            insecure_pull: options.insecure_pull,
            insecure_registries: options.insecure_registries,
            skip_tls_verify_push: options.skip_tls_verify,
            skip_tls_verify_pull: options.skip_tls_verify_pull,
            skip_tls_verify_registries: options.skip_tls_verify_registries,
            docker_config_dir: None,
            user_agent: format!("kiln/{}", env!("CARGO_PKG_VERSION")),
        };
        Ok(Settings {
            context,
            dockerfile,
            build_args,
            target: options.target,
            platform: target_platform(options.custom_platform.as_deref())?,
            labels,
            cache_dir,
            destinations,
            no_push: options.no_push,
            tar_path: options.tar_path.map(|p| absolute(&p)).transpose()?,
            oci_layout_path: options.oci_layout_path.map(|p| absolute(&p)).transpose()?,
            digest_file: options.digest_file,
            image_name_with_digest_file: options.image_name_with_digest_file,
            image_name_tag_with_digest_file: options.image_name_tag_with_digest_file,
            registry,
        })
    }
}

/// `--context`: a local directory, optionally as `dir://path`. Other Kaniko schemes (tar://,
/// gs://, s3://, git://) are refused by name rather than mistaken for directories.
pub(crate) fn context_dir(context: &str) -> anyhow::Result<PathBuf> {
    let path = match context.split_once("://") {
        None => context,
        Some(("dir", path)) => path,
        Some((scheme, _)) => bail!(
            "--context {context:?}: {scheme}:// contexts are not supported yet; pass a local directory"
        ),
    };
    let dir = absolute(Path::new(path))?;
    if !dir.is_dir() {
        bail!(
            "--context {context:?}: {} is not a directory",
            dir.display()
        );
    }
    Ok(dir)
}

/// Kaniko's rule: the Dockerfile path as given if it exists, else relative to the context.
pub(crate) fn dockerfile_path(dockerfile: &Path, context: &Path) -> anyhow::Result<PathBuf> {
    if dockerfile.is_file() {
        return absolute(dockerfile);
    }
    let in_context = context.join(dockerfile);
    if in_context.is_file() {
        return Ok(in_context);
    }
    bail!(
        "no Dockerfile at {} or {}: pass its path with --dockerfile",
        dockerfile.display(),
        in_context.display()
    )
}

/// `KEY=VALUE`, or a bare `KEY` whose value comes from kiln's environment (Kaniko does this).
pub(crate) fn build_arg(arg: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = match arg.split_once('=') {
        Some((key, value)) => (key.to_owned(), value.to_owned()),
        None => (arg.to_owned(), std::env::var(arg).unwrap_or_default()),
    };
    if key.is_empty() {
        bail!("--build-arg {arg:?} has no name");
    }
    Ok((key, value))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
fn default_cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("kiln"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set: pass --cache-dir")?;
    Ok(PathBuf::from(home).join(".cache").join("kiln"))
}

/// The host's platform in the front end's terms: what `BUILD*` args name and what RUN can run.
pub(crate) fn host_platform() -> kiln_graph::Platform {
    let host = kiln_registry::Platform::host();
    kiln_graph::Platform {
        os: host.os,
        architecture: host.architecture,
        variant: host.variant,
    }
}

/// `--custom-platform`, or the host's platform.
pub(crate) fn target_platform(custom: Option<&str>) -> anyhow::Result<kiln_graph::Platform> {
    match custom {
        None => Ok(host_platform()),
        Some(text) => text
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--custom-platform: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_arg_without_value_comes_from_the_environment() {
        // PATH is always set in a test process.
        let (key, value) = build_arg("PATH").unwrap();
        assert_eq!(key, "PATH");
        assert_eq!(value, std::env::var("PATH").unwrap());
        assert_eq!(build_arg("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(build_arg("=x").is_err());
    }

    #[test]
    fn unsupported_context_schemes_are_refused_by_name() {
        let err = context_dir("s3://bucket/ctx").unwrap_err().to_string();
        assert!(err.contains("s3://"), "{err}");
    }
}
