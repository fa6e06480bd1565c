use std::process::ExitCode;

use timeglass_report::{parse_time, ReportError};
use timeglass_store::{local_time, RequestFilter, RequestPage, RequestRow, SessionId, Sort, Store};

use timeglass_render::{requests_table, Table};

use crate::args::{RequestSort, RequestsArgs, TableFormat};
use crate::failure::Result;
use crate::table::render;

pub(crate) fn requests(args: RequestsArgs) -> Result<ExitCode> {
    let store = Store::open_existing(&args.db.db)?;
    let filter = filter(&store, &args).map_err(crate::report::failure)?;
    let filtered = filter != RequestFilter::default();
    // The dashboard's list, newest (or slowest) first: the same filter, the same order.
    let rows = store.request_page(&RequestPage {
        limit: args.limit,
        before: None,
        filter,
        sort: match args.sort {
            RequestSort::Start => Sort::Newest,
            RequestSort::Duration => Sort::Slowest,
        },
    })?;
    let bytes = match args.table.format() {
        TableFormat::Json => {
            let json = serde_json::to_string_pretty(&rows).expect("rows serialize");
            format!("{json}\n").into_bytes()
        }
        TableFormat::Table if rows.is_empty() && filtered => {
            format!("No requests match in `{}`.\n", args.db.db.display()).into_bytes()
        }
        TableFormat::Table if rows.is_empty() => format!(
            "No requests recorded in `{}` yet. Record some with `timeglass run -- uvicorn app:app`.\n",
            args.db.db.display()
        )
        .into_bytes(),
        TableFormat::Table => table(&rows).into_bytes(),
        other => rows_as(other, &requests_table(&rows))?,
    };
    crate::output::write(args.table.output.as_deref(), &bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// A flat table in one of the table formats.
pub(crate) fn rows_as(format: TableFormat, table: &Table) -> Result<Vec<u8>> {
    let format = match format {
        TableFormat::Csv => timeglass_render::TableFormat::Csv,
        TableFormat::Jsonl => timeglass_render::TableFormat::Jsonl,
        TableFormat::Parquet => timeglass_render::TableFormat::Parquet,
        TableFormat::Table | TableFormat::Json => unreachable!("rendered by the command"),
    };
    format
        .render(table)
        .map_err(|e| crate::failure::Failure::new(e.to_string()))
}

/// `--session`, `--since` and `--until`, read as `timeglass report` reads
/// them; an unknown session is bad input too.
fn filter(store: &Store, args: &RequestsArgs) -> std::result::Result<RequestFilter, ReportError> {
    if let Some(id) = args.session {
        store
            .session_info(SessionId(id))?
            .ok_or(ReportError::UnknownSession(id))?;
    }
    let now = timeglass_report::now_unix_ns();
    let time = |t: &Option<String>| t.as_deref().map(|t| parse_time(t, now)).transpose();
    let (since, until) = (time(&args.window.since)?, time(&args.window.until)?);
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(ReportError::EmptyRange);
        }
    }
    Ok(RequestFilter {
        session: args.session.map(SessionId),
        since_unix_ns: since,
        until_unix_ns: until,
        text: args.route.clone(),
        status_class: args.status,
        min_duration_us: args.min_ms.map(|ms| (ms * 1000.0).round() as u64),
        ..RequestFilter::default()
    })
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

/// CPU time; `-` when nothing was measured (see `RequestRow::measured_cpu_ms`).
fn cpu_time(r: &RequestRow) -> String {
    match r.measured_cpu_ms() {
        Some(ms) => format!("{ms:.1} ms"),
        None => "-".into(),
    }
}

/// `blocked 84.0 ms`: how long the request held the event loop, when it did.
fn loop_block(r: &RequestRow) -> String {
    match &r.loop_block {
        Some(block) => format!("blocked {:.1} ms", block.blocked_ms),
        None => String::new(),
    }
}

fn table(rows: &[RequestRow]) -> String {
    let header = [
        "ID", "START", "PID", "METHOD", "PATH", "ROUTE", "STATUS", "DURATION", "CPU", "SAMPLES",
        "QUERIES", "DB", "N+1", "LOOP",
    ];
    let right = [
        true, false, true, false, false, false, true, true, true, true, true, true, false, false,
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let status = match (r.status, r.errored) {
                (Some(s), _) => s.to_string(),
                (None, true) => "error".into(),
                (None, false) => "-".into(),
            };
            vec![
                r.id.to_string(),
                local_time(&r.start),
                r.pid.to_string(),
                r.method.clone(),
                r.path.clone(),
                r.route.clone().unwrap_or_else(|| "-".into()),
                status,
                duration(r),
                cpu_time(r),
                r.samples.to_string(),
                r.queries.to_string(),
                db_time(r),
                n_plus_one(r),
                loop_block(r),
            ]
        })
        .collect();
    render(&header, &right, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::show::fixture;

    #[test]
    fn the_table_has_cpu_time_and_marks_loop_blocks() {
        let store = fixture::store("requests");
        let rows = store.rows();
        let start = |i: usize| local_time(&rows[i].start);
        let expected = format!(
            "ID  START{pad}   PID  METHOD  PATH     ROUTE    STATUS  DURATION      CPU  SAMPLES  QUERIES  DB  N+1  LOOP
 1  {}  4242  GET     /report  /report     200  120.0 ms  90.0 ms        0        0   -       blocked 84.0 ms
 2  {}  4242  GET     /io      /io         200   40.0 ms   2.5 ms        0        0   -
 3  {}  4242  GET     /idle    /idle       200    5.0 ms        -        0        0   -
",
            start(0),
            start(1),
            start(2),
            pad = " ".repeat(start(0).chars().count() - "START".len()),
        );
        assert_eq!(table(&rows), expected);
    }
}
