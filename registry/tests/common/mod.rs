//! A throwaway `docker-registry` (distribution 2.8) on a free loopback port.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

pub mod fake;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

const BINARY: &str = "/usr/bin/docker-registry";

/// Kills the registry when the test ends, pass or fail.
pub struct Registry {
    child: Child,
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; `htpasswd` enables Basic auth with that file.
    pub async fn start(htpasswd: Option<&Path>) -> Registry {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} not found: install docker-registry (apt-get install docker-registry)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some(path) = htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: r\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let mut registry = Registry { child, addr, dir };
        registry.wait_ready().await;
        registry
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://{}/v2/", self.addr);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            if http.get(&url).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn reference(&self, repo_and_tag: &str) -> kiln_registry::Reference {
        format!("{}/{repo_and_tag}", self.addr).parse().unwrap()
    }

    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A blob written to a file, with its digest.
pub struct BlobFile {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
    pub bytes: Bytes,
}

pub fn blob_file(dir: &Path, name: &str, bytes: &[u8]) -> BlobFile {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(bytes).unwrap();
    BlobFile {
        path,
        digest: sha256(bytes),
        size: bytes.len() as u64,
        bytes: Bytes::copy_from_slice(bytes),
    }
}

pub fn config_json(arch: &str, variant: Option<&str>, layer_diff: &str) -> Vec<u8> {
    let variant = variant
        .map(|v| format!(r#","variant":"{v}""#))
        .unwrap_or_default();
    format!(
        r#"{{"architecture":"{arch}"{variant},"os":"linux","config":{{"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_diff}"]}}}}"#
    )
    .into_bytes()
}

/// Writes a layer of `layer_bytes` and an amd64 config naming it into `registry`'s scratch
/// directory and pushes both blobs to `repo`; the caller pushes the manifest it wants.
pub async fn push_layer_and_config(
    client: &kiln_registry::Client,
    registry: &Registry,
    repo: &kiln_registry::Reference,
    layer_bytes: &[u8],
) -> (BlobFile, BlobFile) {
    let layer = blob_file(registry.scratch(), "layer", layer_bytes);
    let config = blob_file(
        registry.scratch(),
        "config",
        &config_json("amd64", None, &layer.digest),
    );
    for blob in [&layer, &config] {
        client
            .push_blob(repo, &blob.digest, blob.size, &blob.path)
            .await
            .unwrap();
    }
    (layer, config)
}

pub fn manifest_json(
    manifest_type: &str,
    config_type: &str,
    config: &BlobFile,
    layer_type: &str,
    layer: &BlobFile,
) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{{"mediaType":"{config_type}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{layer_type}","digest":"{}","size":{}}}]}}"#,
        config.digest, config.size, layer.digest, layer.size
    ))
}

pub fn client_options(config_dir: &Path) -> kiln_registry::ClientOptions {
    kiln_registry::ClientOptions {
        docker_config_dir: Some(config_dir.to_path_buf()),
        ..kiln_registry::ClientOptions::default()
    }
}
