//! Per-registry TLS material: a private CA (`--registry-certificate`) for a registry behind TLS
//! with Basic auth, and a client certificate (`--registry-client-cert`) for a registry that
//! demands mutual TLS.

use base64::Engine as _;

use crate::support::base::{busybox_layout, copy_to_registry, copy_to_registry_with};
use crate::support::pki::Pki;
use crate::support::tools::{inspect_as, run, skopeo};
use crate::support::{Kiln, Project, Registry};

/// A Docker config directory with Basic credentials for `registry`.
fn docker_config(
    project: &Project,
    registry: &str,
    user: &str,
    password: &str,
) -> std::path::PathBuf {
    let dir = project.out("docker");
    std::fs::create_dir_all(&dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    dir
}

#[test]
fn a_private_ca_given_with_registry_certificate_is_trusted_for_that_registry_only() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::new(scratch.path(), "registry");
    let registry = Registry::start_with_tls_and_auth(&pki, "builder", "tls-pass");
    let base = registry.image("private/busybox:latest");
    let layout = busybox_layout(registry.scratch());
    copy_to_registry(&layout, "latest", &base, false, Some("builder:tls-pass"));
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /private-ca\n"));
    let destination = registry.image("private/app:1");
    let config = docker_config(&project, registry.addr(), "builder", "tls-pass");
    let ca_flag = format!("{}={}", registry.addr(), pki.ca_path().display());

    // Without the CA: a certificate error naming the registry and the flag that fixes it.
    let stderr = Kiln::build(project.path())
        .args(["--destination", &destination])
        .env("DOCKER_CONFIG", &config)
        .run()
        .failure();
    assert!(
        stderr.contains(&format!("TLS certificate of registry {}", registry.addr())),
        "{stderr}"
    );
    assert!(stderr.contains("--registry-certificate"), "{stderr}");

    // The CA given for another registry does not make this one trusted.
    let other = format!("registry.example.com={}", pki.ca_path().display());
    let stderr = Kiln::build(project.path())
        .args([
            "--destination",
            &destination,
            "--registry-certificate",
            &other,
        ])
        .env("DOCKER_CONFIG", &config)
        .run()
        .failure();
    assert!(stderr.contains("TLS certificate of registry"), "{stderr}");

    Kiln::build(project.path())
        .args([
            "--destination",
            &destination,
            "--registry-certificate",
            &ca_flag,
        ])
        .env("DOCKER_CONFIG", &config)
        .run()
        .success();
    inspect_as(&destination, "builder:tls-pass");
}

#[test]
fn a_registry_requiring_client_certificates_accepts_the_one_given_with_registry_client_cert() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::new(scratch.path(), "mtls");
    let registry = Registry::start_with_client_certs(&pki);
    let client = pki.client("kiln-client");
    // skopeo's certificate directory: `*.crt` CAs, `<name>.cert` + `<name>.key` client pairs.
    let certs = scratch.path().join("skopeo-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(pki.ca_path(), certs.join("ca.crt")).unwrap();
    std::fs::copy(&client.cert, certs.join("client.cert")).unwrap();
    std::fs::copy(&client.key, certs.join("client.key")).unwrap();
    let cert_dir = certs.display().to_string();

    let base = registry.image("busybox:latest");
    let layout = busybox_layout(registry.scratch());
    copy_to_registry_with(&layout, "latest", &base, &["--dest-cert-dir", &cert_dir]);
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /mutual-tls\n"));
    let destination = registry.image("mtls/app:1");
    let ca_flag = format!("{}={}", registry.addr(), pki.ca_path().display());
    let client_flag = format!(
        "{}={},{}",
        registry.addr(),
        client.cert.display(),
        client.key.display()
    );

    let stderr = Kiln::build(project.path())
        .args([
            "--destination",
            &destination,
            "--registry-certificate",
            &ca_flag,
        ])
        .run()
        .failure();
    assert!(
        stderr.contains(&format!(
            "registry {} requires a TLS client certificate",
            registry.addr()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--registry-client-cert"), "{stderr}");

    // A certificate from another CA is refused the same way.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = Pki::new(stranger_dir.path(), "stranger").client("stranger");
    let stranger_flag = format!(
        "{}={},{}",
        registry.addr(),
        stranger.cert.display(),
        stranger.key.display()
    );
    let stderr = Kiln::build(project.path())
        .args([
            "--destination",
            &destination,
            "--registry-certificate",
            &ca_flag,
        ])
        .args(["--registry-client-cert", &stranger_flag])
        .run()
        .failure();
    assert!(
        stderr.contains("requires a TLS client certificate it accepts"),
        "{stderr}"
    );

    Kiln::build(project.path())
        .args([
            "--destination",
            &destination,
            "--registry-certificate",
            &ca_flag,
        ])
        .args(["--registry-client-cert", &client_flag])
        .run()
        .success();
    run(skopeo()
        .args(["inspect", "--cert-dir", &cert_dir])
        .arg(format!("docker://{destination}")));
}

#[test]
fn unreadable_tls_files_are_reported_with_the_file_and_registry_before_anything_runs() {
    let project = Project::new().dockerfile("FROM scratch\n");
    let missing = project.out("missing-ca.pem");
    let stderr = Kiln::build(project.path())
        .args(["--no-push", "--registry-certificate"])
        .args([format!("reg.example.com:5000={}", missing.display())])
        .run()
        .failure();
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("reg.example.com:5000"),
        "{stderr}"
    );

    let key = project.out("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let stderr = Kiln::build(project.path())
        .args(["--no-push", "--registry-client-cert"])
        .args([format!(
            "reg.example.com=/nonexistent/cert.pem,{}",
            key.display()
        )])
        .run()
        .failure();
    assert!(
        stderr.contains("/nonexistent/cert.pem") && stderr.contains("reg.example.com"),
        "{stderr}"
    );
}
