//! Per-registry scheme and TLS policy, and the raw request loop (scheme fallback,
//! redirects) underneath authentication.
//!
//! Follows go-containerregistry, which Kaniko uses: HTTPS unless the registry is marked
//! insecure; loopback registries try HTTPS and fall back to plain HTTP when TLS fails;
//! certificate verification is relaxed only for registries the user named. Redirects are
//! followed here rather than by reqwest so the `Authorization` header provably never
//! leaves the registry's origin (blob storage such as S3 gets pre-signed URLs instead).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, Url};
use tokio::io::AsyncReadExt;

use crate::client::{Access, ClientOptions};
use crate::error::{Error, is_certificate_error, is_client_certificate_rejection};
use crate::reference::DOCKER_HUB;
use crate::tls::Clients;

const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_REDIRECTS: usize = 10;
const UPLOAD_CHUNK: usize = 256 * 1024;

/// Where a request goes: a path on the registry's API origin, or a URL the registry
/// handed us (upload locations).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Path (and query) below the registry origin, starting with `/v2/`.
    Path(String),
    /// Absolute URL.
    Absolute(Url),
}

/// A request body that can be produced again, so a request can be retried after an
/// authentication challenge or a scheme fallback without buffering a file in memory.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    File(PathBuf),
    /// `len` bytes of a file from `offset`: one chunk of a chunked upload.
    FileRange {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

/// A replayable request description.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    pub method: Method,
    pub target: Target,
    pub headers: HeaderMap,
    pub body: Body,
}

impl RequestSpec {
    pub(crate) fn new(method: Method, target: Target) -> RequestSpec {
        RequestSpec {
            method,
            target,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: HeaderValue) -> RequestSpec {
        self.headers.insert(name, value);
        self
    }

    pub(crate) fn body(mut self, body: Body) -> RequestSpec {
        self.body = body;
        self
    }
}

/// How to reach one registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemePlan {
    Https,
    Http,
    /// Loopback registries: HTTPS first, HTTP if the TLS connection fails.
    HttpsThenHttp,
}

/// The HTTP clients (per TLS policy and per registry with its own TLS material) and the
/// per-host scheme decisions.
#[derive(Debug)]
pub(crate) struct Transport {
    clients: Clients,
    insecure_push: bool,
    insecure_pull: bool,
    insecure_registries: Vec<String>,
    skip_verify_push: bool,
    skip_verify_pull: bool,
    skip_verify_registries: Vec<String>,
    /// Schemes learned by fallback, keyed by registry.
    learned: Mutex<HashMap<String, &'static str>>,
}

impl Transport {
    pub(crate) fn new(options: &ClientOptions) -> Result<Transport, Error> {
        Ok(Transport {
            clients: Clients::new(
                &options.user_agent,
                &options.registry_certificates,
                &options.client_certificates,
            )?,
            insecure_push: options.insecure_push,
            insecure_pull: options.insecure_pull,
            insecure_registries: options.insecure_registries.clone(),
            skip_verify_push: options.skip_tls_verify_push,
            skip_verify_pull: options.skip_tls_verify_pull,
            skip_verify_registries: options.skip_tls_verify_registries.clone(),
            learned: Mutex::new(HashMap::new()),
        })
    }

