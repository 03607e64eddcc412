//! The independent tools the tests check kiln's results with. A missing tool is a test
//! failure that says what to install, never a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Fails the test unless `program` is installed, naming the Debian package to install.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!("{program} is not installed: run `apt-get install {package}` (or .ci/run, which installs it)")
    })
}

/// Runs a command, failing the test with its output if it fails.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `skopeo` with TLS verification off (the test registries speak plain HTTP on loopback).
pub fn skopeo() -> Command {
    let mut command = Command::new(require("skopeo", "skopeo"));
    command.arg("--insecure-policy");
    command
}

/// The raw image config of `image` (a `docker://` reference without the prefix), as skopeo sees it.
pub fn config_of(image: &str) -> serde_json::Value {
    let output = run(skopeo()
        .args(["inspect", "--config", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}")));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The raw manifest of `image` (a `docker://` reference without the prefix), byte for byte as
/// the registry serves it.
pub fn raw_manifest(image: &str) -> Vec<u8> {
    run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}")))
    .stdout
}

/// `skopeo inspect` of `image` (any transport: `docker://...`, `oci:...`, `docker-archive:...`).
pub fn inspect(transport_ref: &str) -> serde_json::Value {
    let mut command = skopeo();
    command.arg("inspect");
    if transport_ref.starts_with("docker://") {
        command.arg("--tls-verify=false");
    }
    let output = run(command.arg(transport_ref));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `skopeo inspect` of `image` (a `docker://` reference without the prefix) on a registry that
/// requires `user:password`: proves the image is there, independently of kiln's credentials code.
pub fn inspect_as(image: &str, creds: &str) -> serde_json::Value {
    let output = run(skopeo()
        .args(["inspect", "--tls-verify=false", "--creds", creds])
        .arg(format!("docker://{image}")));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Whether `image` exists in its registry.
pub fn exists(image: &str) -> bool {
    skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap()
        .status
        .success()
}

/// Unpacks an image with umoci and returns the bundle's rootfs. `source` is a skopeo transport
/// reference; it is first copied into an OCI layout, which umoci reads.
pub fn unpack(source: &str, scratch: &Path) -> PathBuf {
    unpack_with(source, scratch, &[])
}

/// [`unpack`], passing extra flags to `skopeo copy` (Debian's umoci reads only gzip layers, so
/// zstd images are recompressed on the way: `--dest-compress-format gzip`).
pub fn unpack_with(source: &str, scratch: &Path, copy_flags: &[&str]) -> PathBuf {
    std::fs::create_dir_all(scratch).unwrap();
    let layout = scratch.join("unpack-layout");
    let mut copy = skopeo();
    copy.arg("copy");
    if source.starts_with("docker://") {
        copy.arg("--src-tls-verify=false");
    }
    run(copy
        .args(copy_flags)
        .arg(source)
        .arg(format!("oci:{}:img", layout.display())));
    unpack_layout(&layout, "img", scratch)
}

/// Unpacks tag `tag` of the OCI layout `layout` with umoci; returns the rootfs.
pub fn unpack_layout(layout: &Path, tag: &str, scratch: &Path) -> PathBuf {
    let bundle = scratch.join(format!("bundle-{tag}"));
    run(Command::new(require("umoci", "umoci"))
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle));
    bundle.join("rootfs")
}

/// Every regular file under `root` (symlinks not followed), with its bytes.
pub fn regular_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    out
}
