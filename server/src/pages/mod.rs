//! The HTML pages. Handlers read the store through `db::read`; rendering is
//! plain functions from rows to HTML strings, rendering the askama templates of
//! `server/templates/` (the flame graph sections from `flamegraph-templates/`).

pub(crate) mod compare;
pub(crate) mod compare_requests;
pub(crate) mod io;
pub(crate) mod list;
pub(crate) mod memory;
pub(crate) mod report;
pub(crate) mod request;
pub(crate) mod route;
pub(crate) mod time;

use askama::Template;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::response::Html;
use timeglass_store::{local_time, RequestRow, Store};

use crate::error::AppError;
use crate::html::{escape, ms, page, render, route_href};

#[derive(Template)]
#[template(path = "message.html")]
struct MessageTemplate<'a> {
    heading: &'a str,
    message: &'a str,
}

/// Routes with fewer requests than this get no "slower than p95" mark: their
/// p95 says little.
const MIN_REQUESTS_FOR_P95: u64 = 20;

pub(crate) async fn not_found() -> AppError {
    AppError::NoPage
}

pub(crate) fn error_page(error: &AppError) -> Html<String> {
    let heading = match error {
        AppError::NoStore(_) => "Nothing recorded yet",
        AppError::NoRequest(_) | AppError::NoRoute(..) | AppError::NoPage => "Not found",
        AppError::BadInput(_) => "Bad request",
        _ => "Something went wrong",
    };
    let message = code_spans(&escape(&error.to_string()));
    let body = render(&MessageTemplate {
        heading,
        message: &message,
    });
    page(heading, "", &body)
}

/// `` `cmd` `` in an (escaped) message becomes `<code>cmd</code>`.
fn code_spans(message: &str) -> String {
    let mut out = String::new();
    for (i, part) in message.split('`').enumerate() {
        match i % 2 {
            1 => out.push_str(&format!("<code>{part}</code>")),
            _ => out.push_str(part),
        }
    }
    out
}

/// Each route's p95 response time (ms), for the routes of `rows` that have
/// enough requests for it to mean something.
pub(crate) struct RouteP95(HashMap<(String, String), f64>);

/// The routes' p95s as read last, shared by every page and live stream of
/// one server. Reading one walks the route's requests in the store (100,000
/// index entries for a route that has as many), and each open request list
/// asks for it several times a second: with 50 lists open, that was most of
/// the machine.
#[derive(Default)]
pub(crate) struct P95Cache(Mutex<HashMap<(String, String), (Instant, f64)>>);

/// How long a p95 read is used for: it moves slowly, and only decides which
/// rows are flagged slow.
const P95_FRESH: Duration = Duration::from_secs(2);

impl RouteP95 {
    pub(crate) fn read(
        store: &Store,
        cache: &P95Cache,
        rows: &[RequestRow],
    ) -> Result<RouteP95, AppError> {
        let mut p95 = HashMap::new();
        for r in rows {
            let Some(route) = &r.route else { continue };
            let key = (r.method.clone(), route.clone());
            if p95.contains_key(&key) {
                continue;
            }
            let cached = cache
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&key)
                .filter(|(at, _)| at.elapsed() < P95_FRESH)
                .map(|&(_, v)| v);
            let value = match cached {
                Some(v) => v,
                None => {
                    let v = store
                        .route_p95_us(&r.method, route, MIN_REQUESTS_FOR_P95)?
                        .map_or(f64::INFINITY, |us| us as f64 / 1000.0);
                    cache
                        .0
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(key.clone(), (Instant::now(), v));
                    v
                }
            };
            p95.insert(key, value);
        }
        Ok(RouteP95(p95))
    }

    /// The route's p95 if `r` was slower than it.
    pub(crate) fn exceeded_by(&self, r: &RequestRow) -> Option<f64> {
        let p95 = *self.0.get(&(r.method.clone(), r.route.clone()?))?;
        (r.duration_ms > p95).then_some(p95)
    }
}

