//! Two single requests side by side (`/compare/requests?a=ID&b=ID`, the
//! request page's "compare with…"): their figures and time breakdowns, and
//! the differential flame graph of their stacks.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use timeglass_compare::profile::{path_deltas, per_request};
use timeglass_store::{local_time, Endpoint, RequestRow, Store};

use crate::diff::DiffProfile;
use crate::error::{ApiError, AppError};
use crate::html::{escape, ms, page, render};
use crate::pages::compare::diff_section;
use crate::pages::status_text;
use crate::pages::time::request_breakdown;
use crate::{db, AppState};

#[derive(Template)]
#[template(path = "compare_requests.html")]
struct CompareRequestsTemplate<'a> {
    a: &'a str,
    b: &'a str,
    body: &'a str,
}

/// `?a=ID&b=ID`: B is the request compared, A the one it is compared
/// with (by default the previous request of B's route in its session).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct RequestPair {
    pub a: Option<String>,
    pub b: Option<String>,
}

fn id(text: Option<&str>, which: &str) -> Result<Option<i64>, AppError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t.trim_start_matches('#').parse().map(Some).map_err(|_| {
            AppError::BadInput(format!(
                "`{t}` is not a request id ({which}); give a number"
            ))
        }),
    }
}

/// The request recorded before `r` on the same route in the same session,
/// or the one after when `r` is the first.
pub(crate) fn neighbour(store: &Store, r: &RequestRow) -> Result<Option<i64>, AppError> {
    let endpoint = Endpoint {
        method: r.method.clone(),
        route: r.route.clone(),
    };
    let ids: Vec<i64> = store
        .endpoint_requests(r.session_id, &endpoint)?
        .iter()
        .map(|f| f.id)
        .collect();
    let before = ids.iter().rev().find(|&&i| i < r.id);
    Ok(before.or_else(|| ids.iter().find(|&&i| i > r.id)).copied())
}

/// Both requests and their differential profile.
#[derive(Serialize)]
pub(crate) struct ComparedRequests {
    pub a: RequestRow,
    pub b: RequestRow,
    pub diff: DiffProfile,
}

impl ComparedRequests {
    pub(crate) fn read(store: &Store, pair: &RequestPair) -> Result<ComparedRequests, AppError> {
        let b_id = id(pair.b.as_deref(), "B")?
            .ok_or_else(|| AppError::BadInput("give the request to compare as `b=ID`".into()))?;
        let b = store.request(b_id)?.ok_or(AppError::NoRequest(b_id))?;
        let a_id = match id(pair.a.as_deref(), "A")? {
            Some(a) => a,
            None => neighbour(store, &b)?.ok_or_else(|| {
                AppError::BadInput(format!(
                    "request {b_id} is the only one of its route in its session; give another request's id as `a`"
                ))
            })?,
        };
        let a = store.request(a_id)?.ok_or(AppError::NoRequest(a_id))?;
        let profile = |r: &RequestRow| -> Result<_, AppError> {
            let rate = store
                .session_info(r.session_id)?
                .map_or(timeglass_model::DEFAULT_RATE_HZ, |s| s.rate_hz);
            Ok(per_request(&store.request_stacks(r.id)?, 1, rate))
        };
        let diff = DiffProfile::new(&path_deltas(&profile(&a)?, &profile(&b)?));
        Ok(ComparedRequests { a, b, diff })
    }
}

/// `GET /api/v1/compare/requests?a=ID&b=ID`.
pub(crate) async fn api(
    State(state): State<AppState>,
    Query(pair): Query<RequestPair>,
) -> Result<Json<ComparedRequests>, ApiError> {
    let c = db::read(state.db, move |store| ComparedRequests::read(store, &pair)).await?;
    Ok(Json(c))
}

/// `GET /compare/requests?a=ID&b=ID`.
pub(crate) async fn requests(
    State(state): State<AppState>,
    Query(pair): Query<RequestPair>,
) -> Result<Response, AppError> {
    db::read(state.db, move |store| {
        let (status, body) = match ComparedRequests::read(store, &pair) {
            Ok(c) => (StatusCode::OK, body(&c)),
            Err(e @ (AppError::BadInput(_) | AppError::NoRequest(_))) => (
                e.status(),
                format!(
                    "<p class=\"compare-error\" role=\"alert\">{}</p>",
                    escape(&e.to_string())
                ),
            ),
            Err(e) => return Err(e),
        };
        let value = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
        let html = render(&CompareRequestsTemplate {
            a: &value(&pair.a),
            b: &value(&pair.b),
            body: &body,
        });
        Ok((status, page("Compare two requests", "requests", &html)).into_response())
    })
    .await
}

fn body(c: &ComparedRequests) -> String {
    let api = format!("/api/v1/compare/requests?a={}&b={}", c.a.id, c.b.id);
    format!(
        "<div class=\"req-compare\">{}{}</div>{}",
        side("A", &c.a),
        side("B", &c.b),
        diff_section(&c.diff, "of one request each", &api)
    )
}

fn side(label: &str, r: &RequestRow) -> String {
    let cpu = r.measured_cpu_ms().map_or("—".into(), ms);
    format!(
        "<section class=\"card req-side\" data-side=\"{label}\">\
         <h2>{label}: <a href=\"/requests/{id}\">request #{id}</a> <span class=\"muted\">{time}</span></h2>\
         <p><span class=\"method m-{mc}\">{method}</span> <span class=\"code\">{path}</span> \
         <span class=\"status status-{sc}xx\">{status}</span></p>\
         <div class=\"tiles\">{dur}{cpu}{queries}{db}</div>\
         <h3>Where the response time went</h3>{breakdown}</section>",
        id = r.id,
        time = escape(&local_time(&r.start)),
        mc = escape(&r.method.to_ascii_lowercase()),
        method = escape(&r.method),
        path = escape(&r.path),
        sc = r.status.map_or(5, |s| s / 100),
        status = status_text(r),
        dur = tile("Duration", &ms(r.duration_ms)),
        cpu = tile("CPU", &cpu),
        queries = tile("Queries", &r.queries.to_string()),
        db = tile("DB time", &ms(r.db_ms)),
        breakdown = request_breakdown(r),
    )
}

fn tile(label: &str, value: &str) -> String {
    format!(
        "<div class=\"tile\"><div class=\"label\">{label}</div><div class=\"value\">{}</div></div>",
        escape(value)
    )
}
