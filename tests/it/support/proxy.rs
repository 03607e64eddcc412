//! A fault-injecting HTTP/1.1 proxy between kiln and a real registry: it forwards requests
//! unchanged (the registry sees the proxy's address as its own, so upload locations point back
//! through it), records each one, and on request answers with an error, cuts, stalls or
//! corrupts a response body, cuts or corrupts a request body, drops or resets a connection, or
//! rewrites a status, a given number of times.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this status and an empty body; the registry never sees the request.
    Status(u16),
    /// Answer with this status, extra headers and body; the registry never sees the request.
    Respond(u16, Vec<(String, String)>, String),
    /// Forward, then send the head and half the response body, and close the connection.
    CutBody,
    /// Forward, then flip one bit in the middle of the response body.
    FlipByte,
    /// Read the request, then close the connection without answering or forwarding.
    Drop,
    /// Forward, then report this status instead of the registry's (ECR's 201 on PATCH).
    RewriteStatus(u16),
    /// Forward, then hold the response back this long: a registry that is slow, not dead.
    Stall(Duration),
    /// Forward without the `Range` header, as a registry that ignores ranges would answer.
    IgnoreRange,
    /// Forward, then add this header to the response.
    AddHeader(String, String),
    /// Read the request, then reset the connection (TCP RST) without answering or forwarding.
    Reset,
    /// Forward, then send the head and half the body, pause this long, and send the rest: a
    /// body that stalls mid-transfer.
    StallBody(Duration),
    /// Flip one bit in the middle of the request body, then forward: content damaged on the
    /// way to the registry (an upload the registry must refuse by its digest).
    FlipRequestByte,
    /// Forward the head and half the request body, then close both connections: an upload
    /// cut off mid-body.
    CutRequestBody,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

impl Request {
    /// Whether this is `method` on a path containing `fragment`.
    pub fn is(&self, method: &str, fragment: &str) -> bool {
        self.method == method && self.path.contains(fragment)
    }
}

struct Fault {
    method: String,
    fragment: String,
    times: usize,
    action: Action,
}

#[derive(Default)]
struct State {
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<Request>>,
    stop: AtomicBool,
}

impl State {
    /// The action for `request`, consuming one use of the first fault that matches it.
    fn action_for(&self, request: &Request) -> Option<Action> {
        let mut faults = self.faults.lock().unwrap();
        let fault = faults
            .iter_mut()
            .find(|f| f.times > 0 && request.is(&f.method, &f.fragment))?;
        fault.times -= 1;
        Some(fault.action.clone())
    }
}

/// A running proxy in front of one registry.
pub struct Proxy {
    addr: String,
    state: Arc<State>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State::default());
        let upstream = upstream.to_owned();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (state, upstream) = (Arc::clone(&shared), upstream.clone());
                std::thread::spawn(move || serve(client, &upstream, &state));
            }
        });
        Proxy { addr, state }
    }

    /// `host:port` of the proxy.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `host:port/<name>`: an image reached through the proxy.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// Applies `action` to the next `times` requests with `method` whose path contains
    /// `fragment`.
    /// Faults apply in the order they were added: the first one still active wins.
    pub fn fail(&self, method: &str, fragment: &str, times: usize, action: Action) {
        self.state.faults.lock().unwrap().push(Fault {
            method: method.to_owned(),
            fragment: fragment.to_owned(),
            times,
            action,
        });
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }

    /// Removes every fault not used up yet: requests are forwarded unchanged from now on.
    pub fn heal(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// How many requests so far were `method` on a path containing `fragment`.
    pub fn count(&self, method: &str, fragment: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.is(method, fragment))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// A parsed HTTP message head plus its raw body bytes (still chunk-encoded if it was).
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn write_head(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut head = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())
    }
}

