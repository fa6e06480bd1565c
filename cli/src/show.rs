//! `timeglass show ID`: one request, where its time went, and its SQL
//! statements and outgoing HTTP calls in the order they started.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;
use timeglass_store::{
    local_time, Breakdown, CallRow, LoopBlockRow, MemoryRow, QueryRow, RequestRow, Store,
};

use timeglass_render::statements_table;

use crate::args::{ShowArgs, TableFormat};
use crate::failure::{Failure, Result};
use crate::requests::{duration, rows_as};

/// Statements longer than this are cut in the text view (JSON has all that was stored).
const SHOWN_SQL_CHARS: usize = 300;

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    request: &'a RequestRow,
    queries: &'a [QueryRow],
    calls: &'a [CallRow],
}

pub(crate) fn show(args: ShowArgs) -> Result<ExitCode> {
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
    let bytes = match args.table.format() {
        TableFormat::Json => {
            let shown = Shown {
                request: &request,
                queries: &queries,
                calls: &calls,
            };
            let json = serde_json::to_string_pretty(&shown).expect("rows serialize");
            format!("{json}\n").into_bytes()
        }
        TableFormat::Table => text(&request, &queries, &calls).into_bytes(),
        other => rows_as(other, &statements_table(request.id, &queries, &calls))?,
    };
    crate::output::write(args.table.output.as_deref(), &bytes)?;
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
    out.push_str(&time_text(r));
    out.push_str(&memory_text(&r.memory));
    if let Some(block) = &r.loop_block {
        out.push_str(&loop_block_text(block));
    }
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

/// CPU time (of the whole request, background work included), then one
/// line per non-zero category with its share of the response time, which is
/// what the breakdown covers; nothing for requests recorded without one.
fn time_text(r: &RequestRow) -> String {
    let Some(b) = r.breakdown.filter(|b| b.total_ms() > 0.0) else {
        return String::new();
    };
    let share = |ms: f64, of: f64| match of > 0.0 {
        true => format!("{:.0}%", ms / of * 100.0),
        false => "-".to_string(),
    };
    let wall = r.duration_ms + r.background_ms.unwrap_or(0.0);
    let cpu = r.cpu_ms.unwrap_or_else(|| b.cpu_ms());
    let response = r.duration_ms;
    let mut out = format!(
        "CPU {cpu:.1} ms ({} of its {wall:.1} ms); its {response:.1} ms response time went to:\n",
        share(cpu, wall)
    );
    let mut line = |label: &str, ms: f64| {
        let _ = writeln!(
            out,
            "  {label:<30} {ms:>9.1} ms  {:>4}",
            share(ms, response)
        );
    };
    for (label, ms) in categories(&b) {
        line(label, ms);
    }
    let rest = response - b.total_ms();
    if rest > response * 0.005 && rest >= 0.05 {
        line("not sampled", rest);
    }
    out
}

/// `Memory: process RSS 80.0 MiB at start, 82.0 MiB at end (+2.0 MiB), peak 90.0 MiB`;
/// nothing when the recorder read none.
fn memory_text(m: &MemoryRow) -> String {
    let gc = match m.gc_collections {
        0 => String::new(),
        n => format!(
            "Garbage collection: {} paused it {:.2} ms\n",
            plural(n, "collection", "collections"),
            m.gc_pause_ms
        ),
    };
    let gc = match m.alloc_bytes {
        Some(bytes) => format!("Allocated {} (sampled)\n{gc}", mib(bytes)),
        None => gc,
    };
    let Some(peak) = m.rss_peak_bytes else {
        return gc;
    };
    let at = |b: Option<u64>| b.map_or("-".to_string(), mib);
    let change = m.rss_delta_bytes().map_or(String::new(), |d| {
        let sign = if d < 0 { "-" } else { "+" };
        format!(" ({sign}{})", mib(d.unsigned_abs()))
    });
    format!(
        "Memory: process RSS {} at start, {} at end{change}, peak {}\n{gc}",
        at(m.rss_start_bytes),
        at(m.rss_end_bytes),
        mib(peak)
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn categories(b: &Breakdown) -> Vec<(&'static str, f64)> {
    b.categories()
        .into_iter()
        .filter(|&(_, _, ms)| ms > 0.0)
        .map(|(_, label, ms)| (label, ms))
        .collect()
}

/// `Blocked the event loop for 84.0 ms at app.py:31 in handler; delayed 3 requests (12, 13, 14)`.
fn loop_block_text(block: &LoopBlockRow) -> String {
    let at = block
        .line
        .as_deref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default();
    let delayed = match block.delayed_marker_ids.len() {
        0 => String::new(),
        n => {
            let ids: Vec<String> = block.delayed.iter().map(i64::to_string).collect();
            let missing = n - block.delayed.len().min(n);
            let listed = match (ids.is_empty(), missing) {
                (true, _) => " (none of them recorded)".to_string(),
                (false, 0) => format!(" ({})", ids.join(", ")),
                (false, m) => format!(" ({}; {m} not recorded)", ids.join(", ")),
            };
            format!(
                "; delayed {}{listed}",
                plural(n as u64, "request", "requests")
            )
        }
    };
    format!(
        "Blocked the event loop for {:.1} ms{at}{delayed}\n",
        block.blocked_ms
    )
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

/// A store written with known breakdowns, for the tests of `show` and
/// `requests`: request 1 blocked the loop and delayed marker ids 2 and 99
/// (99 is never stored), request 2 waited on I/O, request 3 has no samples.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::PathBuf;

    use timeglass_model::{LoopBlock, Memory, ProfiledRequest, Request, TimeBreakdown};
    use timeglass_store::{Batch, ClockMap, NewProcess, NewSession, RequestRow, Store};

    const MS: u64 = 1_000_000;

    pub(crate) struct Fixture {
        pub path: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    impl Fixture {
        pub(crate) fn rows(&self) -> Vec<RequestRow> {
            let store = Store::open_existing(&self.path).unwrap();
            (1..=3)
                .map(|id| store.request(id).unwrap().unwrap())
                .collect()
        }
    }

    fn request(marker_id: u64, path: &str, start_ms: u64, ms: u64) -> ProfiledRequest {
        ProfiledRequest::new(Request {
            marker_id,
            pid: 4242,
            tid: 7,
            method: "GET".into(),
            path: path.into(),
            route: Some(path.into()),
            status: Some(200),
            start_ns: start_ms * MS,
            end_ns: (start_ms + ms) * MS,
            response_end_ns: Some((start_ms + ms) * MS),
            ..Request::default()
        })
    }

    pub(crate) fn store(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("timeglass-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("timeglass.db");
        let mut store = Store::open(&path).unwrap();
        let session = store
            .begin_session(&NewSession {
                command: vec!["uvicorn".into()],
                cwd: "/srv".into(),
                rate_hz: 1000,
                clock: ClockMap {
                    mono_ns: 0,
                    unix_ns: 1_790_000_000_000_000_000,
                },
            })
            .unwrap();
        let process = store
            .add_process(
                session,
                &NewProcess {
                    pid: 4242,
                    command_line: vec!["python".into()],
                    python_version: None,
                },
            )
            .unwrap();
        let mut blocker = request(1, "/report", 0, 120);
        blocker.breakdown = TimeBreakdown {
            python_ns: 84 * MS,
            native_ns: 6 * MS,
            sql_ns: 24 * MS,
            ..TimeBreakdown::default()
        };
        blocker.cpu_ns = 90 * MS;
        blocker.loop_block = Some(LoopBlock {
            blocked_ns: 84 * MS,
            start_ns: 2 * MS,
            line: Some("app.py:31 in handler".into()),
            delayed: vec![2, 99],
        });
        let mut io = request(2, "/io", 10, 40);
        io.breakdown = TimeBreakdown {
            python_ns: 2 * MS,
            blocked_ns: 20 * MS,
            await_ns: 10 * MS,
            queued_ns: 8 * MS,
            ..TimeBreakdown::default()
        };
        io.cpu_ns = 2 * MS + 500_000;
        io.memory = Memory {
            rss_start_bytes: Some(80 << 20),
            rss_end_bytes: Some(78 << 20),
            rss_peak_bytes: Some(96 << 20),
            gc_collections: 3,
            gc_pause_ns: 1_250_000,
            alloc_bytes: Some(24 << 20),
        };
        let idle = request(3, "/idle", 20, 5);
        store
            .write(&Batch {
                session,
                requests: vec![(process, blocker), (process, io), (process, idle)],
                outside: vec![],
                outside_timeline: vec![],
                process_samples: vec![],
            })
            .unwrap();
        Fixture { path }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything after the `Started` line, whose time is local.
    fn after_start(text: &str) -> String {
        let mut lines = text.lines();
        let head = lines.next().unwrap().to_string();
        lines.next().unwrap();
        let rest: Vec<&str> = lines.collect();
        format!("{head}\n{}\n", rest.join("\n"))
    }

    #[test]
    fn show_prints_the_breakdown_and_the_loop_block() {
        let store = fixture::store("show");
        let rows = store.rows();
        assert_eq!(
            after_start(&text(&rows[0], &[], &[])),
            "Request 1: GET /report -> 200 in 120.0 ms (route /report)
CPU 90.0 ms (75% of its 120.0 ms); its 120.0 ms response time went to:
  Python (CPU)                        84.0 ms   70%
  native, off the GIL (CPU)            6.0 ms    5%
  awaiting SQL                        24.0 ms   20%
  not sampled                          6.0 ms    5%
Blocked the event loop for 84.0 ms at app.py:31 in handler; delayed 2 requests (2; 1 not recorded)
"
        );
        assert_eq!(
            after_start(&text(&rows[1], &[], &[])),
            "Request 2: GET /io -> 200 in 40.0 ms (route /io)
CPU 2.5 ms (6% of its 40.0 ms); its 40.0 ms response time went to:
  Python (CPU)                         2.0 ms    5%
  blocked (sleep, I/O, locks)         20.0 ms   50%
  awaiting other                      10.0 ms   25%
  queued (loop busy, no worker)        8.0 ms   20%
Memory: process RSS 80.0 MiB at start, 78.0 MiB at end (-2.0 MiB), peak 96.0 MiB
Allocated 24.0 MiB (sampled)
Garbage collection: 3 collections paused it 1.25 ms
"
        );
        assert_eq!(
            after_start(&text(&rows[2], &[], &[])),
            "Request 3: GET /idle -> 200 in 5.0 ms (route /idle)\n\n",
            "nothing sampled, nothing to break down"
        );
    }

    #[test]
    fn show_json_carries_the_breakdown_in_ms_cpu_and_the_loop_block() {
        let store = fixture::store("show-json");
        let rows = store.rows();
        let shown = Shown {
            request: &rows[0],
            queries: &[],
            calls: &[],
        };
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["cpu_ms"], 90.0);
        assert_eq!(json["breakdown"]["python_ms"], 84.0);
        assert_eq!(json["breakdown"]["sql_ms"], 24.0);
        assert_eq!(json["breakdown"]["queued_ms"], 0.0);
        assert_eq!(json["loop_block"]["blocked_ms"], 84.0);
        assert_eq!(json["loop_block"]["start_ms"], 2.0);
        assert_eq!(json["loop_block"]["line"], "app.py:31 in handler");
        assert_eq!(json["loop_block"]["delayed"], serde_json::json!([2]));
        assert_eq!(
            json["loop_block"]["delayed_marker_ids"],
            serde_json::json!([2, 99])
        );
        assert_eq!(
            json["memory"],
            serde_json::json!({
                "rss_start_bytes": null, "rss_end_bytes": null, "rss_peak_bytes": null,
                "alloc_bytes": null, "gc_collections": 0, "gc_pause_ms": 0.0
            }),
            "nothing read"
        );
        let io = serde_json::to_value(&rows[1]).unwrap();
        assert_eq!(io["memory"]["rss_peak_bytes"], 96 << 20);
        assert_eq!(io["memory"]["rss_end_bytes"], 78 << 20);
        assert_eq!(io["memory"]["gc_collections"], 3);
        assert_eq!(io["memory"]["gc_pause_ms"], 1.25);
    }
}
