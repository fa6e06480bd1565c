//! Command-line arguments. Only this crate knows about clap.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Per-request flame graphs for FastAPI apps: record, browse, judge and compare.";

const LONG_ABOUT: &str = "\
Per-request flame graphs for FastAPI apps: record, browse, judge and compare.

TimeGlass samples your app's stacks from outside the process, joins them to the
requests it serves, and keeps them in a local store: see each request's flame
graph with its SQL and HTTP calls, judge a session per endpoint, and compare it
with a baseline.";

const EXAMPLES: &str = "\
Examples:
  timeglass run -- uvicorn app:app            record every request of your app
  timeglass run --rate 2000 -- fastapi dev    sample at 2 kHz
  timeglass attach --pid 4242 --duration 30   record an app that is already running
  timeglass sessions                          what was recorded, and which workers crashed
  timeglass run --ui -- uvicorn app:app       record, and watch requests arrive in a browser
  timeglass ui --open                         the dashboard over what was recorded
  timeglass requests                          newest requests, slowest first to look at
  timeglass requests --json --limit 500       the same as JSON
  timeglass show 42                           one request with its SQL and HTTP calls
  timeglass report                            per-endpoint figures and a score of the latest session
  timeglass export --request 42 --format folded -o req42.folded
                                              one request's stacks, for flamegraph tools
  timeglass probe --url http://127.0.0.1:8000 send malformed requests from the app's
                                              OpenAPI schema; exit 1 on any 5xx or hang

The store is `.timeglass/timeglass.db` in the current directory unless `--db` or
TIMEGLASS_DB says otherwise.";

// Clap would take `about` from the crate's description in Cargo.toml, which is
// written for developers; the user's first line is given here instead.
#[derive(Parser)]
#[command(
    name = "timeglass",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run an app and record every request it serves.
    #[command(after_help = "Example:\n  timeglass run -- uvicorn app:app --port 8000")]
    Run(RunArgs),
    /// Record an app that is already running, until Ctrl-C or `--duration`.
    #[command(after_help = "\
Examples:
  timeglass attach --pid \"$(pgrep -of 'uvicorn app:app')\"
  timeglass attach --pid 4242 --duration 30

The app keeps running, untouched, when recording stops. With the pid of a
supervisor (uvicorn --reload, uvicorn --workers, gunicorn) its workers are
recorded, including new ones it starts. Requests are recorded one by one if the
app has `app.add_middleware(TimeGlassMiddleware)`; otherwise TimeGlass records a
whole-process profile (see `timeglass export --session`).")]
    Attach(AttachArgs),
    /// List recording sessions, newest first.
    Sessions(SessionsArgs),
    /// List recorded requests, newest first.
    Requests(RequestsArgs),
    /// Judge a session's traffic: per-endpoint latency, errors and database
    /// time, throughput, the app's CPU and memory, and a pass/warn/fail score.
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),
    /// Keep a session's per-endpoint figures and profiles under a name, to
    /// compare later sessions against.
    #[command(subcommand, after_help = BASELINE_HELP)]
    Baseline(BaselineCommand),
    /// Compare two sessions, or a baseline and a session, per endpoint:
    /// faster, slower, same, new or gone, and the functions and statements
    /// that explain a change.
    #[command(after_help = COMPARE_HELP)]
    Compare(CompareArgs),
    /// Gate a change in CI: exit 1 when an endpoint regressed against a
    /// baseline beyond the thresholds, 0 when none did, 2 for bad input.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Show one request with its SQL statements and outgoing HTTP calls, in order.
    #[command(after_help = "Example:\n  timeglass show 42 --json")]
    Show(ShowArgs),
    /// Write the profile of one request, of an endpoint's requests or of a
    /// session in a format other tools open (speedscope, Perfetto, pprof).
    #[command(after_help = "\
