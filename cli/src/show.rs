//! `timeglass show ID`: one request with its SQL statements and outgoing
//! HTTP calls, in the order they started.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;
use timeglass_store::{CallRow, QueryRow, RequestRow, Store};

use crate::args::ShowArgs;
use crate::failure::{Failure, Result};
use crate::requests::duration;
use crate::table::local_time;

/// Statements longer than this are cut in the text view (JSON has all that was stored).
const SHOWN_SQL_CHARS: usize = 300;

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    request: &'a RequestRow,
    queries: &'a [QueryRow],
    calls: &'a [CallRow],
}

pub fn show(args: ShowArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&args.db.db)?;
    let Some(request) = store.request(args.request)? else {
        return Err(Failure::usage(format!(
            "no request with id {} in `{}`; list them with `timeglass requests`",
            args.request,
            args.db.db.display()
        )));
    };
    let queries = store.request_queries(request.id)?;
    let calls = store.request_calls(request.id)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let shown = Shown {
            request: &request,
            queries: &queries,
            calls: &calls,
        };
        let json = serde_json::to_string_pretty(&shown).expect("rows serialize");
        writeln!(out, "{json}")?;
    } else {
        write!(out, "{}", text(&request, &queries, &calls))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn text(r: &RequestRow, queries: &[QueryRow], calls: &[CallRow]) -> String {
    let mut out = String::new();
    let status = r
        .status
        .map_or_else(|| "no response".into(), |s| s.to_string());
    let route = r.route.as_deref().unwrap_or("-");
    let _ = writeln!(
        out,
        "Request {}: {} {} -> {status} in {} (route {route})",
        r.id,
        r.method,
        r.path,
        duration(r)
    );
    let _ = writeln!(
        out,
        "Started {}; {} samples; {} in the database ({:.1} ms); {} ({:.1} ms)",
        local_time(&r.start),
        r.samples,
        plural(r.queries, "query", "queries"),
        r.db_ms,
        plural(r.calls, "HTTP call", "HTTP calls"),
        r.http_ms
    );
    if let Some(rep) = &r.repeated {
        let from = rep
            .caller
            .as_deref()
            .map(|c| format!(", from {c}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "Likely N+1: ran {} times{from}: {}",
            rep.count, rep.normalized
        );
    }
    let mut events: Vec<(f64, String)> = queries
        .iter()
        .map(|q| (q.start_ms, query_text(q)))
        .chain(calls.iter().map(|c| (c.start_ms, call_text(c))))
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !events.is_empty() {
        out.push('\n');
    }
    for (_, text) in events {
        out.push_str(&text);
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Start offset and duration, the same width for queries and calls.
fn head(start_ms: f64, duration_ms: f64, what: &str) -> String {
    let start = format!("+{start_ms:.3} ms");
    format!("  {start:>12}  {duration_ms:>9.3} ms  {what}\n")
}

/// Lines under a statement start where its text does.
const INDENT: &str = "                              ";

fn query_text(q: &QueryRow) -> String {
    let rows = q.rows.map(|n| format!(", {n} rows")).unwrap_or_default();
    let mut out = head(
        q.start_ms,
        q.duration_ms,
        &format!("[{}{rows}] {}", q.driver, one_line(&q.sql, q.sql_length)),
    );
    if let Some(params) = &q.params {
        let cut = if q.params_length as usize > params.chars().count() {
            " ..."
        } else {
            ""
        };
        let _ = writeln!(out, "{INDENT}params: {params}{cut}");
    }
    if let Some(error) = &q.error {
        let _ = writeln!(out, "{INDENT}error: {error}");
    }
    if let Some(at) = q.caller.first() {
        let _ = writeln!(out, "{INDENT}at {}", at.location());
    }
    out
}

fn call_text(c: &CallRow) -> String {
    let status = c
        .status
        .map_or_else(|| "no response".into(), |s| s.to_string());
    let what = format!("[{}] {} {} -> {status}", c.library, c.method, c.url);
    let mut out = head(c.start_ms, c.duration_ms, &what);
    if let Some(error) = &c.error {
        let _ = writeln!(out, "{INDENT}error: {error}");
    }
    if let Some(at) = c.caller.first() {
        let _ = writeln!(out, "{INDENT}at {}", at.location());
    }
    out
}

/// The statement on one line, cut for the terminal with its full length noted.
fn one_line(sql: &str, full_chars: u64) -> String {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let shown: String = flat.chars().take(SHOWN_SQL_CHARS).collect();
    if shown.len() < flat.len() || full_chars as usize > sql.chars().count() {
        format!("{shown} ... ({full_chars} characters)")
    } else {
        shown
    }
}
