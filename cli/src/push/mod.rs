//! `kiln push`: sends an image kiln (or skopeo, umoci, any OCI tool) wrote as an OCI image layout
//! to one or more registries, the way a build pushes: blobs the registry has are skipped, blobs
//! another destination already received are mounted, the manifest goes last.
//!
//! It is the second half of "build once, scan, then publish": `kiln build --no-push
//! --oci-layout-path out/` builds without credentials, a scanner reads `out/`, and `kiln push
//! out/ -d registry/app:tag` publishes exactly the bytes that were scanned (the same digest).

mod layout;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use kiln_cas::Store;
use kiln_registry::{
    Client, ClientCertificate, ClientOptions, Reference, RegistryCertificate, RetryPolicy,
};

use crate::build::Blobs;
use crate::output::{Missing, MountSources, PushOptions, push};

pub use layout::LayoutSource;

/// Flags of `kiln push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to push: an OCI image layout directory, or `oci:<dir>[:<name>]` to pick the
    /// image whose `org.opencontainers.image.ref.name` is `<name>`.
    #[arg(value_name = "LAYOUT")]
    pub source: LayoutSource,

    /// Where to push, as `kiln build` takes it. Repeatable: later destinations on the same
    /// registry mount the blobs from the first.
    #[arg(
        short = 'd',
        long = "destination",
        value_name = "IMAGE",
        required = true
    )]
    pub destinations: Vec<Reference>,

    /// Push over plain HTTP.
    #[arg(long)]
    pub insecure: bool,

    /// Use plain HTTP for this registry. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,

    /// Push without verifying the registry's TLS certificate.
    #[arg(long)]
    pub skip_tls_verify: bool,

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

    /// Retries of a failed push request, with exponential backoff from 1 s (as `kiln build`).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub push_retry: u32,

    /// Succeed when a registry refuses to move an immutable tag.
    #[arg(long)]
    pub push_ignore_immutable_tag_errors: bool,

    /// Write the pushed manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
}

/// Runs `kiln push`.
pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    // Read the layout through an empty scratch store: nothing is ever written into the
    // user's directory, which may be read-only or shared with a scanner.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let store = Store::open(scratch.path())
        .and_then(|store| store.reading_through(&args.source.dir))
        .with_context(|| format!("{} is not an OCI image layout", args.source.dir.display()))?;
    let image = tokio::task::block_in_place(|| layout::image(&store, &args.source))?;
    let client = Client::new(client_options(&args)).context("setting up the registry client")?;
    let blobs = Blobs::new(client.clone(), store.clone(), None, HashMap::new());
    let missing = Missing {
        blobs: &blobs,
        layers: &[],
    };
    let options = PushOptions {
        ignore_immutable_tags: args.push_ignore_immutable_tag_errors,
    };
    let digest = image.manifest.to_string();
    let mut sources = MountSources::default();
    for destination in &args.destinations {
        push(
            &client,
            &store,
            &image,
            destination,
            &sources,
            options,
            &missing,
        )
        .await?;
        sources.pushed(destination);
        tracing::info!("Pushed {}", destination.with_digest(&digest));
    }
    if let Some(path) = &args.digest_file {
        std::fs::write(path, &digest).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{digest}");
    Ok(())
}

fn client_options(args: &PushArgs) -> ClientOptions {
    ClientOptions {
        insecure_push: args.insecure,
        insecure_registries: args.insecure_registries.clone(),
        skip_tls_verify_push: args.skip_tls_verify,
        skip_tls_verify_registries: args.skip_tls_verify_registries.clone(),
        registry_certificates: args.registry_certificates.clone(),
        client_certificates: args.registry_client_certs.clone(),
        user_agent: format!("kiln/{}", env!("CARGO_PKG_VERSION")),
        push_retry: RetryPolicy::with_retries(args.push_retry),
        progress: Some(crate::progress::renderer()),
        ..ClientOptions::default()
    }
}
