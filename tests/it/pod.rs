//! The executor image, built by kiln, run where Kaniko runs: a pod started from the `debug`
//! image with the workspace and `config.json` mounted, the pipeline's command line verbatim
//! through `/busybox/sh -c`, RUN directly in the container's own root (`--isolation=none`,
//! chosen automatically), the result pushed to a real registry and checked with skopeo/umoci.

use std::path::Path;

use crate::support::base::{busybox_layout, copy_to_registry};
use crate::support::pod::Pod;
use crate::support::tools::{inspect_as, require, run, unpack_layout, unpack_with};
use crate::support::{Project, Registry};

const CREDS: (&str, &str) = ("pipeline", "pod-s3cret");

/// The `debug` executor image, built once per test run with `scripts/executor-image` and the
/// kiln under test, as an OCI layout; each test unpacks its own copy (a pod changes its root).
fn executor_layout() -> &'static Path {
    static LAYOUT: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            require("patchelf", "patchelf");
            let dir = tempfile::tempdir().unwrap();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/executor-image");
            run(std::process::Command::new(script)
                .arg("--kiln")
                .arg(env!("CARGO_BIN_EXE_kiln"))
                .args(["--target", "debug", "--no-push"])
                .arg("--oci-layout-path")
                .arg(dir.path().join("layout"))
                .arg("--cache-dir")
                .arg(dir.path().join("cache")));
            dir
        })
        .path()
}

/// A fresh umoci bundle of the executor image under `scratch`.
fn executor_bundle(scratch: &Path) -> std::path::PathBuf {
    let rootfs = unpack_layout(&executor_layout().join("layout"), "latest", scratch);
    rootfs.parent().unwrap().to_path_buf()
}

