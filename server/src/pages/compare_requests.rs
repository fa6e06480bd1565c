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
use crate::html::{ms, page, render};
use crate::pages::compare::diff_section;
use crate::pages::status_text;
use crate::pages::time::request_breakdown;
use crate::{db, AppState};

#[derive(Template)]
#[template(path = "compare_requests.html")]
struct CompareRequestsTemplate<'a> {
    a: &'a str,
    b: &'a str,
    /// A and B, or the one-line error shown instead.
    sides: Vec<SideView<'a>>,
    diff: String,
    error: Option<String>,
}

/// One request of the two, as its card shows it.
struct SideView<'a> {
    label: &'static str,
    r: &'a RequestRow,
    time: String,
    status_class: u16,
    status: String,
    /// Duration, CPU, queries and DB time.
    tiles: [(&'static str, String); 4],
    breakdown: String,
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
    Ok(store.endpoint_neighbour(r.session_id, &endpoint, r.id)?)
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
        let (status, compared) = match ComparedRequests::read(store, &pair) {
            Ok(c) => (StatusCode::OK, Ok(c)),
            Err(e @ (AppError::BadInput(_) | AppError::NoRequest(_))) => (e.status(), Err(e)),
            Err(e) => return Err(e),
        };
        let (sides, diff) = match &compared {
            Ok(c) => {
                let api = format!("/api/v1/compare/requests?a={}&b={}", c.a.id, c.b.id);
                let diff = diff_section(&c.diff, "of one request each", &api);
                (vec![side("A", &c.a), side("B", &c.b)], diff)
            }
            Err(_) => (Vec::new(), String::new()),
        };
        let html = render(&CompareRequestsTemplate {
            a: pair.a.as_deref().unwrap_or(""),
            b: pair.b.as_deref().unwrap_or(""),
            sides,
            diff,
            error: compared.as_ref().err().map(ToString::to_string),
        });
        Ok((status, page("Compare two requests", "requests", &html)).into_response())
    })
    .await
}

fn side<'a>(label: &'static str, r: &'a RequestRow) -> SideView<'a> {
    SideView {
        label,
        r,
        time: local_time(&r.start),
        status_class: r.status.map_or(5, |s| s / 100),
        status: status_text(r),
        tiles: [
            ("Duration", ms(r.duration_ms)),
            ("CPU", r.measured_cpu_ms().map_or("—".into(), ms)),
            ("Queries", r.queries.to_string()),
            ("DB time", ms(r.db_ms)),
        ],
        breakdown: request_breakdown(r),
    }
}
