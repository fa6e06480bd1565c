//! Endpoints: the list of routes (`/routes`) and one route's view
//! (`/routes/{method}/{route}`): latency numbers, histogram, merged flame
//! graph and its slowest requests.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use serde::Serialize;
use timeglass_store::{local_time, Endpoint, RequestRow, RouteMatch, RouteRow, Store};

use crate::error::AppError;
use crate::html::{bytes, count, ms, page, query_value, render, route_href};
use crate::leak::LeakHint;
use crate::pages::report::{filter_query, filters, route_charts};
use crate::pages::request::flame_section;
use crate::pages::time::route_breakdown;
use crate::pages::{request_line, RouteP95};
use crate::report::StatsParams;
use crate::stats::{RouteStats, Spread};
use crate::{db, AppState};
use timeglass_render::Profile;
use timeglass_report::{ReportError, ReportQuery, Selection};

#[derive(Template)]
#[template(path = "route.html")]
struct RouteTemplate<'a> {
    method: &'a str,
    method_class: &'a str,
    route: &'a str,
    list: &'a str,
    api: &'a str,
    tiles: &'a str,
    charts: &'a str,
    histogram: &'a str,
    breakdown: &'a str,
    flame: &'a str,
    slowest: &'a str,
    leak: &'a str,
}

#[derive(Template)]
#[template(path = "routes.html")]
struct RoutesTemplate<'a> {
    filters: &'a str,
    routes: Vec<RouteView<'a>>,
}

/// A row of the endpoints list.
struct RouteView<'a> {
    row: &'a RouteRow,
    href: String,
    count: String,
    /// `count (share%)` of its 5xx responses, when it had any.
    errors: Option<String>,
    avg: String,
    max: String,
    last: String,
}

/// How many of a route's slowest requests its view lists.
const SLOWEST: usize = 10;

/// One route's numbers, as the page shows them and `/api/v1/routes/...`
/// serves them, over the session and time range of its charts.
#[derive(Serialize)]
pub(crate) struct RouteDetail {
    pub method: String,
    pub route: String,
    /// The session the numbers cover (the latest by default).
    pub session: Option<i64>,
    /// `None` when the route has no request in that session and range.
    pub stats: Option<RouteStats>,
    pub slowest: Vec<RequestRow>,
    /// Set when the process's RSS at the end of its requests keeps climbing.
    pub leak: Option<LeakHint>,
}

