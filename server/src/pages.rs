//! The HTML pages. Handlers read the store through `db::read`; rendering is
//! plain functions from rows to HTML strings.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use timeglass_model::StackCount;
use timeglass_store::RequestRow;

use crate::error::AppError;
use crate::flame::{self, FunctionSamples};
use crate::html::{escape, fill, local_time, page, query_value};
use crate::list::{split_page, ListParams};
use crate::{db, AppState};

const REQUESTS: &str = include_str!("../../flamegraph-templates/requests.html");
const REQUESTS_TABLE: &str = include_str!("../../flamegraph-templates/requests_table.html");
const REQUEST: &str = include_str!("../../flamegraph-templates/request.html");
const MESSAGE: &str = include_str!("../../flamegraph-templates/message.html");
const REQUESTS_JS: &str = include_str!("../../flamegraph-templates/requests.js");

/// How many functions each top table shows.
const TOP_FUNCTIONS: usize = 15;

pub async fn requests(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Html<String>, AppError> {
    let query = params.page()?;
    let limit = params.limit()?;
    let rows = db::read(state.db, move |store| Ok(store.request_page(&query)?)).await?;
    let (rows, next) = split_page(rows, limit, |r| r.id);
    Ok(requests_page(&params, &rows, next))
}

pub async fn request(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Html<String>, AppError> {
    db::read(state.db, move |store| {
        let row = store.request(id)?.ok_or(AppError::NoRequest(id))?;
        let stacks = store.request_stacks(id)?;
        request_page(&row, &stacks)
    })
    .await
}

pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript")], REQUESTS_JS)
}

pub async fn not_found() -> AppError {
    AppError::NoPage
}

pub fn error_page(error: &AppError) -> Html<String> {
    let heading = match error {
        AppError::NoStore(_) => "Nothing recorded yet",
        AppError::NoRequest(_) | AppError::NoPage => "Not found",
        AppError::BadInput(_) => "Bad request",
        _ => "Something went wrong",
    };
    let message = code_spans(&escape(&error.to_string()));
    let body = fill(MESSAGE, &[("heading", heading), ("message", &message)]);
    page(heading, &body)
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

fn requests_page(params: &ListParams, rows: &[RequestRow], next: Option<i64>) -> Html<String> {
    let content = if rows.is_empty() {
        empty_list(params)
    } else {
        let rows: String = rows.iter().map(request_line).collect();
        fill(REQUESTS_TABLE, &[("rows", &rows)])
    };
    let body = fill(
        REQUESTS,
        &[
            ("q", &escape(params.text().unwrap_or(""))),
            ("status_options", &status_options(params)),
            ("content", &content),
            ("pager", &pager(params, next)),
        ],
    );
    page("Requests", &body)
}

fn empty_list(params: &ListParams) -> String {
    let filtered =
        params.text().is_some() || params.status.as_deref().is_some_and(|s| !s.is_empty());
    if filtered || params.before.is_some() {
        return "<p class=\"muted\">No requests match.</p>".to_string();
    }
    "<p>No requests recorded yet. Record some with <code>timeglass run -- uvicorn app:app</code>.</p>"
        .to_string()
}

fn request_line(r: &RequestRow) -> String {
    let href = format!("/requests/{}", r.id);
    let status_class = r
        .status
        .map_or(String::new(), |s| format!("status-{}xx", s / 100));
    format!(
        "<tr data-href=\"{href}\"><td><a href=\"{href}\">{time}</a></td><td class=\"code\">{method}</td>\
         <td class=\"code\"><a href=\"{href}\">{path}</a></td><td class=\"code\">{route}</td>\
         <td class=\"num {status_class}\">{status}</td><td class=\"num\">{duration}</td><td class=\"num\">{samples}</td></tr>\n",
        time = escape(&local_time(&r.start)),
        method = escape(&r.method),
        path = escape(&r.path),
        route = escape(r.route.as_deref().unwrap_or("-")),
        status = status_text(r),
        duration = duration(r),
        samples = r.samples,
    )
}

fn status_text(r: &RequestRow) -> String {
    match (r.status, r.errored) {
        (Some(s), _) => s.to_string(),
        (None, true) => "<span class=\"error\">error</span>".to_string(),
        (None, false) => "-".to_string(),
    }
}

fn duration(r: &RequestRow) -> String {
    match r.background_ms {
        Some(bg) if bg >= 1.0 => format!(
            "{:.1} ms <span class=\"muted\">+{bg:.1} ms bg</span>",
            r.duration_ms
        ),
        _ => format!("{:.1} ms", r.duration_ms),
    }
}

fn status_options(params: &ListParams) -> String {
    let current = params.status_class().ok().flatten();
    let mut out = String::from("<option value=\"\">any status</option>");
    for class in 1..=5u8 {
        let selected = if current == Some(class) {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!(
            "<option value=\"{class}xx\"{selected}>{class}xx</option>"
        ));
    }
    out
}

fn pager(params: &ListParams, next: Option<i64>) -> String {
    let mut filter = String::new();
    if let Some(q) = params.text() {
        filter.push_str(&format!("&q={}", query_value(q)));
    }
    if let Ok(Some(class)) = params.status_class() {
        filter.push_str(&format!("&status={class}xx"));
    }
    let mut links = Vec::new();
    if params.before.as_deref().is_some_and(|b| !b.is_empty()) {
        let filter = escape(filter.trim_start_matches('&'));
        links.push(format!("<a href=\"/?{filter}\">Newest</a>"));
    }
    if let Some(before) = next {
        links.push(format!(
            "<a href=\"/?before={before}{}\">Older →</a>",
            escape(&filter)
        ));
    }
    links.join("")
}

fn request_page(row: &RequestRow, stacks: &[StackCount]) -> Result<Html<String>, AppError> {
    let title = format!("{} {}", row.method, row.path);
    let flamegraph = flame::svg(&title, stacks)?.unwrap_or_else(|| {
        "<p class=\"muted\">No samples were charged to this request.</p>".to_string()
    });
    let functions = flame::functions(stacks);
    let mut by_total = functions.clone();
    by_total.sort_by(|a, b| {
        b.total_samples
            .cmp(&a.total_samples)
            .then(a.function.cmp(&b.function))
    });
    let body = fill(
        REQUEST,
        &[
            ("method", &escape(&row.method)),
            ("path", &escape(&row.path)),
            ("summary", &summary(row)),
            ("flamegraph", &flamegraph),
            ("by_self", &function_table(&functions, |f| f.self_samples)),
            ("by_total", &function_table(&by_total, |f| f.total_samples)),
            ("id", &row.id.to_string()),
        ],
    );
    Ok(page(&title, &body))
}

fn summary(r: &RequestRow) -> String {
    let mut items = vec![
        ("Time", escape(&local_time(&r.start))),
        ("Method", escape(&r.method)),
        ("Path", escape(&r.path)),
        ("Route", escape(r.route.as_deref().unwrap_or("-"))),
        ("Status", status_text(r)),
        ("Duration", format!("{:.1} ms", r.duration_ms)),
    ];
    if let Some(bg) = r.background_ms.filter(|bg| *bg > 0.0) {
        items.push(("Background", format!("{bg:.1} ms")));
    }
    items.extend([
        ("Process", format!("pid {} · thread {}", r.pid, r.tid)),
        ("Samples", r.samples.to_string()),
        (
            "Switched",
            format!(
                "{} <span class=\"muted\">(counted, not charged)</span>",
                r.switched_samples
            ),
        ),
        ("Torn", r.torn_samples.to_string()),
    ]);
    items
        .into_iter()
        .map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>\n"))
        .collect()
}

fn function_table(
    functions: &[FunctionSamples],
    samples: impl Fn(&FunctionSamples) -> u64,
) -> String {
    let rows: String = functions
        .iter()
        .filter(|f| samples(f) > 0)
        .take(TOP_FUNCTIONS)
        .map(|f| {
            format!(
                "<tr><td title=\"{name}\">{name}</td><td class=\"num\">{}</td></tr>",
                samples(f),
                name = escape(&f.function)
            )
        })
        .collect();
    if rows.is_empty() {
        return "<p class=\"muted\">No samples.</p>".to_string();
    }
    format!("<table><thead><tr><th>Function</th><th class=\"num\">Samples</th></tr></thead><tbody>{rows}</tbody></table>")
}
