//! One request (`/requests/{id}`): summary, timeline of its stages, flame
//! graph with its functions, and the context it carried.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use serde::Serialize;
use timeglass_model::RequestContext;
use timeglass_store::{local_time, CallRow, QueryRow, RequestRow, Store};

use crate::error::AppError;
use crate::html::{bytes, escape, json_script, ms, page, render, route_href};
use crate::pages::compare_requests::neighbour;
use crate::pages::io::{calls_panel, queries_panel};
use crate::pages::status_text;
use crate::pages::time::{loop_warning, request_breakdown};
use crate::{db, AppState};
use timeglass_render::{stages, Profile, Stage};

#[derive(Template)]
#[template(path = "request.html")]
struct RequestTemplate<'a> {
    method: &'a str,
    method_class: &'a str,
    path: &'a str,
    status: &'a str,
    status_class: &'a str,
    route: &'a str,
    compare_with: &'a str,
    loop_block: &'a str,
    summary: &'a str,
    timeline: &'a str,
    flame: &'a str,
    queries_title: &'a str,
    queries: &'a str,
    calls_title: &'a str,
    calls: &'a str,
    context: &'a str,
    id: &'a str,
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

/// "Compare with…": another request's id, by default `other` (the previous
/// request of the same route).
fn compare_with(id: i64, other: Option<i64>) -> String {
    let value = other.map_or(String::new(), |o| o.to_string());
    format!(
        "<form class=\"compare-with\" method=\"get\" action=\"/compare/requests\">\
         <input type=\"hidden\" name=\"b\" value=\"{id}\">\
         <input name=\"a\" value=\"{value}\" placeholder=\"request id\" aria-label=\"Request to compare with\">\
         <button type=\"submit\">Compare with…</button></form>"
    )
}

