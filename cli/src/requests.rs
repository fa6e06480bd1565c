use std::io::Write;
use std::process::ExitCode;

use timeglass_store::{RequestQuery, RequestRow, Store};

use crate::args::RequestsArgs;
use crate::failure::Result;

pub fn requests(args: RequestsArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&args.db.db)?;
    let rows = store.requests(&RequestQuery {
        limit: args.limit,
        session: None,
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::to_string_pretty(&rows).expect("rows serialize");
        writeln!(out, "{json}")?;
    } else if rows.is_empty() {
        writeln!(out, "No requests recorded in `{}` yet. Record some with `timeglass run -- uvicorn app:app`.", args.db.db.display())?;
    } else {
        write!(out, "{}", table(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Local wall-clock time of an RFC 3339 timestamp, to the millisecond.
pub(crate) fn local_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S%.3f")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// Response time, plus the background stage when there was one worth showing.
pub(crate) fn duration(r: &RequestRow) -> String {
    match r.background_ms {
        Some(bg) if bg >= 1.0 => format!("{:.1} ms (+{bg:.1} ms background)", r.duration_ms),
        _ => format!("{:.1} ms", r.duration_ms),
    }
}

fn db_time(r: &RequestRow) -> String {
    if r.queries == 0 {
        "-".into()
    } else {
        format!("{:.1} ms", r.db_ms)
    }
}

/// `12x`: how often the most repeated statement ran, when that flags an N+1.
fn n_plus_one(r: &RequestRow) -> String {
    match &r.repeated {
        Some(rep) => format!("{}x", rep.count),
        None => String::new(),
    }
}

fn table(rows: &[RequestRow]) -> String {
    let header = [
        "ID", "START", "METHOD", "PATH", "ROUTE", "STATUS", "DURATION", "SAMPLES", "QUERIES", "DB",
        "N+1",
    ];
    let cells: Vec<[String; 11]> = rows
        .iter()
        .map(|r| {
            let status = match (r.status, r.errored) {
                (Some(s), _) => s.to_string(),
                (None, true) => "error".into(),
                (None, false) => "-".into(),
            };
            [
                r.id.to_string(),
                local_time(&r.start),
                r.method.clone(),
                r.path.clone(),
                r.route.clone().unwrap_or_else(|| "-".into()),
                status,
                duration(r),
                r.samples.to_string(),
                r.queries.to_string(),
                db_time(r),
                n_plus_one(r),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Numbers right-aligned, text left-aligned.
    let right = [
        true, false, false, false, false, true, true, true, true, true, false,
    ];
    let line = |cols: &[String]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(widths)
            .zip(right)
            .map(|((c, w), r)| {
                if r {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(&header.map(String::from));
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}
