//! Secrets never leave the build: `--secret` values (from a file and from the environment) and
//! registry credentials (from a docker config and from environment variables) are planted with
//! unique values, then looked for everywhere kiln writes: its output at every verbosity, the
//! error of a failed pull, and the pushed image's layers (unpacked by umoci), config (history
//! included) and manifest (read by skopeo). Build args are not secrets: Docker records them in
//! the history by design, and docs/security.md says so.

use base64::Engine as _;

use crate::support::base::{busybox_layout, copy_to_registry};
use crate::support::tools::{config_of, raw_manifest, regular_files, unpack};
use crate::support::{Kiln, Project, Registry};

/// Unique values, so a hit can only be a leak.
struct Planted {
    file_secret: String,
    env_secret: String,
    password: String,
}

impl Planted {
    fn new() -> Planted {
        let pid = std::process::id();
        Planted {
            file_secret: format!("file-secret-{pid}-a81f"),
            env_secret: format!("env-secret-{pid}-c09e"),
            password: format!("registry-pass-{pid}-77d2"),
        }
    }

    /// Every form a planted value could leak in (credentials also as their Basic token).
    fn needles(&self, user: &str) -> Vec<String> {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", self.password));
        vec![
            self.file_secret.clone(),
            self.env_secret.clone(),
            self.password.clone(),
            basic,
        ]
    }
}

fn assert_clean(what: &str, haystack: &[u8], needles: &[String]) {
    for needle in needles {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "{what} contains the planted value {needle:?}"
        );
    }
}

#[test]
fn secrets_and_registry_credentials_appear_in_no_layer_config_log_or_error() {
    let planted = Planted::new();
    let user = "scan-bot";
    let needles = planted.needles(user);
    // Pulls need the credentials; the destination is anonymous so the image can be inspected.
    let private = Registry::start_with_auth(user, &planted.password);
    let base = private.image("private/busybox:latest");
    copy_to_registry(
        &busybox_layout(private.scratch()),
        "latest",
        &base,
        false,
        Some(&format!("{user}:{}", planted.password)),
    );
    let public = Registry::start();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nARG VISIBLE=by-design\n\
         RUN --mount=type=secret,id=file --mount=type=secret,id=api,env=API_KEY \\\n\
         \x20   [ \"$(wc -c < /run/secrets/file)\" -eq {} ] && [ \"${{#API_KEY}}\" -eq {} ] \\\n\
         \x20   && cp /run/secrets/file /tmp/copy && rm /tmp/copy && echo used > /used\n",
        planted.file_secret.len(),
        planted.env_secret.len()
    ));
    let secret_file = project.out("file-secret");
    std::fs::write(&secret_file, &planted.file_secret).unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", planted.password));
    std::fs::write(
        docker_config.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            private.addr()
        ),
    )
    .unwrap();
    let kaniko = format!("KANIKO_{}", private.addr().replace(['.', ':', '-'], "_"));
    let with_secrets = |kiln: Kiln| {
        kiln.args([
            "--secret",
            &format!("id=file,src={}", secret_file.display()),
        ])
        .args(["--secret", "id=api,env=KILN_SCAN_API_KEY"])
        .env("KILN_SCAN_API_KEY", &planted.env_secret)
    };

    // Credentials from a docker config and from the environment, at every verbosity.
    for (verbosity, source) in [("trace", "config"), ("debug", "env"), ("info", "config")] {
        let destination = public.image(&format!("scanned-{verbosity}:1"));
        let kiln = with_secrets(Kiln::build(project.path()).push_to(&destination)).args([
            "--verbosity",
            verbosity,
            "--build-arg",
            "VISIBLE=on-record",
        ]);
        // One run logs JSON (structured fields are where a credential would slip in); the
        // trace run also turns on every dependency's logs (HTTP, TLS) with `KILN_LOG`.
        let kiln = match verbosity {
            "debug" => kiln.args(["--log-format", "json"]),
            "trace" => kiln.env("KILN_LOG", "trace"),
            _ => kiln,
        };
        let kiln = match source {
            "config" => kiln.env("DOCKER_CONFIG", docker_config.path()),
            _ => kiln
                .env(&format!("{kaniko}_USER"), user)
                .env(&format!("{kaniko}_PASSWORD"), &planted.password),
        };
        let outcome = kiln.run();
        let printed = outcome.everything_printed();
        assert!(outcome.succeeded(), "{verbosity}/{source}: {printed}");
        assert_clean(
            &format!("kiln's output at --verbosity {verbosity} ({source} credentials)"),
            printed.as_bytes(),
            &needles,
        );
        if verbosity != "trace" {
            continue;
        }
        // The image: every file of every layer, the config with its history, the manifest.
        let scratch = tempfile::tempdir().unwrap();
        let rootfs = unpack(&format!("docker://{destination}"), scratch.path());
        assert!(rootfs.join("used").exists(), "the secrets were used");
        assert!(!rootfs.join("run/secrets").exists());
        for (path, bytes) in regular_files(&rootfs) {
            assert_clean(&format!("layer file {}", path.display()), &bytes, &needles);
        }
        let config = config_of(&destination);
        assert_clean("the image config", config.to_string().as_bytes(), &needles);
        assert!(
            config["history"].to_string().contains("VISIBLE=on-record"),
            "build args are in the history, as Docker records them: {}",
            config["history"]
        );
        assert_clean("the manifest", &raw_manifest(&destination), &needles);
    }

    // A refused pull: wrong credentials of the same shape; the error must not echo them.
    let wrong = format!("{}-wrong", planted.password);
    let wrong_auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{wrong}"));
    std::fs::write(
        docker_config.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{wrong_auth}"}}}}}}"#,
            private.addr()
        ),
    )
    .unwrap();
    let destination = public.image("scanned-refused:1");
    let outcome = with_secrets(Kiln::build(project.path()).push_to(&destination))
        .args(["--verbosity", "trace"])
        .env("DOCKER_CONFIG", docker_config.path())
        .run();
    let printed = outcome.everything_printed();
    assert!(!outcome.succeeded(), "{printed}");
    assert!(printed.contains("401"), "the error says why: {printed}");
    let mut all = needles.clone();
    all.extend([wrong, wrong_auth]);
    assert_clean("a failed pull's output", printed.as_bytes(), &all);
}
