//! Base images for the tests, made from Debian's `busybox-static` (no network needed): a root
//! filesystem with busybox, its applets, and a small `/etc`, written as an OCI layout and pushed
//! with skopeo.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::tools::{require, run, skopeo};

/// Applets linked to `/bin/busybox` in the base image.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "rm", "mkdir", "touch", "chmod", "chown", "id", "ln", "test",
    "true", "false", "sleep", "env", "stat", "wc", "cp", "mv", "printf", "grep", "sed", "whoami",
    "readlink", "head", "uname",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n";

/// A layer being assembled in memory (test images are a few MB).
struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
}

impl LayerTar {
    fn new() -> LayerTar {
        LayerTar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u64) {
        let mut header = header(tar::EntryType::Directory, mode, uid, 0);
        self.builder
            .append_data(&mut header, path, std::io::empty())
            .unwrap();
    }

    fn file(&mut self, path: &str, mode: u32, contents: &[u8]) {
        let mut header = header(tar::EntryType::Regular, mode, 0, contents.len() as u64);
        self.builder
            .append_data(&mut header, path, contents)
            .unwrap();
    }

    fn symlink(&mut self, path: &str, target: &str) {
        let mut header = header(tar::EntryType::Symlink, 0o777, 0, 0);
        self.builder.append_link(&mut header, path, target).unwrap();
    }

    /// The gzip blob and the diff id (sha256 of the uncompressed tar).
    fn finish(self) -> (Vec<u8>, String) {
        let tar = self.builder.into_inner().unwrap();
        let diff_id = sha256(&tar);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        (gz.finish().unwrap(), diff_id)
    }
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(uid);
    header.set_size(size);
    header.set_mtime(1_700_000_000);
    header
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The busybox root filesystem layer; `/etc/arch` holds `marker`.
fn busybox_layer(marker: &str) -> (Vec<u8>, String) {
    let busybox = std::fs::read(require("busybox", "busybox-static")).unwrap();
    let mut layer = LayerTar::new();
    for (dir, mode, uid) in [
        ("bin", 0o755, 0),
        ("etc", 0o755, 0),
        ("home", 0o755, 0),
        ("home/app", 0o755, 1000),
        ("root", 0o700, 0),
        ("tmp", 0o1777, 0),
        ("var", 0o755, 0),
    ] {
        layer.dir(dir, mode, uid);
    }
    layer.file("bin/busybox", 0o755, &busybox);
    for applet in APPLETS {
        layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer.file("etc/passwd", 0o644, PASSWD.as_bytes());
    layer.file("etc/group", 0o644, GROUP.as_bytes());
    layer.file("etc/motd", 0o644, b"welcome\n");
    layer.file("etc/arch", 0o644, format!("{marker}\n").as_bytes());
    layer.finish()
}

/// Writes a blob into an OCI layout; returns its descriptor.
/// Stores `bytes` as a blob of the OCI layout `layout`; returns its descriptor.
pub fn put(layout: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let digest = sha256(bytes);
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
    json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
}

/// Writes a single-layer image for `arch` into `layout`; returns the manifest descriptor.
fn image(layout: &Path, arch: &str, variant: Option<&str>) -> serde_json::Value {
    let (layer, diff_id) = busybox_layer(arch);
    let layer = put(
        layout,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &layer,
    );
    let mut config = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": "2024-01-01T00:00:00Z", "created_by": "busybox-static base" }],
    });
    if let Some(variant) = variant {
        config["variant"] = json!(variant);
    }
    let config = put(
        layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let mut descriptor = put(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let mut platform = json!({ "architecture": arch, "os": "linux" });
    if let Some(variant) = variant {
        platform["variant"] = json!(variant);
    }
    descriptor["platform"] = platform;
    descriptor
}

/// Makes `layout` an OCI layout whose index holds `descriptor` tagged `tag`.
pub fn write_index(layout: &Path, tag: &str, descriptor: serde_json::Value) {
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descriptor = descriptor;
    descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({ "schemaVersion": 2, "manifests": [descriptor] });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// The Go name of the host architecture (what kiln resolves image indexes to).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Pushes the busybox base image to `image` (`host:port/name:tag`) with skopeo.
pub fn push_busybox(image: &str, scratch: &Path) {
    let layout = scratch.join("busybox-layout");
    let descriptor = image_for_host(&layout);
    write_index(&layout, "latest", descriptor);
    copy_to_registry(&layout, "latest", image, false, None);
}

fn image_for_host(layout: &Path) -> serde_json::Value {
    image(layout, host_arch(), None)
}

/// Pushes an image index with an image for the host and one for another platform, each with
/// its architecture in `/etc/arch`.
pub fn push_multi_platform(image: &str, scratch: &Path) {
    let layout = scratch.join("multi-layout");
    let other = if host_arch() == "amd64" {
        ("arm64", Some("v8"))
    } else {
        ("amd64", None)
    };
    let first = self::image(&layout, other.0, other.1);
    let second = image_for_host(&layout);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [first, second],
    });
    let descriptor = put(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    write_index(&layout, "latest", descriptor);
    copy_to_registry(&layout, "latest", image, true, None);
}

/// `skopeo copy` of a layout tag to a registry.
pub fn copy_to_registry(layout: &Path, tag: &str, image: &str, all: bool, creds: Option<&str>) {
    let mut command = skopeo();
    command.args(["copy", "--dest-tls-verify=false"]);
    if all {
        command.arg("--all");
    }
    if let Some(creds) = creds {
        command.arg("--dest-creds").arg(creds);
    }
    run(command
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{image}")));
}

/// `skopeo copy` of a layout tag to a registry with extra flags (`--dest-cert-dir`, ...).
pub fn copy_to_registry_with(layout: &Path, tag: &str, image: &str, flags: &[&str]) {
    run(skopeo()
        .arg("copy")
        .args(flags)
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{image}")));
}

/// Writes the busybox image as an OCI layout (for auth tests that push with credentials).
pub fn busybox_layout(scratch: &Path) -> std::path::PathBuf {
    let layout = scratch.join("busybox-auth-layout");
    let descriptor = image_for_host(&layout);
    write_index(&layout, "latest", descriptor);
    layout
}
