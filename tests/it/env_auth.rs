//! Credentials from the environment, tried after `config.json`: `DOCKER_AUTH_CONFIG`,
//! `KANIKO_<HOST>_USER`/`_PASSWORD` and GitLab CI's `CI_REGISTRY*`, each against the real
//! htpasswd registry, offered to the exact host they name only.

use base64::Engine as _;

use crate::support::base::{busybox_layout, copy_to_registry};
use crate::support::tools::inspect_as;
use crate::support::{Kiln, Project, Registry};

/// A registry requiring `user`/`password` holding `private/busybox:latest`, and a project
/// building on it; returns the destination to push to as well.
fn private_registry(user: &str, password: &str) -> (Registry, Project, String) {
    let registry = Registry::start_with_auth(user, password);
    let base = registry.image("private/busybox:latest");
    copy_to_registry(
        &busybox_layout(registry.scratch()),
        "latest",
        &base,
        false,
        Some(&format!("{user}:{password}")),
    );
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /from-env\n"));
    let destination = registry.image("private/app:1");
    (registry, project, destination)
}

/// `KANIKO_<HOST>` for a `host:port` registry address.
fn kaniko_prefix(addr: &str) -> String {
    format!("KANIKO_{}", addr.replace(['.', ':', '-'], "_"))
}

#[test]
fn kaniko_host_variables_authenticate_their_host_and_not_a_look_alike() {
    let password = "k4niko-env-pass-never-print";
    let (registry, project, destination) = private_registry("env-bot", password);
    let prefix = kaniko_prefix(registry.addr());

    // Variables for the same host with another port (a longer name) are not offered.
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .env(&format!("{prefix}0_USER"), "env-bot")
        .env(&format!("{prefix}0_PASSWORD"), password)
        .run()
        .failure();
    assert!(stderr.contains("401"), "{stderr}");

    let outcome = Kiln::build(project.path())
        .push_to(&destination)
        .args(["--verbosity", "trace"])
        .env(&format!("{prefix}_USER"), "env-bot")
        .env(&format!("{prefix}_PASSWORD"), password)
        .env("KILN_LOG", "trace")
        .run();
    let printed = outcome.everything_printed();
    assert!(outcome.succeeded(), "{printed}");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("env-bot:{password}"));
    assert!(!printed.contains(password) && !printed.contains(&auth));
    inspect_as(&destination, &format!("env-bot:{password}"));
}

#[test]
fn gitlab_job_token_authenticates_the_ci_registry_only() {
    let token = "glcbt-job-token-never-print";
    let (registry, project, destination) = private_registry("gitlab-ci-token", token);

    // CI_REGISTRY names another port of the same host: nothing is sent.
    let other = format!("{}1", registry.addr());
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .env("CI_REGISTRY", &other)
        .env("CI_JOB_TOKEN", token)
        .run()
        .failure();
    assert!(stderr.contains("401"), "{stderr}");

    Kiln::build(project.path())
        .push_to(&destination)
        .env("CI_REGISTRY", registry.addr())
        .env("CI_JOB_TOKEN", token)
        .run()
        .success();
    inspect_as(&destination, &format!("gitlab-ci-token:{token}"));
}

#[test]
fn docker_auth_config_is_used_after_config_json_which_wins_when_it_has_the_host() {
    let password = "d0cker-auth-config-pass";
    let (registry, project, destination) = private_registry("ci-user", password);
    let encode = |creds: &str| base64::engine::general_purpose::STANDARD.encode(creds);
    let env_config = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        registry.addr(),
        encode(&format!("ci-user:{password}"))
    );

    // config.json without the host: DOCKER_AUTH_CONFIG provides it.
    let docker_config = project.out("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        r#"{"auths":{"elsewhere.example":{"auth":"eDp5"}}}"#,
    )
    .unwrap();
    Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_CONFIG", &docker_config)
        .env("DOCKER_AUTH_CONFIG", &env_config)
        .run()
        .success();
    inspect_as(&destination, &format!("ci-user:{password}"));

    // config.json naming the host wins, even with a wrong password.
    std::fs::write(
        docker_config.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            registry.addr(),
            encode("ci-user:stale")
        ),
    )
    .unwrap();
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_CONFIG", &docker_config)
        .env("DOCKER_AUTH_CONFIG", &env_config)
        .run()
        .failure();
    assert!(stderr.contains("401"), "{stderr}");

    // A malformed variable is an error naming it, without echoing its contents.
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_AUTH_CONFIG", format!("{{\"auths\": {password}"))
        .run()
        .failure();
    assert!(stderr.contains("$DOCKER_AUTH_CONFIG"), "{stderr}");
    assert!(!stderr.contains(password), "{stderr}");
}
