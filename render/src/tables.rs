//! The rows the CLI lists, as flat tables: requests, one request's
//! statements and calls, and the report's statistics per endpoint.

use timeglass_model::Frame;
use timeglass_report::{EndpointStats, Stats};
use timeglass_store::{CallRow, QueryRow, RequestRow};

use crate::table::{Cell, Table, Type};

/// One row per request, the columns of `timeglass requests --format json`
/// flattened (breakdown and loop block as columns of their own).
pub fn requests_table(rows: &[RequestRow]) -> Table {
    use Type::*;
    let columns = vec![
        ("id", Int),
        ("session_id", Int),
        ("pid", Int),
        ("tid", Int),
        ("method", Text),
        ("path", Text),
        ("route", Text),
        ("status", Int),
        ("errored", Bool),
        ("cancelled", Bool),
        ("start", Text),
        ("duration_ms", Float),
        ("background_ms", Float),
        ("cpu_ms", Float),
        ("samples", Int),
        ("switched_samples", Int),
        ("torn_samples", Int),
        ("queries", Int),
        ("db_ms", Float),
        ("calls", Int),
        ("http_ms", Float),
        ("n_plus_one", Bool),
        ("n_plus_one_count", Int),
        ("n_plus_one_sql", Text),
        ("python_ms", Float),
        ("native_ms", Float),
        ("blocked_ms", Float),
        ("gil_wait_ms", Float),
        ("sql_wait_ms", Float),
        ("http_wait_ms", Float),
        ("await_ms", Float),
        ("queued_ms", Float),
        ("loop_blocked_ms", Float),
    ];
    let rows = rows
        .iter()
        .map(|r| {
            let b = r.breakdown;
            vec![
                r.id.into(),
                r.session_id.0.into(),
                r.pid.into(),
                r.tid.into(),
                r.method.as_str().into(),
                r.path.as_str().into(),
                r.route.clone().into(),
                r.status.map(u32::from).into(),
                r.errored.into(),
                r.cancelled.into(),
                r.start.as_str().into(),
                r.duration_ms.into(),
                r.background_ms.into(),
                r.cpu_ms.into(),
                r.samples.into(),
                r.switched_samples.into(),
                r.torn_samples.into(),
                r.queries.into(),
                r.db_ms.into(),
                r.calls.into(),
                r.http_ms.into(),
                r.n_plus_one.into(),
                r.repeated.as_ref().map(|x| x.count).into(),
                r.repeated.as_ref().map(|x| x.normalized.clone()).into(),
                b.map(|b| b.python_ms).into(),
                b.map(|b| b.native_ms).into(),
                b.map(|b| b.blocked_ms).into(),
                b.map(|b| b.gil_wait_ms).into(),
                b.map(|b| b.sql_ms).into(),
                b.map(|b| b.http_ms).into(),
                b.map(|b| b.await_ms).into(),
                b.map(|b| b.queued_ms).into(),
                r.loop_block.as_ref().map(|l| l.blocked_ms).into(),
            ]
        })
        .collect();
    Table { columns, rows }
}

fn caller(frames: &[Frame]) -> Cell {
    frames.first().map(Frame::location).into()
}

/// One request's SQL statements and HTTP calls, in the order they started.
pub fn statements_table(request_id: i64, queries: &[QueryRow], calls: &[CallRow]) -> Table {
    use Type::*;
    let columns = vec![
        ("request_id", Int),
        ("kind", Text),
        ("start_ms", Float),
        ("duration_ms", Float),
        ("text", Text),
        ("normalized", Text),
        ("params", Text),
        ("rows", Int),
        ("status", Int),
        ("library", Text),
        ("error", Text),
        ("caller", Text),
    ];
    let mut rows: Vec<(f64, Vec<Cell>)> = Vec::new();
    for q in queries {
        rows.push((
            q.start_ms,
            vec![
                request_id.into(),
                "sql".into(),
                q.start_ms.into(),
                q.duration_ms.into(),
                q.sql.as_str().into(),
                q.normalized.as_str().into(),
                q.params.clone().into(),
                q.rows.into(),
                Cell::Null,
                q.driver.as_str().into(),
                q.error.clone().into(),
                caller(&q.caller),
            ],
        ));
    }
    for c in calls {
        rows.push((
            c.start_ms,
            vec![
                request_id.into(),
                "http".into(),
                c.start_ms.into(),
                c.duration_ms.into(),
                format!("{} {}", c.method, c.url).into(),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                c.status.map(u32::from).into(),
                c.library.as_str().into(),
                c.error.clone().into(),
                caller(&c.caller),
            ],
        ));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    Table {
        columns,
        rows: rows.into_iter().map(|(_, r)| r).collect(),
    }
}

/// The report's statistics: one row per endpoint, then `overall`.
pub fn endpoints_table(session: i64, endpoints: &[EndpointStats], overall: &Stats) -> Table {
    use Type::*;
    let columns = vec![
        ("session_id", Int),
        ("method", Text),
        ("route", Text),
        ("requests", Int),
        ("rps", Float),
        ("avg_ms", Float),
        ("min_ms", Float),
        ("p50_ms", Float),
        ("p90_ms", Float),
        ("p95_ms", Float),
        ("p99_ms", Float),
        ("p99_9_ms", Float),
        ("max_ms", Float),
        ("error_rate_5xx", Float),
        ("rate_4xx", Float),
        ("cpu_ms_avg", Float),
        ("db_ms_avg", Float),
        ("queries_avg", Float),
        ("db_time_share", Float),
        ("n_plus_one", Int),
        ("loop_blocks", Int),
    ];
    let row = |method: Cell, route: Cell, s: &Stats| {
        let l = s.latency_ms.as_ref();
        vec![
            session.into(),
            method,
            route,
            s.requests.into(),
            s.rps.into(),
            l.map(|l| l.avg).into(),
            l.map(|l| l.min).into(),
            l.map(|l| l.p50).into(),
            l.map(|l| l.p90).into(),
            l.map(|l| l.p95).into(),
            l.map(|l| l.p99).into(),
            l.map(|l| l.p99_9).into(),
            l.map(|l| l.max).into(),
            s.error_rate_5xx.into(),
            s.rate_4xx.into(),
            s.cpu_ms_avg.into(),
            s.db_ms_avg.into(),
            s.queries_avg.into(),
            s.db_time_share.into(),
            s.n_plus_one.into(),
            s.loop_blocks.into(),
        ]
    };
    let mut rows: Vec<Vec<Cell>> = endpoints
        .iter()
        .map(|e| row(e.method.as_str().into(), e.route.clone().into(), &e.stats))
        .collect();
    rows.push(row(Cell::Null, "(overall)".into(), overall));
    Table { columns, rows }
}
