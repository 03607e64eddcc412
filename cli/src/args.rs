//! Command-line flags. Names, short forms and defaults follow Kaniko's executor
//! (`cmd/executor/cmd/root.go`) so existing pipelines work unchanged.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
}

impl Cli {
    /// The requested log level.
    pub fn verbosity(&self) -> &str {
        &self.verbosity
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and push it (Kaniko's executor).
    #[command(alias = "executor")]
    Build(Box<BuildOptions>),
    /// Print the build graph (stages, steps, dependencies) without pulling or building.
    Plan(PlanArgs),
    /// Print kiln's version.
    Version,
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

    /// The build context: a local directory, optionally written `dir://<path>`.
    #[arg(
        short = 'c',
        long,
        default_value = "/workspace/",
        help_heading = "Build"
    )]
    pub context: String,

    /// Build argument `KEY=VALUE`, or `KEY` to take the value from kiln's environment. Repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]", help_heading = "Build")]
    pub build_args: Vec<String>,

    /// Build the stage with this name (or index) instead of the last one.
    #[arg(long, help_heading = "Build")]
    pub target: Option<String>,

    /// Target platform `os/arch[/variant]` (default: the host's): selects base images and sets
    /// the TARGET* args and the config's os/architecture. RUN needs it to be the host's.
    #[arg(
        long = "custom-platform",
        value_name = "OS/ARCH[/VARIANT]",
        help_heading = "Build"
    )]
    pub custom_platform: Option<String>,

    /// Add a label `KEY=VALUE` to the image config. Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", help_heading = "Build")]
    pub labels: Vec<String>,

    /// Where blobs and the work area live (default `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`).
    #[arg(long, env = "KILN_CACHE_DIR", help_heading = "Cache")]
    pub cache_dir: Option<PathBuf>,

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

/// Makes `/kaniko/executor --destination=...` (a binary named `executor`, no subcommand) mean
/// `kiln build --destination=...`, as Kaniko's image is invoked.
pub fn normalised_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let invoked_as_executor = args
        .first()
        .and_then(|argv0| std::path::Path::new(argv0).file_name())
        .is_some_and(|name| name == "executor");
    let has_subcommand = args.get(1).is_some_and(|first| {
        matches!(
            first.to_str(),
            Some(
                "build"
                    | "executor"
                    | "plan"
                    | "version"
                    | "help"
                    | "--help"
                    | "-h"
                    | "--version"
                    | "-V"
            )
        )
    });
    if invoked_as_executor && !has_subcommand {
        args.insert(1, OsString::from("build"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cli = Cli::try_parse_from(normalised_args(args.iter().map(OsString::from))).unwrap();
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
}