fn request_page(d: &RequestDetail, profile: &Profile, other: Option<i64>) -> Html<String> {
    let r = &d.request;
    let title = format!("{} {}", r.method, r.path);
    let route = match &r.route {
        Some(route) => format!(
            "<a class=\"route\" href=\"{}\" title=\"all requests of this endpoint\">{} {}</a>",
            route_href(&r.method, route),
            escape(&r.method),
            escape(route)
        ),
        None => "<span class=\"muted\">no matching route</span>".to_string(),
    };
    let status_class = r.status.map_or("status-none".to_string(), |s| {
        format!("status-{}xx", s / 100)
    });
    let id = r.id.to_string();
    let body = render(&RequestTemplate {
        method: &r.method,
        method_class: &r.method.to_ascii_lowercase(),
        path: &r.path,
        status: &status_text(r),
        status_class: &status_class,
        route: &route,
        compare_with: &compare_with(r.id, other),
        loop_block: &r.loop_block.as_ref().map_or(String::new(), loop_warning),
        summary: &summary(d),
        timeline: &timeline(d),
        flame: &flame_section(profile, &format!("/api/v1/requests/{id}")),
        queries_title: &queries_title(r),
        queries: &queries_panel(r, &d.query_rows),
        calls_title: &calls_title(r),
        calls: &calls_panel(&d.call_rows),
        context: &context_panel(d.context.as_ref()),
        id: &id,
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

fn tile(label: &str, value: &str, note: &str) -> String {
    format!("<div class=\"tile\"><div class=\"label\">{label}</div><div class=\"value\">{value}</div><div class=\"note\">{note}</div></div>")
}

fn summary(d: &RequestDetail) -> String {
    let r = &d.request;
    let mut tiles = vec![];
    let vs_p95 = match d.route_p95_ms {
        Some(p95) if p95 > 0.0 && r.duration_ms > p95 => format!(
            "<span class=\"warn\">{:.1}× the route's p95 ({})</span>",
            r.duration_ms / p95,
            ms(p95)
        ),
        Some(p95) => format!("route p95 {}", ms(p95)),
        None => String::new(),
    };
    tiles.push(tile("Duration", &ms(r.duration_ms), &vs_p95));
    if let Some(bg) = r.background_ms.filter(|bg| *bg > 0.0) {
        tiles.push(tile("Background", &ms(bg), "after the response was sent"));
    }
    tiles.push(tile(
        "Status",
        &status_text(r),
        match (r.errored, r.cancelled) {
            _ if r.incomplete => "its process died mid-request; samples so far",
            (true, _) => "the app raised an exception",
            (_, true) => "cancelled (client went away)",
            _ => "",
        },
    ));
    let started = local_time(&r.start);
    let (date, time) = started.split_once(' ').unwrap_or(("", &started));
    tiles.push(tile("Started", &escape(time), &escape(date)));
    if let Some(cpu) = r.measured_cpu_ms() {
        let wall = r.duration_ms + r.background_ms.unwrap_or(0.0);
        let note = match wall > 0.0 {
            true => format!("{:.0}% of its wall time", (cpu / wall * 100.0).min(100.0)),
            false => String::new(),
        };
        tiles.push(tile("CPU", &ms(cpu), &note));
    }
    if let Some((value, note)) = super::memory::summary(&r.memory) {
        tiles.push(tile("Peak memory", &value, &note));
    }
    if let Some((value, note)) = super::memory::alloc_summary(&r.memory) {
        tiles.push(tile("Allocated", &value, &note));
    }
    if let Some((value, note)) = super::memory::gc_summary(&r.memory) {
        tiles.push(tile("GC pause", &value, &note));
    }
    tiles.push(tile(
        "Samples",
        &r.samples.to_string(),
        &format!(
            "<span title=\"samples taken while the thread switched requests, or with a damaged stack: counted, never charged\">{} switched · {} torn</span>",
            r.switched_samples, r.torn_samples
        ),
    ));
    tiles.push(io_tile(
        "Queries",
        r.queries,
        r.db_ms,
        r.duration_ms,
        "waiting on the database",
    ));
    tiles.push(io_tile(
        "HTTP calls",
        r.calls,
        r.http_ms,
        r.duration_ms,
        "waiting on outgoing calls",
    ));
    tiles.push(tile(
        "Process",
        &format!("pid {}", r.pid),
        &format!("thread {}", r.tid),
    ));
    if let Some(c) = d.context.as_ref().filter(|c| c.body_bytes > 0) {
        tiles.push(tile("Request body", &bytes(c.body_bytes), ""));
    }
    tiles.push(format!(
        "<div class=\"tile tb-tile\" id=\"time\"><div class=\"label\">Where the response time went</div>{}</div>",
        request_breakdown(r)
    ));
    tiles.concat()
}

/// A count and the time it took, with its share of the response time.
fn io_tile(label: &str, n: u64, total_ms: f64, duration_ms: f64, what: &str) -> String {
    if n == 0 {
        return tile(label, "0", "");
    }
    let note = match duration_ms > 0.0 {
        true => format!(
            "<span title=\"{what}\">{:.0}% of the response time</span>",
            (total_ms / duration_ms * 100.0).min(100.0)
        ),
        false => String::new(),
    };
    tile(
        label,
        &format!("{n} <span class=\"sub\">in {}</span>", ms(total_ms)),
        &note,
    )
}

fn queries_title(r: &RequestRow) -> String {
    let flag = match r.n_plus_one {
        true => " <span class=\"badge nplus1-badge\">N+1</span>",
        false => "",
    };
    format!(
        "Queries <span class=\"muted\">{} · {}</span>{flag}",
        r.queries,
        ms(r.db_ms)
    )
}

fn calls_title(r: &RequestRow) -> String {
    format!(
        "Outgoing calls <span class=\"muted\">{} · {}</span>",
        r.calls,
        ms(r.http_ms)
    )
}

/// A bar of the timeline: where, what it is called, its tooltip.
struct Bar {
    start_ms: f64,
    end_ms: f64,
    class: &'static str,
    title: String,
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
    let queries: Vec<Bar> = d
        .query_rows
        .iter()
        .map(|q| Bar {
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
    let calls: Vec<Bar> = d
        .call_rows
        .iter()
        .map(|c| Bar {
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
    let pct = |t: f64| t / total * 100.0;
    let lane = |name: &str, bars: &[Bar], sum_ms: f64| -> String {
        if bars.is_empty() {
            return String::new();
        }
        let bars: String = bars
            .iter()
            .map(|b| {
                bar(
                    &format!("tl-bar {}", b.class),
                    pct(b.start_ms),
                    pct(b.end_ms - b.start_ms).max(0.15),
                    &escape(&b.title),
                )
            })
            .collect();
        format!(
            "<div class=\"tl-row tl-lane\"><div class=\"tl-label\">{name}</div><div class=\"tl-track\">{}</div>\
             <div class=\"tl-dur\" title=\"summed; overlapping waits count twice\">{}</div></div>",
            track(&bars),
            ms(sum_ms)
        )
    };
    let database = lane("database", &queries, d.request.db_ms);
    let outgoing = lane("outgoing calls", &calls, d.request.http_ms);
    let rows: String = stages
        .iter()
        .map(|s| {
            let class = s.name.replace(' ', "-");
            let title = format!("{}: {} → {}", s.name, ms(s.start_ms), ms(s.end_ms));
            let bar = bar(
                &format!("tl-bar tl-{class}"),
                pct(s.start_ms),
                pct(s.end_ms - s.start_ms).max(0.3),
                &title,
            );
            format!(
                "<div class=\"tl-row\"><div class=\"tl-label\">{name}</div><div class=\"tl-track\">{track}</div>\
                 <div class=\"tl-dur\">{dur}</div></div>",
                name = s.name,
                track = track(&bar),
                dur = ms(s.end_ms - s.start_ms),
            )
        })
        .collect();
    // Ticks at 0, 25, 50, 75 and 100% of the track, placed by `style.css`.
    let ticks: String = (0..=4)
        .map(|i| format!("<span>{}</span>", ms(total * f64::from(i) / 4.0)))
        .collect();
    format!("{rows}{database}{outgoing}<div class=\"tl-row tl-axis-row\"><div class=\"tl-label\"></div><div class=\"tl-axis\">{ticks}</div><div class=\"tl-dur\"></div></div>")
}

fn context_panel(context: Option<&RequestContext>) -> String {
    let Some(c) = context else {
        return "<p class=\"muted\">No context was captured for this request (recorded with \
                <code>TIMEGLASS_CONTEXT=0</code>, or by an older marker).</p>"
            .to_string();
    };
    let query = match c.query.is_empty() {
        true => "<p class=\"muted\">none</p>".to_string(),
        false => headers_table(&query_pairs(&c.query)),
    };
    let body = match c.body_bytes {
        0 => "<p class=\"muted\">none</p>".to_string(),
        n if (c.body.len() as u64) < n => format!(
            "<p class=\"muted\">first {} of {}</p><pre class=\"body\">{}</pre>",
            bytes(c.body.len() as u64),
            bytes(n),
            redacted_spans(&escape(&c.body))
        ),
        _ => format!(
            "<pre class=\"body\">{}</pre>",
            redacted_spans(&escape(&pretty(&c.body)))
        ),
    };
    format!(
        "<div class=\"ctx\"><section><h3>Request headers</h3>{}</section>\
         <section><h3>Query string</h3>{query}</section>\
         <section><h3>Request body</h3>{body}</section>\
         <section><h3>Response headers</h3>{}</section></div>",
        headers_table(&c.request_headers),
        headers_table(&c.response_headers)
    )
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

fn headers_table(headers: &[(String, String)]) -> String {
    if headers.is_empty() {
        return "<p class=\"muted\">none</p>".to_string();
    }
    let rows: String = headers
        .iter()
        .map(|(name, value)| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                redacted_spans(&escape(value))
            )
        })
        .collect();
    format!("<table class=\"kv\">{rows}</table>")
}

/// Marks the marker's `[redacted]` placeholders (in escaped HTML).
fn redacted_spans(html: &str) -> String {
    html.replace(
        "[redacted]",
        "<span class=\"redacted\" title=\"redacted by the marker before it was stored\">[redacted]</span>",
    )
}

/// A timeline track: bars drawn as SVG, placed by attributes (percentages of
/// the track), so the page needs no `style=` attribute and the CSP no
/// `'unsafe-inline'`.
fn track(bars: &str) -> String {
    format!("<svg class=\"tl-svg\" aria-hidden=\"true\">{bars}</svg>")
}

/// One bar of a [`track`]; `title` is HTML-safe already. It is both the
/// tooltip (`<title>`) and, for tests and scripts, a `data-title`.
fn bar(class: &str, left_pct: f64, width_pct: f64, title: &str) -> String {
    format!(
        "<rect class=\"{class}\" x=\"{left_pct:.3}%\" y=\"0\" width=\"{width_pct:.3}%\" height=\"100%\" \
         rx=\"2\" data-title=\"{title}\"><title>{title}</title></rect>"
    )
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
