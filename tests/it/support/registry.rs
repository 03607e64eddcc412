//! A throwaway `docker-registry` (CNCF distribution 2.8) on a free loopback port, with its own
//! storage, killed when the test ends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::Pki;
use super::token_server::TokenServer;
use super::tools::require;

/// A running registry.
pub struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts an anonymous registry.
    pub fn start() -> Registry {
        Registry::start_with(None, false)
    }

    /// Starts an anonymous registry holding the busybox base image; returns it with the base's name.
    pub fn with_busybox() -> (Registry, String) {
        let registry = Registry::start();
        let base = registry.image("busybox:latest");
        super::base::push_busybox(&base, registry.scratch());
        (registry, base)
    }

    /// Starts a registry that requires Basic credentials `user:password`.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)), false)
    }

    /// Starts an anonymous registry serving HTTPS with a self-signed certificate for 127.0.0.1.
    pub fn start_with_tls() -> Registry {
        Registry::start_with(None, true)
    }

    /// Starts a registry serving HTTPS with a certificate from `pki`'s CA and requiring Basic
    /// credentials `user:password`.
    pub fn start_with_tls_and_auth(pki: &Pki, user: &str, password: &str) -> Registry {
        let server = pki.server("registry");
        Registry::start_configured(|dir| {
            format!(
                "{}{}",
                tls_section(&server.cert, &server.key, None),
                htpasswd_section(dir, user, password)
            )
        })
    }

    /// Starts an anonymous registry serving HTTPS with a certificate from `pki`'s CA that
    /// accepts only clients presenting a certificate signed by that CA.
    pub fn start_with_client_certs(pki: &Pki) -> Registry {
        let server = pki.server("registry");
        Registry::start_configured(|_| tls_section(&server.cert, &server.key, Some(&pki.ca_path())))
    }

    /// Starts a plain-HTTP registry using Docker token authentication: it trusts tokens that
    /// `tokens` signs and sends clients there.
    pub fn start_with_token_auth(tokens: &TokenServer) -> Registry {
        Registry::start_configured(|_| {
            format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                tokens.realm(),
                tokens.service(),
                tokens.issuer(),
                tokens.root_bundle().display()
            )
        })
    }

    fn start_with(auth: Option<(&str, &str)>, tls: bool) -> Registry {
        Registry::start_configured(|dir| {
            let mut extra = String::new();
            if tls {
                let cert =
                    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
                let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
                std::fs::write(&cert_path, cert.cert.pem()).unwrap();
                std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
                extra.push_str(&tls_section(&cert_path, &key_path, None));
            }
            if let Some((user, password)) = auth {
                extra.push_str(&htpasswd_section(dir, user, password));
            }
            extra
        })
    }

    /// Starts a registry whose config ends with what `extra` returns for the registry's own
    /// directory (an `http.tls` continuation and/or an `auth` section).
    fn start_configured(extra: impl FnOnce(&Path) -> String) -> Registry {
        let binary = require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{}",
            dir.path().join("storage").display(),
            extra(dir.path())
        );
        Registry::spawn(binary, dir, addr, config)
    }

    fn spawn(
        binary: std::path::PathBuf,
        dir: tempfile::TempDir,
        addr: String,
        config: String,
    ) -> Registry {
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = Registry { child, addr, dir };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            if self.answers() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.")
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `host:port/<name>`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// A scratch directory that lives as long as the registry.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `http.tls` continuation of a registry config (it follows `http.addr`).
fn tls_section(cert: &Path, key: &Path, client_ca: Option<&Path>) -> String {
    let mut section = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    if let Some(ca) = client_ca {
        section.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
    }
    section
}

/// An `auth.htpasswd` section with one bcrypt user, its file written to `dir`.
fn htpasswd_section(dir: &Path, user: &str, password: &str) -> String {
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash(password, 4).unwrap();
    std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
    format!(
        "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
        htpasswd.display()
    )
}

/// A loopback port nobody listens on (right now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
