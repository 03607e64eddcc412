//! OCI distribution client for kiln: references, authentication, pull and push.
//!
//! Written against the distribution spec and Docker's behaviour rather than a generic
//! client crate, because a builder needs things those lack: Kaniko's insecure/TLS flags
//! per direction, identity-token refresh, streaming uploads from files, strict
//! verification of everything it pins.

pub mod auth;
mod blob;
mod client;
mod client_cert_probe;
mod digest;
mod download;
mod error;
mod login;
pub mod manifest;
mod mirrors;
mod platform;
mod probe;
mod progress;
mod reference;
mod resolve;
mod response;
mod retry;
mod tls;
mod transport;
mod upload;

pub use auth::sources::{CredentialSource, CredentialSources, UnknownCredentialSource};
pub use blob::BlobStream;
pub use client::{Access, Client, ClientOptions};
pub use download::{Downloaded, parse_http_date};
pub use error::{AuthHint, Error, ErrorBody, Operation, RegistryError};
pub use mirrors::{Mirror, MirrorFlagError, RegistryMaps};
pub use platform::{Platform, PlatformParseError};
pub use progress::{Direction, Progress, REPORT_STEP, TransferProgress};
pub use reference::{DOCKER_HUB, Reference, ReferenceError};
pub use resolve::ResolvedImage;
pub use retry::RetryPolicy;
pub use tls::{ClientCertificate, RegistryCertificate, TlsFlagError};
pub use upload::{BlobUpload, Pushed};
