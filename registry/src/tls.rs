//! Per-registry TLS material: extra certificate authorities (Kaniko's
//! `--registry-certificate host=ca.pem`) and client certificates for mutual TLS
//! (`--registry-client-cert host=cert.pem,key.pem`).
//!
//! A registry with its own material gets its own pair of HTTP clients (verifying and not),
//! so a private CA trusted for one registry is never trusted for another, and a client
//! certificate is never presented to a registry it was not given for.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// An extra CA certificate (PEM, possibly a bundle) trusted for one registry, in addition
/// to the system's roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCertificate {
    /// `host[:port]` the CA is trusted for; a bare host covers every port.
    pub registry: String,
    /// PEM file with one or more certificates.
    pub ca: PathBuf,
}

/// A client certificate and key (PEM) presented to one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// `host[:port]` the certificate is for; a bare host covers every port.
    pub registry: String,
    /// PEM certificate (chain).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A `--registry-certificate` / `--registry-client-cert` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: {reason}")]
pub struct TlsFlagError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for RegistryCertificate {
    type Err = TlsFlagError;

    /// Kaniko's syntax: `host[:port]=/path/ca.pem`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (registry, ca) = split_flag(value, "expected HOST[:PORT]=/path/to/ca.pem")?;
        Ok(RegistryCertificate {
            registry,
            ca: PathBuf::from(ca),
        })
    }
}

impl FromStr for ClientCertificate {
    type Err = TlsFlagError;

    /// Kaniko's syntax: `host[:port]=/path/cert.pem,/path/key.pem`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        const USAGE: &str = "expected HOST[:PORT]=/path/to/cert.pem,/path/to/key.pem";
        let (registry, paths) = split_flag(value, USAGE)?;
        match paths.split_once(',') {
            Some((cert, key)) if !cert.is_empty() && !key.is_empty() && !key.contains(',') => {
                Ok(ClientCertificate {
                    registry,
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                })
            }
            _ => Err(TlsFlagError {
                value: value.to_owned(),
                reason: USAGE,
            }),
        }
    }
}

fn split_flag<'a>(value: &'a str, usage: &'static str) -> Result<(String, &'a str), TlsFlagError> {
    match value.split_once('=') {
        Some((registry, rest)) if !registry.trim().is_empty() && !rest.is_empty() => {
            Ok((registry.trim().to_owned(), rest))
        }
        _ => Err(TlsFlagError {
            value: value.to_owned(),
            reason: usage,
        }),
    }
}

/// A verifying and a non-verifying HTTP client with the same TLS material.
#[derive(Debug, Clone)]
pub(crate) struct ClientPair {
    pub verifying: reqwest::Client,
    pub non_verifying: reqwest::Client,
}

/// The HTTP clients: the default pair, and one pair per registry with its own material.
#[derive(Debug)]
pub(crate) struct Clients {
    default: ClientPair,
    /// `(registry as given, clients)`, in the order the registries were first named.
    per_registry: Vec<(String, ClientPair)>,
}

impl Clients {
    /// Builds every client up front, so a missing or malformed file is reported before the
    /// build starts, naming the file and the registry.
    pub(crate) fn new(
        user_agent: &str,
        certificates: &[RegistryCertificate],
        client_certificates: &[ClientCertificate],
    ) -> Result<Clients, Error> {
        let mut registries: Vec<&str> = Vec::new();
        for registry in certificates
            .iter()
            .map(|c| c.registry.as_str())
            .chain(client_certificates.iter().map(|c| c.registry.as_str()))
        {
            if !registries.contains(&registry) {
                registries.push(registry);
            }
        }
        let mut per_registry = Vec::with_capacity(registries.len());
        for registry in registries {
            let mut roots = Vec::new();
            for certificate in certificates.iter().filter(|c| c.registry == registry) {
                roots.extend(load_roots(registry, &certificate.ca)?);
            }
            // The last one given wins, as with any repeated single-valued setting.
            let identity = match client_certificates.iter().rfind(|c| c.registry == registry) {
                Some(client) => Some(load_identity(registry, client)?),
                None => None,
            };
            let material = Material { roots, identity };
            per_registry.push((registry.to_owned(), ClientPair::new(user_agent, &material)?));
        }
        Ok(Clients {
            default: ClientPair::new(user_agent, &Material::default())?,
            per_registry,
        })
    }

    /// The clients for `registry`: its own when the user gave material for it.
    pub(crate) fn for_registry(&self, registry: &str) -> &ClientPair {
        self.per_registry
            .iter()
            .find(|(entry, _)| crate::transport::names_registry(entry, registry))
            .map_or(&self.default, |(_, pair)| pair)
    }
}

