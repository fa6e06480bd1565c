//! `timeglass report`: a session's figures and score, as a table, Markdown
//! or JSON. The figures come from `timeglass-report`; this file renders.

use std::io::IsTerminal;
use std::process::ExitCode;

use timeglass_report::{EndpointStats, Report, ReportError, ReportQuery, Score, Stats, Status};
use timeglass_store::{RouteMatch, Store};

use timeglass_render::endpoints_table;

use crate::args::{ReportArgs, ReportFormat, TableFormat};
use crate::failure::{Failure, Result};
use crate::requests::rows_as;
use crate::table::render_painted;

pub(crate) fn report(args: ReportArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&args.db.db)?;
    let query = ReportQuery {
        session: args.session,
        since: args.window.since,
        until: args.window.until,
        method: None,
        route: args.route.map(RouteMatch::Contains),
        status: args.status,
        min_ms: args.min_ms,
    };
    let cwd = std::env::current_dir()?;
    let report =
        Report::build(&store, &query, &[&cwd], timeglass_report::now_unix_ns()).map_err(failure)?;
    let color = Color::wanted(args.output.is_none() && std::io::stdout().is_terminal());
    let table = || endpoints_table(report.session, &report.endpoints, &report.overall);
    let bytes = match args.format {
        ReportFormat::Json => {
            let json = serde_json::to_string_pretty(&report).expect("report serializes");
            format!("{json}\n").into_bytes()
        }
        ReportFormat::Table => text(&report, color).into_bytes(),
        ReportFormat::Markdown => markdown(&report).into_bytes(),
        ReportFormat::Csv => rows_as(TableFormat::Csv, &table())?,
        ReportFormat::Jsonl => rows_as(TableFormat::Jsonl, &table())?,
        ReportFormat::Parquet => rows_as(TableFormat::Parquet, &table())?,
    };
    crate::output::write(args.output.as_deref(), &bytes)?;
    Ok(ExitCode::from(u8::from(report.failed())))
}

/// Bad input (exit 2) or a store that failed (exit 1).
pub(crate) fn failure(e: ReportError) -> Failure {
    match e.is_bad_input() {
        true => Failure::error(&e).with_code(2),
        false => Failure::error(&e),
    }
}

/// ANSI colours, only on a terminal and never with `NO_COLOR` set.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Color(bool);

