//! Docker token authentication against docker-registry's `auth: token`, with the test's own
//! token server: Basic credentials and identity (refresh) tokens from the Docker config, and
//! secrets that never reach kiln's output.

use base64::Engine as _;

use crate::support::base::{busybox_layout, copy_to_registry};
use crate::support::proxy::Proxy;
use crate::support::token_server::TokenServer;
use crate::support::tools::inspect_as;
use crate::support::{Kiln, Project, Registry};

const USER: &str = "builder";
const PASSWORD: &str = "t0ken-pass-word";
const REFRESH: &str = "refresh-7f1c9a-never-print-me";

/// A registry behind a token server, holding `private/busybox:latest`; returns its name.
fn token_registry() -> (TokenServer, Registry, String) {
    let tokens = TokenServer::start(USER, PASSWORD, REFRESH);
    let registry = Registry::start_with_token_auth(&tokens);
    let base = registry.image("private/busybox:latest");
    let layout = busybox_layout(registry.scratch());
    copy_to_registry(
        &layout,
        "latest",
        &base,
        false,
        Some(&format!("{USER}:{PASSWORD}")),
    );
    (tokens, registry, base)
}

fn docker_config(project: &Project, registry: &Registry, entry: &str) -> std::path::PathBuf {
    let dir = project.out("docker");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"{}":{entry}}}}}"#, registry.addr()),
    )
    .unwrap();
    dir
}

fn basic_auth() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}

#[test]
fn token_auth_grants_pulls_and_pushes_to_basic_credentials_and_refuses_anonymous_pulls() {
    let (tokens, registry, base) = token_registry();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /token-auth\n"));
    let destination = registry.image("private/app:1");

    // Skip the push-access probe so the anonymous pull is what gets refused.
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .args(["--skip-push-permission-check"])
        .run()
        .failure();
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains(&base), "{stderr}");
    assert!(tokens.grants().contains(&"anonymous".to_owned()));

    let config = docker_config(
        &project,
        &registry,
        &format!(r#"{{"auth":"{}"}}"#, basic_auth()),
    );
    Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_CONFIG", &config)
        .run()
        .success();
    inspect_as(&destination, &format!("{USER}:{PASSWORD}"));
}

