//! Delivering a built image: OCI layout, docker-archive tarball, registry pushes, digest files.
//!
//! Local files first, then pushes, then the digest files, so that a file that says "this digest
//! was pushed" is only written once it was.

mod push;

pub use push::{Missing, MountSources, PushOptions, push};

use std::path::Path;

use anyhow::Context as _;
use kiln_cas::Store;
use kiln_cas::export::{StoredImage, write_docker_archive, write_oci_layout};
use kiln_registry::Client;

use crate::build::Settings;

/// Writes every output the flags ask for.
pub async fn write_all(
    settings: &Settings,
    client: &Client,
    store: &Store,
    image: &StoredImage,
    mut sources: MountSources,
    missing: Missing<'_>,
) -> anyhow::Result<()> {
    let digest = image.manifest.to_string();
    if settings.oci_layout_path.is_some() || settings.tar_path.is_some() {
        // Files hold every layer: download those the build never needed.
        missing.fetch_all().await?;
    }
    // Exporting copies blobs across filesystems when it cannot hard-link them: blocking work.
    tokio::task::block_in_place(|| write_local(settings, store, image))?;
    if settings.no_push {
        tracing::info!("Skipping push to container registry due to --no-push flag");
    } else {
        let options = PushOptions {
            ignore_immutable_tags: settings.ignore_immutable_tags,
        };
        // One destination after another, so the later ones can mount from the earlier.
        for destination in &settings.destinations {
            push(
                client,
                store,
                image,
                destination,
                &sources,
                options,
                &missing,
            )
            .await?;
            sources.pushed(destination);
            let pushed = destination.with_digest(&digest).to_string();
            crate::events::emit(crate::events::Event::Pushed(&pushed));
        }
    }
    if let Some(path) = &settings.digest_file {
        write_file(path, &digest)?;
    }
    if let Some(path) = &settings.image_name_with_digest_file {
        let lines: String = settings
            .destinations
            .iter()
            .map(|d| format!("{}@{digest}\n", d.repo_ref()))
            .collect();
        write_file(path, &lines)?;
    }
    if let Some(path) = &settings.image_name_tag_with_digest_file {
        let lines: String = settings
            .destinations
            .iter()
            .map(|d| format!("{d}@{digest}\n"))
            .collect();
        write_file(path, &lines)?;
    }
    if let (Some(dir), false) = (&settings.builder_output, settings.no_push) {
        write_builder_output(dir, &settings.destinations, &digest)?;
    }
    crate::events::console::print_result(&digest);
    Ok(())
}

/// `$BUILDER_OUTPUT/images`: one JSON object `{"name", "digest"}` a line per destination, as
/// Kaniko writes it for Cloud Build.
fn write_builder_output(
    dir: &Path,
    destinations: &[kiln_registry::Reference],
    digest: &str,
) -> anyhow::Result<()> {
    let mut lines = String::new();
    for destination in destinations {
        let line = serde_json::json!({ "name": destination.to_string(), "digest": digest });
        lines.push_str(&format!("{line}\n"));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_file(&dir.join("images"), &lines)
}

/// The OCI layout and docker-archive outputs.
fn write_local(settings: &Settings, store: &Store, image: &StoredImage) -> anyhow::Result<()> {
    if let Some(dir) = &settings.oci_layout_path {
        let tag = settings
            .destinations
            .first()
            .and_then(|d| d.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".to_owned());
        write_oci_layout(store, image, dir, Some(&tag))
            .with_context(|| format!("writing the OCI layout {}", dir.display()))?;
        tracing::info!("Wrote OCI layout {} (tag {tag})", dir.display());
    }
    if let Some(path) = &settings.tar_path {
        let tags: Vec<String> = settings
            .destinations
            .iter()
            .filter(|d| d.tag().is_some())
            .map(ToString::to_string)
            .collect();
        write_docker_archive(store, image, path, &tags)
            .with_context(|| format!("writing the tarball {}", path.display()))?;
        tracing::info!("Wrote tarball {}", path.display());
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}
