//! Command-line flags. Names, short forms and defaults follow Kaniko's executor
//! (`cmd/executor/cmd/root.go`) so existing pipelines work unchanged.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiln_registry::{ClientCertificate, CredentialSources, RegistryCertificate};

use crate::image::format::ImageFormat;

/// kiln: build container images from a Dockerfile without a Docker daemon.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Log level: panic, fatal, error, warn, info, debug or trace.
    #[arg(short = 'v', long, global = true, default_value = "info")]
    verbosity: String,

    /// Log format: text, color (text with colours on a terminal) or json (one object a line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Color)]
    log_format: LogFormat,

    /// Prefix text log lines with a timestamp.
    #[arg(
        long,
        global = true,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    log_timestamp: bool,

    /// Progress display: tty (live view), plain (log lines, for CI) or auto (tty when stderr
    /// is a terminal and --log-format is not json).
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
}

impl Cli {
    /// Parses a command line, `kiln build`'s switches taking Kaniko's (pflag's) forms too:
    /// `--no-push`, `--no-push=true`, `--no-push=false`. Environment overrides of switches
    /// (`KANIKO_NO_PUSH`) accept `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    pub fn try_parse_kaniko(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let mut command = Cli::command().mut_subcommand("build", |build| {
            build.mut_args(|arg| {
                if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                    arg.action(clap::ArgAction::Set)
                        .num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("true")
                        .default_value("false")
                        .value_parser(clap::builder::BoolishValueParser::new())
                } else {
                    arg
                }
            })
        });
        let mut matches = command.try_get_matches_from_mut(args)?;
        Cli::from_arg_matches_mut(&mut matches).map_err(|err| err.format(&mut command))
    }

    /// [`Cli::try_parse_kaniko`], exiting with clap's message on an error (`--help` included).
    pub fn parse_kaniko(args: impl IntoIterator<Item = OsString>) -> Cli {
        Cli::try_parse_kaniko(args).unwrap_or_else(|err| err.exit())
    }

    /// The requested log level.
    pub fn verbosity(&self) -> &str {
        &self.verbosity
    }

    /// `--log-format` and `--log-timestamp`.
    pub fn log_style(&self) -> (LogFormat, bool) {
        (self.log_format, self.log_timestamp)
    }

    /// `--progress`.
    pub fn progress(&self) -> ProgressMode {
        self.progress
    }
}

/// `--progress` (BuildKit's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// The live view on a terminal, plain lines elsewhere.
    Auto,
    /// The live view.
    Tty,
    /// Plain log lines.
    Plain,
}

/// `--log-format` (Kaniko's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain text.
    Text,
    /// Text, coloured when stderr is a terminal (Kaniko's default).
    Color,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and push it (Kaniko's executor).
    #[command(alias = "executor")]
    Build(Box<BuildOptions>),
    /// Print the build graph (stages, steps, dependencies) without pulling or building.
    Plan(PlanArgs),
    /// Check credentials against a registry and save them to `config.json` (`docker login`).
    Login(LoginArgs),
    /// Store base images in the cache directory so builds start without a registry
    /// (Kaniko's warmer; also a binary named `warmer`).
    Warm(WarmArgs),
    /// Push an image from an OCI image layout (`kiln build --oci-layout-path`, skopeo, umoci)
    /// to registries, skipping and mounting blobs as a build's push does.
    Push(Box<crate::push::PushArgs>),
    /// Inspect and trim the local cache directory.
    Cache(CacheArgs),
    /// Print kiln's version.
    Version,
    /// Print a shell completion script: `kiln completions bash > /etc/bash_completion.d/kiln`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `kiln man | man -l -`, `kiln man build`.
    Man {
        /// The subcommand whose page to print (default: kiln's own).
        command: Option<String>,
    },
}

