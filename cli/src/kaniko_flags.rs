//! Every flag of Kaniko's executor (v1.24 `cmd/executor/cmd/root.go`, Chainguard's
//! `--annotation`), given as a pipeline gives it to `/kaniko/executor`: each is accepted with
//! Kaniko's meaning, accepted with no effect and a reason, or refused with a reason. Where kiln's
//! default differs (`--cache-copy-layers`), docs/kaniko-migration.md says why.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory as _;

use crate::args::{
    BuildOptions, Cli, Command, IsolationArg, LogFormat, SnapshotModeArg, normalised_args,
};

/// What kiln does with a flag.
enum Expect {
    /// Parsed into this meaning.
    Same(fn(&Cli, &BuildOptions) -> bool),
    /// Parsed, no effect; the reason is logged.
    NoEffect(fn(&BuildOptions) -> bool),
    /// Refused before anything runs, with a message containing this text.
    Refused(&'static str),
}

fn build(cli: &Cli) -> &BuildOptions {
    match &cli.command {
        Command::Build(options) => options,
        other => panic!("expected a build, got {other:?}"),
    }
}

fn table() -> Vec<(&'static [&'static str], Expect)> {
    use Expect::*;
    vec![
        (
            &["-f", "Dockerfile.ci"],
            Same(|_, o| o.dockerfile.to_str() == Some("Dockerfile.ci")),
        ),
        (
            &["--dockerfile=x/Dockerfile"],
            Same(|_, o| o.dockerfile.to_str() == Some("x/Dockerfile")),
        ),
        (
            &["-c", "dir:///src"],
            Same(|_, o| o.context == "dir:///src"),
        ),
        (&["--context=/src"], Same(|_, o| o.context == "/src")),
        (
            &[],
            Same(|_, o| o.context == "/workspace/" && o.dockerfile.to_str() == Some("Dockerfile")),
        ),
        (
            &["--context-sub-path=app"],
            Same(|_, o| o.context_sub_path == Some("app".to_owned())),
        ),
        (
            &["-b", "my-bucket"],
            Refused("GCS build contexts are not supported"),
        ),
        (
            &["--bucket=my-bucket"],
            Refused("GCS build contexts are not supported"),
        ),
        (
            &["-d", "r.io/a:1", "--destination=r.io/a:2"],
            Same(|_, o| o.destinations == ["r.io/a:1", "r.io/a:2"]),
        ),
        (
            &["--build-arg", "A=1", "--build-arg=B"],
            Same(|_, o| o.build_args == ["A=1", "B"]),
        ),
        (
            &["--target=build"],
            Same(|_, o| o.target.as_deref() == Some("build")),
        ),
        (
            &["--custom-platform=linux/arm64"],
            Same(|_, o| o.custom_platform.as_deref() == Some("linux/arm64")),
        ),
        (
            &["--customPlatform=linux/arm64"],
            Same(|_, o| o.custom_platform.as_deref() == Some("linux/arm64")),
        ),
        (
            &["--snapshot-mode=full"],
            Same(|_, o| o.snapshot_mode == SnapshotModeArg::Full),
        ),
        (
            &["--snapshotMode=time"],
            Same(|_, o| o.snapshot_mode == SnapshotModeArg::Time),
        ),
        (&["--single-snapshot"], Same(|_, o| o.single_snapshot)),
        (&["--use-new-run"], NoEffect(|o| o.use_new_run)),
        (&["--cache=true"], Same(|_, o| o.cache)),
        (&["--cache"], Same(|_, o| o.cache)),
        (
            &["--cache-repo=r.io/cache"],
            Same(|_, o| o.cache_repo.as_deref() == Some("r.io/cache")),
        ),
        (
            &["--cache-dir=/cache"],
            Same(|_, o| o.cache_dir.as_deref() == Some(std::path::Path::new("/cache"))),
        ),
        (
            &["--cache-ttl=6h"],
            Same(|_, o| o.cache_ttl == std::time::Duration::from_secs(6 * 3600)),
        ),
        (&["--cache-copy-layers"], Same(|_, o| o.cache_copy_layers)),
        (
            &["--cache-copy-layers=false"],
            Same(|_, o| !o.cache_copy_layers),
        ),
        (
            &["--cache-run-layers=false"],
            Same(|_, o| !o.cache_run_layers),
        ),
        (
            &["--compressed-caching=false"],
            NoEffect(|o| !o.compressed_caching),
        ),
        (&["--no-push-cache"], Same(|_, o| o.no_push_cache)),
        (&["--no-push"], Same(|_, o| o.no_push)),
        (&["--no-push=true"], Same(|_, o| o.no_push)),
        (&["--no-push=false"], Same(|_, o| !o.no_push)),
        (
            &["--insecure=true", "--skip-tls-verify=false"],
            Same(|_, o| o.insecure && !o.skip_tls_verify),
        ),
        (
            &["--tar-path=/out/image.tar"],
            Same(|_, o| o.tar_path == Some(PathBuf::from("/out/image.tar"))),
        ),
        (
            &["--tarPath=/out/image.tar"],
            Same(|_, o| o.tar_path == Some(PathBuf::from("/out/image.tar"))),
        ),
        (
            &["--oci-layout-path=/out/oci"],
            Same(|_, o| o.oci_layout_path == Some(PathBuf::from("/out/oci"))),
        ),
        (
            &["--digest-file=/dev/termination-log"],
            Same(|_, o| o.digest_file == Some(PathBuf::from("/dev/termination-log"))),
        ),
        (
            &["--image-name-with-digest-file=/o/n"],
            Same(|_, o| o.image_name_with_digest_file.is_some()),
        ),
        (
            &["--image-name-tag-with-digest-file=/o/t"],
            Same(|_, o| o.image_name_tag_with_digest_file.is_some()),
        ),
        (&["--reproducible"], Same(|_, o| o.reproducible)),
        (
            &["--label", "a=b", "--label=c=d"],
            Same(|_, o| o.labels == ["a=b", "c=d"]),
        ),
        (
            &["--annotation", "org.opencontainers.image.source=x"],
            Same(|_, o| o.annotations == ["org.opencontainers.image.source=x"]),
        ),
        (
            &["--compression=zstd"],
            Same(|_, o| o.compression == crate::args::LayerCompression::Zstd),
        ),
        (
            &["--compression-level=-1"],
            Same(|_, o| o.compression_level == Some(-1)),
        ),
        (&["--insecure"], Same(|_, o| o.insecure)),
        (&["--insecure-pull"], Same(|_, o| o.insecure_pull)),
        (
            &["--insecure-registry=r.io"],
            Same(|_, o| o.insecure_registries == ["r.io"]),
        ),
        (&["--skip-tls-verify"], Same(|_, o| o.skip_tls_verify)),
        (
            &["--skip-tls-verify-pull"],
            Same(|_, o| o.skip_tls_verify_pull),
        ),
        (
            &["--skip-tls-verify-registry=r.io"],
            Same(|_, o| o.skip_tls_verify_registries == ["r.io"]),
        ),
        (
            &["--registry-certificate=r.io=/ca.pem"],
            Same(|_, o| o.registry_certificates.len() == 1),
        ),
        (
            &["--registry-client-cert=r.io=/c.pem,/k.pem"],
            Same(|_, o| o.registry_client_certs.len() == 1),
        ),
        (
            &["--registry-mirror=mirror.gcr.io"],
            Same(|_, o| o.registry_mirrors == ["mirror.gcr.io"]),
        ),
        (
            &["--registry-map=index.docker.io=m.io"],
            Same(|_, o| o.registry_maps == ["index.docker.io=m.io"]),
        ),
        (
            &["--skip-default-registry-fallback"],
            Same(|_, o| o.skip_default_registry_fallback),
        ),
        (&["--push-retry=2"], Same(|_, o| o.push_retry == 2)),
        (
            &["--push-ignore-immutable-tag-errors"],
            Same(|_, o| o.push_ignore_immutable_tag_errors),
        ),
        (
            &["--image-download-retry=4"],
            Same(|_, o| o.image_download_retry == 4),
        ),
        (
            &["--image-fs-extract-retry=3"],
            NoEffect(|o| o.image_fs_extract_retry == 3),
        ),
        (
            &["--kaniko-dir=/builder"],
            Same(|_, o| o.kaniko_dir.to_str() == Some("/builder")),
        ),
        (
            &["--ignore-var-run=false"],
            Same(|_, o| o.ignore_var_run == Some(false)),
        ),
        (
            &["--whitelist-var-run=false"],
            Same(|_, o| o.ignore_var_run == Some(false)),
        ),
        (
            &["--ignore-path=/opt/x"],
            Same(|_, o| o.ignore_paths == [PathBuf::from("/opt/x")]),
        ),
        (
            &["--skip-unused-stages"],
            NoEffect(|o| o.skip_unused_stages),
        ),
        (&["--cleanup"], Same(|_, o| o.cleanup)),
        (&["--force"], Same(|_, o| o.force)),
        (
            &["--force-build-metadata"],
            NoEffect(|o| o.force_build_metadata),
        ),
        (
            &["--skip-push-permission-check"],
            Same(|_, o| o.skip_push_permission_check),
        ),
        (
            &["--git", "branch=main", "--git=depth=1"],
            Same(|_, o| o.git.len() == 2),
        ),
        (&["--git=colour=blue"], Refused("unknown key \"colour\"")),
        (&["--git=single-branch=maybe"], Refused("not a valid value")),
        (&["-v", "debug"], Same(|c, _| c.verbosity() == "debug")),
        (
            &["--verbosity=trace"],
            Same(|c, _| c.verbosity() == "trace"),
        ),
        (
            &["--log-format=json"],
            Same(|c, _| c.log_style() == (LogFormat::Json, false)),
        ),
        (
            &["--log-format", "text", "--log-timestamp"],
            Same(|c, _| c.log_style() == (LogFormat::Text, true)),
        ),
        (
            &["--azure-container-registry-config=/azure.json"],
            Refused("put the registry's credentials in $DOCKER_CONFIG"),
        ),
        // OSS Kaniko's additions kiln shares.
        (&["--pre-cleanup"], Same(|_, o| o.pre_cleanup)),
        (
            &["--secret=id=a,env=A"],
            Same(|_, o| o.secrets == ["id=a,env=A"]),
        ),
        (
            &["--image-format=docker"],
            Same(|_, o| o.image_format == crate::image::format::ImageFormat::Docker),
        ),
        // kiln's own.
        (
            &["--isolation=none"],
            Same(|_, o| o.isolation == IsolationArg::None),
        ),
    ]
}

