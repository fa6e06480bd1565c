//! One request (`/requests/{id}`): summary, timeline of its stages, flame
//! graph with its functions, and the context it carried.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use serde::Serialize;
use timeglass_model::RequestContext;
use timeglass_store::{local_time, CallRow, QueryRow, RequestRow, Store};

use crate::error::AppError;
use crate::html::{bytes, json_script, ms, page, render, route_href};
use crate::pages::compare_requests::neighbour;
use crate::pages::io::{calls_panel, queries_panel};
use crate::pages::status_text;
use crate::pages::time::{loop_warning, request_breakdown};
use crate::{db, AppState};
use timeglass_render::{stages, Profile, Stage};

#[derive(Template)]
#[template(path = "request.html")]
struct RequestTemplate<'a> {
    r: &'a RequestRow,
    status: &'a str,
    status_class: &'a str,
    route_href: &'a str,
    /// "Compare with…"'s default: another request's id (the previous
    /// request of the same route), or nothing.
    compare_with: &'a str,
    loop_block: &'a str,
    summary: &'a str,
    timeline: &'a str,
    flame: &'a str,
    db: &'a str,
    queries: &'a str,
    http: &'a str,
    calls: &'a str,
    context: &'a str,
}

#[derive(Template)]
#[template(path = "flame.html")]
struct FlameTemplate<'a> {
    profile_url: &'a str,
    svg_url: &'a str,
    exports: &'a str,
    profile_json: &'a str,
}

/// Everything the page shows, also served as JSON (`/api/v1/requests/{id}`).
#[derive(Serialize)]
pub(crate) struct RequestDetail {
    #[serde(flatten)]
    pub request: RequestRow,
    pub route_p95_ms: Option<f64>,
    pub stages: Vec<Stage>,
    pub context: Option<RequestContext>,
    /// Its SQL statements and outgoing HTTP calls, in the order they started
    /// (`statements` and `http_calls`: `queries` and `calls` are their counts).
    #[serde(rename = "statements")]
    pub query_rows: Vec<QueryRow>,
    #[serde(rename = "http_calls")]
    pub call_rows: Vec<CallRow>,
}

impl RequestDetail {
    pub(crate) fn read(store: &Store, id: i64) -> Result<RequestDetail, AppError> {
        let request = store.request(id)?.ok_or(AppError::NoRequest(id))?;
        let route_p95_ms = match &request.route {
            Some(route) => store
                .route_p95_us(&request.method, route, super::MIN_REQUESTS_FOR_P95)?
                .map(|us| us as f64 / 1000.0),
            None => None,
        };
        let context = store.request_context(id)?;
        let stages = stages(&request, context.as_ref());
        Ok(RequestDetail {
            query_rows: store.request_queries(id)?,
            call_rows: store.request_calls(id)?,
            request,
            route_p95_ms,
            stages,
            context,
        })
    }
}