/// Flags of `kiln build` / `kiln executor`.
#[derive(Debug, Args)]
pub struct BuildOptions {
    /// Path to the Dockerfile: as given if it exists, else relative to the context.
    #[arg(
        short = 'f',
        long,
        default_value = "Dockerfile",
        help_heading = "Build"
    )]
    pub dockerfile: PathBuf,

    /// The build context: a local directory (or `dir://<path>`), `tar://<path>` or
    /// `tar://stdin` (a tar archive, compressed or not), `git://<host>/<repo>#<ref>[#<commit>]`
    /// (cloned over HTTPS, as Kaniko does), `https://<host>/<repo>.git#<ref>[:<dir>]`, or an
    /// `https://` tarball.
    #[arg(
        short = 'c',
        long,
        default_value = "/workspace/",
        help_heading = "Build"
    )]
    pub context: String,

    /// A directory inside the context to use as the context (Kaniko's flag).
    #[arg(long, value_name = "PATH", help_heading = "Build")]
    pub context_sub_path: Option<String>,

    /// Build argument `KEY=VALUE`, or `KEY` to take the value from kiln's environment. Repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]", help_heading = "Build")]
    pub build_args: Vec<String>,

    /// A secret for `RUN --mount=type=secret`: `id=ID,src=PATH` (a file) or `id=ID,env=VAR`
    /// (kiln's environment variable), BuildKit's syntax. Never stored in the image. Repeatable.
    #[arg(
        long = "secret",
        value_name = "id=ID,src=PATH|env=VAR",
        help_heading = "Build"
    )]
    pub secrets: Vec<String>,

    /// Build the stage with this name (or index) instead of the last one.
    #[arg(long, help_heading = "Build")]
    pub target: Option<String>,

    /// Target platform `os/arch[/variant]` (default: the host's): selects base images and sets
    /// the TARGET* args and the config's os/architecture. RUN needs it to be the host's.
    #[arg(
        long = "custom-platform",
        alias = "customPlatform",
        value_name = "OS/ARCH[/VARIANT]",
        help_heading = "Build"
    )]
    pub custom_platform: Option<String>,

    /// How a git context is cloned (Kaniko's `branch=`, `single-branch=`,
    /// `recurse-submodules=`, `insecure-skip-tls=`, OSS Kaniko's `depth=`); repeatable or
    /// comma-separated.
    #[arg(long = "git", value_name = "KEY=VALUE", help_heading = "Build")]
    pub git: Vec<String>,

    /// Kaniko's legacy GCS bucket context: refused (GCS contexts are not supported).
    #[arg(short = 'b', long, hide = true, help_heading = "Build")]
    pub bucket: Option<String>,

    /// Accepted for Kaniko compatibility: kiln always builds only the stages the target needs.
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
        help_heading = "Build"
    )]
    pub skip_unused_stages: bool,

    /// Accepted for Kaniko compatibility, no effect: metadata-only instructions get a history
    /// entry and no layer (OSS Kaniko made the flag a no-op too).
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
        help_heading = "Build"
    )]
    pub force_build_metadata: bool,

    /// Add a label `KEY=VALUE` to the image config. Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", help_heading = "Build")]
    pub labels: Vec<String>,

    /// Add an annotation `KEY=VALUE` to the image manifest (Chainguard Kaniko's flag). Repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE", help_heading = "Image")]
    pub annotations: Vec<String>,

    /// How many independent stages may build at once (default: the number of CPUs).
    #[arg(long, value_name = "N", help_heading = "Build")]
    pub jobs: Option<std::num::NonZeroUsize>,

    /// How a RUN's changes are observed: `overlay` runs it on an overlayfs whose upper directory
    /// is the diff (cost follows the change), `scan` walks the root before and after, `auto`
    /// uses overlay where overlayfs can be mounted, unless `--snapshot-mode` asks for `full` or
    /// `time`.
    #[arg(
        long,
        value_enum,
        default_value_t = SnapshotStrategyArg::Auto,
        help_heading = "Snapshot"
    )]
    pub snapshot_strategy: SnapshotStrategyArg,

    /// What the scan strategy compares (Kaniko's flag): `redo` metadata including ctime, exact,
    /// hashing only what changed (default); `full` also hashes every file's content; `time`
    /// mtime only (unsafe: misses changes that keep the mtime).
    #[arg(
        long,
        alias = "snapshotMode",
        value_enum,
        default_value_t = SnapshotModeArg::Redo,
        help_heading = "Snapshot"
    )]
    pub snapshot_mode: SnapshotModeArg,

    /// Accepted for Kaniko compatibility, no effect: kiln's snapshots already cost what a RUN
    /// changed (overlay) or one metadata walk (scan), which is what Kaniko's RunV2 aimed at.
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
        help_heading = "Snapshot"
    )]
    pub use_new_run: bool,

    /// One layer per stage, taken after its last instruction, instead of one per instruction.
    #[arg(long, help_heading = "Snapshot")]
    pub single_snapshot: bool,

    /// Absolute path never put in a layer (it stays in the filesystem for later steps).
    /// Repeatable.
    #[arg(long = "ignore-path", value_name = "PATH", help_heading = "Snapshot")]
    pub ignore_paths: Vec<PathBuf>,

    /// Leave `/var/run` out of layers (and, with `--isolation=none`, out of extraction and
    /// cleanup). Default: true with `--isolation=none`, as in Kaniko; false in the sandbox,
    /// as in Docker.
    #[arg(
        long,
        alias = "whitelist-var-run",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        help_heading = "Snapshot"
    )]
    pub ignore_var_run: Option<bool>,

    /// Where RUN executes: `chroot` (a sandbox with its own namespaces over a private root
    /// filesystem), `none` (directly in this container's own `/`, over which the base image is
    /// extracted: Kaniko's model), or `auto`: `none` when running as a container's
    /// `$KANIKO_DIR/executor` (or as the executor with `--force` where no container is
    /// detected, as Kaniko builds), else `chroot`.
    #[arg(
        long,
        env = "KILN_ISOLATION",
        value_enum,
        default_value_t = IsolationArg::Auto,
        help_heading = "Isolation"
    )]
    pub isolation: IsolationArg,

    /// Allow `--isolation=none` outside a container (it overwrites and deletes files in `/`).
    #[arg(long, help_heading = "Isolation")]
    pub force: bool,

    /// kiln's own directory in its container (the executor, `.docker/config.json`), never
    /// touched by a build with `--isolation=none`; its state lives in `<dir>/kiln` there.
    #[arg(
        long,
        env = "KANIKO_DIR",
        default_value = "/kaniko",
        help_heading = "Isolation"
    )]
    pub kaniko_dir: PathBuf,

    /// With `--isolation=none`: delete the build's files from `/` when done (ignored paths
    /// stay), so the container can build again.
    #[arg(
        long,
        env = "KANIKO_CLEANUP",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
        help_heading = "Isolation"
    )]
    pub cleanup: bool,

    /// With `--isolation=none`: delete everything from `/` but the ignored paths before
    /// building (for executor images with extra files, OSS Kaniko's flag).
    #[arg(
        long,
        env = "KANIKO_PRE_CLEANUP",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
        help_heading = "Isolation"
    )]
    pub pre_cleanup: bool,

    /// Compression of the layers kiln writes: gzip (read everywhere) or zstd (2-4x faster to
    /// write and smaller; OCI images only).
    #[arg(long, value_enum, default_value_t = LayerCompression::Gzip, help_heading = "Image")]
    pub compression: LayerCompression,

    /// Compression level: gzip 0-9 (default 6; -1 also means the default), zstd 1-22 (default
    /// 3; negative levels are faster still).
    #[arg(
        long,
        value_name = "LEVEL",
        allow_negative_numbers = true,
        help_heading = "Image"
    )]
    pub compression_level: Option<i32>,

    /// Media types of the image: oci, or docker (Docker manifest schema 2, for registries and
    /// runtimes that refuse OCI).
    #[arg(long, value_enum, default_value_t = ImageFormat::Oci, help_heading = "Image")]
    pub image_format: ImageFormat,

    /// Make the image depend only on its inputs: timestamps in new layers and the config's
    /// creation times become 1970-01-01 (or SOURCE_DATE_EPOCH when set).
    #[arg(long, help_heading = "Image")]
    pub reproducible: bool,

    /// Where blobs and the work area live (default `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`).
    #[arg(long, env = "KILN_CACHE_DIR", help_heading = "Cache")]
    pub cache_dir: Option<PathBuf>,

    /// Reuse the results of steps built before (local store and `--cache-repo`) and record
    /// new ones.
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
        help_heading = "Cache"
    )]
    pub cache: bool,

    /// Repository holding the remote layer cache (default `<first destination>/cache`), or
    /// `oci:/path` for an OCI image layout on disk.
    #[arg(long, value_name = "REPO", help_heading = "Cache")]
    pub cache_repo: Option<String>,

    /// How long cached results stay valid (a Go duration; Kaniko's default, two weeks).
    #[arg(long, value_name = "DURATION", default_value = "336h", value_parser = go_duration, help_heading = "Cache")]
    pub cache_ttl: std::time::Duration,

    /// Cache the layers of COPY and ADD. kiln keys them by the content copied, so unlike
    /// Kaniko (default false) it caches them unless told not to.
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = true,
        action = clap::ArgAction::Set,
        help_heading = "Cache"
    )]
    pub cache_copy_layers: bool,

    /// Cache the layers of RUN.
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = true,
        action = clap::ArgAction::Set,
        help_heading = "Cache"
    )]
    pub cache_run_layers: bool,

    /// Use the cache but push no new results to `--cache-repo`.
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
        help_heading = "Cache"
    )]
    pub no_push_cache: bool,

    /// Accepted for Kaniko compatibility: kiln streams cached layers to disk and never holds
    /// them in memory, so there is nothing to turn off.
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = true,
        action = clap::ArgAction::Set,
        help_heading = "Cache"
    )]
    pub compressed_caching: bool,

    /// Image to push to, `registry/repository[:tag]`. Repeatable.
    #[arg(short = 'd', long = "destination", help_heading = "Output")]
    pub destinations: Vec<String>,

    /// Build the image but push nothing.
    #[arg(long, env = "KANIKO_NO_PUSH", help_heading = "Output")]
    pub no_push: bool,

    /// Also write the image as a docker-archive tarball (`docker load`, `skopeo docker-archive:`).
    #[arg(long, visible_alias = "tarPath", help_heading = "Output")]
    pub tar_path: Option<PathBuf>,

    /// Also write the image as an OCI image layout directory.
    #[arg(long, help_heading = "Output")]
    pub oci_layout_path: Option<PathBuf>,

    /// Write the image's manifest digest to this file.
    #[arg(long, help_heading = "Output")]
    pub digest_file: Option<PathBuf>,

    /// Write `repository@digest` for each destination to this file.
    #[arg(long, help_heading = "Output")]
    pub image_name_with_digest_file: Option<PathBuf>,

    /// Write `repository:tag@digest` for each destination to this file.
    #[arg(long, help_heading = "Output")]
    pub image_name_tag_with_digest_file: Option<PathBuf>,

    /// Write a JSON build report to this file, also when the build fails: each step with its
    /// key, cache hit or miss and why, duration and layer; bytes pulled and pushed; digests.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub report: Option<PathBuf>,

    /// Write the build report as Markdown to this file (for `buildkite-agent annotate`).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub report_markdown: Option<PathBuf>,

    /// Push to destinations over plain HTTP.
    #[arg(long, help_heading = "Registry")]
    pub insecure: bool,

    /// Pull base images over plain HTTP.
    #[arg(long, help_heading = "Registry")]
    pub insecure_pull: bool,

    /// Use plain HTTP for this registry (push and pull). Repeatable.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST[:PORT]",
        help_heading = "Registry"
    )]
    pub insecure_registries: Vec<String>,

    /// Push without verifying the registry's TLS certificate.
    #[arg(long, help_heading = "Registry")]
    pub skip_tls_verify: bool,

    /// Pull without verifying the registry's TLS certificate.
    #[arg(long, help_heading = "Registry")]
    pub skip_tls_verify_pull: bool,

    /// Do not verify TLS certificates of this registry. Repeatable.
    #[arg(
        long = "skip-tls-verify-registry",
        value_name = "HOST[:PORT]",
        help_heading = "Registry"
    )]
    pub skip_tls_verify_registries: Vec<String>,

    /// Trust this CA certificate (PEM) for this registry, in addition to the system's. Repeatable.
    #[arg(
        long = "registry-certificate",
        value_name = "HOST[:PORT]=CA.PEM",
        help_heading = "Registry"
    )]
    pub registry_certificates: Vec<RegistryCertificate>,

    /// Present this client certificate and key (PEM) to this registry (mutual TLS). Repeatable.
    #[arg(
        long = "registry-client-cert",
        value_name = "HOST[:PORT]=CERT.PEM,KEY.PEM",
        help_heading = "Registry"
    )]
    pub registry_client_certs: Vec<ClientCertificate>,

    /// Pull Docker Hub images from this mirror first (`HOST[:PORT][/PREFIX]`); repeatable, tried
    /// in order. `KANIKO_REGISTRY_MIRROR` adds one more.
    #[arg(
        long = "registry-mirror",
        value_name = "HOST[:PORT][/PREFIX]",
        help_heading = "Registry"
    )]
    pub registry_mirrors: Vec<String>,

    /// Pull images of REGISTRY from MIRROR first; several pairs separated by `;`, repeatable,
    /// tried in order. `KANIKO_REGISTRY_MAP` adds more.
    #[arg(
        long = "registry-map",
        value_name = "REGISTRY=MIRROR[;REGISTRY=MIRROR]",
        help_heading = "Registry"
    )]
    pub registry_maps: Vec<String>,

    /// Fail when no mirror or mapped registry has a base image, instead of pulling it from its
    /// own registry.
    #[arg(long, help_heading = "Registry")]
    pub skip_default_registry_fallback: bool,

    /// Native credential sources tried after config.json, in this order: env, google, ecr,
    /// acr, gitlab, buildkite (also Kaniko's helper names gcr, ecr-login, acr-env). Default:
    /// all of them; an empty value switches them off.
    #[arg(
        long = "credential-helpers",
        value_name = "NAME[,NAME...]",
        value_parser = CredentialSources::parse,
        help_heading = "Registry"
    )]
    pub credential_helpers: Option<CredentialSources>,

    /// Retries of a failed push request (5xx, 429, 408, dropped connections), with
    /// exponential backoff from 1 s. Kaniko's default is 0; kiln's is 3.
    #[arg(long, value_name = "N", default_value_t = 3, help_heading = "Registry")]
    pub push_retry: u32,

    /// Retries of a failed base-image download (5xx, 429, 408, dropped connections, damaged
    /// content), with exponential backoff from 1 s. Kaniko's default is 0; kiln's is 3.
    #[arg(long, value_name = "N", default_value_t = 3, help_heading = "Registry")]
    pub image_download_retry: u32,

    /// Accepted for Kaniko compatibility, no effect: base layers are extracted from verified
    /// local blobs, where a retry cannot help (downloads retry with `--image-download-retry`).
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Registry")]
    pub image_fs_extract_retry: u32,

    /// Kaniko's hidden Azure flag: refused (use `DOCKER_CONFIG` credentials for ACR).
    #[arg(long, hide = true, help_heading = "Registry")]
    pub azure_container_registry_config: Option<String>,

    /// Treat a registry's refusal to overwrite an immutable tag as success.
    #[arg(long, help_heading = "Registry")]
    pub push_ignore_immutable_tag_errors: bool,

    /// Do not check that every destination accepts pushes before building.
    #[arg(long, help_heading = "Registry")]
    pub skip_push_permission_check: bool,
}

