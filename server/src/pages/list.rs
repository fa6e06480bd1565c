//! The request list (`/`): filters, sort, pages, and the live stream's
//! address for new requests.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use timeglass_store::{RequestRow, SessionRow, Sort};

use crate::error::AppError;
use crate::html::{page, render, Options};
use crate::list::{split_page, ListParams, SORTS};
use crate::pages::report::scope_fields;
use crate::pages::{request_line, RouteP95};
use crate::{db, AppState};

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsTemplate<'a> {
    q: &'a str,
    method_options: &'a str,
    status_options: &'a str,
    min_ms: &'a str,
    scope: &'a str,
    sort_options: &'a str,
    sort: &'a str,
    duration_sort: &'a str,
    time_sort: &'a str,
    cpu_sort: &'a str,
    memory_sort: &'a str,
    alloc_sort: &'a str,
    rows: &'a str,
    /// No row, though the filters or the page could show some.
    no_match: bool,
    /// No row, and no filter to blame.
    nothing_recorded: bool,
    first_page: Option<String>,
    next_page: Option<String>,
    exports: &'a str,
    stream: &'a str,
    live: &'a str,
    token: &'a str,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

pub(crate) async fn requests(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Html<String>, AppError> {
    let query = params.page()?;
    let limit = params.limit()?;
    db::read(state.db, move |store| {
        params.check_session(store)?;
        let rows = store.request_page(&query)?;
        let (rows, next) = split_page(rows, limit, |r| r.id);
        let p95 = RouteP95::read(store, &state.p95, &rows)?;
        let last_id = store.last_request_id()?;
        let sessions = store.sessions()?;
        let view = ListView {
            sessions: &sessions,
            rows: &rows,
            next,
            p95: &p95,
            last_id,
        };
        Ok(requests_page(&params, &view, &state.token))
    })
    .await
}

struct ListView<'a> {
    sessions: &'a [SessionRow],
    rows: &'a [RequestRow],
    next: Option<i64>,
    p95: &'a RouteP95,
    last_id: i64,
}

fn requests_page(params: &ListParams, view: &ListView<'_>, token: &str) -> Html<String> {
    let ListView {
        sessions,
        rows,
        next,
        p95,
        last_id,
    } = *view;
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
    let body = render(&RequestsTemplate {
        q: params.text().unwrap_or(""),
        method_options: &method_options(params),
        status_options: &status_options(params),
        min_ms: params.min_ms.as_deref().unwrap_or("").trim(),
        scope: &scope,
        sort_options: &sort_options(params),
        sort: params.sort_name(),
        duration_sort: duration_sort_link(params).as_str(),
        time_sort: time_sort_link(params).as_str(),
        cpu_sort: cpu_sort_link(params).as_str(),
        memory_sort: memory_sort_link(params).as_str(),
        alloc_sort: alloc_sort_link(params).as_str(),
        rows: &lines,
        no_match: rows.is_empty() && paged_or_filtered(params),
        nothing_recorded: rows.is_empty() && !paged_or_filtered(params),
        first_page: paged(params).then(|| format!("/?{}", params.query())),
        next_page: next.map(|before| next_page(params, before)),
        exports: &session_exports(params),
        stream: &stream,
        live: if live { "on" } else { "off" },
        token,
    });
    page("Requests", "requests", &body)
}

/// The session's profile downloads, when the list shows one session.
fn session_exports(params: &ListParams) -> String {
    match params.session().ok().flatten() {
        Some(id) => crate::export::links(&format!("/api/v1/sessions/{id}")),
        None => String::new(),
    }
}

/// Whether the list shows a later page than the first.
fn paged(params: &ListParams) -> bool {
    params
        .before
        .as_deref()
        .is_some_and(|b| !b.trim().is_empty())
}

/// Whether an empty list is empty because of its filters or its page.
fn paged_or_filtered(params: &ListParams) -> bool {
    params.filtered() || params.before.as_deref().is_some_and(|b| !b.is_empty())
}

fn options(values: &[(String, String)], current: &str) -> String {
    render(&Options {
        options: values,
        current,
    })
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
    format!("/?{}", p.query())
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

/// The next page: the requests before `before`, filtered alike.
fn next_page(params: &ListParams, before: i64) -> String {
    let filter = params.query();
    let sep = if filter.is_empty() { "" } else { "&" };
    format!("/?{filter}{sep}before={before}")
}