Examples:
  timeglass export --request 12 --format speedscope -o request-12.speedscope.json
  timeglass export --route \"GET /items/{id}\" --session 3 --format pprof -o items.pb.gz
  timeglass export --session 3 --format chrome -o session-3.trace.json")]
    Export(ExportArgs),
    /// Serve the dashboard: recorded requests and their flame graphs in a browser.
    #[command(after_help = "Example:\n  timeglass ui --open")]
    Ui(UiArgs),
    /// Send malformed requests built from the app's OpenAPI schema and report
    /// which ones it answered with a 4xx (good), a 2xx/3xx, a 5xx or nothing.
    #[command(after_help = "\
Examples:
  timeglass probe --url http://127.0.0.1:8000
  timeglass probe --url http://127.0.0.1:8000 --include-unsafe --format json

Only GET and other safe methods are sent unless `--include-unsafe`; only to
loopback unless `--allow-remote`. When the app runs under `timeglass run`, each
5xx names the recorded request that failed (`timeglass show ID`), and the run is
stored with the session. Exit code: 0 when nothing answered 5xx or hung, 1 when
something did, 2 for bad input.")]
    Probe(ProbeArgs),
    /// Delete recorded sessions: those older than an age, or one by id.
    #[command(after_help = "\
Examples:
  timeglass prune --older-than 7d
  timeglass prune --session 3

A session being recorded is never deleted. The freed space goes back to the
file system. `run` also applies the retention settings before it records: `--keep-days` (default 14), and `keep_days`, `max_requests` (default
1000000) and `max_size_mb` (default 1024) under `[retention]` of
`timeglass.toml` or `[tool.timeglass.retention]` of `pyproject.toml`; 0
turns a limit off.")]
    Prune(crate::prune::PruneArgs),
    /// Delete every recorded session (not one being recorded).
    Clear(crate::prune::ClearArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  timeglass completions bash > ~/.local/share/bash-completion/completions/timeglass"
    )]
    Completions(CompletionsArgs),
}

#[derive(Args, Clone)]
pub(crate) struct DbArg {
    /// SQLite store to use.
    #[arg(
        long,
        env = "TIMEGLASS_DB",
        value_name = "PATH",
        default_value = ".timeglass/timeglass.db"
    )]
    pub db: PathBuf,
}

/// How to sample; shared by `run` and `attach`.
#[derive(Args)]
pub(crate) struct RecordArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Samples per second while a request is in flight (and all the time in
    /// a process without a marker).
    #[arg(long, value_name = "HZ", default_value_t = timeglass_model::DEFAULT_RATE_HZ, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Samples per second while no request is in flight.
    #[arg(long, value_name = "HZ", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub idle_rate: u32,
    /// Also walk threads that do not hold the GIL, to see native code that
    /// released it (numpy, bcrypt, compression). Costs more per sample, and its
    /// longer walks leave more samples of switching async requests unattributed.
    #[arg(long)]
    pub all_threads: bool,
    /// Read stacks with py-spy's own walker even on CPython 3.11, where
    /// TimeGlass's code-object cache is used otherwise (for comparing them).
    #[arg(long, hide = true)]
    pub pyspy_walker: bool,
    /// Flag a request as a likely N+1 when it runs the same statement (its
    /// literals and parameters aside) this many times or more.
    #[arg(long, value_name = "N", default_value_t = timeglass_recorder::defaults::N_PLUS_ONE, value_parser = clap::value_parser!(u64).range(2..))]
    pub n_plus_one: u64,
    /// Flag an `async def` request that holds the event loop this many
    /// milliseconds without yielding (every other request waits meanwhile).
    #[arg(long, value_name = "MS", default_value_t = timeglass_recorder::defaults::LOOP_BLOCK_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub loop_block_ms: u64,
    /// Sample only the thread holding the GIL, as TimeGlass did before it
    /// sampled wall-clock time (for comparing the two).
    #[arg(long, hide = true)]
    pub gil_only_samples: bool,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// Also serve the dashboard (as `timeglass ui` does) while recording.
    #[arg(long)]
    pub ui: bool,
    /// Port of the dashboard started by `--ui` (0: any free port).
    #[arg(long, value_name = "PORT", default_value_t = timeglass_server::defaults::PORT, requires = "ui")]
    pub ui_port: u16,
    /// Capture SQL statements without their parameters (the values bound to
    /// `?`/`$1`/`%s`), e.g. when they hold personal data.
    #[arg(long)]
    pub no_sql_params: bool,
    #[command(flatten)]
    pub retention: crate::prune::RetentionArgs,
    /// Sample the app's allocations: bytes allocated per request and a
    /// memory flame graph of where. Costs the app some speed (see the README).
    #[arg(long)]
    pub memory: bool,
    /// The command that starts the app, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Args)]
pub(crate) struct AttachArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// The app's process: uvicorn, gunicorn's master, or `fastapi` (a
    /// supervisor's workers are followed).
    #[arg(long, value_name = "PID")]
    pub pid: u32,
    /// Stop after this many seconds (default: at Ctrl-C, or when the app exits).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<std::time::Duration>,
    /// Started by the app's own `TimeGlassMiddleware`, which hands over the
    /// tree's recorder lock already taken (see `marker/python/timeglass/_record.py`).
    #[arg(long, hide = true)]
    pub by_marker: bool,
}

fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds <= 1e9) {
        return Err(format!("`{text}` is not a positive number of seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[derive(Args)]
pub(crate) struct SessionsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// How many sessions to show.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Print JSON (an array of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--since T` / `--until T`: the requests that started in a window of time.
#[derive(Args)]
pub(crate) struct WindowArgs {
    /// Only requests that started at or after T: RFC 3339 or a time ago (`10m`, `2h`).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only requests that started before T: RFC 3339 or a time ago.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
}

#[derive(Args)]
pub(crate) struct RequestsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// How many requests to show.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Only the requests of this session, as `timeglass sessions` shows it.
    #[arg(long, value_name = "ID")]
    pub session: Option<i64>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Only requests whose route or path contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub route: Option<String>,
    /// Only requests answered with a status of this class: 2xx, 3xx, 4xx or 5xx.
    #[arg(long, value_name = "CLASS", value_parser = status_class)]
    pub status: Option<u8>,
    /// Only requests that took at least this long (response time, ms).
    // A negative number is taken as the value, to be refused in one line.
    #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = milliseconds)]
    pub min_ms: Option<f64>,
    /// `start`: newest first; `duration`: slowest first.
    #[arg(long, value_enum, default_value = "start")]
    pub sort: RequestSort,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RequestSort {
    Start,
    Duration,
}

/// `2xx` → 2.
fn milliseconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(ms),
        _ => Err(format!(
            "`{text}` is not a duration in ms (a number, 0 or more)"
        )),
    }
}

fn status_class(text: &str) -> Result<u8, String> {
    match text.as_bytes() {
        [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Ok(c - b'0'),
        _ => Err(format!(
            "`{text}` is not a status class; use 2xx, 3xx, 4xx or 5xx"
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TableFormat {
    /// Aligned columns for a terminal (the default).
    Table,
    Csv,
    /// The rows as one JSON document (what `--json` prints).
    Json,
    /// One flat JSON object per line.
    Jsonl,
    /// Apache Parquet, for pandas, DuckDB or Polars; give `-o FILE`.
    Parquet,
}

/// The output of a command that lists rows.
#[derive(Args)]
pub(crate) struct TableArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: TableFormat,
    /// The same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Write to this file instead of standard output (whole or not at all).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl TableArgs {
    pub(crate) fn format(&self) -> TableFormat {
        if self.json {
            TableFormat::Json
        } else {
            self.format
        }
    }
}

const REPORT_HELP: &str = "\
Examples:
  timeglass report                             the latest session
  timeglass report --since 10m --route items   the last ten minutes of routes containing `items`
  timeglass report --session 3 --format json   for scripts and CI
  timeglass report --min-ms 500                where the slow requests went (their endpoints, rates)

Percentiles are nearest-rank: the p-th percentile of n response times is the
value at rank ceil(p/100 * n) in ascending order, always a recorded time.
Thresholds have defaults (docs/report.md) and are read from `[tool.timeglass.thresholds]`
in pyproject.toml or `[thresholds]` in timeglass.toml, in the session's directory,
else the current one. Exit status: 0 when every score passes or warns, 1 when
one fails, 2 for bad input.";

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReportFormat {
    Table,
    Json,
    Markdown,
    /// The statistics per endpoint (and overall) as CSV, JSON Lines or Parquet.
    Csv,
    Jsonl,
    Parquet,
}

#[derive(Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Id of the session, as `timeglass sessions` shows it (default: the latest).
    #[arg(long, value_name = "ID")]
    pub session: Option<i64>,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Only endpoints whose route template contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub route: Option<String>,
    /// Only requests answered with a status of this class: 2xx, 3xx, 4xx or
    /// 5xx (a request that raised without answering has none). The figures
    /// are then of those requests alone: `--status 5xx` reports a 5xx rate
    /// of 100%.
    #[arg(long, value_name = "CLASS")]
    pub status: Option<String>,
    /// Only requests that took at least this long (response time, ms).
    // A negative number is taken as the value, to be refused in one line.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub min_ms: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
    /// Write to this file instead of standard output (whole or not at all).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Id of the request, as `timeglass requests` shows it.
    #[arg(value_name = "ID")]
    pub request: i64,
    /// `json` is one object with `queries` and `calls` (as `--json`); csv,
    /// jsonl and parquet list the statements and calls, one row each.
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Args)]
#[command(group(
    clap::ArgGroup::new("subject")
        .required(true)
        .multiple(true)
        .args(["request", "route", "session"])
))]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Id of the request, as `timeglass requests` shows it.
    #[arg(long, value_name = "ID", conflicts_with_all = ["route", "session"])]
    pub request: Option<i64>,
    /// Every request of one endpoint, merged: `METHOD ROUTE` as the report
    /// lists it (`"GET /items/{id}"`); with `--session`, of that session only.
    #[arg(long, value_name = "ENDPOINT")]
    pub route: Option<String>,
    /// Id of a session, as `timeglass sessions` shows it: its requests and
    /// its samples taken outside any request (start-up, idle time, or
    /// everything when the app had no marker).
    #[arg(long, value_name = "ID")]
    pub session: Option<i64>,
    /// folded, svg, speedscope, chrome (Perfetto's and Chrome's trace
    /// viewer) or pprof (gzipped profile.proto).
    #[arg(long, value_name = "FORMAT", default_value = "folded")]
    pub format: String,
    /// Leave out the time spent waiting on SQL statements and HTTP calls
    /// (the `[sql] ...`/`[http] ...` frames): only what was sampled.
    #[arg(long)]
    pub sampled_only: bool,
    /// Where the request allocated instead of where its time went: stacks
    /// weighed in bytes (recorded with `timeglass run --memory`).
    #[arg(long, requires = "request")]
    pub memory: bool,
    /// Write to this file instead of standard output (written whole or not
    /// at all: a temporary file beside it is renamed into place).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct UiArgs {
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

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ProbeFormat {
    Table,
    Json,
}

