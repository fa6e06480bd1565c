//! `timeglass`: the command line. Only argument parsing, wiring, and turning
//! errors into one readable line live here.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod args;
mod attach;
mod baseline;
mod check;
mod compare;
mod export;
mod failure;
mod junit;
mod output;
mod probe;
mod prune;
mod record;
mod report;
mod requests;
mod run;
mod sessions;
mod show;
mod table;
mod tree_lock;
mod ui;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e),
    };
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Attach(a) => attach::attach(a),
        Command::Sessions(a) => sessions::sessions(a),
        Command::Requests(a) => requests::requests(a),
        Command::Report(a) => report::report(a),
        Command::Baseline(a) => baseline::baseline(a),
        Command::Compare(a) => compare::compare(a),
        Command::Check(a) => check::check(a),
        Command::Show(a) => show::show(a),
        Command::Export(a) => export::export(a),
        Command::Ui(a) => ui::ui(a),
        Command::Probe(a) => probe::probe(a),
        Command::Prune(a) => prune::prune(a),
        Command::Clear(a) => prune::clear(a),
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "timeglass", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            // A closed pipe (`timeglass requests | head`) is not an error.
            if failure.is_broken_pipe() {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "timeglass: error: {failure}");
            failure.exit_code()
        }
    }
}

/// Bad arguments, said in one line (clap's own message, without its usage
/// block and hint) with exit status 2; `--help` and `--version` print as
/// clap prints them.
fn argument_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    // The message is what comes before clap's first blank line (a missing
    // argument's name is on a line of its own).
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let _ = writeln!(
        std::io::stderr(),
        "timeglass: error: {message} (see `timeglass --help`)"
    );
    ExitCode::from(2)
}