/// Handles one client connection (keep-alive: several requests in turn).
fn serve(client: TcpStream, upstream: &str, state: &State) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    let mut server: Option<(TcpStream, BufReader<TcpStream>)> = None;
    loop {
        let Some(head) = read_head(&mut reader) else {
            return;
        };
        let Some(request) = read_body(&mut reader, head, false, false) else {
            return;
        };
        let mut parts = request.start.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let seen = Request {
            method: method.clone(),
            path: parts.next().unwrap_or_default().to_owned(),
            range: request.header("range").map(str::to_owned),
        };
        let action = state.action_for(&seen);
        state.log.lock().unwrap().push(seen);
        match &action {
            Some(Action::Status(status)) => {
                if respond(&mut client, *status, &[], "").is_err() {
                    return;
                }
                continue;
            }
            Some(Action::Respond(status, headers, body)) => {
                if respond(&mut client, *status, headers, body).is_err() {
                    return;
                }
                continue;
            }
            Some(Action::Drop) => {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Some(Action::Reset) => {
                // A zero linger time makes close() send RST instead of FIN.
                let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                return;
            }
            _ => {}
        }
        let mut request = request;
        match action {
            Some(Action::IgnoreRange) => request
                .headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("range")),
            Some(Action::FlipRequestByte) => {
                let middle = request.body.len() / 2;
                if let Some(byte) = request.body.get_mut(middle) {
                    *byte ^= 0x01;
                }
            }
            _ => {}
        }
        if server.is_none() {
            let Ok(stream) = TcpStream::connect(upstream) else {
                return;
            };
            let reader = BufReader::new(stream.try_clone().unwrap());
            server = Some((stream, reader));
        }
        let Some((to_server, from_server)) = server.as_mut() else {
            return;
        };
        if matches!(action, Some(Action::CutRequestBody)) {
            let half = request.body.len() / 2;
            let _ = request.write_head(to_server);
            let _ = to_server.write_all(&request.body[..half]);
            let _ = to_server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if request.write_head(to_server).is_err() || to_server.write_all(&request.body).is_err() {
            return;
        }
        let Some(head) = read_head(from_server) else {
            return;
        };
        let status: u16 = head
            .start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let no_body = method == "HEAD" || status == 204 || status == 304 || status < 200;
        let Some(mut response) = read_body(from_server, head, true, no_body) else {
            return;
        };
        match action {
            Some(Action::CutBody) => {
                let _ = response.write_head(&mut client);
                let _ = client.write_all(&response.body[..response.body.len() / 2]);
                let _ = client.flush();
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Some(Action::FlipByte) => {
                let middle = response.body.len() / 2;
                if let Some(byte) = response.body.get_mut(middle) {
                    *byte ^= 0x01;
                }
            }
            Some(Action::Stall(pause)) => std::thread::sleep(pause),
            Some(Action::StallBody(pause)) => {
                let half = response.body.len() / 2;
                let sent = response.write_head(&mut client).is_ok()
                    && client.write_all(&response.body[..half]).is_ok()
                    && client.flush().is_ok();
                std::thread::sleep(pause);
                if !sent || client.write_all(&response.body[half..]).is_err() {
                    return;
                }
                continue;
            }
            Some(Action::AddHeader(name, value)) => response.headers.push((name, value)),
            Some(Action::RewriteStatus(new)) => {
                let reason = if new == 201 { "Created" } else { "Rewritten" };
                response.start = format!("HTTP/1.1 {new} {reason}");
            }
            _ => {}
        }
        if response.write_head(&mut client).is_err() || client.write_all(&response.body).is_err() {
            return;
        }
        let close = |m: &Message| {
            m.header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        };
        if close(&request) || close(&response) {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn respond(
    client: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} Injected\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes())?;
    client.write_all(body.as_bytes())
}

fn read_head(reader: &mut impl BufRead) -> Option<Message> {
    let mut start = String::new();
    if reader.read_line(&mut start).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Some(Message {
        start: start.trim_end().to_owned(),
        headers,
        body: Vec::new(),
    })
}

/// Reads the body that follows `head`: by Content-Length, chunked (kept encoded), or for a
/// response without either, to the end of the connection; nothing when `no_body` (answers to
/// HEAD, 204, 304).
fn read_body(
    reader: &mut impl BufRead,
    mut head: Message,
    response: bool,
    no_body: bool,
) -> Option<Message> {
    if no_body {
        return Some(head);
    }
    if let Some(length) = head.header("content-length") {
        let length: usize = length.parse().ok()?;
        head.body = vec![0; length];
        reader.read_exact(&mut head.body).ok()?;
    } else if head
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            head.body.extend_from_slice(line.as_bytes());
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            head.body.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    } else if response {
        reader.read_to_end(&mut head.body).ok()?;
    }
    Some(head)
}