/// One row of the request list (also sent by the live stream).
pub(crate) fn request_line(r: &RequestRow, p95: &RouteP95) -> String {
    let href = format!("/requests/{}", r.id);
    let status_class = r.status.map_or("status-none".to_string(), |s| {
        format!("status-{}xx", s / 100)
    });
    let mut classes = vec![];
    if r.status.is_some_and(|s| s >= 500) || (r.status.is_none() && r.errored) {
        classes.push("err");
    }
    let slow = p95.exceeded_by(r);
    if slow.is_some() {
        classes.push("slow");
    }
    let route = match &r.route {
        Some(route) => format!(
            "<a class=\"route\" href=\"{}\">{}</a>",
            route_href(&r.method, route),
            escape(route)
        ),
        None => "<span class=\"muted\">—</span>".to_string(),
    };
    let slow_mark = slow.map_or(String::new(), |p95| {
        format!(
            "<span class=\"badge slow-badge\" title=\"slower than 95% of {} {} (p95 {})\">&gt;p95</span>",
            escape(&r.method),
            escape(r.route.as_deref().unwrap_or("")),
            ms(p95)
        )
    });
    format!(
        "<tr class=\"{classes}\" data-id=\"{id}\" data-href=\"{href}\">\
         <td class=\"time\"><a href=\"{href}\">{time}</a></td>\
         <td><span class=\"method m-{method_class}\">{method}</span></td>\
         <td class=\"path\"><a href=\"{href}\">{path}</a></td>\
         <td class=\"code\">{route}</td>\
         <td class=\"num\"><span class=\"status {status_class}\">{status}</span></td>\
         <td class=\"num dur\">{slow_mark}{bar}<span class=\"dur-text\">{duration}</span>{background}</td>\
         <td class=\"num queries\">{queries}</td>\
         <td class=\"num db\">{db}</td>\
         <td class=\"num cpu\">{cpu}</td>\
         <td class=\"num mem\">{memory}</td>\
         <td class=\"num alloc\">{allocated}</td>\
         <td class=\"num muted\">{samples}</td></tr>\n",
        classes = classes.join(" "),
        id = r.id,
        time = escape(&local_time(&r.start)),
        method_class = escape(&r.method.to_ascii_lowercase()),
        method = escape(&r.method),
        path = escape(&r.path),
        status = status_text(r),
        bar = duration_bar(r.duration_ms),
        duration = ms(r.duration_ms),
        background = background(r),
        queries = queries_cell(r),
        db = db_cell(r),
        cpu = cpu_cell(r),
        memory = memory::list_cell(r),
        allocated = memory::alloc_cell(r),
        samples = r.samples,
    )
}

/// The query count, with an N+1 badge whose tooltip says what repeated and where.
fn queries_cell(r: &RequestRow) -> String {
    let badge = match &r.repeated {
        Some(rep) if r.n_plus_one => format!(
            "<span class=\"badge nplus1-badge\" title=\"likely N+1: {} ran {}× from {}\">N+1</span>",
            escape(&rep.normalized),
            rep.count,
            escape(rep.caller.as_deref().unwrap_or("an unknown line"))
        ),
        _ => String::new(),
    };
    match r.queries {
        0 => format!("{badge}<span class=\"muted\">0</span>"),
        n => format!("{badge}{n}"),
    }
}

/// CPU time, with a badge when the request blocked the event loop (its
/// tooltip says where and for how long).
fn cpu_cell(r: &RequestRow) -> String {
    let badge = r.loop_block.as_ref().map_or(String::new(), |b| {
        format!(
            "<span class=\"badge loop-badge\" title=\"{}\">loop</span>",
            escape(&time::loop_title(b))
        )
    });
    match r.measured_cpu_ms() {
        Some(cpu) => format!("{badge}{}", ms(cpu)),
        None => format!("{badge}<span class=\"muted\" title=\"not measured\">—</span>"),
    }
}

/// Time spent in queries, with its share of the response time.
fn db_cell(r: &RequestRow) -> String {
    if r.queries == 0 {
        return "<span class=\"muted\">—</span>".to_string();
    }
    let share = match r.duration_ms > 0.0 {
        true => (r.db_ms / r.duration_ms * 100.0).min(100.0),
        false => 0.0,
    };
    format!(
        "<span title=\"{share:.0}% of the response time waiting on the database\">{}</span>",
        ms(r.db_ms)
    )
}

/// A bar on a log scale from 0.1 ms to 10 s, so rows compare at a glance.
fn duration_bar(duration_ms: f64) -> String {
    let share = ((duration_ms.max(0.1).log10() + 1.0) / 5.0).clamp(0.02, 1.0);
    format!(
        "<svg class=\"bar\" aria-hidden=\"true\"><rect class=\"bar-fill\" width=\"{:.0}%\" height=\"100%\" rx=\"3\"/></svg>",
        share * 100.0
    )
}

pub(crate) fn status_text(r: &RequestRow) -> String {
    if r.incomplete {
        return "incomplete".to_string();
    }
    match (r.status, r.errored) {
        (Some(s), _) => s.to_string(),
        (None, true) => "error".to_string(),
        (None, false) => "—".to_string(),
    }
}

fn background(r: &RequestRow) -> String {
    match r.background_ms {
        Some(bg) if bg >= 1.0 => format!(
            "<span class=\"bg muted\" title=\"background work after the response was sent\">+{}</span>",
            ms(bg)
        ),
        _ => "<span class=\"bg\"></span>".to_string(),
    }
}