#[test]
fn the_executor_image_builds_a_multi_stage_dockerfile_in_a_pod_and_pushes_it() {
    let registry = Registry::start_with_auth(CREDS.0, CREDS.1);
    let creds = format!("{}:{}", CREDS.0, CREDS.1);
    let base = registry.image("base/busybox:latest");
    copy_to_registry(
        &busybox_layout(registry.scratch()),
        "latest",
        &base,
        false,
        Some(&creds),
    );
    let bundle = executor_bundle(&registry.scratch().join("executor"));

    // What the pipeline mounts: the checkout at /workspace, the Docker config at /kaniko/.docker.
    let workspace = Project::new().dockerfile(&format!(
        "FROM {base} AS build\n\
         RUN mkdir /out && echo artifact > /out/artifact && echo scratch > /out/log\n\
         RUN echo second > /out/second && rm /out/log\n\
         FROM {base}\n\
         COPY --from=build /out/ /app/\n\
         RUN test ! -e /out && cat /app/artifact /app/second > /app/both && ls /kaniko > /app/kaniko-seen\n\
         RUN <<EOF\n\
         #!/bin/sh\n\
         echo \"from $0\" > /app/script\n\
         EOF\n\
         USER app\n\
         RUN id > /home/app/id\n"
    ));
    let docker_config = tempfile::tempdir().unwrap();
    let auth = base64_encode(creds.as_bytes());
    std::fs::write(
        docker_config.path().join("config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}},\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            registry.addr(),
            registry.addr().replace("127.0.0.1", "localhost")
        ),
    )
    .unwrap();
    // By name: resolved through the image's nsswitch.conf and the pod's /etc/hosts, no NSS plugin.
    let destination = registry
        .image("team/app:1.0")
        .replace("127.0.0.1", "localhost");

    let pod = Pod::from_bundle(&bundle)
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .bind(workspace.path(), "/workspace")
        .bind(docker_config.path(), "/kaniko/.docker");
    let started = std::time::Instant::now();
    let output = pod.run(&[
        "/busybox/sh",
        "-c",
        &format!(
            "/kaniko/executor --dockerfile=/workspace/Dockerfile --context=dir:///workspace/ --destination={destination}"
        ),
    ]);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the pod failed:\n{log}");
    eprintln!("pod build took {:?}\n{log}", started.elapsed());
    assert!(
        log.contains("Isolation: none (running as /kaniko/executor in a container"),
        "{log}"
    );

    let manifest = inspect_as(&destination, &creds);
    assert_eq!(
        manifest["Layers"].as_array().unwrap().len(),
        5,
        "base, COPY, three RUNs: {manifest}"
    );
    let image = unpack_with(
        &format!("docker://{destination}"),
        &registry.scratch().join("result"),
        &["--src-creds", &creds],
    );
    let read = |path: &str| std::fs::read_to_string(image.join(path)).unwrap();
    assert_eq!(read("app/artifact"), "artifact\n");
    assert_eq!(read("app/both"), "artifact\nsecond\n");
    assert!(!image.join("app/log").exists());
    // A `#!` heredoc runs from /dev/pipes, and USER switches uid, gid and the supplementary
    // groups of /etc/group, as in the sandbox.
    assert!(read("app/script").starts_with("from /dev/pipes/"), "{log}");
    assert_eq!(
        read("home/app/id"),
        "uid=1000(app) gid=1000(app) groups=50(staff)\n"
    );
    // RUN ran in the container's own root: the executor's directory was visible to it...
    assert!(read("app/kaniko-seen").contains("executor"), "{log}");
    // ...but nothing of the container reached a layer.
    for absent in ["kaniko", "workspace", "busybox", "out", "cache"] {
        assert!(
            !image.join(absent).exists(),
            "/{absent} leaked into the image"
        );
    }

    // The container is intact after the build: its executor still runs (its libraries live under
    // /kaniko), the mounted workspace and config are untouched, and the stage's files replaced
    // the image's own.
    let again = pod.run(&["/kaniko/executor", "version"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("kiln "));
    assert!(workspace.path().join("Dockerfile").is_file());
    assert!(docker_config.path().join("config.json").is_file());
    assert!(pod.rootfs().join("app/both").is_file());
    assert!(pod.rootfs().join("busybox/sh").exists());

    // The same container builds again, and `--cleanup` leaves only what the ignore list holds.
    // Without the push-access probe, the registry's name is first resolved for the push, after
    // the base image replaced `/etc` (busybox has no nsswitch.conf): glibc's built-in files and
    // dns modules still answer from the pod's /etc/hosts.
    let second = destination.replace(":1.0", ":1.1");
    let output = pod.run(&[
        "/busybox/sh",
        "-c",
        &format!(
            "/kaniko/executor --dockerfile=/workspace/Dockerfile --context=dir:///workspace/ --destination={second} --skip-push-permission-check --cleanup && ls -a /"
        ),
    ]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the second build failed:\n{log}");
    let mut left: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1) // the digest
        .map(str::to_owned)
        .collect();
    left.sort();
    // `/var` stays as the parent of `/var/run` (ignored by default, as in Kaniko), `/etc` as
    // the parent of the mounted `/etc/hosts` and `/etc/resolv.conf`.
    assert_eq!(
        left,
        [
            ".",
            "..",
            "busybox",
            "cache",
            "dev",
            "etc",
            "kaniko",
            "proc",
            "var",
            "workspace"
        ],
        "{log}"
    );
    let mut etc: Vec<_> = std::fs::read_dir(pod.rootfs().join("etc"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    etc.sort();
    assert_eq!(etc, ["hosts", "resolv.conf"]);
    // Same base layer, and the two layers of the stage again (their times differ).
    let layers = |image: &str| {
        inspect_as(image, &creds)["Layers"]
            .as_array()
            .unwrap()
            .clone()
    };
    let (first_layers, second_layers) = (layers(&destination), layers(&second));
    assert_eq!(second_layers.len(), 5);
    assert_eq!(second_layers[0], first_layers[0]);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn without_container_markers_the_executor_keeps_its_sandbox_and_none_needs_force() {
    let registry = Registry::start();
    let bundle = executor_bundle(&registry.scratch().join("executor"));
    let workspace = Project::new().dockerfile("FROM scratch\nCOPY Dockerfile /Dockerfile\n");
    // No $KUBERNETES_SERVICE_HOST, no /.dockerenv, and pid 1's cgroup is the host's root.
    let pod = Pod::from_bundle(&bundle).bind(workspace.path(), "/workspace");

    let refused = pod.run(&["/kaniko/executor", "--isolation=none", "--no-push"]);
    let log = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{log}");
    assert!(log.contains("no container was detected"), "{log}");
    assert!(log.contains("pass --force"), "{log}");
    assert!(
        pod.rootfs().join("busybox/sh").exists() && pod.rootfs().join("etc/passwd").exists(),
        "a refused build must not touch the filesystem"
    );

    let sandboxed = pod.run(&["/kaniko/executor", "--no-push"]);
    let log = String::from_utf8_lossy(&sandboxed.stderr);
    assert!(sandboxed.status.success(), "{log}");
    assert!(log.contains("Isolation: chroot"), "{log}");
    assert!(pod.rootfs().join("etc/passwd").exists(), "{log}");

    let forced = pod.run(&[
        "/kaniko/executor",
        "--isolation=none",
        "--force",
        "--no-push",
    ]);
    let log = String::from_utf8_lossy(&forced.stderr);
    assert!(forced.status.success(), "{log}");
    assert!(
        log.contains("Isolation: none (--isolation=none outside a container, forced)"),
        "{log}"
    );
    assert!(!pod.rootfs().join("etc/passwd").exists(), "{log}");
}

#[test]
fn in_the_containers_own_root_volumes_stay_out_of_a_single_snapshot_layer() {
    let (registry, base) = Registry::with_busybox();
    let bundle = executor_bundle(&registry.scratch().join("executor"));
    let workspace = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         VOLUME /data\n\
         RUN echo lost > /data/x && echo kept > /kept\n\
         RUN mkdir -p /var/run/app && echo pid > /var/run/app/pid && echo more > /more\n"
    ));
    let pod = Pod::from_bundle(&bundle)
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .bind(workspace.path(), "/workspace");
    let output = pod.run(&[
        "/kaniko/executor",
        "--no-push",
        "--single-snapshot",
        "--destination=example.test/app:v1",
        "--oci-layout-path=/workspace/out",
    ]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("Isolation: none"), "{log}");

    let layout = workspace.path().join("out");
    let manifest = crate::support::tools::inspect(&format!("oci:{}:v1", layout.display()));
    assert_eq!(
        manifest["Layers"].as_array().unwrap().len(),
        2,
        "the base and one layer for the stage: {manifest}"
    );
    let image = unpack_layout(&layout, "v1", &registry.scratch().join("result"));
    let read = |path: &str| std::fs::read_to_string(image.join(path)).unwrap();
    assert_eq!(read("kept"), "kept\n");
    assert_eq!(read("more"), "more\n");
    // Kaniko's semantics without an overlay: the volume and /var/run are left out.
    assert!(
        !image.join("data/x").exists(),
        "the volume's contents leaked"
    );
    assert!(!image.join("var/run/app").exists(), "/var/run leaked");

    // The sandbox asked for where it cannot exist: the error says what to do instead.
    let output = pod.run(&["/kaniko/executor", "--no-push", "--isolation=chroot"]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{log}");
    assert!(
        log.contains("may not create namespaces") && log.contains("--isolation=none"),
        "{log}"
    );
}

#[test]
fn in_the_containers_own_root_the_cache_lives_in_slash_cache_out_of_every_layer_and_is_reused() {
    let (registry, base) = Registry::with_busybox();
    let bundle = executor_bundle(&registry.scratch().join("executor"));
    let workspace = Project::new()
        .dockerfile(&format!(
            "FROM {base}\n\
             COPY a.txt /a.txt\n\
             RUN echo $((40+2))ran && cp /a.txt /ran\n\
             COPY b.txt /b.txt\n\
             RUN echo $((50+5))ran && cat /b.txt > /b2\n"
        ))
        .file("a.txt", "a\n")
        .file("b.txt", "b\n");
    // The volume a pod mounts at Kaniko's default --cache-dir; no --cache-dir is passed.
    let volume = tempfile::tempdir().unwrap();
    let build = |pod: &Pod, tag: &str| {
        let output = pod.run(&[
            "/kaniko/executor",
            "--no-push",
            "--cache",
            &format!("--destination=example.test/app:{tag}"),
            "--oci-layout-path=/workspace/out",
            // No remote cache: every hit must come from /cache.
            "--cache-repo=oci:/workspace/remote-cache",
            "--no-push-cache",
        ]);
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{log}");
        assert!(log.contains("Isolation: none"), "{log}");
        log
    };
    let image = |tag: &str| {
        unpack_layout(
            &workspace.path().join("out"),
            tag,
            &registry.scratch().join(format!("result-{tag}")),
        )
    };

    let writable = Pod::from_bundle(&bundle)
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .bind(workspace.path(), "/workspace")
        .bind(volume.path(), "/cache");
    // Kaniko's warmer, without --cache-dir either, fills the same directory.
    let warmed = writable.run(&["/kaniko/warmer", "--image", &base]);
    assert!(
        warmed.status.success(),
        "{}",
        String::from_utf8_lossy(&warmed.stderr)
    );
    let first = build(&writable, "v1");
    assert!(
        first.contains("42ran") && first.contains("55ran"),
        "{first}"
    );
    assert!(
        first.contains(&format!("Using {base} from the cache directory")),
        "the build did not find what the warmer stored:\n{first}"
    );
    assert!(
        volume.path().join("store/oci-layout").is_file() && volume.path().join("index").is_dir(),
        "the store and index belong in /cache"
    );
    let root = image("v1");
    assert!(!root.join("cache").exists(), "/cache leaked into a layer");

    // The same volume mounted read-only, one file changed: the steps before it come from
    // /cache, new blobs and the work area go to $TMPDIR/kiln-<uid>, and neither reaches a layer.
    std::fs::write(workspace.path().join("b.txt"), "changed\n").unwrap();
    let read_only = Pod::from_bundle(&bundle)
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .bind(workspace.path(), "/workspace")
        .bind_read_only(volume.path(), "/cache");
    let second = build(&read_only, "v2");
    assert!(second.contains("is read-only"), "{second}");
    assert!(
        second.contains("Cache: 2 of 4 steps found (2 locally"),
        "{second}"
    );
    assert!(
        !second.contains("42ran") && second.contains("55ran"),
        "{second}"
    );
    let root = image("v2");
    assert_eq!(
        std::fs::read_to_string(root.join("b2")).unwrap(),
        "changed\n"
    );
    assert_eq!(std::fs::read_to_string(root.join("ran")).unwrap(), "a\n");
    assert!(!root.join("cache").exists(), "/cache leaked into a layer");
    assert!(
        !root.join("tmp").exists() || std::fs::read_dir(root.join("tmp")).unwrap().count() == 0,
        "the fallback directory leaked into a layer"
    );
    assert!(
        writable.rootfs().join("tmp").join("kiln-0").is_dir(),
        "the fallback directory was used"
    );
}