pub(crate) async fn request(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Html<String>, AppError> {
    db::read(state.db, move |store| {
        let detail = RequestDetail::read(store, id)?;
        let stacks = store.request_stacks(id)?;
        let other = neighbour(store, &detail.request)?;
        Ok(request_page(&detail, &Profile::new(&stacks), other))
    })
    .await
}

/// `/requests/by-marker/{pid}/{marker_id}`: the dashboard address the app
/// knows a request by (`request.scope["timeglass"].url`), redirected to the
/// request's page once the recorder has stored it.
pub(crate) async fn by_marker(
    State(state): State<AppState>,
    Path((pid, marker_id)): Path<(u32, u64)>,
) -> Result<Redirect, AppError> {
    db::read(state.db, move |store| {
        match store.request_by_marker(pid, marker_id)? {
            Some(id) => Ok(Redirect::to(&format!("/requests/{id}"))),
            None => Err(AppError::NoMarkedRequest(pid, marker_id)),
        }
    })
    .await
}

fn request_page(d: &RequestDetail, profile: &Profile, other: Option<i64>) -> Html<String> {
    let r = &d.request;
    let title = format!("{} {}", r.method, r.path);
    let status_class = r.status.map_or("status-none".to_string(), |s| {
        format!("status-{}xx", s / 100)
    });
    let route_href = r
        .route
        .as_deref()
        .map_or(String::new(), |route| route_href(&r.method, route));
    let body = render(&RequestTemplate {
        r,
        status: &status_text(r),
        status_class: &status_class,
        route_href: &route_href,
        compare_with: &other.map_or(String::new(), |o| o.to_string()),
        loop_block: &r.loop_block.as_ref().map_or(String::new(), loop_warning),
        summary: &summary(d),
        timeline: &timeline(d),
        flame: &flame_section(profile, &format!("/api/v1/requests/{}", r.id)),
        db: &ms(r.db_ms),
        queries: &queries_panel(r, &d.query_rows),
        http: &ms(r.http_ms),
        calls: &calls_panel(&d.call_rows),
        context: &context_panel(d.context.as_ref()),
    });
    page(&title, "requests", &body)
}

/// The flame graph with its controls and function table; `api` is where its
/// profile (`{api}/profile`) and SVG (`{api}/flamegraph.svg`) are.
pub(crate) fn flame_section(profile: &Profile, api: &str) -> String {
    render(&FlameTemplate {
        profile_url: &format!("{api}/profile"),
        svg_url: &format!("{api}/flamegraph.svg"),
        exports: &crate::export::links(api),
        profile_json: &json_script(profile),
    })
}

/// A count of queries or calls, the time they took and its share of the
/// response time (in %, `None` for a request that took no time).
struct Io {
    count: u64,
    total: String,
    share: Option<String>,
    what: &'static str,
}

fn io(n: u64, total_ms: f64, duration_ms: f64, what: &'static str) -> Option<Io> {
    (n > 0).then(|| Io {
        count: n,
        total: ms(total_ms),
        share: (duration_ms > 0.0)
            .then(|| format!("{:.0}", (total_ms / duration_ms * 100.0).min(100.0))),
        what,
    })
}

/// The summary tiles.
#[derive(Template)]
#[template(path = "parts/request_tiles.html")]
struct Tiles<'a> {
    r: &'a RequestRow,
    duration: String,
    /// The route's p95, or nothing when it has too few requests for one.
    p95: String,
    /// How many times the route's p95 the request took, when it took longer.
    times_p95: Option<String>,
    background: Option<String>,
    status: String,
    status_note: &'static str,
    date: String,
    time: String,
    cpu: Option<String>,
    cpu_note: String,
    peak_rss: Option<String>,
    /// `start → end (change)` of the process's RSS.
    rss_change: String,
    allocated: Option<String>,
    /// The GC's pause and how many collections it made.
    gc: Option<(String, String)>,
    queries: Option<Io>,
    calls: Option<Io>,
    pid: String,
    thread: String,
    body: Option<String>,
    breakdown: String,
}

fn summary(d: &RequestDetail) -> String {
    let r = &d.request;
    let p95 = d.route_p95_ms;
    let started = local_time(&r.start);
    let (date, time) = started.split_once(' ').unwrap_or(("", &started));
    let m = &r.memory;
    let wall = r.duration_ms + r.background_ms.unwrap_or(0.0);
    render(&Tiles {
        r,
        duration: ms(r.duration_ms),
        p95: p95.map_or(String::new(), ms),
        times_p95: p95
            .filter(|p95| *p95 > 0.0 && r.duration_ms > *p95)
            .map(|p95| format!("{:.1}", r.duration_ms / p95)),
        background: r.background_ms.filter(|bg| *bg > 0.0).map(ms),
        status: status_text(r),
        status_note: match (r.errored, r.cancelled) {
            _ if r.incomplete => "its process died mid-request; samples so far",
            (true, _) => "the app raised an exception",
            (_, true) => "cancelled (client went away)",
            _ => "",
        },
        date: date.to_string(),
        time: time.to_string(),
        cpu: r.measured_cpu_ms().map(ms),
        cpu_note: match (r.measured_cpu_ms(), wall > 0.0) {
            (Some(cpu), true) => {
                format!("{:.0}% of its wall time", (cpu / wall * 100.0).min(100.0))
            }
            _ => String::new(),
        },
        peak_rss: m.rss_peak_bytes.map(bytes),
        rss_change: super::memory::rss_change(m),
        allocated: m.alloc_bytes.map(bytes),
        gc: super::memory::gc_summary(m),
        queries: io(r.queries, r.db_ms, r.duration_ms, "waiting on the database"),
        calls: io(
            r.calls,
            r.http_ms,
            r.duration_ms,
            "waiting on outgoing calls",
        ),
        pid: format!("pid {}", r.pid),
        thread: format!("thread {}", r.tid),
        body: d
            .context
            .as_ref()
            .filter(|c| c.body_bytes > 0)
            .map(|c| bytes(c.body_bytes)),
        breakdown: request_breakdown(r),
    })
}

