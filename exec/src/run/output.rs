//! Where a `RUN`'s stdout and stderr go: straight to kiln's own (the default, byte for byte, as
//! CI logs want them), or line by line to a sink (the live terminal view shows the last lines of
//! a running command instead of letting it scribble over the progress display).

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Which of the command's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

/// Receives each line the command writes (without the newline; a last line without one too).
pub type LineSink = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

/// Where a command's output goes.
#[derive(Clone, Default)]
pub enum Output {
    /// kiln's own stdout and stderr.
    #[default]
    Inherit,
    /// Line by line to a sink, from reader threads, while the command runs.
    Lines(LineSink),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Output::Inherit => "Inherit",
            Output::Lines(_) => "Lines",
        })
    }
}

impl PartialEq for Output {
    fn eq(&self, other: &Output) -> bool {
        match (self, other) {
            (Output::Inherit, Output::Inherit) => true,
            (Output::Lines(a), Output::Lines(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Output {}

impl Output {
    /// Sets `command`'s stdout and stderr up for this destination (before spawning).
    pub(crate) fn configure(&self, command: &mut Command) {
        if let Output::Lines(_) = self {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }

    /// Starts forwarding the spawned child's pipes, if [`configure`](Self::configure) made
    /// any. The readers end when every process holding the pipes has exited: in the sandbox
    /// that is when its pid namespace ends, with the command.
    pub(crate) fn forward(&self, child: &mut std::process::Child) -> Forwarding {
        let Output::Lines(sink) = self else {
            return Forwarding(Vec::new());
        };
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(reader(out, Stream::Stdout, Arc::clone(sink)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(reader(err, Stream::Stderr, Arc::clone(sink)));
        }
        Forwarding(readers)
    }
}

/// The reader threads of one command; [`Forwarding::finish`] waits for the last line.
#[derive(Debug)]
pub(crate) struct Forwarding(Vec<JoinHandle<()>>);

impl Forwarding {
    /// Waits until every line was delivered.
    pub(crate) fn finish(self) {
        for reader in self.0 {
            // A sink that panicked lost lines, not the build.
            let _ = reader.join();
        }
    }
}

fn reader(pipe: impl Read + Send + 'static, stream: Stream, sink: LineSink) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut lines = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    sink(stream, text.strip_suffix(b"\r").unwrap_or(text));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn lines_from_both_streams_reach_the_sink_in_order_per_stream() {
        let seen: Arc<Mutex<Vec<(Stream, String)>>> = Arc::default();
        let sink_seen = Arc::clone(&seen);
        let output = Output::Lines(Arc::new(move |stream, line: &[u8]| {
            let line = String::from_utf8_lossy(line).into_owned();
            sink_seen.lock().unwrap().push((stream, line));
        }));
        let mut command = Command::new("sh");
        command.args(["-c", "echo one; echo two >&2; printf 'three\\r\\nfour'"]);
        output.configure(&mut command);
        let mut child = command.spawn().unwrap();
        let forwarding = output.forward(&mut child);
        assert!(child.wait().unwrap().success());
        forwarding.finish();

        let seen = seen.lock().unwrap();
        let of = |wanted: Stream| -> Vec<&str> {
            seen.iter()
                .filter(|(s, _)| *s == wanted)
                .map(|(_, l)| l.as_str())
                .collect()
        };
        assert_eq!(of(Stream::Stdout), ["one", "three", "four"]);
        assert_eq!(of(Stream::Stderr), ["two"]);
    }
}