#[test]
fn an_identity_token_is_exchanged_at_the_token_server_with_a_refresh_token_grant() {
    let (tokens, registry, base) = token_registry();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /identity-token\n"));
    let destination = registry.image("private/identity:1");
    // Docker writes identity tokens with a placeholder user and no password.
    let config = docker_config(
        &project,
        &registry,
        &format!(
            r#"{{"username":"00000000-0000-0000-0000-000000000000","identitytoken":"{REFRESH}"}}"#
        ),
    );
    let before = tokens.grants().len();
    Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_CONFIG", &config)
        .run()
        .success();
    let grants = tokens.grants()[before..].to_vec();
    assert!(!grants.is_empty());
    assert!(
        grants.iter().all(|g| g == "refresh_token"),
        "kiln must only use the refresh-token grant: {grants:?}"
    );
    inspect_as(&destination, &format!("{USER}:{PASSWORD}"));

    // A refresh token the server does not know is refused, naming the image.
    let wrong = docker_config(&project, &registry, r#"{"identitytoken":"not-the-token"}"#);
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .args(["--skip-push-permission-check"])
        .env("DOCKER_CONFIG", &wrong)
        .run()
        .failure();
    assert!(stderr.contains("401") && stderr.contains(&base), "{stderr}");
}

#[test]
fn a_registry_token_from_the_docker_config_is_sent_as_the_bearer_token_itself() {
    let (tokens, registry, base) = token_registry();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /registry-token\n"));
    let destination = registry.image("private/bearer:1");
    let token = tokens.token_for(&[
        "repository:private/busybox:pull",
        "repository:private/bearer:pull,push",
    ]);
    let config = docker_config(
        &project,
        &registry,
        &format!(r#"{{"registrytoken":"{token}"}}"#),
    );
    let before = tokens.grants().len();
    Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_CONFIG", &config)
        .run()
        .success();
    assert_eq!(
        tokens.grants().len(),
        before,
        "kiln asked the token server although the config holds the token"
    );
    inspect_as(&destination, &format!("{USER}:{PASSWORD}"));
}

#[test]
fn credentials_and_tokens_never_appear_in_output_even_at_trace_level() {
    let (tokens, registry, base) = token_registry();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /quiet\n"));
    let destination = registry.image("private/quiet:1");
    let config = docker_config(
        &project,
        &registry,
        &format!(r#"{{"auth":"{}"}}"#, basic_auth()),
    );

    // kiln's own trace logs, then every crate's (hyper, reqwest, rustls) at trace.
    let mut printed = Vec::new();
    for all_crates in [false, true] {
        let mut kiln = Kiln::build(project.path())
            .push_to(&destination)
            .args(["--verbosity", "trace"])
            .env("DOCKER_CONFIG", &config);
        if all_crates {
            kiln = kiln.env("KILN_LOG", "trace");
        }
        let outcome = kiln.run();
        let text = outcome.everything_printed();
        assert!(outcome.succeeded(), "{text}");
        printed.push(text);
    }
    // And a failing run with a wrong password.
    let wrong_password = "wr0ng-pass-never-print";
    let wrong_auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{wrong_password}"));
    let wrong = docker_config(
        &project,
        &registry,
        &format!(r#"{{"auth":"{wrong_auth}"}}"#),
    );
    let outcome = Kiln::build(project.path())
        .push_to(&destination)
        .args(["--verbosity", "trace"])
        .env("DOCKER_CONFIG", &wrong)
        .env("KILN_LOG", "trace")
        .run();
    assert!(!outcome.succeeded());
    printed.push(outcome.everything_printed());

    let issued = tokens.issued();
    assert!(!issued.is_empty());
    let mut secrets = vec![
        PASSWORD.to_owned(),
        basic_auth(),
        wrong_password.to_owned(),
        wrong_auth,
    ];
    secrets.extend(issued);
    for text in &printed {
        assert!(
            text.contains("registry request"),
            "trace logging was not on: {text}"
        );
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret appeared in kiln's output ({} chars): {secret}",
                text.len()
            );
        }
    }
}

#[test]
fn blobs_are_mounted_between_repositories_with_one_token_for_both() {
    let (tokens, registry, base) = token_registry();
    // Requests go through a counting proxy; credentials are keyed by the address kiln uses.
    let proxy = Proxy::start(registry.addr());
    let base = base.replace(registry.addr(), proxy.addr());
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /mounted\n"));
    let config = project.out("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            proxy.addr(),
            basic_auth()
        ),
    )
    .unwrap();
    Kiln::build(project.path())
        .push_to(&proxy.image("private/one:1"))
        .args(["--destination", &proxy.image("private/two:1")])
        .env("DOCKER_CONFIG", &config)
        .run()
        .success();

    let scopes = tokens.scopes();
    for (to, from) in [
        ("private/one", "private/busybox"),
        ("private/two", "private/one"),
    ] {
        assert!(
            scopes.iter().any(|asked| {
                asked.contains(&format!("repository:{to}:pull,push"))
                    && asked.contains(&format!("repository:{from}:pull"))
            }),
            "no token asked for {to} and {from} together: {scopes:#?}"
        );
    }
    // Each request is seen twice when its token is not cached yet: once refused with the
    // challenge, once with the token.
    let mounted: std::collections::BTreeSet<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.is("POST", "/v2/private/two/blobs/uploads/?mount="))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        mounted.len(),
        3,
        "base layer, new layer and config mounted from private/one: {mounted:#?}"
    );
    assert_eq!(proxy.count("PATCH", "/v2/private/two/blobs/uploads/"), 0);
    assert_eq!(proxy.count("PUT", "/v2/private/two/blobs/uploads/"), 0);
    for name in ["private/one:1", "private/two:1"] {
        inspect_as(&registry.image(name), &format!("{USER}:{PASSWORD}"));
    }
}
