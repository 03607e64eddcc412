//! `docs/flags.md`: every subcommand and flag, generated from the clap definitions so the page
//! cannot drift from `--help`. The test below fails when the page is stale;
//! `KILN_UPDATE_DOCS=1 cargo test -p kiln-cli --lib flag_reference` rewrites it.

use clap::CommandFactory as _;

use crate::args::Cli;

/// The page.
fn render() -> String {
    let mut cli = Cli::command();
    // Built, every argument knows how many values it takes.
    cli.build();
    let mut out = String::from(
        "# kiln flags\n\n\
         Generated from kiln's flag definitions (`cli/src/flag_reference.rs`); a unit test keeps it \
         in sync with `kiln <command> --help`. Flags of `kiln build` also take Kaniko's forms \
         (`--no-push=true`) and the environment variables shown.\n",
    );
    let globals: Vec<&clap::Arg> = cli
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .collect();
    if !globals.is_empty() {
        out.push_str("\n## Global flags (every command)\n\n");
        table(&mut out, globals.into_iter());
    }
    for command in cli.get_subcommands() {
        subcommand(&mut out, "kiln", command);
    }
    out
}

fn subcommand(out: &mut String, parent: &str, command: &clap::Command) {
    if command.is_hide_set() || command.get_name() == "help" {
        return;
    }
    let name = format!("{parent} {}", command.get_name());
    out.push_str(&format!("\n## `{name}`\n\n"));
    if let Some(about) = command.get_long_about().or(command.get_about()) {
        out.push_str(&format!("{}.\n", one_paragraph(&about.to_string())));
    }
    if name == "kiln cache explain" {
        out.push_str("\nTakes every flag of `kiln build` (above); pushes nothing, runs nothing.\n");
        return;
    }
    let aliases: Vec<&str> = command.get_all_aliases().collect();
    if !aliases.is_empty() {
        out.push_str(&format!("\nAlso `{parent} {}`.\n", aliases.join("`, `")));
    }
    let args: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set() && !arg.is_global_set())
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .collect();
    let mut headings: Vec<Option<&str>> = Vec::new();
    for arg in &args {
        if !headings.contains(&arg.get_help_heading()) {
            headings.push(arg.get_help_heading());
        }
    }
    for heading in headings {
        if let Some(heading) = heading {
            out.push_str(&format!("\n### {heading}\n\n"));
        } else {
            out.push('\n');
        }
        table(
            out,
            args.iter()
                .copied()
                .filter(|arg| arg.get_help_heading() == heading),
        );
    }
    for child in command.get_subcommands() {
        subcommand(out, &name, child);
    }
}

fn table<'a>(out: &mut String, args: impl Iterator<Item = &'a clap::Arg>) {
    out.push_str("| flag | meaning |\n| --- | --- |\n");
    for arg in args {
        out.push_str(&format!("| {} | {} |\n", spelling(arg), meaning(arg)));
    }
}

/// `-f`, `--dockerfile PATH` (or `<PATH>` for a positional argument).
fn spelling(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or_else(|| arg.get_id().as_str().to_uppercase(), ToString::to_string);
    let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
        && !matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
        );
    let Some(long) = arg.get_long() else {
        return format!("`<{value}>`");
    };
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("`-{short}`"));
    }
    let long = if takes_value && optional {
        format!("`--{long}[=BOOL]`")
    } else if takes_value {
        format!("`--{long} {value}`")
    } else {
        format!("`--{long}`")
    };
    names.push(long);
    for alias in arg.get_visible_aliases().unwrap_or_default() {
        names.push(format!("`--{alias}`"));
    }
    names.join(", ")
}

fn meaning(arg: &clap::Arg) -> String {
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|help| one_paragraph(&help.to_string()))
        .unwrap_or_default();
    let mut text = help.replace('|', "\\|");
    if !text.is_empty() && !text.ends_with('.') {
        text.push('.');
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| format!("`{}`", value.get_name()))
        .collect();
    if !values.is_empty() && arg.get_action().takes_values() && values.len() > 2 {
        text.push_str(&format!(" Values: {}.", values.join(", ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|value| value.to_string_lossy().into_owned())
        .filter(|value| !value.is_empty() && value != "false")
        .collect();
    if !defaults.is_empty() {
        text.push_str(&format!(" Default `{}`.", defaults.join(",")));
    }
    if let Some(env) = arg.get_env() {
        text.push_str(&format!(" Env `{}`.", env.to_string_lossy()));
    }
    text.trim().to_owned()
}

/// Help text on one line (tables cannot hold line breaks).
fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_flags_md_lists_every_flag_as_the_help_does() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/flags.md");
        let page = render();
        if std::env::var_os("KILN_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &page).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == page,
            "docs/flags.md is stale: run KILN_UPDATE_DOCS=1 cargo test -p kiln-cli --lib flag_reference"
        );
        for flag in ["--report", "--progress", "--cache-repo", "--destination"] {
            assert!(page.contains(&format!("`{flag}")), "{flag} is missing");
        }
    }
}