/// A bar of the timeline: where (in % of the track), its class, its tooltip.
struct Bar {
    class: String,
    x: String,
    width: String,
    title: String,
}

/// A query or call: where it starts and ends (ms), its class, its tooltip.
struct Wait {
    start_ms: f64,
    end_ms: f64,
    class: &'static str,
    title: String,
}

/// A stage of the request, its bar and how long it took.
struct StageRow {
    name: &'static str,
    bar: Bar,
    duration: String,
}

/// A lane of queries or calls, and their summed time.
struct Lane {
    name: &'static str,
    bars: Vec<Bar>,
    sum: String,
}

#[derive(Template)]
#[template(path = "parts/timeline.html")]
struct TimelineTemplate {
    stages: Vec<StageRow>,
    lanes: Vec<Lane>,
    ticks: Vec<String>,
}

/// Statements and calls are cut to this many characters in a bar's tooltip.
const BAR_TITLE_CHARS: usize = 300;

fn cut(text: &str) -> String {
    match text.char_indices().nth(BAR_TITLE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The stages as bars on one axis, to scale, then a lane of the request's
/// queries and one of its calls, each bar at its real offset.
fn timeline(d: &RequestDetail) -> String {
    let stages = &d.stages;
    let queries: Vec<Wait> = d
        .query_rows
        .iter()
        .map(|q| Wait {
            start_ms: q.start_ms.max(0.0),
            end_ms: q.start_ms.max(0.0) + q.duration_ms,
            class: if q.error.is_some() {
                "tl-query tl-failed"
            } else {
                "tl-query"
            },
            title: format!(
                "{} at {} ({}{}): {}",
                ms(q.duration_ms),
                ms(q.start_ms),
                q.driver,
                q.rows.map_or(String::new(), |n| format!(", {n} rows")),
                cut(&q.sql)
            ),
        })
        .collect();
    let calls: Vec<Wait> = d
        .call_rows
        .iter()
        .map(|c| Wait {
            start_ms: c.start_ms.max(0.0),
            end_ms: c.start_ms.max(0.0) + c.duration_ms,
            class: if c.error.is_some() {
                "tl-call tl-failed"
            } else {
                "tl-call"
            },
            title: format!(
                "{} at {}: {} {} → {}",
                ms(c.duration_ms),
                ms(c.start_ms),
                c.method,
                cut(&c.url),
                c.status
                    .map_or("no response".to_string(), |s| s.to_string())
            ),
        })
        .collect();
    let total = stages
        .iter()
        .map(|s| s.end_ms)
        .chain(queries.iter().chain(&calls).map(|b| b.end_ms))
        .fold(0.0_f64, f64::max)
        .max(1e-6);
    let bar = |class: String, start_ms: f64, end_ms: f64, min_pct: f64, title: String| Bar {
        class,
        x: format!("{:.3}", start_ms / total * 100.0),
        width: format!("{:.3}", ((end_ms - start_ms) / total * 100.0).max(min_pct)),
        title,
    };
    let lane = |name: &'static str, waits: &[Wait], sum_ms: f64| Lane {
        name,
        bars: waits
            .iter()
            .map(|w| {
                let class = format!("tl-bar {}", w.class);
                bar(class, w.start_ms, w.end_ms, 0.15, w.title.clone())
            })
            .collect(),
        sum: ms(sum_ms),
    };
    let lanes = [
        lane("database", &queries, d.request.db_ms),
        lane("outgoing calls", &calls, d.request.http_ms),
    ];
    let stages = stages
        .iter()
        .map(|s| {
            let class = format!("tl-bar tl-{}", s.name.replace(' ', "-"));
            let title = format!("{}: {} → {}", s.name, ms(s.start_ms), ms(s.end_ms));
            StageRow {
                name: s.name,
                bar: bar(class, s.start_ms, s.end_ms, 0.3, title),
                duration: ms(s.end_ms - s.start_ms),
            }
        })
        .collect();
    render(&TimelineTemplate {
        stages,
        lanes: lanes.into_iter().filter(|l| !l.bars.is_empty()).collect(),
        ticks: (0..=4).map(|i| ms(total * f64::from(i) / 4.0)).collect(),
    })
}

#[derive(Template)]
#[template(path = "parts/context.html")]
struct ContextTemplate<'a> {
    context: Option<&'a RequestContext>,
    query: Vec<(String, String)>,
    /// `(shown, total)` of a body cut short.
    cut: Option<(String, String)>,
    /// The body as shown: a whole JSON body indented.
    body: String,
}

