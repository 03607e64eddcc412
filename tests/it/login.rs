//! `kiln login`: credentials checked against the real registry (htpasswd Basic, and token
//! auth through the test's token server), then saved to `config.json` as `docker login`
//! does, where a later `kiln build` finds them.

use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;

use crate::support::base::{busybox_layout, copy_to_registry};
use crate::support::token_server::TokenServer;
use crate::support::tools::inspect_as;
use crate::support::{Kiln, Project, Registry};

const USER: &str = "login-bot";
const PASSWORD: &str = "l0gin-pass-never-print";

#[test]
fn login_checks_the_password_then_saves_it_where_a_build_finds_it() {
    let registry = Registry::start_with_auth(USER, PASSWORD);
    let creds = format!("{USER}:{PASSWORD}");
    let base = registry.image("private/busybox:latest");
    copy_to_registry(
        &busybox_layout(registry.scratch()),
        "latest",
        &base,
        false,
        Some(&creds),
    );
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /logged-in\n"));
    let docker_config = project.out("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let config_path = docker_config.join("config.json");
    let existing = r#"{"auths":{"other.example":{"auth":"b3RoZXI6cGFzcw=="}},"credHelpers":{"gcr.io":"gcloud"},"detachKeys":"ctrl-e,e"}"#;
    std::fs::write(&config_path, existing).unwrap();

    // A wrong password is refused by the registry and nothing is written.
    let wrong = "wr0ng-login-pass";
    let stderr = Kiln::login()
        .args([
            registry.addr(),
            "-u",
            USER,
            "--password-stdin",
            "--insecure",
        ])
        .env("DOCKER_CONFIG", &docker_config)
        .stdin_text(&format!("{wrong}\n"))
        .run()
        .failure();
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains(registry.addr()), "{stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), existing);

    let outcome = Kiln::login()
        .args([
            registry.addr(),
            "-u",
            USER,
            "--password-stdin",
            "--insecure",
            "--verbosity",
            "trace",
        ])
        .env("DOCKER_CONFIG", &docker_config)
        .env("KILN_LOG", "trace")
        .stdin_text(&format!("{PASSWORD}\n"))
        .run();
    let printed = outcome.everything_printed();
    assert!(printed.contains("Login Succeeded"), "{printed}");
    let auth = base64::engine::general_purpose::STANDARD.encode(&creds);
    assert!(
        !printed.contains(PASSWORD) && !printed.contains(&auth),
        "{printed}"
    );
    outcome.success();

    let mode = std::fs::metadata(&config_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(saved["auths"][registry.addr()]["auth"], auth.as_str());
    assert_eq!(saved["auths"]["other.example"]["auth"], "b3RoZXI6cGFzcw==");
    assert_eq!(saved["credHelpers"]["gcr.io"], "gcloud");
    assert_eq!(saved["detachKeys"], "ctrl-e,e");

    let destination = registry.image("private/app:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_CONFIG", &docker_config)
        .run()
        .success();
    inspect_as(&destination, &creds);
}

#[test]
fn login_answers_a_token_challenge_and_warns_about_a_password_on_the_command_line() {
    let tokens = TokenServer::start(USER, PASSWORD, "refresh-unused");
    let registry = Registry::start_with_token_auth(&tokens);
    let project = Project::new();
    let docker_config = project.out("docker");

    let outcome = Kiln::login()
        .args([
            registry.addr(),
            "-u",
            USER,
            "-p",
            PASSWORD,
            "--insecure",
            "--verbosity",
            "trace",
        ])
        .env("DOCKER_CONFIG", &docker_config)
        .env("KILN_LOG", "trace")
        .run();
    let printed = outcome.everything_printed();
    assert!(outcome.succeeded(), "{printed}");
    assert!(printed.contains("--password-stdin"), "{printed}");
    let issued = tokens.issued();
    assert!(
        !issued.is_empty(),
        "the registry's token server was not asked"
    );
    // The password is in kiln's argv, so only the log is checked for it and the token.
    for secret in issued.iter().map(String::as_str).chain([PASSWORD]) {
        assert!(!outcome.stderr().contains(secret), "{printed}");
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker_config.join("config.json")).unwrap()).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(saved["auths"][registry.addr()]["auth"], auth.as_str());

    let refused = Kiln::login()
        .args([
            registry.addr(),
            "-u",
            USER,
            "--password-stdin",
            "--insecure",
        ])
        .env("DOCKER_CONFIG", project.out("refused"))
        .stdin_text("not-the-password")
        .run()
        .failure();
    assert!(refused.contains("401"), "{refused}");
    assert!(!project.out("refused").join("config.json").exists());
}
