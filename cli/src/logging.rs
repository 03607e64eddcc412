//! Logging: human-readable lines on stderr, filtered by Kaniko's `--verbosity` (or `KILN_LOG`
//! for per-module filters while debugging).

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

/// Installs the global subscriber. Other crates' logs are off by default: kiln reports their
/// failures itself, with context (rustls would otherwise log a certificate error kiln then
/// explains).
///
/// Lines go through `writer`: plain stderr, or above the live view's bars.
pub fn init(
    verbosity: &str,
    format: LogFormat,
    timestamps: bool,
    writer: crate::events::console::LogWriter,
) -> anyhow::Result<()> {
    let level = match verbosity {
        "panic" | "fatal" | "error" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        other => anyhow::bail!(
            "--verbosity {other:?} is not a level: use one of panic, fatal, error, warn, info, debug, trace"
        ),
    };
    let filter = match std::env::var("KILN_LOG") {
        Ok(filter) => EnvFilter::try_new(filter)?,
        Err(_) => EnvFilter::try_new(format!(
            "off,kiln_cli={level},kiln_exec={level},kiln_registry={level},kiln_cas={level},kiln_graph={level}"
        ))?,
    };
    let ansi = format == LogFormat::Color && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let installed = match (format, timestamps) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (_, true) => builder.try_init(),
        (_, false) => builder.without_time().try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))
}
