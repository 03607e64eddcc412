//! A Docker token server (the `realm` of `auth: token`) running in the test process: it checks
//! Basic credentials (GET) or an OAuth2 refresh token (POST, `grant_type=refresh_token`) and
//! answers with an ES256 JWT, signed by a key whose certificate chains to the CA the registry
//! trusts (`rootcertbundle`) and sent in the token's `x5c` header, granting every requested
//! action. Anonymous requests get a token granting nothing, as public token servers do.
//!
//! It can also play Azure Container Registry's `/oauth2/exchange` (next to the realm): an
//! Entra ID access token it was told to accept is exchanged for its refresh token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::SigningKey as _;
use serde_json::json;

use super::pki::{Issued, Pki};

const SERVICE: &str = "kiln-test-registry";
const ISSUER: &str = "kiln-test-token-issuer";
const LIFETIME_SECS: u64 = 300;

/// A running token server; stops when dropped.
pub struct TokenServer {
    addr: String,
    dir: tempfile::TempDir,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
}

struct State {
    user: String,
    password: String,
    refresh_token: String,
    signer: Issued,
    next_id: AtomicU64,
    issued: Mutex<Vec<String>>,
    grants: Mutex<Vec<String>>,
    scopes: Mutex<Vec<Vec<String>>>,
    /// `(service, Entra ID access token)` that `/oauth2/exchange` accepts.
    acr_exchange: Mutex<Option<(String, String)>>,
    exchanges: AtomicU64,
}

impl TokenServer {
    /// Serves tokens to `user:password`, and to holders of `refresh_token`.
    pub fn start(user: &str, password: &str, refresh_token: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path(), "token");
        let signer = pki.signer("token-signer");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            user: user.to_owned(),
            password: password.to_owned(),
            refresh_token: refresh_token.to_owned(),
            signer,
            next_id: AtomicU64::new(1),
            issued: Mutex::new(Vec::new()),
            grants: Mutex::new(Vec::new()),
            scopes: Mutex::new(Vec::new()),
            acr_exchange: Mutex::new(None),
            exchanges: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let state = thread_state.clone();
                std::thread::spawn(move || serve(&state, stream));
            }
        });
        TokenServer {
            addr,
            dir,
            state,
            stop,
        }
    }

    /// The token endpoint URL.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The `service` the registry names in its challenges and tokens are issued for.
    pub fn service(&self) -> &'static str {
        SERVICE
    }

    /// The `iss` of every token.
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The CA certificate the signing key chains to: the registry's `rootcertbundle`.
    pub fn root_bundle(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A token for `user` granting `scopes` (`repository:name:actions`), issued without a
    /// request: what a `registrytoken` in a Docker config holds.
    pub fn token_for(&self, scopes: &[&str]) -> String {
        let token = sign(
            &self.state,
            &self.state.user,
            access(scopes.iter().copied()),
        );
        self.state.issued.lock().unwrap().push(token.clone());
        token
    }

    /// Every token issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    /// The scopes each granted token request asked for, in order.
    pub fn scopes(&self) -> Vec<Vec<String>> {
        self.state.scopes.lock().unwrap().clone()
    }

    /// Serves ACR's `/oauth2/exchange`: `aad_token` for `service` becomes the refresh token.
    pub fn accept_acr_exchange(&self, service: &str, aad_token: &str) {
        *self.state.acr_exchange.lock().unwrap() = Some((service.to_owned(), aad_token.to_owned()));
    }

    /// How many ACR exchanges succeeded.
    pub fn acr_exchanges(&self) -> u64 {
        self.state.exchanges.load(Ordering::SeqCst)
    }

    /// How each token was granted, in order: `basic`, `refresh_token` or `anonymous`.
    pub fn grants(&self) -> Vec<String> {
        self.state.grants.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    body: String,
}

fn serve(state: &State, stream: TcpStream) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let (status, body) = answer(state, &request);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let query = target
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Some(Request {
        method,
        path,
        query,
        authorization,
        body: String::from_utf8(body).ok()?,
    })
}

fn answer(state: &State, request: &Request) -> (&'static str, String) {
    let unauthorized = (
        "401 Unauthorized",
        json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).to_string(),
    );
    if request.path == "/oauth2/exchange" {
        let params = form(&request.body);
        let expected = state.acr_exchange.lock().unwrap().clone();
        return match expected {
            Some((service, aad))
                if request.method == "POST"
                    && param(&params, "grant_type") == Some("access_token")
                    && param(&params, "service") == Some(service.as_str())
                    && param(&params, "access_token") == Some(aad.as_str()) =>
            {
                state.exchanges.fetch_add(1, Ordering::SeqCst);
                (
                    "200 OK",
                    json!({"refresh_token": state.refresh_token}).to_string(),
                )
            }
            _ => unauthorized,
        };
    }
    let (params, grant) = if request.method == "POST" {
        let params = form(&request.body);
        let refresh = param(&params, "refresh_token");
        if param(&params, "grant_type") != Some("refresh_token")
            || refresh != Some(state.refresh_token.as_str())
        {
            return unauthorized;
        }
        (params, "refresh_token")
    } else {
        let params = form(&request.query);
        match &request.authorization {
            None => (params, "anonymous"),
            Some(value) => {
                let decoded = value
                    .strip_prefix("Basic ")
                    .and_then(|b| STANDARD.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                if decoded != Some(format!("{}:{}", state.user, state.password)) {
                    return unauthorized;
                }
                (params, "basic")
            }
        }
    };
    let requested: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .map(str::to_owned)
        .collect();
    state.scopes.lock().unwrap().push(requested);
    let access = if grant == "anonymous" {
        Vec::new()
    } else {
        access(
            params
                .iter()
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ')),
        )
    };
    let token = sign(state, grant, access);
    state.issued.lock().unwrap().push(token.clone());
    state.grants.lock().unwrap().push(grant.to_owned());
    (
        "200 OK",
        json!({"token": token, "access_token": token, "expires_in": LIFETIME_SECS}).to_string(),
    )
}

/// The `access` claim granting every action of every `type:name:actions` scope.
fn access<'a>(scopes: impl Iterator<Item = &'a str>) -> Vec<serde_json::Value> {
    scopes
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect()
}

fn sign(state: &State, subject: &str, access: Vec<serde_json::Value>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&state.signer.der)]});
    let claims = json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + LIFETIME_SECS,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("kiln-test-{}", state.next_id.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let der = state
        .signer
        .key_pair
        .sign(signing_input.as_bytes())
        .unwrap();
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(der_to_jose(&der))
    )
}

/// An ASN.1 `SEQUENCE { r INTEGER, s INTEGER }` ECDSA P-256 signature as JOSE's 64-byte `r || s`.
fn der_to_jose(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "not a DER sequence");
    let mut at = 2;
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "not a DER integer");
        let len = usize::from(der[at + 1]);
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.iter().take_while(|&&b| b == 0).count()..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

fn form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `application/x-www-form-urlencoded` decoding.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
