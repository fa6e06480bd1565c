//! The Report page (`/report`): the scorecard, the endpoints table and the
//! charts of `timeglass report`, over the session and time range its
//! filters choose; and the charts section the endpoint page shares.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use timeglass_report::{Report, Score, Stats, Status};
use timeglass_store::{local_time, SessionRow, Store};

use crate::error::AppError;
use crate::html::{count, ms, page, query_value, render, Options};
use crate::report::{report_of, StatsParams};
use crate::{db, AppState};

#[derive(Template)]
#[template(path = "report.html")]
struct ReportTemplate<'a> {
    session: i64,
    window: &'a str,
    thresholds: Option<String>,
    filters: &'a str,
    scores: Vec<ScoreView<'a>>,
    endpoints: Vec<EndpointView<'a>>,
    overall: Vec<String>,
    throughput: &'a str,
    process: &'a str,
    /// `METHOD route` of the endpoints the traffic never exercised.
    never: Vec<String>,
    charts: &'a str,
}

/// A row of the scorecard.
struct ScoreView<'a> {
    score: &'a Score,
    /// The stylesheet's class of its status.
    class: &'static str,
    value: String,
    /// How the value compares with the thresholds when it misses them.
    cmp: &'static str,
    warn: String,
    fail: String,
}

/// A row of the endpoints table.
struct EndpointView<'a> {
    method: &'a str,
    route: Option<&'a str>,
    href: String,
    cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "charts.html")]
struct ChartsTemplate<'a> {
    series: &'a str,
    live: &'a str,
}

#[derive(Template)]
#[template(path = "filters.html")]
struct FiltersTemplate<'a> {
    action: &'a str,
    scope: &'a str,
}

#[derive(Template)]
#[template(path = "scope.html")]
struct ScopeTemplate<'a> {
    sessions: &'a str,
    since: &'a str,
    until: &'a str,
}

pub(crate) async fn report(
    State(state): State<AppState>,
    Query(params): Query<StatsParams>,
) -> Result<Html<String>, AppError> {
    db::read(state.db, move |store| {
        let report = report_of(store, &params)?;
        let sessions = store.sessions()?;
        Ok(report_page(&report, &sessions, &params))
    })
    .await
}

/// The query string of the filters (`session`, `since`, `until`, and the
/// endpoint's `method` and `route` when given), for the APIs the page calls.
pub(crate) fn filter_query(params: &StatsParams, session: i64) -> String {
    let mut parts = vec![format!("session={session}")];
    let fields = [
        ("since", &params.since),
        ("until", &params.until),
        ("method", &params.method),
        ("route", &params.route),
        ("status", &params.status),
        ("min_ms", &params.min_ms),
    ];
    for (name, value) in fields {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{name}={}", query_value(v)));
        }
    }
    parts.join("&")
}

/// The session picker and time range in a form of their own.
pub(crate) fn filters(
    action: &str,
    sessions: &[SessionRow],
    chosen: i64,
    params: &StatsParams,
) -> String {
    let scope = scope_fields(
        sessions,
        Some(chosen),
        None,
        params.since.as_deref(),
        params.until.as_deref(),
    );
    render(&FiltersTemplate {
        action,
        scope: &scope,
    })
}

/// The session picker and time range fields, for [`filters`] or a page's
/// own form (the request list's). `any`: the label of an empty choice of
/// session, for a page that has one (the list: every session).
pub(crate) fn scope_fields(
    sessions: &[SessionRow],
    chosen: Option<i64>,
    any: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> String {
    let mut options: Vec<(String, String)> = any
        .map(|label| (String::new(), label.to_string()))
        .into_iter()
        .collect();
    options.extend(sessions.iter().map(|s| {
        let state = match (s.interrupted, s.ended_at.is_none()) {
            (true, _) if s.lost_requests > 0 => {
                format!(", interrupted, {} requests lost", count(s.lost_requests))
            }
            (true, _) => ", interrupted".to_string(),
            (false, true) => ", recording".to_string(),
            (false, false) => String::new(),
        };
        let label = format!(
            "#{} · {} · {} requests{state}",
            s.id.0,
            local_time(&s.started_at),
            count(s.requests)
        );
        (s.id.0.to_string(), label)
    }));
    let current = chosen.map_or(String::new(), |id| id.to_string());
    render(&ScopeTemplate {
        sessions: &render(&Options {
            options: &options,
            current: &current,
        }),
        since: since.unwrap_or("").trim(),
        until: until.unwrap_or("").trim(),
    })
}

/// The charts over the API's series of `query`; `live` polls for more.
pub(crate) fn charts(query: &str, live: bool) -> String {
    let series = format!("/api/v1/series?{query}");
    render(&ChartsTemplate {
        series: &series,
        live: if live { "true" } else { "false" },
    })
}

fn status_class(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        Status::NotMeasured => "unmeasured",
    }
}