impl RouteDetail {
    /// `NoRoute` only for a route no session ever recorded.
    pub(crate) fn read(
        store: &Store,
        method: &str,
        route: &str,
        params: &StatsParams,
    ) -> Result<RouteDetail, AppError> {
        if !store.has_route(method, route)? {
            return Err(AppError::NoRoute(method.to_string(), route.to_string()));
        }
        let query = ReportQuery {
            method: Some(method.to_string()),
            route: Some(RouteMatch::Exact(route.to_string())),
            ..params.query()?
        };
        let endpoint = Endpoint {
            method: method.to_string(),
            route: Some(route.to_string()),
        };
        // The same selection as the charts' `/api/v1/series` and the
        // stats API: a route the session never served has no numbers here.
        let sel = match Selection::read(store, &query, timeglass_report::now_unix_ns()) {
            Ok(sel) => sel,
            Err(ReportError::NoRoute { session, .. }) => {
                return Ok(RouteDetail {
                    method: method.to_string(),
                    route: route.to_string(),
                    session: Some(session),
                    stats: None,
                    slowest: Vec::new(),
                    leak: None,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let sample = store.window_sample(&sel.query, &endpoint)?;
        let ends = &sample.rss_ends;
        let leak = match ends.len() >= crate::leak::MIN_REQUESTS {
            true => crate::leak::hint(ends, &store.route_alloc_stacks(method, route)?),
            false => None,
        };
        Ok(RouteDetail {
            leak,
            method: method.to_string(),
            route: route.to_string(),
            session: Some(sel.session.id.0),
            stats: RouteStats::new(&sample),
            slowest: store.window_slowest(&sel.query, &endpoint, SLOWEST)?,
        })
    }
}

/// `(method, route)` from `/routes/{method}/{*route}`: the route's leading
/// slash is the separator before it.
pub(crate) fn route_key((method, route): (String, String)) -> (String, String) {
    (method.to_ascii_uppercase(), format!("/{route}"))
}

/// The endpoints of the session and time range the filters choose (the
/// latest session by default), from the report's per-endpoint sums.
pub(crate) async fn routes(
    State(state): State<AppState>,
    Query(params): Query<StatsParams>,
) -> Result<Html<String>, AppError> {
    db::read(state.db, move |store| {
        let sessions = store.sessions()?;
        if sessions.is_empty() {
            return Ok(routes_page(&[], ""));
        }
        let sel = Selection::read(store, &params.query()?, timeglass_report::now_unix_ns())?;
        let rows: Vec<RouteRow> = sel
            .endpoints
            .iter()
            .filter_map(|e| {
                let t = &e.totals;
                Some(RouteRow {
                    method: e.endpoint.method.clone(),
                    route: e.endpoint.route.clone()?,
                    count: t.requests,
                    errors: t.errors_5xx,
                    avg_ms: t.duration_us as f64 / 1000.0 / t.requests.max(1) as f64,
                    max_ms: t.max_us as f64 / 1000.0,
                    last: sel.rfc3339(t.last_end_ns),
                })
            })
            .collect();
        let form = filters("/routes", &sessions, sel.session.id.0, &params);
        // The endpoint pages open over the same filters, when any is set.
        let scope = StatsParams {
            method: None,
            route: None,
            ..params.clone()
        };
        let scoped = [&scope.session, &scope.since, &scope.until]
            .iter()
            .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()));
        let query = if scoped {
            format!("?{}", filter_query(&scope, sel.session.id.0))
        } else {
            String::new()
        };
        Ok(routes_page_with(&rows, &form, &query))
    })
    .await
}

pub(crate) async fn route(
    State(state): State<AppState>,
    Path(key): Path<(String, String)>,
    Query(params): Query<StatsParams>,
) -> Result<Html<String>, AppError> {
    let (method, route) = route_key(key);
    db::read(state.db, move |store| {
        let detail = RouteDetail::read(store, &method, &route, &params)?;
        let profile = Profile::new(&store.route_stacks(&method, &route)?);
        let p95 = RouteP95::read(store, &state.p95, &detail.slowest)?;
        let charts = route_charts(store, &method, &route, &params)?;
        Ok(route_page(&detail, &params, &profile, &p95, &charts))
    })
    .await
}

/// `session=N&since=...&until=...` of the session the page covers, for the
/// links that open the same requests elsewhere; `None` without a session.
fn scope_query(params: &StatsParams, session: Option<i64>) -> Option<String> {
    let scope = StatsParams {
        method: None,
        route: None,
        ..params.clone()
    };
    session.map(|id| filter_query(&scope, id))
}

fn routes_page(routes: &[RouteRow], form: &str) -> Html<String> {
    routes_page_with(routes, form, "")
}

/// `query`: appended to each endpoint's address (`?session=...` or '').
fn routes_page_with(routes: &[RouteRow], form: &str, query: &str) -> Html<String> {
    let routes = routes
        .iter()
        .map(|r| RouteView {
            row: r,
            href: format!("{}{query}", route_href(&r.method, &r.route)),
            count: count(r.count),
            errors: (r.errors > 0).then(|| {
                let share = r.errors as f64 / r.count as f64 * 100.0;
                format!("{} ({share:.1}%)", count(r.errors))
            }),
            avg: ms(r.avg_ms),
            max: ms(r.max_ms),
            last: local_time(&r.last),
        })
        .collect();
    page(
        "Endpoints",
        "routes",
        &render(&RoutesTemplate {
            filters: form,
            routes,
        }),
    )
}

/// The summary tiles, or what says there is nothing to sum.
#[derive(Default, Template)]
#[template(path = "parts/route_tiles.html")]
struct TilesTemplate<'a> {
    stats: Option<&'a RouteStats>,
    /// The tiles that are a label and a value only.
    figures: Vec<(&'static str, String)>,
    queries: String,
    n_plus_one: String,
    db_share: String,
    cpu: String,
    cpu_note: &'static str,
    rss: String,
    /// `(requests, p95)` of the tile's figure, when recorded.
    rss_spread: Option<(u64, String)>,
    alloc: String,
    alloc_spread: Option<(u64, String)>,
    loop_blocks: String,
}

fn tiles(stats: Option<&RouteStats>) -> String {
    let Some(s) = stats else {
        return render(&TilesTemplate::default());
    };
    let avg = |spread: Option<&Spread>| spread.map_or("—".to_string(), |r| bytes(r.avg as u64));
    let spread = |spread: Option<&Spread>| spread.map(|s| (s.requests, bytes(s.p95)));
    render(&TilesTemplate {
        stats,
        figures: vec![
            ("Requests", count(s.count)),
            ("Error rate", format!("{:.1}%", s.error_rate * 100.0)),
            ("Average", ms(s.avg_ms)),
            ("p50", ms(s.p50_ms)),
            ("p90", ms(s.p90_ms)),
            ("p95", ms(s.p95_ms)),
            ("p99", ms(s.p99_ms)),
            ("Max", ms(s.max_ms)),
        ],
        queries: format!("{:.1}", s.avg_queries),
        n_plus_one: count(s.n_plus_one),
        db_share: format!("{:.0}%", s.db_share * 100.0),
        cpu: s.avg_cpu_ms.map_or("—".to_string(), ms),
        cpu_note: match s.avg_cpu_ms {
            Some(_) => "Python and native code",
            None => "not recorded",
        },
        rss: avg(s.rss_peak.as_ref()),
        rss_spread: spread(s.rss_peak.as_ref()),
        alloc: avg(s.alloc.as_ref()),
        alloc_spread: spread(s.alloc.as_ref()),
        loop_blocks: count(s.loop_blocks),
    })
}

fn route_page(
    d: &RouteDetail,
    params: &StatsParams,
    profile: &Profile,
    p95: &RouteP95,
    charts: &str,
) -> Html<String> {
    let s = d.stats.as_ref();
    let scope = scope_query(params, d.session);
    let slowest: String = d.slowest.iter().map(|r| request_line(r, p95)).collect();
    let api = format!(
        "/api/v1/routes/{}",
        route_href(&d.method, &d.route).trim_start_matches("/routes/")
    );
    let profile_api = api.replacen("/api/v1/routes/", "/api/v1/route-profiles/", 1);
    let title = format!("{} {}", d.method, d.route);
    let list = format!(
        "/?q={}&method={}{}",
        query_value(&d.route),
        query_value(&d.method),
        scope.as_deref().map_or(String::new(), |q| format!("&{q}")),
    );
    let api = match &scope {
        Some(q) => format!("{api}?{q}"),
        None => api,
    };
    let body = render(&RouteTemplate {
        method: &d.method,
        method_class: &d.method.to_ascii_lowercase(),
        route: &d.route,
        list: &list,
        api: &api,
        tiles: &tiles(s),
        charts,
        histogram: &s.map_or(String::new(), histogram),
        breakdown: &route_breakdown(s.and_then(|s| s.avg_breakdown.as_ref())),
        flame: &flame_section(profile, &profile_api),
        slowest: &slowest,
        leak: &super::memory::leak_card(d.leak.as_ref()),
    });
    page(&title, "routes", &body)
}

/// A bucket of the histogram: its range, count, mark and bar (in %).
struct HistogramBar {
    mark: &'static str,
    from: String,
    to: String,
    count: String,
    y: String,
    height: String,
}

#[derive(Template)]
#[template(path = "parts/histogram.html")]
struct HistogramTemplate {
    bars: Vec<HistogramBar>,
    first: String,
    last: String,
    p50: String,
    p95: String,
}

/// Bars as tall as their share of the fullest bucket, labelled at both ends.
fn histogram(s: &RouteStats) -> String {
    let fullest = s
        .histogram
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(1)
        .max(1);
    let bars = s
        .histogram
        .iter()
        .map(|b| {
            let mark = if b.from_ms <= s.p95_ms && s.p95_ms < b.to_ms {
                " p95"
            } else if b.from_ms <= s.p50_ms && s.p50_ms < b.to_ms {
                " p50"
            } else {
                ""
            };
            let height = b.count as f64 / fullest as f64 * 100.0;
            HistogramBar {
                mark,
                from: ms(b.from_ms),
                to: ms(b.to_ms),
                count: count(b.count),
                y: format!("{:.1}", 100.0 - height),
                height: format!("{height:.1}"),
            }
        })
        .collect();
    render(&HistogramTemplate {
        bars,
        first: ms(s.histogram.first().map_or(0.0, |b| b.from_ms)),
        last: ms(s.histogram.last().map_or(0.0, |b| b.to_ms)),
        p50: ms(s.p50_ms),
        p95: ms(s.p95_ms),
    })
}
