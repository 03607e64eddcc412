//! Kaniko executor flags kiln accepts without effect, or refuses, each with the reason: a
//! pipeline written for Kaniko either keeps working or fails saying what to change, never
//! silently does something else.

use anyhow::bail;

use crate::args::BuildOptions;

/// Refuses the flags kiln cannot honour and logs the ones that change nothing.
pub fn check(options: &BuildOptions) -> anyhow::Result<()> {
    if let Some(bucket) = &options.bucket {
        bail!(
            "--bucket {bucket:?}: GCS build contexts are not supported; download the context and pass it as a local --context directory"
        );
    }
    if options.azure_container_registry_config.is_some() {
        bail!(
            "--azure-container-registry-config is not supported: put the registry's credentials in $DOCKER_CONFIG/config.json (or a credential helper there)"
        );
    }
    // Validated here so that a bad `--git` fails even when the context is not a repository.
    super::git::CloneOptions::parse(&options.git)?;
    if options.skip_unused_stages {
        tracing::debug!(
            "--skip-unused-stages: kiln always builds only the stages the target needs"
        );
    }
    if options.force_build_metadata {
        tracing::info!(
            "--force-build-metadata has no effect: metadata-only instructions get a history entry and no layer"
        );
    }
    if options.image_fs_extract_retry > 0 {
        tracing::info!(
            "--image-fs-extract-retry has no effect: layers are extracted from verified local blobs (downloads retry with --image-download-retry)"
        );
    }
    Ok(())
}

/// `KEY=VALUE` pairs of a repeatable flag, in order.
pub fn pairs(flag: &str, values: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    values
        .iter()
        .map(|value| match value.split_once('=') {
            Some((key, val)) if !key.is_empty() => Ok((key.to_owned(), val.to_owned())),
            _ => bail!("{flag} {value:?} must be KEY=VALUE"),
        })
        .collect()
}