#[test]
fn a_dockerfile_url_is_refused_saying_it_is_not_downloaded() {
    let err = crate::build::settings::dockerfile_path(
        std::path::Path::new("https://example.test/Dockerfile"),
        std::path::Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("Dockerfiles are not downloaded"), "{err}");
}

#[test]
fn an_ignore_path_with_wildcards_is_refused_rather_than_matched_literally() {
    let cli = executor(&["--context=/", "--ignore-path=/var/cache/*"]).unwrap();
    let Command::Build(options) = cli.command else {
        panic!("expected a build");
    };
    let err = crate::build::Settings::new(*options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("wildcards are not supported"), "{err}");
}

/// Parses `flags` as `/kaniko/executor <flags>` and applies kiln's flag checks.
fn executor(flags: &[&str]) -> Result<Cli, String> {
    let argv = std::iter::once("/kaniko/executor")
        .chain(flags.iter().copied())
        .map(OsString::from);
    let cli = Cli::try_parse_kaniko(normalised_args(argv)).map_err(|e| e.to_string())?;
    crate::build::compat::check(build(&cli)).map_err(|e| format!("{e:#}"))?;
    Ok(cli)
}

#[test]
fn every_kaniko_executor_flag_is_accepted_with_its_meaning_or_refused_with_a_reason() {
    for (flags, expect) in table() {
        match expect {
            Expect::Same(meaning) => {
                let cli = executor(flags).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
                assert!(meaning(&cli, build(&cli)), "{flags:?} parsed to {cli:?}");
            }
            Expect::NoEffect(parsed) => {
                let cli = executor(flags).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
                assert!(parsed(build(&cli)), "{flags:?} parsed to {cli:?}");
            }
            Expect::Refused(reason) => {
                let err = executor(flags)
                    .err()
                    .unwrap_or_else(|| panic!("{flags:?} accepted"));
                assert!(err.contains(reason), "{flags:?}: {err}");
            }
        }
    }
}

#[test]
fn kaniko_environment_overrides_are_wired_to_their_flags() {
    let command = Cli::command();
    let build = command
        .find_subcommand("build")
        .expect("the build subcommand");
    for (flag, variable) in [
        ("no_push", "KANIKO_NO_PUSH"),
        ("kaniko_dir", "KANIKO_DIR"),
        ("cleanup", "KANIKO_CLEANUP"),
        ("pre_cleanup", "KANIKO_PRE_CLEANUP"),
    ] {
        let arg = build
            .get_arguments()
            .find(|arg| arg.get_id() == flag)
            .unwrap_or_else(|| panic!("no flag {flag}"));
        assert_eq!(
            arg.get_env().and_then(|v| v.to_str()),
            Some(variable),
            "{flag}"
        );
    }
}

#[test]
fn executor_version_is_a_subcommand_of_the_executor_binary() {
    let cli = Cli::try_parse_kaniko(normalised_args(
        ["/kaniko/executor", "version"].map(OsString::from),
    ))
    .unwrap();
    assert!(matches!(cli.command, Command::Version));
}
