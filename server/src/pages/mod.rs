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
use timeglass_model::Repeated;
use timeglass_store::{local_time, RequestRow, Store};

use crate::error::AppError;
use crate::html::{bytes, ms, page, render, route_href};

#[derive(Template)]
#[template(path = "message.html")]
struct MessageTemplate<'a> {
    heading: &'a str,
    /// `` `cmd` `` in it is shown as `<code>cmd</code>`.
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
    let body = render(&MessageTemplate {
        heading,
        message: &error.to_string(),
    });
    page(heading, "", &body)
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
#[derive(Template)]
#[template(path = "parts/request_row.html")]
struct RequestLine<'a> {
    r: &'a RequestRow,
    classes: String,
    time: String,
    route_href: String,
    status_class: String,
    status: String,
    /// The route's p95, when the request was slower.
    slow: Option<String>,
    /// The duration bar's width, in % (see [`duration_bar`]).
    bar: String,
    duration: String,
    background: Option<String>,
    /// The repeated statement of a likely N+1, for its badge's tooltip.
    n_plus_one: Option<&'a Repeated>,
    /// The database's share of the response time, in %, when it ran queries.
    db_share: Option<String>,
    db: String,
    /// The loop badge's tooltip, when the request blocked the event loop.
    loop_title: Option<String>,
    cpu: Option<String>,
    peak_rss: Option<String>,
    rss_title: String,
    allocated: Option<String>,
}

pub(crate) fn request_line(r: &RequestRow, p95: &RouteP95) -> String {
    let mut classes = vec![];
    if r.status.is_some_and(|s| s >= 500) || (r.status.is_none() && r.errored) {
        classes.push("err");
    }
    let slow = p95.exceeded_by(r);
    if slow.is_some() {
        classes.push("slow");
    }
    render(&RequestLine {
        r,
        classes: classes.join(" "),
        time: local_time(&r.start),
        route_href: r
            .route
            .as_deref()
            .map_or(String::new(), |route| route_href(&r.method, route)),
        status_class: r.status.map_or("status-none".to_string(), |s| {
            format!("status-{}xx", s / 100)
        }),
        status: status_text(r),
        slow: slow.map(ms),
        bar: duration_bar(r.duration_ms),
        duration: ms(r.duration_ms),
        background: r.background_ms.filter(|bg| *bg >= 1.0).map(ms),
        n_plus_one: r.repeated.as_ref().filter(|_| r.n_plus_one),
        db_share: db_share(r),
        db: ms(r.db_ms),
        loop_title: r.loop_block.as_ref().map(time::loop_title),
        cpu: r.measured_cpu_ms().map(ms),
        peak_rss: r.memory.rss_peak_bytes.map(bytes),
        rss_title: memory::rss_title(&r.memory),
        allocated: r.memory.alloc_bytes.map(bytes),
    })
}

/// The share of the response time spent in queries, in %; `None` without queries.
fn db_share(r: &RequestRow) -> Option<String> {
    if r.queries == 0 {
        return None;
    }
    let share = match r.duration_ms > 0.0 {
        true => (r.db_ms / r.duration_ms * 100.0).min(100.0),
        false => 0.0,
    };
    Some(format!("{share:.0}"))
}

/// The width of a bar on a log scale from 0.1 ms to 10 s, in %, so rows
/// compare at a glance.
fn duration_bar(duration_ms: f64) -> String {
    let share = ((duration_ms.max(0.1).log10() + 1.0) / 5.0).clamp(0.02, 1.0);
    format!("{:.0}", share * 100.0)
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