/// `--isolation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    /// `none` when kiln is a container's `$KANIKO_DIR/executor` (or the executor with
    /// `--force`), else `chroot`.
    Auto,
    /// RUN in a sandbox over a private root filesystem.
    Chroot,
    /// RUN directly in this container's own root filesystem (Kaniko's model).
    None,
}

/// `--compression` values (Kaniko's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayerCompression {
    /// gzip, which every registry and runtime reads.
    Gzip,
    /// Zstandard (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
}

/// Flags of `kiln login`, as `docker login` spells them.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry `host[:port]`; Docker Hub when omitted.
    pub server: Option<String>,

    /// User name.
    #[arg(short = 'u', long)]
    pub username: String,

    /// Password or token (discouraged: visible in the process list and shell history; use
    /// `--password-stdin`).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    pub password: Option<String>,

    /// Read the password or token from standard input.
    #[arg(long)]
    pub password_stdin: bool,

    /// Reach the registry over plain HTTP.
    #[arg(long)]
    pub insecure: bool,

    /// Do not verify the registry's TLS certificate.
    #[arg(long)]
    pub skip_tls_verify: bool,
}
/// Flags of `kiln cache gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The cache directory (default: `$XDG_CACHE_HOME/kiln` or `~/.cache/kiln`, as `kiln build`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Remove blobs no build used for longer than this (Go syntax: `336h`, `90m`). Without
    /// `--max-age` or `--max-size`, `336h` (`--cache-ttl`'s default).
    #[arg(long, value_name = "DURATION", value_parser = go_duration)]
    pub max_age: Option<std::time::Duration>,

    /// Remove least recently used blobs until the store holds at most this many bytes
    /// (`500000000`, `500M`, `20G`, `20Gi`: k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024).
    #[arg(long, value_name = "BYTES", value_parser = crate::cache::gc::parse_size)]
    pub max_size: Option<u64>,
}

