//! The `kiln` command line: Kaniko-compatible flags, orchestration of a build, outputs.
//!
//! `main` parses flags, sets up logging and a small tokio runtime (network I/O only; filesystem
//! and CPU work run on blocking threads), runs the command and turns an error chain into one
//! readable message and exit status 1.

mod args;
mod build;
mod cache;
mod events;
#[cfg(test)]
mod flag_reference;
mod hints;
mod image;
mod interrupt;
#[cfg(test)]
mod kaniko_flags;
mod logging;
mod login;
mod manual;
mod output;
mod plan;
mod progress;
mod push;
mod warm;

/// The remote layer cache's protocol, public only so the integration tests can drive it against
/// a real registry and OCI layout without running a build.
#[doc(hidden)]
pub mod remote_cache {
    pub use crate::cache::remote::RECORDS_MEDIA_TYPE;
    pub use crate::cache::{CacheRepo, Publication, Records, RemoteCache, Scope};
}

use std::process::ExitCode;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = args::Cli::parse_kaniko(args::normalised_args(std::env::args_os()));
    let verbosity = cli.verbosity();
    let (format, timestamps) = cli.log_style();
    let view = events::console::View::choose(cli.progress(), format);
    if let Err(err) = logging::init(verbosity, format, timestamps, view.log_writer()) {
        eprintln!("kiln: {err:#}");
        return ExitCode::FAILURE;
    }
    events::install(view.events(format, report_files(&cli.command)));
    let started = std::time::Instant::now();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kiln: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let verbose = matches!(verbosity, "debug" | "trace");
    let result = runtime.block_on(interrupt::guard(run(cli)));
    let error = result.as_ref().err().map(|err| {
        let message = render_error(err, verbose);
        match hints::hint(err, &message) {
            Some(hint) => format!("{message}\n  hint: {hint}"),
            None => message,
        }
    });
    let outcome = events::Outcome {
        elapsed: started.elapsed(),
        error: error.clone(),
    };
    let reported = events::finish(&outcome);
    match (result, reported) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Ok(()), Err(err)) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
        (Err(err), reported) => {
            tracing::error!("{}", error.unwrap_or_default());
            if let Err(report) = reported {
                tracing::error!("{report:#}");
            }
            match err.downcast_ref::<interrupt::Interrupted>() {
                Some(stopped) => ExitCode::from(stopped.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// `--report` and `--report-markdown` of `kiln build`.
fn report_files(command: &args::Command) -> Option<events::report::ReportFiles> {
    match command {
        args::Command::Build(options) => events::report::ReportFiles::new(
            options.report.clone(),
            options.report_markdown.clone(),
        ),
        _ => None,
    }
}

/// One line from an error chain: each context once, in order, outermost first.
///
/// kiln's library errors already carry their cause's text in their own message (`exec "/bin/sh":
/// No such file or directory`), so a cause whose text is already shown is skipped, and nothing
/// below a registry error is shown unless `verbose`: the HTTP stack's own chain (`error sending
/// request for url ...: client error (Connect)`) restates what the registry error summarised.
fn render_error(err: &anyhow::Error, verbose: bool) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
        if !verbose && cause.downcast_ref::<kiln_registry::Error>().is_some() {
            break;
        }
    }
    text
}

async fn run(cli: args::Cli) -> anyhow::Result<()> {
    match cli.command {
        args::Command::Build(options) => build::run(*options).await,
        args::Command::Plan(options) => plan::run(&options),
        args::Command::Login(options) => login::run(options).await,
        args::Command::Warm(options) => warm::run(options).await,
        args::Command::Push(options) => push::run(*options).await,
        args::Command::Cache(args) => match args.command {
            args::CacheCommand::Explain(options) => cache::explain::run(*options).await,
            args::CacheCommand::Gc(options) => cache::gc::run(options),
        },
        args::Command::Completions { shell } => manual::completions(shell),
        args::Command::Man { command } => manual::man(command.as_deref()),
        args::Command::Version => {
            println!("kiln {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = anyhow::Error::new(io)
            .context("exec \"/bin/sh\": No such file or directory")
            .context("Dockerfile:2: RUN x");
        assert_eq!(
            render_error(&err, false),
            "Dockerfile:2: RUN x: exec \"/bin/sh\": No such file or directory"
        );
    }
}
