//! `kiln completions <shell>` and `kiln man [command]`: generated from the same clap definitions
//! as `--help` (`clap_complete`, `clap_mangen`), so they cannot drift from the flags.

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::args::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "kiln", &mut std::io::stdout());
    Ok(())
}

/// Prints the man page of kiln, or of one of its subcommands (`build`, `cache explain`), on
/// stdout.
pub fn man(subcommand: Option<&str>) -> anyhow::Result<()> {
    let mut command = Cli::command();
    command.build();
    // Built, subcommands carry their full names (`kiln-build`, `kiln build`) for the page.
    let mut page = command;
    for part in subcommand.unwrap_or_default().split_whitespace() {
        page = page
            .find_subcommand(part)
            .with_context(|| {
                format!("kiln has no command {part:?} (see `kiln --help` for the list)")
            })?
            .clone();
    }
    clap_mangen::Man::new(page)
        .render(&mut std::io::stdout())
        .context("writing the man page")
}