/// Flags of `kiln plan`: the subset of `kiln build`'s that shape the graph, so a plan shows
/// exactly what the same `kiln build` would run.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Path to the Dockerfile: as given if it exists, else relative to the context.
    #[arg(short = 'f', long, default_value = "Dockerfile")]
    pub dockerfile: PathBuf,

    /// The build context: a local directory, optionally written `dir://<path>`.
    #[arg(short = 'c', long, default_value = "/workspace/")]
    pub context: String,

    /// Build argument `KEY=VALUE`, or `KEY` to take the value from kiln's environment. Repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Plan the stage with this name (or index) instead of the last one.
    #[arg(long)]
    pub target: Option<String>,

    /// Target platform `os/arch[/variant]` (default: the host's), as for `kiln build`.
    #[arg(long = "custom-platform", value_name = "OS/ARCH[/VARIANT]")]
    pub custom_platform: Option<String>,

    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

/// `kiln cache <command>`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do with the cache.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// Subcommands of `kiln cache`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// For each step of a build (same flags as `kiln build`), hit or miss in the local cache,
    /// and on a miss which inputs changed since the last recorded build of that step.
    Explain(Box<BuildOptions>),
    /// Remove least recently used blobs (and the step records naming them) from the cache
    /// directory; blobs used within the last hour always stay.
    Gc(GcArgs),
}

