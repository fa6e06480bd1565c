//! Command-line arguments. Only this crate knows about clap.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  timeglass run -- uvicorn app:app            record every request of your app
  timeglass run --rate 2000 -- fastapi dev    sample at 2 kHz
  timeglass requests                          newest requests, slowest first to look at
  timeglass requests --json --limit 500       the same as JSON
  timeglass show 42                           one request with its SQL and HTTP calls
  timeglass export --request 42 --format folded -o req42.folded
                                              one request's stacks, for flamegraph tools

The store is `.timeglass/timeglass.db` in the current directory unless `--db` or
TIMEGLASS_DB says otherwise.";

/// Per-request flame graphs for FastAPI apps, sampled from outside the process.
#[derive(Parser)]
#[command(name = "timeglass", version, about, after_help = EXAMPLES, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run an app and record every request it serves.
    #[command(after_help = "Example:\n  timeglass run -- uvicorn app:app --port 8000")]
    Run(RunArgs),
    /// List recorded requests, newest first.
    Requests(RequestsArgs),
    /// Show one request with its SQL statements and outgoing HTTP calls, in order.
    #[command(after_help = "Example:\n  timeglass show 42 --json")]
    Show(ShowArgs),
    /// Write one request's stacks in a format other tools read.
    Export(ExportArgs),
    /// Serve the dashboard: recorded requests and their flame graphs in a browser.
    #[command(after_help = "Example:\n  timeglass ui --open")]
    Ui(UiArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  timeglass completions bash > ~/.local/share/bash-completion/completions/timeglass"
    )]
    Completions(CompletionsArgs),
}

#[derive(Args, Clone)]
pub struct DbArg {
    /// SQLite store to use.
    #[arg(
        long,
        env = "TIMEGLASS_DB",
        value_name = "PATH",
        default_value = ".timeglass/timeglass.db"
    )]
    pub db: PathBuf,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Samples per second while a request is in flight.
    #[arg(long, value_name = "HZ", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Samples per second while no request is in flight.
    #[arg(long, value_name = "HZ", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub idle_rate: u32,
    /// Also walk threads that do not hold the GIL, to see native code that
    /// released it (numpy, bcrypt, compression). Costs more per sample, and its
    /// longer walks leave more samples of switching async requests unattributed.
    #[arg(long)]
    pub all_threads: bool,
    /// Capture SQL statements without their parameters (the values bound to
    /// `?`/`$1`/`%s`), e.g. when they hold personal data.
    #[arg(long)]
    pub no_sql_params: bool,
    /// Flag a request as a likely N+1 when it runs the same statement (its
    /// literals and parameters aside) this many times or more.
    #[arg(long, value_name = "N", default_value_t = timeglass_recorder::defaults::N_PLUS_ONE, value_parser = clap::value_parser!(u64).range(2..))]
    pub n_plus_one: u64,
    /// The command that starts the app, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Args)]
pub struct RequestsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// How many requests to show.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Print JSON (an array of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Id of the request, as `timeglass requests` shows it.
    #[arg(value_name = "ID")]
    pub request: i64,
    /// Print JSON (one object with `queries` and `calls`) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// Brendan Gregg's folded stacks: `outer;...;leaf COUNT` per line.
    Folded,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Id of the request, as `timeglass requests` shows it.
    #[arg(long, value_name = "ID")]
    pub request: i64,
    #[arg(long, value_enum, default_value = "folded")]
    pub format: ExportFormat,
    /// Leave out the time spent waiting on SQL statements and HTTP calls
    /// (the `[sql] ...`/`[http] ...` frames): only what was sampled.
    #[arg(long)]
    pub sampled_only: bool,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args)]
pub struct UiArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = timeglass_server::defaults::PORT)]
    pub port: u16,
    /// Address to listen on. Anything but loopback lets other machines read
    /// the recorded requests.
    #[arg(long, default_value = timeglass_server::defaults::HOST)]
    pub host: String,
    /// Open the dashboard in the default browser.
    #[arg(long)]
    pub open: bool,
}

#[derive(Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}