impl Color {
    fn wanted(tty: bool) -> Color {
        Color(tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
    }

    fn paint(self, code: &str, text: String) -> String {
        match self.0 {
            true => format!("\x1b[{code}m{text}\x1b[0m"),
            false => text,
        }
    }
}

fn ms(v: f64) -> String {
    match v {
        v if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        v if v >= 100.0 => format!("{v:.0} ms"),
        v if v >= 10.0 => format!("{v:.1} ms"),
        v => format!("{v:.2} ms"),
    }
}

fn pct(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

fn endpoint_name(e: &EndpointStats) -> String {
    format!(
        "{} {}",
        e.method,
        e.route.as_deref().unwrap_or("(no route)")
    )
}

const HEADER: [&str; 13] = [
    "ENDPOINT",
    "REQUESTS",
    "RPS",
    "P50",
    "P90",
    "P99",
    "MAX",
    "5XX",
    "4XX",
    "CPU/REQ",
    "DB/REQ",
    "QUERIES/REQ",
    "N+1",
];

/// The cells of one row of the endpoints table.
fn cells(name: String, s: &Stats) -> Vec<String> {
    let lat = |f: fn(&timeglass_report::stats::Latency) -> f64| {
        s.latency_ms.as_ref().map_or("-".into(), |l| ms(f(l)))
    };
    vec![
        name,
        s.requests.to_string(),
        format!("{:.2}", s.rps),
        lat(|l| l.p50),
        lat(|l| l.p90),
        lat(|l| l.p99),
        lat(|l| l.max),
        pct(s.error_rate_5xx),
        pct(s.rate_4xx),
        s.cpu_ms_avg.map_or("-".into(), ms),
        ms(s.db_ms_avg),
        format!("{:.1}", s.queries_avg),
        s.n_plus_one.to_string(),
    ]
}

/// The value of column `col` that is worse the higher it is, for picking
/// the worst endpoint.
fn badness(s: &Stats, col: usize) -> Option<f64> {
    let l = s.latency_ms.as_ref();
    match col {
        3 => l.map(|l| l.p50),
        4 => l.map(|l| l.p90),
        5 => l.map(|l| l.p99),
        6 => l.map(|l| l.max),
        7 => Some(s.error_rate_5xx),
        8 => Some(s.rate_4xx),
        9 => s.cpu_ms_avg,
        10 => Some(s.db_ms_avg),
        11 => Some(s.queries_avg),
        12 => Some(s.n_plus_one as f64),
        _ => None,
    }
}

/// Per column, the row of the worst endpoint (when there are two or more
/// and its value is above zero).
fn worst(endpoints: &[EndpointStats]) -> Vec<Option<usize>> {
    (0..HEADER.len())
        .map(|col| {
            if endpoints.len() < 2 {
                return None;
            }
            endpoints
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((i, badness(&e.stats, col)?)))
                .filter(|(_, v)| *v > 0.0)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
        })
        .collect()
}

fn text(r: &Report, color: Color) -> String {
    let mut out = format!(
        "Session {}: {} to {} ({:.1} s)\n\n",
        r.session, r.window.start, r.window.end, r.window.seconds
    );
    let mut rows: Vec<Vec<String>> = r
        .endpoints
        .iter()
        .map(|e| cells(endpoint_name(e), &e.stats))
        .collect();
    rows.push(cells("all".into(), &r.overall));
    let right: Vec<bool> = (0..HEADER.len()).map(|i| i > 0).collect();
    let worst = worst(&r.endpoints);
    out += &render_painted(&HEADER, &right, &rows, |row, col, cell| {
        match worst[col] == Some(row) {
            true => color.paint("1;31", cell),
            false => cell,
        }
    });
    if r.endpoints.len() >= 2 && !color.0 {
        // Without colour, the worst of each column gets a line of its own.
        let named: Vec<String> = worst
            .iter()
            .enumerate()
            .filter_map(|(col, row)| {
                Some(format!(
                    "{} {}",
                    HEADER[col],
                    endpoint_name(&r.endpoints[(*row)?])
                ))
            })
            .collect();
        if !named.is_empty() {
            out += &format!("Worst: {}\n", named.join("; "));
        }
    }
    let t = &r.throughput;
    let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    out += &format!(
        "\nThroughput: {:.2} req/s over the last 1 min, {:.2} over 5 min, {:.2} over 15 min; \
         busiest second {}, quietest {}; at most {} in flight\n",
        t.rps_1m,
        t.rps_5m,
        t.rps_15m,
        opt(t.peak_rps_1s),
        opt(t.min_rps_1s),
        t.peak_concurrency
    );
    let p = &r.process;
    out += &match (p.cpu_percent_avg, p.cpu_percent_peak, p.rss_mb_avg, p.rss_mb_peak) {
        (Some(ca), Some(cp), Some(ra), Some(rp)) => format!(
            "Processes: CPU {ca:.1}% on average, {cp:.1}% at peak (100% = one core); \
             memory {ra:.1} MB on average, {rp:.1} MB at peak; up to {} threads, {} open files ({} samples)\n",
            p.threads_peak.unwrap_or(0), p.fds_peak.unwrap_or(0), p.samples
        ),
        _ => "Processes: no resource samples in the window\n".into(),
    };
    if let Some(c) = &r.coverage {
        if !c.never_exercised.is_empty() {
            let never: Vec<String> = c
                .never_exercised
                .iter()
                .map(|e| format!("{} {}", e.method, e.route.as_deref().unwrap_or("")))
                .collect();
            out += &format!("Never exercised: {}\n", never.join(", "));
        }
    }
    out += &format!("\nScore (thresholds: {}):\n", thresholds_source(r));
    let lines: Vec<Vec<String>> = r.scores.iter().map(score_cells).collect();
    out += &render_painted(
        &["STATUS", "BENCHMARK", "VALUE", "THRESHOLD", "NOTE"],
        &[false, false, true, false, false],
        &lines,
        |row, col, cell| match (col, r.scores[row].status) {
            (0, Status::Pass) => color.paint("32", cell),
            (0, Status::Warn) => color.paint("33", cell),
            (0, Status::Fail) => color.paint("1;31", cell),
            _ => cell,
        },
    );
    out
}

fn thresholds_source(r: &Report) -> String {
    match &r.thresholds_file {
        Some(path) => path.display().to_string(),
        None => "defaults".into(),
    }
}

fn value(s: &Score, v: f64) -> String {
    match s.unit {
        "ms" => ms(v),
        "ratio" => pct(v),
        "percent" => format!("{v:.1}%"),
        "MB" => format!("{v:.1} MB"),
        _ => format!("{v}"),
    }
}

fn score_cells(s: &Score) -> Vec<String> {
    let (cmp_warn, cmp_fail) = match s.better {
        "higher" => ("<", "<"),
        _ => (">", ">"),
    };
    vec![
        s.status.as_str().to_uppercase(),
        s.benchmark.to_string(),
        s.value.map_or("-".into(), |v| value(s, v)),
        format!(
            "warn {cmp_warn} {}, fail {cmp_fail} {}",
            value(s, s.warn),
            value(s, s.threshold)
        ),
        s.note.clone(),
    ]
}

fn markdown(r: &Report) -> String {
    let row = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut out = format!(
        "## TimeGlass report: session {}\n\n{} to {} ({:.1} s)\n\n",
        r.session, r.window.start, r.window.end, r.window.seconds
    );
    out += &row(&HEADER.map(String::from));
    out += &row(&HEADER.map(|h| {
        if h == "ENDPOINT" {
            "---".into()
        } else {
            "---:".into()
        }
    }));
    for e in &r.endpoints {
        out += &row(&cells(format!("`{}`", endpoint_name(e)), &e.stats));
    }
    out += &row(&cells("**all**".into(), &r.overall));
    out += &format!("\n### Score\n\nThresholds: {}\n\n", thresholds_source(r));
    out += "| status | benchmark | value | threshold | note |\n|---|---|---:|---|---|\n";
    for s in &r.scores {
        out += &row(&score_cells(s));
    }
    out
}
