//! Turning flags into a validated build: every path resolved, every image name parsed, every
//! contradiction refused before anything is pulled or run.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_exec::compression::Compression;
use kiln_exec::ignore::IgnoreList;
use kiln_exec::layer::LayerOptions;
use kiln_exec::run::Isolation;
use kiln_exec::snapshot::ScanMode;
use kiln_exec::snapshotter::Strategy;
use kiln_registry::{ClientOptions, Reference, RegistryMaps, RetryPolicy};

use crate::args::{BuildOptions, LayerCompression, SnapshotModeArg, SnapshotStrategyArg};
use crate::image::format::ImageFormat;

/// BuildKit's build argument (and buildx's environment variable) fixing the build's time.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// 9999-12-31T23:59:59Z: the last second an RFC 3339 `created` field can hold.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// A build request that has passed validation.
#[derive(Debug)]
pub struct Settings {
    /// Where the build context comes from.
    pub context: super::contexts::ContextSource,
    /// `--context-sub-path`.
    pub context_sub_path: Option<String>,
    /// The Dockerfile: resolved for a directory context, else as given (resolved against the
    /// context once it is materialised).
    pub dockerfile: PathBuf,
    /// `--build-arg` values, with bare names filled from the environment.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--custom-platform`, else the host's platform.
    pub platform: kiln_graph::Platform,
    /// `--label` pairs, applied to the final image.
    pub labels: Vec<(String, String)>,
    /// `--secret`s, by id (where each comes from, never the value).
    pub secrets: super::secrets::Secrets,
    /// `--jobs`, or the number of CPUs kiln may use.
    pub jobs: NonZeroUsize,
    /// Where the blob store and work area live.
    pub cache_dir: PathBuf,
    /// The layer cache flags.
    pub cache: crate::cache::CacheSettings,
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
    /// `--push-ignore-immutable-tag-errors`.
    pub ignore_immutable_tags: bool,
    /// Whether to probe every destination for push access before building.
    pub check_push_access: bool,
    /// How RUN changes become layers.
    pub snapshot: SnapshotSettings,
    /// How new layers are written: `--compression`, `--compression-level`, and the mtime
    /// ceiling of `--reproducible` / `SOURCE_DATE_EPOCH`.
    pub layers: LayerOptions,
    /// `--image-format`.
    pub image_format: ImageFormat,
    /// The fixed time (seconds since 1970) the image is dated with instead of now:
    /// `SOURCE_DATE_EPOCH`, else 0 with `--reproducible`.
    pub epoch: Option<u64>,
    /// Where RUN executes, and with `--isolation=none` what the build must not touch.
    pub isolation: super::isolation::IsolationSettings,
    /// `--annotation` pairs, written into the manifest.
    pub annotations: Vec<(String, String)>,
    /// `$BUILDER_OUTPUT`: a directory where `images` lists what was pushed (Cloud Build's
    /// convention, which Kaniko follows).
    pub builder_output: Option<PathBuf>,
}

/// `--snapshot-strategy`, `--snapshot-mode`, `--single-snapshot`, `--ignore-path`,
/// `--ignore-var-run`.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// The strategy asked for; `None` is `auto`, decided once overlayfs has been probed.
    pub strategy: Option<Strategy>,
    /// What the scan strategy compares (also the fallback of `auto`).
    pub mode: ScanMode,
    /// One layer per stage.
    pub single_snapshot: bool,
    /// Absolute paths never snapshotted.
    pub ignore_paths: Vec<PathBuf>,
}

