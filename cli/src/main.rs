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
    let cli = Cli::parse();
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
