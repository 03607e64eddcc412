//! A small hostile registry on loopback: it serves whatever a test tells it to, byte for byte,
//! for the things a real registry would never send (blobs that lie about their digest or size,
//! a 4 GiB manifest, redirects to another host). Base images come from an OCI layout the test
//! wrote; pushes always go to a real `docker-registry`, which is what the tests check.
//!
//! HTTP/1.1 with one request per connection (`Connection: close`), enough for reqwest.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A response body.
#[derive(Clone)]
pub enum Body {
    /// Exactly these bytes.
    Bytes(Arc<Vec<u8>>),
    /// `len` bytes of a never-ending JSON string, generated while it is sent (never held in
    /// memory), with a `Content-Length` when `announce` is set and close-delimited otherwise.
    Endless { len: u64, announce: bool },
}

/// What to answer on one path.
#[derive(Clone)]
pub struct Route {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Route {
    /// `200 OK` with `bytes` and a `Content-Type`.
    pub fn ok(content_type: &str, bytes: Vec<u8>) -> Route {
        Route {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Bytes(Arc::new(bytes)),
        }
    }

    /// A `307` to `location`.
    pub fn redirect(location: &str) -> Route {
        Route {
            status: 307,
            headers: vec![("Location".into(), location.into())],
            body: Body::Bytes(Arc::new(Vec::new())),
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    basic: Option<String>,
    seen: Vec<Seen>,
}

/// A running hostile registry; its thread lives as long as the test process (it only accepts).
pub struct HostileRegistry {
    addr: String,
    state: Arc<Mutex<State>>,
}

impl HostileRegistry {
    /// Listens on `ip` (any loopback address: `127.0.0.2` is "another host" to a client).
    pub fn start_on(ip: &str) -> HostileRegistry {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        HostileRegistry { addr, state }
    }

    /// Listens on `127.0.0.1`.
    pub fn start() -> HostileRegistry {
        HostileRegistry::start_on("127.0.0.1")
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `host:port/name`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// Answers `path` (GET and HEAD) with `route`.
    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), route);
    }

    /// Requires HTTP Basic `user:password` on every request (401 with a challenge otherwise).
    pub fn require_basic(&self, user: &str, password: &str) {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.state.lock().unwrap().basic = Some(format!("Basic {token}"));
    }

    /// Serves tag `tag` of the OCI layout `layout` (one image) as `repo`: the manifest by tag
    /// and by digest, and every blob. Returns the manifest's JSON.
    pub fn serve_layout(&self, repo: &str, tag: &str, layout: &Path) -> serde_json::Value {
        let read = |p: &Path| std::fs::read(p).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&read(&layout.join("index.json"))).unwrap();
        let descriptor = &index["manifests"][0];
        let digest = descriptor["digest"].as_str().unwrap();
        let media_type = descriptor["mediaType"].as_str().unwrap();
        for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let blob_digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            self.route(
                &format!("/v2/{repo}/blobs/{blob_digest}"),
                Route::ok("application/octet-stream", read(&entry.path())),
            );
        }
        let manifest = read(&layout.join("blobs/sha256").join(&digest["sha256:".len()..]));
        let json = serde_json::from_slice(&manifest).unwrap();
        for reference in [tag, digest] {
            self.route(
                &format!("/v2/{repo}/manifests/{reference}"),
                Route::ok(media_type, manifest.clone()),
            );
        }
        json
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let route = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            authorization: authorization.clone(),
        });
        if state.basic.is_some() && state.basic != authorization {
            Route {
                status: 401,
                headers: vec![("WWW-Authenticate".into(), "Basic realm=\"hostile\"".into())],
                body: Body::Bytes(Arc::new(
                    b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".to_vec(),
                )),
            }
        } else if path == "/v2/" {
            Route::ok("application/json", b"{}".to_vec())
        } else {
            state.routes.get(&path).cloned().unwrap_or(Route {
                status: 404,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: Body::Bytes(Arc::new(
                    b"{\"errors\":[{\"code\":\"NAME_UNKNOWN\",\"message\":\"unknown\"}]}".to_vec(),
                )),
            })
        }
    };
    respond(stream, &method, route)
}

fn respond(mut stream: TcpStream, method: &str, route: Route) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} Hostile\r\nConnection: close\r\n", route.status);
    for (name, value) in &route.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match &route.body {
        Body::Bytes(bytes) => head.push_str(&format!("Content-Length: {}\r\n", bytes.len())),
        Body::Endless {
            len,
            announce: true,
        } => head.push_str(&format!("Content-Length: {len}\r\n")),
        Body::Endless { .. } => {}
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    match route.body {
        Body::Bytes(bytes) => stream.write_all(&bytes)?,
        Body::Endless { len, .. } => {
            let opening = b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"padding\":\"";
            stream.write_all(opening)?;
            let chunk = vec![b'a'; 64 * 1024];
            let mut left = len.saturating_sub(opening.len() as u64);
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                stream.write_all(&chunk[..n])?;
                left -= n as u64;
            }
        }
    }
    stream.flush()
}