impl Settings {
    /// Validates `options` against the filesystem and environment.
    pub fn new(options: BuildOptions) -> anyhow::Result<Settings> {
        super::compat::check(&options)?;
        let context = super::contexts::ContextSource::parse(&options.context)?;
        let annotations = super::compat::pairs("--annotation", &options.annotations)?;
        let mode = super::isolation::decide(&options)?;
        let mut snapshot = snapshot_settings(&options)?;
        let dockerfile = match &context {
            super::contexts::ContextSource::Dir(dir) if options.context_sub_path.is_none() => {
                dockerfile_path(&options.dockerfile, dir)?
            }
            _ => options.dockerfile.clone(),
        };
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
        let cache = crate::cache::CacheSettings::new(&options, &destinations)?;
        let build_args = options
            .build_args
            .iter()
            .map(|arg| build_arg(arg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let context = context.with_clone_options(super::git::CloneOptions {
            keep_git_dir: keep_git_dir(&build_args),
            ..super::git::CloneOptions::parse(&options.git)?
        });
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
        let secrets = super::secrets::Secrets::parse(&options.secrets)?;
        let cache_dir = match (&options.cache_dir, mode) {
            (Some(dir), _) => absolute(dir)?,
            // Kaniko's default; `$HOME` is part of the root filesystem the build replaces.
            (None, Isolation::None) => PathBuf::from(super::cache_dir::CONTAINER_CACHE_DIR),
            (None, Isolation::Chroot) => default_cache_dir()?,
        };
        let ignore = match mode {
            Isolation::Chroot => IgnoreList::default(),
            Isolation::None => {
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                    .context("reading /proc/self/mountinfo for the mount points to leave alone")?;
                // A context that is not a directory is unpacked under the cache directory.
                let mut own: Vec<&Path> = vec![&cache_dir, &dockerfile];
                if let super::contexts::ContextSource::Dir(dir)
                | super::contexts::ContextSource::Tar(dir) = &context
                {
                    own.push(dir);
                }
                let list = super::isolation::container_ignore_list(&options, &mountinfo, &own);
                tracing::debug!("ignore list: {:?}", list.paths());
                snapshot.ignore_paths = list
                    .paths()
                    .iter()
                    .map(|p| Path::new("/").join(p))
                    .collect();
                list
            }
        };
        let isolation = super::isolation::IsolationSettings {
            mode,
            ignore,
            cleanup: options.cleanup,
            pre_cleanup: options.pre_cleanup,
        };
        let registry_maps =
            registry_maps(&options.registry_maps, &options.registry_mirrors, |name| {
                std::env::var(name).ok()
            })?;
        let registry = ClientOptions {
            insecure_push: options.insecure,
            insecure_pull: options.insecure_pull,
            insecure_registries: options.insecure_registries,
            skip_tls_verify_push: options.skip_tls_verify,
            skip_tls_verify_pull: options.skip_tls_verify_pull,
            skip_tls_verify_registries: options.skip_tls_verify_registries,
            registry_certificates: options.registry_certificates,
            client_certificates: options.registry_client_certs,
            registry_maps,
            skip_default_registry_fallback: options.skip_default_registry_fallback,
            docker_config_dir: None,
            credential_sources: options.credential_helpers.unwrap_or_default(),
            user_agent: format!("kiln/{}", env!("CARGO_PKG_VERSION")),
            push_retry: RetryPolicy::with_retries(options.push_retry),
            pull_retry: RetryPolicy::with_retries(options.image_download_retry),
            progress: Some(crate::progress::renderer()),
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
            context_sub_path: options.context_sub_path.clone(),
            dockerfile,
            build_args,
            target: options.target,
            platform: target_platform(options.custom_platform.as_deref())?,
            labels,
            secrets,
            // One root filesystem, `/`: stages take turns in it.
            jobs: match mode {
                Isolation::None => NonZeroUsize::MIN,
                Isolation::Chroot => options.jobs.unwrap_or_else(default_jobs),
            },
            cache_dir,
            cache,
            destinations,
            no_push: options.no_push,
            tar_path: options.tar_path.map(|p| absolute(&p)).transpose()?,
            oci_layout_path: options.oci_layout_path.map(|p| absolute(&p)).transpose()?,
            digest_file: options.digest_file,
            image_name_with_digest_file: options.image_name_with_digest_file,
            image_name_tag_with_digest_file: options.image_name_tag_with_digest_file,
            registry,
            ignore_immutable_tags: options.push_ignore_immutable_tag_errors,
            check_push_access: !options.no_push && !options.skip_push_permission_check,
            snapshot,
            layers,
            image_format: options.image_format,
            epoch,
            isolation,
            annotations,
            builder_output: std::env::var_os("BUILDER_OUTPUT")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// As many stages at once as kiln may use CPUs (its affinity mask and cgroup quota included).
fn default_jobs() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

fn snapshot_settings(options: &BuildOptions) -> anyhow::Result<SnapshotSettings> {
    let mode = match options.snapshot_mode {
        SnapshotModeArg::Full => ScanMode::Full,
        SnapshotModeArg::Redo => ScanMode::Redo,
        SnapshotModeArg::Time => ScanMode::Time,
    };
    let strategy = match options.snapshot_strategy {
        SnapshotStrategyArg::Auto => None,
        SnapshotStrategyArg::Overlay => Some(Strategy::Overlay),
        SnapshotStrategyArg::Scan => Some(Strategy::Scan(mode)),
    };
    if strategy == Some(Strategy::Overlay) && options.snapshot_mode != SnapshotModeArg::Redo {
        bail!(
            "--snapshot-mode applies to the scan strategy only; drop it or pass --snapshot-strategy scan"
        );
    }
    if options.use_new_run {
        tracing::info!(
            "--use-new-run has no effect: kiln's snapshots never hash the whole filesystem"
        );
    }
    let mut ignore_paths = Vec::new();
    for path in &options.ignore_paths {
        if !path.is_absolute() {
            bail!(
                "--ignore-path {}: must be an absolute path in the image",
                path.display()
            );
        }
        if path
            .to_str()
            .is_some_and(|text| text.split('/').any(kiln_exec::glob::has_wildcards))
        {
            bail!(
                "--ignore-path {}: wildcards are not supported (Kaniko matches each component with filepath.Match; kiln matches whole paths): list the paths instead",
                path.display()
            );
        }
        ignore_paths.push(path.clone());
    }
    if options.ignore_var_run == Some(true) {
        ignore_paths.push(PathBuf::from("/var/run"));
    }
    Ok(SnapshotSettings {
        strategy,
        mode,
        single_snapshot: options.single_snapshot,
        ignore_paths,
    })
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` (as BuildKit takes it), else from kiln's environment
/// (as buildx passes it on); an empty value means unset, as in reproducible-builds.org's spec.
/// BuildKit's `--build-arg BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`: a git context keeps its `.git`.
fn keep_git_dir(build_args: &[(String, String)]) -> bool {
    build_args.iter().any(|(key, value)| {
        key == "BUILDKIT_CONTEXT_KEEP_GIT_DIR" && matches!(value.as_str(), "1" | "true")
    })
}

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
    let text = dockerfile.to_string_lossy();
    if text.starts_with("http://") || text.starts_with("https://") {
        bail!(
            "--dockerfile {text}: Dockerfiles are not downloaded; fetch it first and pass its path (Kaniko's URL form is not supported)"
        );
    }
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

/// Kaniko's order: `--registry-map` flags, then `KANIKO_REGISTRY_MAP`, then the mirrors
/// (`--registry-mirror` flags, then `KANIKO_REGISTRY_MIRROR`) as maps of Docker Hub.
/// `KANIKO_REGISTRY_MIRROR` may list several mirrors separated by `;`.
pub(crate) fn registry_maps(
    maps: &[String],
    mirrors: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<RegistryMaps> {
    let mut result = RegistryMaps::default();
    for map in maps {
        result.add_map(map).context("--registry-map")?;
    }
    if let Some(map) = env("KANIKO_REGISTRY_MAP") {
        result.add_map(&map).context("KANIKO_REGISTRY_MAP")?;
    }
    for mirror in mirrors {
        result.add_mirror(mirror).context("--registry-mirror")?;
    }
    if let Some(value) = env("KANIKO_REGISTRY_MIRROR") {
        for mirror in value.split(';').filter(|m| !m.trim().is_empty()) {
            result
                .add_mirror(mirror)
                .context("KANIKO_REGISTRY_MIRROR")?;
        }
    }
    Ok(result)
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

/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln` (`/cache` in the executor image, as in Kaniko):
/// the cache directory when `--cache-dir` is not given, the one place `kiln build`, `kiln warm`
/// and `kiln cache gc` take it from, so they agree.
pub(crate) fn default_cache_dir() -> anyhow::Result<PathBuf> {
    if super::isolation::in_executor_image() {
        return Ok(PathBuf::from(super::cache_dir::CONTAINER_CACHE_DIR));
    }
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
    fn registry_maps_come_from_flags_then_environment_with_mirrors_last() {
        let env = |name: &str| match name {
            "KANIKO_REGISTRY_MAP" => Some("index.docker.io=env-map.local".to_owned()),
            "KANIKO_REGISTRY_MIRROR" => Some("env-a.local;env-b.local".to_owned()),
            _ => None,
        };
        let maps = registry_maps(
            &["docker.io=flag-map.local".to_owned()],
            &["flag-mirror.local".to_owned()],
            env,
        )
        .unwrap();
        let order: Vec<String> = maps
            .mirrors_of("index.docker.io")
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert_eq!(
            order,
            [
                "flag-map.local",
                "env-map.local",
                "flag-mirror.local",
                "env-a.local",
                "env-b.local"
            ]
        );
        let err = registry_maps(&["nonsense".to_owned()], &[], |_| None).unwrap_err();
        assert!(format!("{err:#}").contains("--registry-map"), "{err:#}");
        let err = registry_maps(&[], &[], |name| {
            (name == "KANIKO_REGISTRY_MIRROR").then(|| "http://m".to_owned())
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("KANIKO_REGISTRY_MIRROR"),
            "{err:#}"
        );
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
