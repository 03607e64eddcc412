//! `kiln push`: an image built with `--no-push --oci-layout-path` (or written by any OCI tool) is
//! published later, byte for byte, without a rebuild; read back with skopeo and umoci.

use serde_json::json;

use crate::support::proxy::Proxy;
use crate::support::tools::{exists, inspect, run, skopeo, unpack};
use crate::support::{Kiln, Project, Registry};

#[test]
fn a_layout_built_offline_is_pushed_later_with_the_same_digest() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new()
        .dockerfile(&format!(
            "FROM {base}\nCOPY app.txt /app.txt\nRUN touch /made\n"
        ))
        .file("app.txt", "scanned bytes\n");
    let layout = project.out("layout");
    let built = Kiln::build(project.path())
        .args([
            "--no-push",
            "--insecure-pull",
            "--destination",
            "example.test/app:v1",
        ])
        .arg_path("--oci-layout-path", &layout)
        .run()
        .success();

    let proxy = Proxy::start(registry.addr());
    let first = proxy.image("team/app:v1");
    let second = proxy.image("team/mirror:v1");
    let digest_file = project.out("digest");
    let pushed = Kiln::push(&format!("oci:{}:v1", layout.display()))
        .args(["--insecure", "-d", &first, "-d", &second])
        .arg_path("--digest-file", &digest_file)
        .run()
        .success();

    assert_eq!(pushed.trim(), built.trim());
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), built.trim());
    for image in [&first, &second] {
        let seen = inspect(&format!("docker://{image}"));
        assert_eq!(seen["Digest"], json!(built.trim()), "{image}");
    }
    // The second destination on the same registry mounts every blob from the first.
    let layers = 3; // busybox, the COPY, the RUN
    assert_eq!(
        proxy.count("POST", "/team/mirror/blobs/uploads/?mount="),
        layers + 1
    );
    assert_eq!(proxy.count("PATCH", "/team/mirror/"), 0);
    assert_eq!(proxy.count("PUT", "/team/mirror/blobs/"), 0);
    let rootfs = unpack(&format!("docker://{first}"), &project.out("rootfs"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app.txt")).unwrap(),
        "scanned bytes\n"
    );
    assert!(rootfs.join("made").is_file());
}

#[test]
fn a_layout_written_by_skopeo_is_pushed_without_writing_into_it() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new();
    let layout = project.out("from-skopeo");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{base}"))
        .arg(format!("oci:{}:busybox", layout.display())));
    let before = listing(&layout);
    let destination = registry.image("copied/busybox:1");

    Kiln::push(layout.to_str().unwrap())
        .args(["--insecure-registry", registry.addr(), "-d", &destination])
        .run()
        .success();

    assert_eq!(
        inspect(&format!("docker://{destination}"))["Digest"],
        inspect(&format!("oci:{}:busybox", layout.display()))["Digest"]
    );
    assert_eq!(listing(&layout), before, "kiln push wrote into the layout");
}

#[test]
fn a_layout_missing_a_blob_is_refused_before_anything_is_pushed() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new();
    let layout = project.out("broken");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{base}"))
        .arg(format!("oci:{}:b", layout.display())));
    let layer = inspect(&format!("oci:{}:b", layout.display()))["Layers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::remove_file(
        layout
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .unwrap();
    let destination = registry.image("never/pushed:1");

    let err = Kiln::push(&format!("oci:{}:b", layout.display()))
        .args(["--insecure", "-d", &destination])
        .run()
        .failure();

    assert!(
        err.contains("lacks 1 blob(s)") && err.contains(&layer),
        "{err}"
    );
    assert!(!exists(&destination));
    let err = Kiln::push(&format!("oci:{}:nope", layout.display()))
        .args(["--insecure", "-d", &destination])
        .run()
        .failure();
    assert!(err.contains("has no image named \"nope\""), "{err}");
}

fn listing(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut entries: Vec<(String, u64)> = walk(dir)
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p.strip_prefix(dir).unwrap().display().to_string(), len)
        })
        .collect();
    entries.sort();
    entries
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