/// Flags of `kiln warm` (Kaniko's warmer: `/kaniko/warmer`).
#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Image to store in the cache directory. Repeatable.
    #[arg(short = 'i', long = "image", value_name = "IMAGE")]
    pub images: Vec<String>,

    /// Also store the base images this Dockerfile's build needs (its FROM lines, with
    /// `--build-arg` values for the ARGs before them).
    #[arg(short = 'd', long)]
    pub dockerfile: Option<PathBuf>,

    /// Build argument `KEY=VALUE`, or `KEY` to take the value from kiln's environment, for
    /// `--dockerfile`. Repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// The cache directory builds read base images from (default: the one `kiln build` uses).
    #[arg(short = 'c', long, env = "KILN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Fetch images again even when the cache directory holds a fresh copy.
    #[arg(short = 'f', long)]
    pub force: bool,

    /// How long a stored tag counts as fresh (a Go duration; Kaniko's default, two weeks).
    #[arg(long, value_name = "DURATION", default_value = "336h", value_parser = go_duration)]
    pub cache_ttl: std::time::Duration,

    /// Platform `os/arch[/variant]` to store (default: the host's). Kaniko's warmer spells it
    /// `--customPlatform`.
    #[arg(
        long = "custom-platform",
        alias = "customPlatform",
        value_name = "OS/ARCH[/VARIANT]"
    )]
    pub custom_platform: Option<String>,

    /// Registry flags for pulling, as `kiln build` takes them.
    #[command(flatten)]
    pub registry: PullRegistryArgs,
}

