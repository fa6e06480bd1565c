//! `timeglass compare`: two snapshots side by side, as a table, Markdown
//! or JSON. The comparison comes from `timeglass-compare`; this file
//! resolves the arguments and renders.

use std::io::Write;
use std::process::ExitCode;

use timeglass_compare::compare::{EndpointComparison, Side};
use timeglass_compare::{baseline, check, Comparison, Snapshot, TestOptions};
use timeglass_store::Store;

use crate::args::{CompareArgs, CompareFormat};
use crate::baseline::failure;
use crate::failure::{Failure, Result};
use crate::table::render;

pub(crate) fn compare(args: CompareArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&args.db.db)?;
    let (a, b) = sides(&store, args.baseline.as_deref(), &args.sessions)?;
    let c = timeglass_compare::compare(&a, &b, &TestOptions::default()).map_err(failure)?;
    let mut out = std::io::stdout().lock();
    warn(&c);
    match args.format {
        CompareFormat::Json => {
            let json = serde_json::to_string_pretty(&c).expect("a comparison serializes");
            writeln!(out, "{json}")?;
        }
        CompareFormat::Table => write!(out, "{}", text(&c))?,
        CompareFormat::Markdown => write!(out, "{}", markdown(&c))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A and B from `--baseline` and `--session`.
pub(crate) fn sides(
    store: &Store,
    baseline: Option<&str>,
    sessions: &[i64],
) -> Result<(Snapshot, Snapshot)> {
    let snap = |id: Option<i64>| Snapshot::capture(store, id).map_err(failure);
    match (baseline, sessions) {
        (Some(name), []) => Ok((baseline::load(store, name).map_err(failure)?, snap(None)?)),
        (Some(name), [b]) => Ok((
            baseline::load(store, name).map_err(failure)?,
            snap(Some(*b))?,
        )),
        (None, [a]) => Ok((snap(Some(*a))?, snap(None)?)),
        (None, [a, b]) => Ok((snap(Some(*a))?, snap(Some(*b))?)),
        (None, []) => Err(Failure::usage(
            "give A: `--baseline NAME` or `--session ID`",
        )),
        _ => Err(Failure::usage(
            "too many `--session`s: A is `--baseline NAME` or the first `--session`, B the next",
        )),
    }
}

/// Mismatched settings, on standard error.
pub(crate) fn warn(c: &Comparison) {
    let mut err = std::io::stderr().lock();
    for w in &c.warnings {
        let _ = writeln!(err, "timeglass: warning: {w}; the figures may not compare");
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// `A → B` of one figure, or the one side there is.
fn pair(a: Option<&Side>, b: Option<&Side>, f: impl Fn(&Side) -> String) -> String {
    match (a.map(&f), b.map(&f)) {
        (Some(x), Some(y)) if x == y => x,
        (Some(x), Some(y)) => format!("{x} → {y}"),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => "-".into(),
    }
}

const HEADER: [&str; 11] = [
    "ENDPOINT",
    "VERDICT",
    "REQUESTS",
    "P50 MS",
    "P95 MS",
    "P99 MS",
    "CPU MS/REQ",
    "QUERIES/REQ",
    "DB MS/REQ",
    "N+1",
    "5XX",
];

fn cells(e: &EndpointComparison) -> Vec<String> {
    let (a, b) = (e.a.as_ref(), e.b.as_ref());
    vec![
        e.name(),
        e.verdict.as_str().to_string(),
        pair(a, b, |s| s.requests.to_string()),
        pair(a, b, |s| ms(s.p50_ms)),
        pair(a, b, |s| ms(s.p95_ms)),
        pair(a, b, |s| ms(s.p99_ms)),
        pair(a, b, |s| ms(s.cpu_ms_per_request)),
        pair(a, b, |s| check::round(s.queries_per_request)),
        pair(a, b, |s| ms(Some(s.db_ms_per_request))),
        pair(a, b, |s| s.n_plus_one.to_string()),
        pair(a, b, |s| format!("{:.1}%", s.error_rate_5xx * 100.0)),
    ]
}

/// What explains an endpoint's change, one line each.
pub(crate) fn explanations(e: &EndpointComparison) -> Vec<String> {
    let mut out = e.reasons.clone();
    for f in &e.functions {
        out.push(format!(
            "`{}` {:+.1} ms per request (self {:.1} → {:.1} ms, inclusive {:.1} → {:.1} ms)",
            f.function,
            f.self_change(),
            f.self_a_ms,
            f.self_b_ms,
            f.inclusive_a_ms,
            f.inclusive_b_ms
        ));
    }
    for s in &e.statements {
        out.push(format!(
            "`{}` ran {}x instead of {}x per request",
            short_sql(&s.normalized),
            check::round(s.b_per_request),
            check::round(s.a_per_request)
        ));
    }
    out
}

/// A statement cut to a line.
pub(crate) fn short_sql(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
    }
}

fn title(c: &Comparison) -> String {
    format!(
        "B: session {} against A: session {}",
        c.b_session, c.a_session
    )
}

fn text(c: &Comparison) -> String {
    let rows: Vec<Vec<String>> = c.endpoints.iter().map(cells).collect();
    let mut right = [true; 11];
    right[0] = false;
    right[1] = false;
    let mut out = format!("{}\n\n{}", title(c), render(&HEADER, &right, &rows));
    for e in &c.endpoints {
        let lines = explanations(e);
        if !lines.is_empty() {
            out.push_str(&format!("\n{} ({}):\n", e.name(), e.verdict.as_str()));
            for l in lines {
                out.push_str(&format!("  {l}\n"));
            }
        }
    }
    out
}

/// A Markdown cell: pipes escaped, on one line.
pub(crate) fn md(cell: &str) -> String {
    cell.replace('|', "\\|").replace('\n', " ")
}

fn markdown(c: &Comparison) -> String {
    let mut out = format!("### TimeGlass: {}\n\n", title(c));
    out.push_str(&format!("| {} |\n", HEADER.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(HEADER.len())));
    for e in &c.endpoints {
        let cells: Vec<String> = cells(e).iter().map(|c| md(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    for e in &c.endpoints {
        let lines = explanations(e);
        if !lines.is_empty() {
            out.push_str(&format!(
                "\n**{}** ({}):\n",
                md(&e.name()),
                e.verdict.as_str()
            ));
            for l in lines {
                out.push_str(&format!("- {}\n", md(&l)));
            }
        }
    }
    out
}
