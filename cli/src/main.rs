//! The `kiln` binary: all logic lives in the `kiln_cli` library so tests and the
//! `/kaniko/executor` entry point share it.

fn main() -> std::process::ExitCode {
    kiln_cli::main()
}
