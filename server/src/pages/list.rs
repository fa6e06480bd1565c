//! The request list (`/`): filters, sort, pages, and the live stream's
//! address for new requests.

use axum::extract::{Query, State};
use axum::response::Html;
use timeglass_store::{RequestRow, SessionRow, Sort};

use crate::error::AppError;
use crate::html::{escape, fill, page};
use crate::list::{split_page, ListParams, SORTS};
use crate::pages::report::scope_fields;
use crate::pages::{request_line, RouteP95};
use crate::{db, AppState};

const REQUESTS: &str = include_str!("../../../flamegraph-templates/requests.html");

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

pub async fn requests(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Html<String>, AppError> {
    let query = params.page()?;
    let limit = params.limit()?;
    db::read(state.db, move |store| {
        params.check_session(store)?;
        let rows = store.request_page(&query)?;
        let (rows, next) = split_page(rows, limit, |r| r.id);
        let p95 = RouteP95::read(store, &rows)?;
        let last_id = store.last_request_id()?;
        let sessions = store.sessions()?;
        Ok(requests_page(
            &params, &sessions, &rows, next, &p95, last_id,
        ))
    })
    .await
}

fn requests_page(
    params: &ListParams,
    sessions: &[SessionRow],
    rows: &[RequestRow],
    next: Option<i64>,
    p95: &RouteP95,
    last_id: i64,
) -> Html<String> {
    let scope = scope_fields(
        sessions,
        params.session().ok().flatten(),
        Some("All sessions"),
        params.since.as_deref(),
        params.until.as_deref(),
    );
    let lines: String = rows.iter().map(|r| request_line(r, p95)).collect();
    // New requests are inserted live only where they belong: at the top of
    // the first page of a newest-first list.
    let live = params.sort().ok() == Some(Sort::Newest)
        && params.before.as_deref().is_none_or(str::is_empty);
    let filter_query = params.query();
    let stream = format!(
        "/api/v1/requests/stream?after={last_id}{}{}",
        if filter_query.is_empty() { "" } else { "&" },
        filter_query
    );
    let body = fill(
        REQUESTS,
        &[
            ("q", &escape(params.text().unwrap_or(""))),
            ("method_options", &method_options(params)),
            ("status_options", &status_options(params)),
            (
                "min_ms",
                &escape(params.min_ms.as_deref().unwrap_or("").trim()),
            ),
            ("scope", &scope),
            ("sort_options", &sort_options(params)),
            ("sort", params.sort_name()),
            ("duration_sort", duration_sort_link(params).as_str()),
            ("time_sort", time_sort_link(params).as_str()),
            ("cpu_sort", cpu_sort_link(params).as_str()),
            ("memory_sort", memory_sort_link(params).as_str()),
            ("alloc_sort", alloc_sort_link(params).as_str()),
            ("rows", &lines),
            ("empty", &empty_list(params, rows)),
            ("pager", &pager(params, next)),
            ("stream", &escape(&stream)),
            ("live", if live { "on" } else { "off" }),
        ],
    );
    page("Requests", "requests", &body)
}

fn empty_list(params: &ListParams, rows: &[RequestRow]) -> String {
    if !rows.is_empty() {
        return String::new();
    }
    if params.filtered() || params.before.as_deref().is_some_and(|b| !b.is_empty()) {
        return "<p class=\"empty muted\">No requests match. New ones that do will appear here.</p>"
            .to_string();
    }
    "<div class=\"empty\"><p><strong>No requests recorded yet.</strong></p>\
     <p>Record some with <code>timeglass run -- uvicorn app:app</code> (add <code>--ui</code> to open this dashboard at the same time), \
     then send your app a request: it appears here within a second.</p></div>"
        .to_string()
}

fn options(values: &[(String, String)], current: &str) -> String {
    values
        .iter()
        .map(|(value, label)| {
            let selected = if value == current { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{selected}>{}</option>",
                escape(value),
                escape(label)
            )
        })
        .collect()
}

fn method_options(params: &ListParams) -> String {
    let current = params.method().ok().flatten().unwrap_or_default();
    let mut values = vec![(String::new(), "any method".to_string())];
    values.extend(METHODS.iter().map(|m| (m.to_string(), m.to_string())));
    options(&values, &current)
}

fn status_options(params: &ListParams) -> String {
    let current = params
        .status_class()
        .ok()
        .flatten()
        .map_or(String::new(), |c| format!("{c}xx"));
    let mut values = vec![(String::new(), "any status".to_string())];
    values.extend((1..=5).map(|c| (format!("{c}xx"), format!("{c}xx"))));
    options(&values, &current)
}

fn sort_options(params: &ListParams) -> String {
    let values: Vec<(String, String)> = SORTS
        .iter()
        .map(|(name, _, label)| (name.to_string(), label.to_string()))
        .collect();
    options(&values, params.sort_name())
}

/// The list with another sort, keeping the filters.
fn with_sort(params: &ListParams, sort: &str) -> String {
    let mut p = params.clone();
    p.sort = Some(sort.to_string());
    p.before = None;
    escape(&format!("/?{}", p.query()))
}

fn duration_sort_link(params: &ListParams) -> String {
    let next = match params.sort_name() {
        "-duration" => "duration",
        _ => "-duration",
    };
    with_sort(params, next)
}

fn cpu_sort_link(params: &ListParams) -> String {
    let next = match params.sort_name() {
        "-cpu" => "cpu",
        _ => "-cpu",
    };
    with_sort(params, next)
}

fn memory_sort_link(params: &ListParams) -> String {
    let next = match params.sort_name() {
        "-memory" => "memory",
        _ => "-memory",
    };
    with_sort(params, next)
}

fn alloc_sort_link(params: &ListParams) -> String {
    let next = match params.sort_name() {
        "-allocated" => "allocated",
        _ => "-allocated",
    };
    with_sort(params, next)
}

fn time_sort_link(params: &ListParams) -> String {
    let next = match params.sort_name() {
        "-time" => "time",
        _ => "-time",
    };
    with_sort(params, next)
}

fn pager(params: &ListParams, next: Option<i64>) -> String {
    let filter = params.query();
    let mut links = Vec::new();
    if params
        .before
        .as_deref()
        .is_some_and(|b| !b.trim().is_empty())
    {
        links.push(format!(
            "<a href=\"/?{}\">« First page</a>",
            escape(&filter)
        ));
    }
    if let Some(before) = next {
        let sep = if filter.is_empty() { "" } else { "&" };
        let href = format!("/?{filter}{sep}before={before}");
        links.push(format!("<a href=\"{}\">Next page »</a>", escape(&href)));
    }
    links.join("")
}
