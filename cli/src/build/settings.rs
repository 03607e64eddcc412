//! Turning flags into a validated build: every path resolved, every image name parsed, every
//! contradiction refused before anything is pulled or run.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_exec::compression::Compression;
use kiln_exec::layer::LayerOptions;
use kiln_registry::{ClientOptions, Reference};

use crate::args::{BuildOptions, LayerCompression};
use crate::image::format::ImageFormat;

/// BuildKit's build argument (and buildx's environment variable) fixing the build's time.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// 9999-12-31T23:59:59Z: the last second an RFC 3339 `created` field can hold.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

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
    /// How new layers are written: `--compression`, `--compression-level`, and the mtime
    /// ceiling of `--reproducible` / `SOURCE_DATE_EPOCH`.
    pub layers: LayerOptions,
    /// `--image-format`.
    pub image_format: ImageFormat,
    /// The fixed time (seconds since 1970) the image is dated with instead of now:
    /// `SOURCE_DATE_EPOCH`, else 0 with `--reproducible`.
    pub epoch: Option<u64>,
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
        let compression = match options.compression {
            LayerCompression::Gzip => Compression::Gzip,
            LayerCompression::Zstd => Compression::Zstd,
        };
        if compression == Compression::Zstd && options.image_format == ImageFormat::Docker {
            bail!(
                "--compression zstd needs --image-format oci: Docker schema 2 images have no zstd layer type"
            );
        }
        let epoch = match source_date_epoch(&build_args)? {
            Some(epoch) => Some(epoch),
            None => options.reproducible.then_some(0),
        };
        let layers = LayerOptions {
            compression,
            level: options.compression_level,
            mtime_ceiling: epoch.map(|e| i64::try_from(e).unwrap_or(i64::MAX)),
            ..LayerOptions::default()
        };
        layers.validate().context("--compression-level")?;
        Ok(Settings {
            context,
            dockerfile,
            build_args,
            target: options.target,
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
            layers,
            image_format: options.image_format,
            epoch,
        })
    }
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` (as BuildKit takes it), else from kiln's environment
/// (as buildx passes it on); an empty value means unset, as in reproducible-builds.org's spec.
fn source_date_epoch(build_args: &[(String, String)]) -> anyhow::Result<Option<u64>> {
    let value = build_args
        .iter()
        .rev()
        .find(|(key, _)| key == SOURCE_DATE_EPOCH)
        .map(|(_, value)| value.clone())
        .or_else(|| std::env::var(SOURCE_DATE_EPOCH).ok());
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<u64>() {
            Ok(epoch) if epoch <= LAST_RFC3339_SECOND => Ok(Some(epoch)),
            _ => bail!(
                "{SOURCE_DATE_EPOCH}={text:?} is not a number of seconds between 1970 and the year 9999"
            ),
        },
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
    fn source_date_epoch_build_arg_is_read_and_garbage_refused() {
        let args = |value: &str| vec![(SOURCE_DATE_EPOCH.to_owned(), value.to_owned())];
        assert_eq!(
            source_date_epoch(&args("1700000000")).unwrap(),
            Some(1_700_000_000)
        );
        let err = source_date_epoch(&args("yesterday"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("yesterday"), "{err}");
        assert!(source_date_epoch(&args("99999999999999")).is_err());
        assert_eq!(source_date_epoch(&args("")).unwrap(), None);
    }

    #[test]
    fn unsupported_context_schemes_are_refused_by_name() {
        let err = context_dir("s3://bucket/ctx").unwrap_err().to_string();
        assert!(err.contains("s3://"), "{err}");
    }
}
