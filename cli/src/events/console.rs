//! Which view a command gets (`--progress=auto|tty|plain`) and the writer log lines go through.
//!
//! `auto` draws the live view only when stderr is a terminal and logs are not JSON: CI logs
//! (a file, a pipe) get plain lines, which survive being stored and grepped.

use std::io::Write;

use indicatif::{MultiProgress, ProgressDrawTarget};
use tracing_subscriber::fmt::MakeWriter;

use super::{Events, Observer, plain::Plain, report::ReportFiles, tty::Live};
use crate::args::{LogFormat, ProgressMode};

/// The view chosen for this process.
#[derive(Debug, Clone)]
pub enum View {
    /// Plain log lines.
    Plain,
    /// The live view, drawn on this.
    Live(MultiProgress),
}

impl View {
    /// `--progress` resolved against the terminal and `--log-format`.
    pub fn choose(mode: ProgressMode, format: LogFormat) -> View {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let live = match mode {
            ProgressMode::Plain => false,
            ProgressMode::Tty => true,
            ProgressMode::Auto => terminal && format != LogFormat::Json,
        };
        if live {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let _ = LIVE.set(multi.clone());
            View::Live(multi)
        } else {
            View::Plain
        }
    }

    /// Where log lines go.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter(match self {
            View::Plain => None,
            View::Live(multi) => Some(multi.clone()),
        })
    }

    /// The observers of this view, plus the report files if asked for.
    pub fn events(&self, format: LogFormat, reports: Option<ReportFiles>) -> Events {
        let mut observers: Vec<Box<dyn Observer>> = vec![match self {
            View::Plain => Box::new(Plain::new(format == LogFormat::Json)),
            View::Live(multi) => Box::new(Live::new(multi.clone())),
        }];
        if let Some(reports) = reports {
            observers.push(Box::new(reports));
        }
        Events::new(observers)
    }
}

/// The live view's drawing, when there is one, for [`print_result`].
static LIVE: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();

/// Whether the live view is drawing on the terminal.
pub fn is_live() -> bool {
    LIVE.get().is_some()
}

/// Prints a command's result (the digest) on stdout, a line of its own even when stdout is the
/// terminal the live view draws on.
pub fn print_result(line: &str) {
    match LIVE.get() {
        Some(multi) => multi.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

/// Log lines to stderr; with the live view, printed above the bars (the drawing is suspended
/// while a line is written).
#[derive(Debug, Clone)]
pub struct LogWriter(Option<MultiProgress>);

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(multi) => multi.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &self.0 {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