fn value(s: &Score, v: f64) -> String {
    match s.unit {
        "ms" => ms(v),
        "ratio" => format!("{:.1}%", v * 100.0),
        "percent" => format!("{v:.1}%"),
        "MB" => format!("{v:.1} MB"),
        _ => format!("{v}"),
    }
}

fn score_view(s: &Score) -> ScoreView<'_> {
    ScoreView {
        score: s,
        class: status_class(s.status),
        value: s.value.map_or("—".into(), |v| value(s, v)),
        cmp: if s.better == "higher" { "<" } else { ">" },
        warn: value(s, s.warn),
        fail: value(s, s.threshold),
    }
}

fn stats_cells(s: &Stats) -> Vec<String> {
    let lat = |f: fn(&timeglass_report::stats::Latency) -> f64| {
        s.latency_ms.as_ref().map_or("—".into(), |l| ms(f(l)))
    };
    vec![
        count(s.requests),
        format!("{:.2}", s.rps),
        lat(|l| l.p50),
        lat(|l| l.p90),
        lat(|l| l.p99),
        lat(|l| l.max),
        format!("{:.1}%", s.error_rate_5xx * 100.0),
        format!("{:.1}%", s.rate_4xx * 100.0),
        s.cpu_ms_avg.map_or("—".into(), ms),
        ms(s.db_ms_avg),
        format!("{:.1}", s.queries_avg),
        count(s.n_plus_one),
    ]
}

fn report_page(r: &Report, sessions: &[SessionRow], params: &StatsParams) -> Html<String> {
    let query = filter_query(params, r.session);
    let scope = StatsParams {
        method: None,
        route: None,
        ..params.clone()
    };
    let endpoints = r
        .endpoints
        .iter()
        .map(|e| EndpointView {
            method: &e.method,
            route: e.route.as_deref(),
            href: e.route.as_deref().map_or(String::new(), |route| {
                let href = crate::html::route_href(&e.method, route);
                format!("{href}?{}", filter_query(&scope, r.session))
            }),
            cells: stats_cells(&e.stats),
        })
        .collect();
    let t = &r.throughput;
    let opt = |v: Option<u64>| v.map_or("—".into(), count);
    let throughput = format!(
        "Throughput: {:.2} req/s over the last minute, {:.2} over 5 min, {:.2} over 15 min; busiest second {}, quietest {}; at most {} in flight.",
        t.rps_1m, t.rps_5m, t.rps_15m, opt(t.peak_rps_1s), opt(t.min_rps_1s), count(t.peak_concurrency)
    );
    let p = &r.process;
    let process = match (p.cpu_percent_avg, p.cpu_percent_peak, p.rss_mb_avg, p.rss_mb_peak) {
        (Some(ca), Some(cp), Some(ra), Some(rp)) => format!(
            "Processes: CPU {ca:.1}% on average, {cp:.1}% at peak; memory {ra:.1} MB on average, {rp:.1} MB at peak; up to {} threads and {} open files ({} samples).",
            p.threads_peak.unwrap_or(0), p.fds_peak.unwrap_or(0), count(p.samples)
        ),
        _ => "Processes: no resource samples in this window.".into(),
    };
    let never = match &r.coverage {
        Some(c) => c
            .never_exercised
            .iter()
            .map(|e| format!("{} {}", e.method, e.route.as_deref().unwrap_or("")))
            .collect(),
        None => Vec::new(),
    };
    let live = sessions
        .iter()
        .any(|s| s.id.0 == r.session && s.ended_at.is_none());
    let window = format!(
        "{} to {} ({:.1} s)",
        local_time(&r.window.start),
        local_time(&r.window.end),
        r.window.seconds
    );
    let body = render(&ReportTemplate {
        session: r.session,
        window: &window,
        thresholds: r
            .thresholds_file
            .as_ref()
            .map(|path| path.display().to_string()),
        filters: &filters("/report", sessions, r.session, params),
        scores: r.scores.iter().map(score_view).collect(),
        endpoints,
        overall: stats_cells(&r.overall),
        throughput: &throughput,
        process: &process,
        never,
        charts: &charts(&query, live),
    });
    page("Report", "report", &body)
}

/// The endpoint page's charts and their filters, over `method route`.
pub(crate) fn route_charts(
    store: &Store,
    method: &str,
    route: &str,
    params: &StatsParams,
) -> Result<String, AppError> {
    let sessions = store.sessions()?;
    let chosen = match params.query()?.session {
        Some(id) => id,
        None => match store.latest_session()? {
            Some(s) => s.id.0,
            None => return Ok(String::new()),
        },
    };
    let scoped = StatsParams {
        method: Some(method.to_string()),
        route: Some(route.to_string()),
        ..params.clone()
    };
    let live = sessions
        .iter()
        .any(|s| s.id.0 == chosen && s.ended_at.is_none());
    let form = filters(
        &crate::html::route_href(method, route),
        &sessions,
        chosen,
        params,
    );
    Ok(format!(
        "{form}{}",
        charts(&filter_query(&scoped, chosen), live)
    ))
}