fn context_panel(context: Option<&RequestContext>) -> String {
    let cut = context
        .filter(|c| (c.body.len() as u64) < c.body_bytes)
        .map(|c| (bytes(c.body.len() as u64), bytes(c.body_bytes)));
    let body = match (context, &cut) {
        (Some(c), None) => pretty(&c.body),
        (Some(c), Some(_)) => c.body.clone(),
        (None, _) => String::new(),
    };
    render(&ContextTemplate {
        context,
        query: context.map_or(Vec::new(), |c| query_pairs(&c.query)),
        cut,
        body,
    })
}

/// A whole JSON body, indented; anything else as it is.
fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: u64, response_end: Option<u64>, end: u64) -> RequestRow {
        RequestRow {
            id: 1,
            session_id: timeglass_store::SessionId(1),
            process_id: timeglass_store::ProcessId(1),
            pid: 1,
            tid: 1,
            marker_id: 1,
            method: "GET".into(),
            path: "/".into(),
            route: None,
            status: Some(200),
            errored: false,
            cancelled: false,
            start: String::new(),
            start_ns: start,
            end_ns: end,
            response_end_ns: response_end,
            duration_ms: 0.0,
            background_ms: None,
            samples: 0,
            switched_samples: 0,
            torn_samples: 0,
            queries: 0,
            db_ms: 0.0,
            calls: 0,
            http_ms: 0.0,
            n_plus_one: false,
            repeated: None,
            cpu_ms: None,
            breakdown: None,
            loop_block: None,
            incomplete: false,
            memory: Default::default(),
        }
    }

    #[test]
    fn stages_split_at_response_start_last_chunk_and_end() {
        let context = RequestContext {
            response_start_ns: Some(4_000_000),
            ..RequestContext::default()
        };
        let s = stages(&row(1_000_000, Some(5_000_000), 9_000_000), Some(&context));
        let spans: Vec<_> = s.iter().map(|s| (s.name, s.start_ms, s.end_ms)).collect();
        assert_eq!(
            spans,
            [
                ("handler", 0.0, 3.0),
                ("sending response", 3.0, 4.0),
                ("background", 4.0, 8.0)
            ]
        );
        let s = stages(&row(0, Some(2_000_000), 2_000_000), None);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].name, s[0].end_ms), ("handler and response", 2.0));
    }

    #[test]
    fn a_fastapi_request_starts_with_its_middleware_and_dependencies() {
        let context = RequestContext {
            handler_start_ns: Some(1_500_000),
            response_start_ns: Some(4_000_000),
            ..RequestContext::default()
        };
        let s = stages(&row(1_000_000, Some(5_000_000), 5_000_000), Some(&context));
        let spans: Vec<_> = s.iter().map(|s| (s.name, s.start_ms, s.end_ms)).collect();
        assert_eq!(
            spans,
            [
                ("middleware & dependencies", 0.0, 0.5),
                ("handler", 0.5, 3.0),
                ("sending response", 3.0, 4.0),
            ]
        );
    }
}