#[derive(Args)]
pub(crate) struct ProbeArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The app's base URL.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Where the app serves its OpenAPI schema: a path under `--url`, or a URL.
    #[arg(long, value_name = "PATH", default_value = timeglass_probe::defaults::OPENAPI)]
    pub openapi: String,
    /// Send at most this many requests in all.
    #[arg(long, value_name = "N", default_value_t = timeglass_probe::defaults::MAX_REQUESTS as u64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_requests: u64,
    /// How long to wait for each answer: `5s`, `500ms`, or seconds.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
    /// Also send POST, PUT, PATCH and DELETE requests (they may change the
    /// app's data).
    #[arg(long)]
    pub include_unsafe: bool,
    /// Allow a URL that is not on this machine.
    #[arg(long)]
    pub allow_remote: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ProbeFormat,
}

/// `5s`, `1.5s`, `500ms`, or a bare number of seconds; between 1 ms and an hour.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try `5s` or `500ms`)"))?;
    let seconds = value * scale;
    if !(0.001..=3600.0).contains(&seconds) {
        return Err(format!("`{text}` is not between 1ms and 3600s"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[derive(Args)]
pub(crate) struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

const BASELINE_HELP: &str = "\
Examples:
  timeglass baseline save main                 the latest session, as `main`
  timeglass baseline export main -o main.json  to commit it, or keep it as a CI artifact
  timeglass baseline import main.json          on another machine or a fresh store";

const COMPARE_HELP: &str = "\
Examples:
  timeglass compare --baseline main            the latest session against `main`
  timeglass compare --session 3 --session 5    session 5 against session 3

Latency (p50, p95) and CPU time per request are compared by a seeded bootstrap
confidence interval of the B/A ratio: a change counts when the whole 95%
interval is beyond 10% and the figures differ by 1 ms or more, and only with
10 requests a side beyond the percentile (20 for the p50, 200 for the p95);
otherwise the verdict is `same`. Queries per request and N+1s are compared exactly. When the
machine slowed the app more in one session (its threads' wait for a CPU and steal, over 10%
apart), a latency change no larger than that explains is `unsure`. Exit code: 0, or 2 for bad input (also
when the two were sampled in different modes).";

const CHECK_HELP: &str = "\
Examples:
  timeglass check --baseline main
  timeglass check --baseline main --max-slower 20% --format junit -o timeglass.xml

Thresholds come from the flags, else from `[tool.timeglass.check]` of the
session's `pyproject.toml` (`max-slower = \"10%\"`, `max-queries-added = 0`,
`fail-on = [\"n-plus-one\", \"unsure\"]`). An endpoint whose latency moved by no more than a
busier machine explains passes with a warning unless `--fail-on unsure`. Exit code: 0 when no
endpoint regressed beyond them, 1 when one did, 2 for bad input.";

#[derive(Subcommand)]
pub(crate) enum BaselineCommand {
    /// Keep a session (default: the latest) as baseline NAME.
    Save(BaselineSaveArgs),
    /// List the baselines of the store.
    List(BaselineListArgs),
    /// Remove baseline NAME.
    Rm(BaselineNameArgs),
    /// Write baseline NAME as a JSON file.
    Export(BaselineExportArgs),
    /// Read a baseline from a file written by `baseline export`.
    Import(BaselineImportArgs),
}

#[derive(Args)]
pub(crate) struct BaselineSaveArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Id of the session, as `timeglass sessions` shows it (default: the latest).
    #[arg(long, value_name = "ID")]
    pub session: Option<i64>,
    /// Replace a baseline of that name.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub(crate) struct BaselineListArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub(crate) struct BaselineNameArgs {
    #[command(flatten)]
    pub db: DbArg,
    pub name: String,
}

#[derive(Args)]
pub(crate) struct BaselineExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    pub name: String,
    /// Where to write it (`-`: standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Args)]
pub(crate) struct BaselineImportArgs {
    #[command(flatten)]
    pub db: DbArg,
    pub file: PathBuf,
    /// Keep it under this name instead of the one it was exported with.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace a baseline of that name.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CompareFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Args)]
pub(crate) struct CompareArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A: the baseline called NAME.
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// A session: with `--baseline`, B; else the first is A and the second B.
    /// B defaults to the latest session.
    #[arg(long = "session", value_name = "ID")]
    pub sessions: Vec<i64>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: CompareFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckFormat {
    Table,
    Junit,
    Markdown,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FailOn {
    NPlusOne,
    /// An endpoint whose latency moved by no more than a busier machine explains.
    Unsure,
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[arg(long, value_name = "NAME")]
    pub baseline: String,
    /// Id of the session to check (default: the latest).
    #[arg(long, value_name = "ID")]
    pub session: Option<i64>,
    /// Fail when latency or CPU time is slower by more than this (`10%`, `0.1`).
    #[arg(long, value_name = "SHARE")]
    pub max_slower: Option<String>,
    /// Fail when an endpoint runs more than N more statements per request.
    #[arg(long, value_name = "N")]
    pub max_queries_added: Option<f64>,
    /// Also fail when an endpoint flags more likely N+1s (`n-plus-one`), or
    /// when its latency moved but a busier machine explains it (`unsure`).
    #[arg(long, value_enum, value_name = "WHAT")]
    pub fail_on: Vec<FailOn>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: CheckFormat,
    /// Write the result here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}