/// The pull side of `kiln build`'s registry flags, for commands that only pull.
#[derive(Debug, Args)]
pub struct PullRegistryArgs {
    /// Pull over plain HTTP.
    #[arg(long)]
    pub insecure_pull: bool,

    /// Use plain HTTP for this registry. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,

    /// Pull without verifying the registry's TLS certificate.
    #[arg(long)]
    pub skip_tls_verify_pull: bool,

    /// Do not verify TLS certificates of this registry. Repeatable.
    #[arg(long = "skip-tls-verify-registry", value_name = "HOST[:PORT]")]
    pub skip_tls_verify_registries: Vec<String>,

    /// Trust this CA certificate (PEM) for this registry, in addition to the system's. Repeatable.
    #[arg(long = "registry-certificate", value_name = "HOST[:PORT]=CA.PEM")]
    pub registry_certificates: Vec<RegistryCertificate>,

    /// Present this client certificate and key (PEM) to this registry. Repeatable.
    #[arg(
        long = "registry-client-cert",
        value_name = "HOST[:PORT]=CERT.PEM,KEY.PEM"
    )]
    pub registry_client_certs: Vec<ClientCertificate>,

    /// Pull Docker Hub images from this mirror first; repeatable. `KANIKO_REGISTRY_MIRROR` adds more.
    #[arg(long = "registry-mirror", value_name = "HOST[:PORT][/PREFIX]")]
    pub registry_mirrors: Vec<String>,

    /// Pull images of REGISTRY from MIRROR first; repeatable. `KANIKO_REGISTRY_MAP` adds more.
    #[arg(
        long = "registry-map",
        value_name = "REGISTRY=MIRROR[;REGISTRY=MIRROR]"
    )]
    pub registry_maps: Vec<String>,

    /// Fail when no mirror has an image instead of pulling it from its own registry.
    #[arg(long)]
    pub skip_default_registry_fallback: bool,

    /// Retries of a failed download, with exponential backoff from 1 s.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub image_download_retry: u32,
}

/// `--snapshot-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotStrategyArg {
    /// Overlay where overlayfs can be mounted, else scan.
    Auto,
    /// Run each RUN on an overlay; fail if overlayfs cannot be mounted.
    Overlay,
    /// Walk the root before and after each RUN.
    Scan,
}

/// `--snapshot-mode` (Kaniko's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotModeArg {
    /// Metadata and a content hash of every file.
    Full,
    /// Metadata including ctime, inode and birth time; no file is read.
    Redo,
    /// Modification times only (unsafe).
    Time,
}

/// Output formats of `kiln plan`: one for people, one for programs, one for Graphviz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// A readable tree of stages and steps.
    Text,
    /// A stable JSON document (see `cli/src/plan/json.rs`).
    Json,
    /// A Graphviz digraph, one cluster per stage.
    Dot,
}

/// Parses a Go duration flag (`336h`, `1h30m`).
fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    let nanos = kiln_graph::parse_go_duration(text)?;
    u64::try_from(nanos)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("{text:?}: a duration cannot be negative"))
}

