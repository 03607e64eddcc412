//! A loopback HTTP/1.1 file server for `ADD <url>` tests: fixed bodies by path, an optional
//! `Last-Modified`, contents replaceable between builds, and a log of request targets. It also
//! answers absolute-form requests (`GET http://host/path`), so it can stand in for a forward
//! proxy named by `HTTP_PROXY`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    files: BTreeMap<String, (Vec<u8>, Option<String>)>,
    requests: Vec<String>,
}

/// The server; it runs until the test process ends.
pub struct FileServer {
    addr: String,
    state: Arc<Mutex<State>>,
}

impl FileServer {
    pub fn start() -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FileServer { addr, state }
    }

    /// Serves `body` at `path`, with `Last-Modified: last_modified` if given.
    pub fn put(&self, path: &str, body: &[u8], last_modified: Option<&str>) {
        self.state.lock().unwrap().files.insert(
            path.to_owned(),
            (body.to_vec(), last_modified.map(str::to_owned)),
        );
    }

    /// Serves every file under `dir` at `prefix/<relative path>`.
    pub fn put_tree(&self, prefix: &str, dir: &std::path::Path) {
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(current) = dirs.pop() {
            for entry in std::fs::read_dir(&current).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    self.put(
                        &format!("{prefix}/{rel}"),
                        &std::fs::read(&path).unwrap(),
                        None,
                    );
                }
            }
        }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Request targets received so far, as sent (origin-form or absolute-form).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
        None => target.clone(),
    };
    // Queries are ignored: a static server (git's dumb HTTP protocol relies on that).
    let path = path.split('?').next().unwrap_or_default().to_owned();
    let found = {
        let mut state = state.lock().unwrap();
        state.requests.push(target);
        state.files.get(&path).cloned()
    };
    let mut stream = stream;
    let response = match found {
        Some((body, last_modified)) => {
            let mut head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n",
                body.len()
            );
            if let Some(date) = last_modified {
                head.push_str(&format!("Last-Modified: {date}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            bytes
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
                .to_vec()
        }
    };
    let _ = stream.write_all(&response);
}