    /// The host serving the registry API (Docker Hub's differs from its name).
    pub(crate) fn api_host(registry: &str) -> &str {
        if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        }
    }

    /// The HTTP client with the TLS policy for `registry`.
    pub(crate) fn client(&self, registry: &str, access: Access) -> &reqwest::Client {
        let skip = match access {
            Access::Push => self.skip_verify_push,
            Access::Pull => self.skip_verify_pull,
        } || listed(&self.skip_verify_registries, registry);
        let pair = self.clients.for_registry(registry);
        if skip {
            &pair.non_verifying
        } else {
            &pair.verifying
        }
    }

    fn plan(&self, registry: &str, access: Access) -> SchemePlan {
        let insecure = match access {
            Access::Push => self.insecure_push,
            Access::Pull => self.insecure_pull,
        } || listed(&self.insecure_registries, registry);
        if insecure {
            SchemePlan::Http
        } else if is_loopback(registry) {
            SchemePlan::HttpsThenHttp
        } else {
            SchemePlan::Https
        }
    }

    fn learned(&self, registry: &str) -> Option<&'static str> {
        self.learned
            .lock()
            .ok()
            .and_then(|m| m.get(registry).copied())
    }

    fn learn(&self, registry: &str, scheme: &'static str) {
        if let Ok(mut m) = self.learned.lock() {
            m.insert(registry.to_owned(), scheme);
        }
    }

    fn url(registry: &str, scheme: &str, path: &str) -> Result<Url, String> {
        let text = format!("{scheme}://{}{path}", Self::api_host(registry));
        Url::parse(&text).map_err(|e| format!("{text}: {e}"))
    }

    /// The origin the registry's API is served from, for `Authorization` decisions.
    pub(crate) fn registry_origin(&self, registry: &str, access: Access) -> Option<Url> {
        let scheme = match self.plan(registry, access) {
            SchemePlan::Http => "http",
            SchemePlan::Https => "https",
            SchemePlan::HttpsThenHttp => self.learned(registry).unwrap_or("https"),
        };
        Self::url(registry, scheme, "/").ok()
    }

    /// Sends `spec`, choosing the scheme, following redirects for GET/HEAD, and attaching
    /// `authorization` only to requests for the registry's own origin.
    pub(crate) async fn send(
        &self,
        registry: &str,
        access: Access,
        spec: &RequestSpec,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response, SendError> {
        match &spec.target {
            Target::Absolute(url) => {
                let origin = self.registry_origin(registry, access);
                let auth = authorization
                    .filter(|_| origin.as_ref().is_some_and(|o| o.origin() == url.origin()));
                self.send_following(registry, access, spec, url.clone(), auth)
                    .await
            }
            Target::Path(path) => {
                let plan = self.plan(registry, access);
                let first = match plan {
                    SchemePlan::Http => "http",
                    SchemePlan::Https => "https",
                    SchemePlan::HttpsThenHttp => self.learned(registry).unwrap_or("https"),
                };
                let url = Self::url(registry, first, path).map_err(SendError::Url)?;
                let result = self
                    .send_following(registry, access, spec, url, authorization)
                    .await;
                let fallback = plan == SchemePlan::HttpsThenHttp
                    && first == "https"
                    && matches!(&result, Err(SendError::Http(e)) if e.is_connect()
                        && !is_certificate_error(e) && !is_client_certificate_rejection(e));
                if !fallback {
                    if result.is_ok() && plan == SchemePlan::HttpsThenHttp {
                        self.learn(registry, first);
                    }
                    return result;
                }
                tracing::debug!(
                    registry,
                    "TLS connection failed, retrying loopback registry over plain HTTP"
                );
                let url = Self::url(registry, "http", path).map_err(SendError::Url)?;
                match self
                    .send_following(registry, access, spec, url, authorization)
                    .await
                {
                    Ok(response) => {
                        self.learn(registry, "http");
                        Ok(response)
                    }
                    // Report the HTTPS failure: that is the registry's real problem.
                    Err(_) => result,
                }
            }
        }
    }

    async fn send_following(
        &self,
        registry: &str,
        access: Access,
        spec: &RequestSpec,
        mut url: Url,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response, SendError> {
        let client = self.client(registry, access);
        let follow = spec.method == Method::GET || spec.method == Method::HEAD;
        let start_origin = url.origin();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = client
                .request(spec.method.clone(), url.clone())
                .headers(spec.headers.clone());
            // No body at all (rather than an empty one) for GET/HEAD: some blob stores
            // reject signed GETs that carry a Content-Length.
            if let Some(body) = to_reqwest_body(&spec.body) {
                request = request.body(body);
            }
            if let Some(auth) = authorization.filter(|_| url.origin() == start_origin) {
                request = request.header(header::AUTHORIZATION, auth.clone());
            }
            tracing::debug!(method = %spec.method, url = %redact_query(&url), "registry request");
            let response = request.send().await.map_err(SendError::Http)?;
            tracing::debug!(status = %response.status(), "registry response");
            if !(follow && response.status().is_redirection()) {
                return Ok(response);
            }
            let Some(location) = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return Ok(response);
            };
            url = url
                .join(location)
                .map_err(|e| SendError::Url(format!("redirect to {location:?}: {e}")))?;
        }
        Err(SendError::TooManyRedirects)
    }
}

/// Failures below the HTTP status level.
#[derive(Debug)]
pub(crate) enum SendError {
    Http(reqwest::Error),
    /// A URL that could not be built from registry input.
    Url(String),
    TooManyRedirects,
}

/// Whether `registry` (`host[:port]`) appears in a user-given list of `host[:port]`.
/// A bare host in the list also covers that host on any port, as Kaniko users expect.
fn listed(list: &[String], registry: &str) -> bool {
    list.iter().any(|entry| names_registry(entry, registry))
}

/// Whether a user-given `host[:port]` (scheme and trailing `/` tolerated) names `registry`.
pub(crate) fn names_registry(entry: &str, registry: &str) -> bool {
    let entry = entry.trim().trim_end_matches('/');
    let entry = entry
        .strip_prefix("https://")
        .or_else(|| entry.strip_prefix("http://"))
        .unwrap_or(entry);
    entry.eq_ignore_ascii_case(registry)
        || (!entry.contains(':') && entry.eq_ignore_ascii_case(host_of(registry)))
        || (entry == "index.docker.io" || entry == "docker.io") && registry == DOCKER_HUB
}

fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// `localhost`, `127.0.0.0/8` and `::1`, which Docker and ggcr treat as probably-HTTP.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Upload URLs carry opaque state in the query; keep logs short and free of it.
fn redact_query(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.query().is_some() {
        shown.set_query(Some("…"));
    }
    shown.to_string()
}

fn to_reqwest_body(body: &Body) -> Option<reqwest::Body> {
    match body {
        Body::Empty => None,
        Body::Bytes(bytes) => Some(reqwest::Body::from(bytes.clone())),
        Body::File(path) => Some(reqwest::Body::wrap_stream(file_chunks(
            path.clone(),
            0,
            u64::MAX,
        ))),
        Body::FileRange { path, offset, len } => Some(reqwest::Body::wrap_stream(file_chunks(
            path.clone(),
            *offset,
            *len,
        ))),
    }
}

/// Streams `len` bytes (or up to the end) of a file from `offset` in fixed-size chunks; the
/// file is opened on first poll so a body can be re-created for a retry.
fn file_chunks(
    path: PathBuf,
    offset: u64,
    len: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    enum State {
        Closed(PathBuf),
        Open(tokio::io::Take<tokio::fs::File>, PathBuf),
        Done,
    }
    stream::unfold(State::Closed(path), move |state| async move {
        let (mut file, path) = match state {
            State::Closed(path) => match open_at(&path, offset).await {
                Ok(file) => (file.take(len), path),
                Err(e) => return Some((Err(with_path(&path, e)), State::Done)),
            },
            State::Open(file, path) => (file, path),
            State::Done => return None,
        };
        let mut buf = BytesMut::with_capacity(UPLOAD_CHUNK);
        match file.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), State::Open(file, path))),
            Err(e) => Some((Err(with_path(&path, e)), State::Done)),
        }
    })
}

async fn open_at(path: &std::path::Path, offset: u64) -> std::io::Result<tokio::fs::File> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(path).await?;
    if offset > 0 {
        file.seek(std::io::SeekFrom::Start(offset)).await?;
    }
    Ok(file)
}

fn with_path(path: &std::path::Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ClientOptions {
        ClientOptions::default()
    }

    #[test]
    fn loopback_registries_are_recognised() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "localhost.example.com",
            "10.0.0.1:5000",
            "gcr.io",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn scheme_plan_follows_insecure_flags_per_access() {
        let mut o = options();
        o.insecure_push = true;
        o.insecure_registries = vec!["mirror.local:5000".to_owned()];
        let t = Transport::new(&o).unwrap();
        assert_eq!(t.plan("gcr.io", Access::Push), SchemePlan::Http);
        assert_eq!(t.plan("gcr.io", Access::Pull), SchemePlan::Https);
        assert_eq!(t.plan("mirror.local:5000", Access::Pull), SchemePlan::Http);
        assert_eq!(t.plan("mirror.local:5001", Access::Pull), SchemePlan::Https);
        assert_eq!(
            t.plan("127.0.0.1:5000", Access::Pull),
            SchemePlan::HttpsThenHttp
        );
    }

    #[test]
    fn listed_matches_exact_host_port_or_bare_host_only() {
        let list = vec![
            "reg.example.com".to_owned(),
            "other.example.com:5000".to_owned(),
        ];
        assert!(listed(&list, "reg.example.com"));
        assert!(listed(&list, "reg.example.com:8443"));
        assert!(listed(&list, "other.example.com:5000"));
        assert!(!listed(&list, "other.example.com:5001"));
        assert!(!listed(&list, "evil.reg.example.com"));
        assert!(!listed(&list, "reg.example.com.attacker.net"));
    }

    #[test]
    fn docker_hub_is_served_from_registry_1() {
        let t = Transport::new(&options()).unwrap();
        let origin = t.registry_origin(DOCKER_HUB, Access::Pull).unwrap();
        assert_eq!(origin.as_str(), "https://registry-1.docker.io/");
    }

    #[test]
    fn log_lines_hide_upload_state() {
        let url = Url::parse("http://r/v2/a/blobs/uploads/1?_state=secret&digest=x").unwrap();
        assert!(!redact_query(&url).contains("secret"));
    }

    #[tokio::test]
    async fn file_chunks_streams_the_whole_file_and_names_missing_files() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(UPLOAD_CHUNK * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let chunks: Vec<Bytes> = file_chunks(path.clone(), 0, u64::MAX)
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert!(chunks.len() >= 3);
        assert_eq!(chunks.concat(), data);
        let range: Vec<Bytes> = file_chunks(path.clone(), 10, UPLOAD_CHUNK as u64 + 5)
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(range.concat(), &data[10..UPLOAD_CHUNK + 15]);

        let missing = dir.path().join("missing");
        let first = Box::pin(file_chunks(missing.clone(), 0, u64::MAX))
            .next()
            .await
            .unwrap();
        assert!(
            first
                .unwrap_err()
                .to_string()
                .contains(&missing.display().to_string())
        );
    }
}
