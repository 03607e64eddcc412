//! The `kiln` command line: Kaniko-compatible flags, orchestration of a build, outputs.
//!
//! `main` parses flags, sets up logging and a small tokio runtime (network I/O only; filesystem
//! and CPU work run on blocking threads), runs the command and turns an error chain into one
//! readable message and exit status 1.

mod args;
mod build;
mod image;
mod logging;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = args::Cli::parse_from(args::normalised_args(std::env::args_os()));
    let verbosity = cli.verbosity();
    if let Err(err) = logging::init(verbosity) {
        eprintln!("kiln: {err:#}");
        return ExitCode::FAILURE;
    }
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: args::Cli) -> anyhow::Result<()> {
    match cli.command {
        args::Command::Build(options) => build::run(*options).await,
        args::Command::Version => {
            println!("kiln {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
