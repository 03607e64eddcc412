//! Basic auth from `$DOCKER_CONFIG/config.json`, for both pull and push, host-wide and
//! path-scoped.

use base64::Engine as _;

use crate::support::base::{busybox_layout, copy_to_registry};
use crate::support::tools::{inspect_as, run, skopeo};
use crate::support::{Kiln, Project, Registry};

#[test]
fn credentials_from_docker_config_are_used_to_pull_and_push() {
    let registry = Registry::start_with_auth("builder", "s3cret-pass");
    let base = registry.image("private/busybox:latest");
    let layout = busybox_layout(registry.scratch());
    copy_to_registry(&layout, "latest", &base, false, Some("builder:s3cret-pass"));
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /authenticated\n"));
    let destination = registry.image("private/app:1");

    // Without credentials: refused, with the status, and without leaking anything.
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(stderr.contains("401"), "{stderr}");

    let docker_config = project.out("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("builder:s3cret-pass");
    std::fs::write(
        docker_config.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let stderr_ok = Kiln::build(project.path())
        .args([
            "--destination",
            &destination,
            "--insecure",
            "--insecure-pull",
            "--verbosity",
            "debug",
        ])
        .env("DOCKER_CONFIG", &docker_config)
        .run();
    let stdout = stderr_ok.success();
    assert!(stdout.starts_with("sha256:"), "{stdout}");
    inspect_as(&destination, "builder:s3cret-pass");
}

#[test]
fn a_self_signed_registry_is_refused_unless_tls_verification_is_skipped() {
    let registry = Registry::start_with_tls();
    let base = registry.image("busybox:latest");
    let layout = busybox_layout(registry.scratch());
    copy_to_registry(&layout, "latest", &base, false, None);
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /over-tls\n"));
    let destination = registry.image("tls/app:1");

    let stderr = Kiln::build(project.path())
        .args(["--destination", &destination])
        .run()
        .failure();
    assert!(stderr.contains(registry.addr()), "{stderr}");
    assert!(stderr.contains("TLS certificate of registry"), "{stderr}");
    assert!(stderr.contains("--skip-tls-verify-pull"), "{stderr}");
    assert!(
        !stderr.contains("HTTP request to an HTTPS server"),
        "{stderr}"
    );

    Kiln::build(project.path())
        .args([
            "--destination",
            &destination,
            "--skip-tls-verify",
            "--skip-tls-verify-pull",
        ])
        .run()
        .success();
    run(skopeo()
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{destination}")));
}

#[test]
fn path_scoped_config_entries_win_for_their_namespace_and_cover_nothing_else() {
    let registry = Registry::start_with_auth("team-bot", "team-pass");
    let layout = busybox_layout(registry.scratch());
    for name in ["team/busybox:latest", "other/busybox:latest"] {
        copy_to_registry(
            &layout,
            "latest",
            &registry.image(name),
            false,
            Some("team-bot:team-pass"),
        );
    }
    // The host-wide entry is wrong; only the `host/team` entry is right.
    let encode = |creds: &str| base64::engine::general_purpose::STANDARD.encode(creds);
    let project = Project::new().dockerfile(&format!(
        "FROM {}\nRUN touch /scoped\n",
        registry.image("team/busybox:latest")
    ));
    let docker_config = project.out("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        format!(
            r#"{{"auths":{{"{addr}":{{"auth":"{wrong}"}},"https://{addr}/team":{{"auth":"{right}"}}}}}}"#,
            addr = registry.addr(),
            wrong = encode("team-bot:wrong"),
            right = encode("team-bot:team-pass"),
        ),
    )
    .unwrap();
    let destination = registry.image("team/app:1");
    Kiln::build(project.path())
        .push_to(&destination)
        .env("DOCKER_CONFIG", &docker_config)
        .run()
        .success();
    inspect_as(&destination, "team-bot:team-pass");

    // Outside `team/`, only the (wrong) host-wide entry applies.
    let other = Project::new().dockerfile(&format!(
        "FROM {}\nRUN touch /scoped\n",
        registry.image("other/busybox:latest")
    ));
    let stderr = Kiln::build(other.path())
        .push_to(&registry.image("other/app:1"))
        .env("DOCKER_CONFIG", &docker_config)
        .run()
        .failure();
    // The push-access probe is the first request that needs credentials.
    assert!(
        stderr.contains("401") && stderr.contains("other/app"),
        "{stderr}"
    );
}