/// Makes `/kaniko/executor --destination=...` (a binary named `executor`, no subcommand) mean
/// `kiln build --destination=...`, and `/kaniko/warmer --image=...` mean `kiln warm --image=...`,
/// as Kaniko's image is invoked.
pub fn normalised_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let invoked_as = args
        .first()
        .and_then(|argv0| std::path::Path::new(argv0).file_name())
        .and_then(|name| name.to_str())
        .map(str::to_owned);
    let has_subcommand = args.get(1).is_some_and(|first| {
        matches!(
            first.to_str(),
            Some(
                "build"
                    | "executor"
                    | "plan"
                    | "warm"
                    | "cache"
                    | "version"
                    | "help"
                    | "--help"
                    | "-h"
                    | "--version"
                    | "-V"
            )
        )
    });
    if !has_subcommand {
        match invoked_as.as_deref() {
            Some("executor") => args.insert(1, OsString::from("build")),
            Some("warmer") => args.insert(1, OsString::from("warm")),
            _ => {}
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_gc_takes_a_go_duration_and_a_size_with_a_unit() {
        let cli = Cli::try_parse_from([
            "kiln",
            "cache",
            "gc",
            "--cache-dir",
            "/cache",
            "--max-age",
            "168h",
            "--max-size",
            "2G",
        ])
        .unwrap();
        let Command::Cache(CacheArgs {
            command: CacheCommand::Gc(args),
        }) = cli.command
        else {
            panic!("expected cache gc");
        };
        assert_eq!(args.cache_dir, Some(PathBuf::from("/cache")));
        assert_eq!(
            args.max_age,
            Some(std::time::Duration::from_secs(168 * 3600))
        );
        assert_eq!(args.max_size, Some(2_000_000_000));
        assert!(Cli::try_parse_from(["kiln", "cache", "gc", "--max-size", "lots"]).is_err());
        assert!(Cli::try_parse_from(["kiln", "cache", "gc", "--max-age", "1 week"]).is_err());
    }

    #[test]
    fn plan_defaults_to_text_and_build_defaults() {
        let cli = Cli::try_parse_from(["kiln", "plan"]).unwrap();
        let Command::Plan(args) = cli.command else {
            panic!("expected plan");
        };
        assert_eq!(args.format, PlanFormat::Text);
        assert_eq!(args.dockerfile, PathBuf::from("Dockerfile"));
        assert_eq!(args.context, "/workspace/");
    }

    #[test]
    fn plan_accepts_format_target_and_build_args() {
        let cli = Cli::try_parse_from([
            "kiln",
            "plan",
            "--format",
            "dot",
            "--target",
            "build",
            "--build-arg",
            "A=1",
            "--build-arg",
            "B",
        ])
        .unwrap();
        let Command::Plan(args) = cli.command else {
            panic!("expected plan");
        };
        assert_eq!(args.format, PlanFormat::Dot);
        assert_eq!(args.target.as_deref(), Some("build"));
        assert_eq!(args.build_args, vec!["A=1", "B"]);
        assert!(Cli::try_parse_from(["kiln", "plan", "--format", "yaml"]).is_err());
    }

    fn parse(args: &[&str]) -> BuildOptions {
        let cli = Cli::try_parse_kaniko(normalised_args(args.iter().map(OsString::from))).unwrap();
        match cli.command {
            Command::Build(options) => *options,
            other => panic!("expected build, got {other:?}"),
        }
    }

    #[test]
    fn kaniko_executor_invocation_without_subcommand_means_build() {
        let options = parse(&[
            "/kaniko/executor",
            "-f",
            "Dockerfile.x",
            "-d",
            "r/a:1",
            "-d",
            "r/a:2",
        ]);
        assert_eq!(options.dockerfile, PathBuf::from("Dockerfile.x"));
        assert_eq!(options.destinations, vec!["r/a:1", "r/a:2"]);
        assert_eq!(options.context, "/workspace/");
    }

    #[test]
    fn registry_tls_and_mirror_flags_take_kaniko_syntax() {
        let options = parse(&[
            "kiln",
            "build",
            "--registry-certificate",
            "reg.io=/ca.pem",
            "--registry-client-cert=reg.io:5000=/c.pem,/k.pem",
            "--registry-mirror",
            "mirror.local",
            "--registry-map",
            "gcr.io=m1.local;quay.io=m2.local",
            "--skip-default-registry-fallback",
        ]);
        assert_eq!(options.registry_certificates[0].registry, "reg.io");
        assert_eq!(
            options.registry_client_certs[0].key,
            PathBuf::from("/k.pem")
        );
        assert_eq!(options.registry_mirrors, vec!["mirror.local"]);
        assert_eq!(
            options.registry_maps,
            vec!["gcr.io=m1.local;quay.io=m2.local"]
        );
        assert!(options.skip_default_registry_fallback);
        let err = Cli::try_parse_from(["kiln", "build", "--registry-client-cert", "reg.io=/c.pem"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CERT.PEM") || err.contains("cert.pem,"),
            "{err}"
        );
    }

    #[test]
    fn snapshot_flags_default_to_auto_redo_and_accept_kanikos_forms() {
        let options = parse(&["kiln", "build", "--no-push"]);
        assert_eq!(options.snapshot_strategy, SnapshotStrategyArg::Auto);
        assert_eq!(options.snapshot_mode, SnapshotModeArg::Redo);
        assert!(!options.single_snapshot && options.ignore_var_run.is_none());
        let options = parse(&[
            "/kaniko/executor",
            "--snapshot-mode=full",
            "--snapshot-strategy",
            "scan",
            "--single-snapshot",
            "--ignore-path=/tmp",
            "--ignore-path",
            "/var/cache",
            "--ignore-var-run=true",
        ]);
        assert_eq!(options.snapshot_mode, SnapshotModeArg::Full);
        assert_eq!(options.snapshot_strategy, SnapshotStrategyArg::Scan);
        assert!(options.single_snapshot && options.ignore_var_run == Some(true));
        assert_eq!(
            options.ignore_paths,
            vec![PathBuf::from("/tmp"), PathBuf::from("/var/cache")]
        );
        assert_eq!(
            parse(&["kiln", "build", "--ignore-var-run"]).ignore_var_run,
            Some(true)
        );
        assert_eq!(
            parse(&["kiln", "build", "--whitelist-var-run=true"]).ignore_var_run,
            Some(true)
        );
        let old = parse(&["kiln", "build", "--snapshotMode=time", "--use-new-run"]);
        assert_eq!(old.snapshot_mode, SnapshotModeArg::Time);
        assert!(old.use_new_run);
        assert_eq!(
            parse(&["kiln", "build", "--ignore-var-run=false"]).ignore_var_run,
            Some(false)
        );
    }

    #[test]
    fn a_binary_named_warmer_takes_kanikos_warmer_flags() {
        let cli = Cli::try_parse_from(normalised_args(
            [
                "/kaniko/warmer",
                "-i",
                "alpine:3",
                "--image=debian:12",
                "-c",
                "/cache",
                "-d",
                "Dockerfile",
                "--build-arg",
                "V=1",
                "-f",
                "--customPlatform",
                "linux/arm64",
                "--cache-ttl",
                "1h",
                "--insecure-pull",
                "--registry-mirror",
                "mirror.local",
            ]
            .map(OsString::from),
        ))
        .unwrap();
        let Command::Warm(args) = cli.command else {
            panic!("expected warm");
        };
        assert_eq!(args.images, vec!["alpine:3", "debian:12"]);
        assert_eq!(args.cache_dir, Some(PathBuf::from("/cache")));
        assert_eq!(args.dockerfile, Some(PathBuf::from("Dockerfile")));
        assert!(args.force && args.registry.insecure_pull);
        assert_eq!(args.custom_platform.as_deref(), Some("linux/arm64"));
        assert_eq!(args.cache_ttl, std::time::Duration::from_secs(3600));
        assert_eq!(args.registry.registry_mirrors, vec!["mirror.local"]);
        let cli =
            Cli::try_parse_from(["kiln", "warm", "--custom-platform", "linux/amd64"]).unwrap();
        assert!(matches!(cli.command, Command::Warm(_)));
    }

    #[test]
    fn executor_is_an_alias_of_build() {
        let options = parse(&[
            "kiln",
            "executor",
            "--context=dir:///src",
            "--no-push",
            "--build-arg",
            "A=1",
        ]);
        assert!(options.no_push);
        assert_eq!(options.context, "dir:///src");
        assert_eq!(options.build_args, vec!["A=1"]);
    }

    #[test]
    fn retries_default_to_three_and_take_kanikos_flag_names() {
        let defaults = parse(&["kiln", "build", "--no-push"]);
        assert_eq!((defaults.push_retry, defaults.image_download_retry), (3, 3));
        assert!(!defaults.skip_push_permission_check);
        let options = parse(&[
            "kiln",
            "build",
            "--push-retry=0",
            "--image-download-retry",
            "5",
            "--push-ignore-immutable-tag-errors",
            "--skip-push-permission-check",
        ]);
        assert_eq!((options.push_retry, options.image_download_retry), (0, 5));
        assert!(options.push_ignore_immutable_tag_errors && options.skip_push_permission_check);
    }
}
