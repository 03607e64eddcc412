//! `kiln login`: verify credentials against the registry, then save them to `config.json`
//! exactly where and how `docker login` would, so later builds (and Docker) find them.

use std::io::Read as _;

use anyhow::{Context as _, bail};
use kiln_registry::auth::docker_config::DockerConfig;
use kiln_registry::auth::login_store::{LoginServer, store_login};
use kiln_registry::auth::secret::{Credential, Secret};
use kiln_registry::{Client, ClientOptions};

use crate::args::LoginArgs;

/// Upper bound on a password read from stdin: tokens are a few KiB; more is a mistake.
const PASSWORD_LIMIT: u64 = 64 * 1024;

/// Runs `kiln login`.
pub async fn run(args: LoginArgs) -> anyhow::Result<()> {
    let password = password(&args)?;
    let server = LoginServer::parse(args.server.as_deref());
    if args.username.is_empty() {
        bail!("--username must not be empty");
    }
    let options = ClientOptions {
        insecure_registries: if args.insecure {
            vec![server.registry.clone()]
        } else {
            Vec::new()
        },
        skip_tls_verify_pull: args.skip_tls_verify,
        ..ClientOptions::default()
    };
    let client = Client::new(options)?;
    let credential = Credential::Basic {
        username: args.username.clone(),
        password: password.clone(),
    };
    client
        .verify_login(&server.registry, &credential)
        .await
        .with_context(|| format!("login to {} as {} failed", server.registry, args.username))?;
    let dir = DockerConfig::default_dir(None)
        .context("cannot save credentials: neither DOCKER_CONFIG nor HOME is set")?;
    let path = store_login(&dir, &server.key, &args.username, &password)?;
    tracing::info!(
        "credentials for {} saved in {}",
        server.registry,
        path.display()
    );
    println!("Login Succeeded");
    Ok(())
}

/// The password from `--password-stdin` (one trailing newline removed, as Docker does) or
/// `--password`, warning about the latter as Docker does.
fn password(args: &LoginArgs) -> anyhow::Result<Secret> {
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .take(PASSWORD_LIMIT)
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        let trimmed = text.trim_end_matches(['\n', '\r']);
        trimmed.to_owned()
    } else if let Some(password) = &args.password {
        tracing::warn!("using --password on the command line is insecure: use --password-stdin");
        password.clone()
    } else {
        bail!("give the password with --password-stdin (or --password)");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(Secret::new(password))
}
