//! `kiln completions <shell>` and `kiln man [command]`: generated from the same clap definitions
//! as `--help` (`clap_complete`, `clap_mangen`), so they cannot drift from the flags.

use std::io::Write;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::args::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    write_completions(shell, &mut std::io::stdout())
}

/// Prints the man page of kiln, or of one of its subcommands (`build`, `cache explain`), on
/// stdout.
pub fn man(subcommand: Option<&str>) -> anyhow::Result<()> {
    write_man(subcommand, &mut std::io::stdout())
}

fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "kiln", out);
    Ok(())
}

fn write_man(subcommand: Option<&str>, out: &mut dyn Write) -> anyhow::Result<()> {
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
        .render(out)
        .context("writing the man page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completion_offers_the_build_flags() {
        let mut script = Vec::new();
        write_completions(clap_complete::Shell::Bash, &mut script).unwrap();
        let script = String::from_utf8(script).unwrap();
        for flag in ["--destination", "--report", "--progress", "--cache-repo"] {
            assert!(script.contains(flag), "{flag} missing");
        }
    }

    #[test]
    fn the_build_man_page_is_titled_and_lists_its_flags_and_an_unknown_command_is_refused() {
        let mut page = Vec::new();
        write_man(Some("build"), &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH kiln-build 1"), "{page}");
        assert!(page.contains("report\\-markdown"), "{page}");
        let err = write_man(Some("bulid"), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("\"bulid\""), "{err}");
    }
}