#[derive(Default)]
struct Material {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl ClientPair {
    fn new(user_agent: &str, material: &Material) -> Result<ClientPair, Error> {
        let build = |accept_invalid: bool| {
            let mut builder = reqwest::Client::builder()
                .user_agent(user_agent)
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                // HTTP/2 flow control made Kaniko's multi-GB pushes take 40 minutes (Kaniko
                // #2751, golang/go#47840); HTTP/1.1 with parallel connections does not stall.
                .http1_only()
                .tls_danger_accept_invalid_certs(accept_invalid);
            if !material.roots.is_empty() {
                builder = builder.tls_certs_merge(material.roots.iter().cloned());
            }
            if let Some(identity) = &material.identity {
                builder = builder.identity(identity.clone());
            }
            builder
                .build()
                .map_err(|source| Error::ClientSetup { source })
        };
        Ok(ClientPair {
            verifying: build(false)?,
            non_verifying: build(true)?,
        })
    }
}

fn read(registry: &str, what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        registry: registry.to_owned(),
        what,
        path: path.to_path_buf(),
        detail: source.to_string(),
    })
}

fn load_roots(registry: &str, path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    const WHAT: &str = "CA certificate";
    let pem = read(registry, WHAT, path)?;
    let invalid = |detail: String| Error::TlsFile {
        registry: registry.to_owned(),
        what: WHAT,
        path: path.to_path_buf(),
        detail,
    };
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
    if roots.is_empty() {
        return Err(invalid("no PEM certificate found".to_owned()));
    }
    Ok(roots)
}

fn load_identity(registry: &str, client: &ClientCertificate) -> Result<reqwest::Identity, Error> {
    let cert = read(registry, "client certificate", &client.cert)?;
    let key = read(registry, "client key", &client.key)?;
    if !String::from_utf8_lossy(&cert).contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::TlsFile {
            registry: registry.to_owned(),
            what: "client certificate",
            path: client.cert.clone(),
            detail: "no PEM certificate found".to_owned(),
        });
    }
    let mut pem = cert;
    pem.push(b'\n');
    pem.extend_from_slice(&key);
    // Only the key can be at fault now: the certificate was found above. reqwest's message
    // is generic and never contains key material.
    reqwest::Identity::from_pem(&pem).map_err(|e| Error::TlsFile {
        registry: registry.to_owned(),
        what: "client key",
        path: client.key.clone(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_kaniko_syntax_and_refuse_anything_else() {
        let ca: RegistryCertificate = "reg.io:5000=/etc/ca.pem".parse().unwrap();
        assert_eq!(
            ca,
            RegistryCertificate {
                registry: "reg.io:5000".to_owned(),
                ca: PathBuf::from("/etc/ca.pem")
            }
        );
        let client: ClientCertificate = "reg.io=/c.pem,/k.pem".parse().unwrap();
        assert_eq!(
            (client.registry.as_str(), client.cert, client.key),
            ("reg.io", PathBuf::from("/c.pem"), PathBuf::from("/k.pem"))
        );
        for bad in ["reg.io", "=/ca.pem", "reg.io="] {
            assert!(bad.parse::<RegistryCertificate>().is_err(), "{bad}");
        }
        for bad in [
            "reg.io=/c.pem",
            "reg.io=/c.pem,",
            "reg.io=,/k",
            "r=/a,/b,/c",
        ] {
            let err = bad.parse::<ClientCertificate>().unwrap_err();
            assert!(err.to_string().contains("cert.pem,"), "{err}");
        }
    }

    #[test]
    fn missing_and_malformed_files_are_named_with_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = Clients::new(
            "kiln",
            &[RegistryCertificate {
                registry: "reg.io".to_owned(),
                ca: missing.clone(),
            }],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("reg.io") && err.contains(&missing.display().to_string()),
            "{err}"
        );

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let err = Clients::new(
            "kiln",
            &[],
            &[ClientCertificate {
                registry: "reg.io".to_owned(),
                cert: junk.clone(),
                key: junk.clone(),
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("client certificate") && err.contains(&junk.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn registries_without_material_use_the_default_clients() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["reg.io".to_owned()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let clients = Clients::new(
            "kiln",
            &[RegistryCertificate {
                registry: "reg.io".to_owned(),
                ca,
            }],
            &[],
        )
        .unwrap();
        assert_eq!(clients.per_registry.len(), 1);
        let own = clients.for_registry("reg.io:443") as *const ClientPair;
        assert_eq!(own, &clients.per_registry[0].1 as *const ClientPair);
        let other = clients.for_registry("reg.io.attacker.net") as *const ClientPair;
        assert_eq!(other, &clients.default as *const ClientPair);
    }
}
