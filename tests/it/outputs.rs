//! Offline outputs: `--no-push` with `--oci-layout-path` and `--tar-path`, read back by umoci
//! and skopeo. No registry is involved after the base image is pulled.

use serde_json::json;

use crate::support::tools::{inspect, run, skopeo, unpack, unpack_layout};
use crate::support::{Kiln, Project, Registry};

#[test]
fn a_scratch_image_is_written_as_an_oci_layout_and_a_tarball_without_any_registry() {
    let project = Project::new()
        .dockerfile("FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n")
        .file("hello.txt", "hi\n");
    let layout = project.out("layout");
    let tarball = project.out("image.tar");
    let stdout = Kiln::build(project.path())
        .args(["--no-push", "--destination", "example.test/hello:v1"])
        .arg_path("--oci-layout-path", &layout)
        .arg_path("--tar-path", &tarball)
        .run()
        .success();

    let rootfs = unpack_layout(&layout, "v1", &project.out("scratch"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).unwrap(),
        "hi\n"
    );
    let from_layout = inspect(&format!("oci:{}:v1", layout.display()));
    assert_eq!(from_layout["Digest"], json!(stdout.trim()));

    // skopeo finds the image by the tag kiln recorded in manifest.json.
    let from_tar = inspect(&format!(
        "docker-archive:{}:example.test/hello:v1",
        tarball.display()
    ));
    assert_eq!(from_tar["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(from_tar["Env"], from_layout["Env"]);
    let rootfs = unpack(
        &format!("docker-archive:{}", tarball.display()),
        &project.out("tar"),
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).unwrap(),
        "hi\n"
    );
}

#[test]
fn no_push_writes_the_layout_and_leaves_the_destination_alone() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN touch /made\n"));
    let layout = project.out("layout");
    let destination = registry.image("never:pushed");
    Kiln::build(project.path())
        .args([
            "--no-push",
            "--insecure-pull",
            "--destination",
            &destination,
        ])
        .arg_path("--oci-layout-path", &layout)
        .run()
        .success();
    assert!(!crate::support::tools::exists(&destination));
    let rootfs = unpack_layout(&layout, "pushed", &project.out("scratch"));
    assert!(rootfs.join("made").is_file());
    assert!(rootfs.join("bin/busybox").is_file());
    // skopeo can also push the layout kiln wrote.
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:pushed", layout.display()))
        .arg(format!("docker://{}", registry.image("copied:1"))));
}
