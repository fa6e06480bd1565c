//! `/api/v1/stats`, `/api/v1/series` and `/api/v1/report`: the figures of
//! `timeglass report` (from `timeglass-report`) over the session and time
//! range the dashboard's filters choose.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use timeglass_report::series::Series;
use timeglass_report::{
    EndpointStats, Report, ReportError, ReportQuery, Selection, Stats, WindowInfo,
};
use timeglass_store::{RouteMatch, Store};

use crate::error::{ApiError, AppError};
use crate::{db, AppState};

/// `?session=&since=&until=&method=&route=&status=&min_ms=`: empty values
/// filter nothing; `route` is a route template exactly as recorded
/// (`/items/{item_id}`), `status` a class (`5xx`), `min_ms` a response time
/// in milliseconds, as the request list takes them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatsParams {
    pub session: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
    pub status: Option<String>,
    pub min_ms: Option<String>,
    /// Buckets of `/api/v1/series` (at most; default 120).
    pub buckets: Option<u64>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl StatsParams {
    pub(crate) fn query(&self) -> Result<ReportQuery, AppError> {
        let session = non_empty(&self.session)
            .map(|s| {
                s.parse::<i64>().map_err(|_| {
                    AppError::BadInput(format!("`session` must be a session id, not `{s}`"))
                })
            })
            .transpose()?;
        Ok(ReportQuery {
            session,
            since: non_empty(&self.since),
            until: non_empty(&self.until),
            method: non_empty(&self.method),
            route: non_empty(&self.route).map(RouteMatch::Exact),
            status: non_empty(&self.status),
            min_ms: non_empty(&self.min_ms),
        })
    }
}

impl From<ReportError> for AppError {
    fn from(e: ReportError) -> AppError {
        match e {
            ReportError::Store(e) => e.into(),
            other => AppError::BadInput(other.to_string()),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct StatsResponse {
    pub session: i64,
    pub window: WindowInfo,
    /// `nearest-rank`.
    pub percentile: &'static str,
    pub overall: Stats,
    pub endpoints: Vec<EndpointStats>,
}

pub(crate) fn stats_of(store: &Store, params: &StatsParams) -> Result<StatsResponse, AppError> {
    let sel = Selection::read(store, &params.query()?, timeglass_report::now_unix_ns())?;
    let (overall, endpoints) = sel.stats(store)?;
    Ok(StatsResponse {
        session: sel.session.id.0,
        window: WindowInfo {
            start: sel.rfc3339(sel.span.start_ns),
            end: sel.rfc3339(sel.span.end_ns),
            seconds: sel.span.seconds(),
        },
        percentile: "nearest-rank",
        overall,
        endpoints,
    })
}

pub(crate) async fn stats(
    State(state): State<AppState>,
    Query(params): Query<StatsParams>,
) -> Result<Json<StatsResponse>, ApiError> {
    Ok(Json(
        db::read(state.db, move |store| stats_of(store, &params)).await?,
    ))
}

pub(crate) fn series_of(store: &Store, params: &StatsParams) -> Result<Series, AppError> {
    let sel = Selection::read(store, &params.query()?, timeglass_report::now_unix_ns())?;
    let processes = store.process_samples(
        sel.session.id,
        Some(sel.span.start_ns),
        Some(sel.span.end_ns.saturating_add(1)),
    )?;
    let buckets = params.buckets.unwrap_or(120).clamp(1, 2000);
    Ok(Series::of(&sel, &sel.timeline(store)?, &processes, buckets))
}

pub(crate) async fn series(
    State(state): State<AppState>,
    Query(params): Query<StatsParams>,
) -> Result<Json<Series>, ApiError> {
    Ok(Json(
        db::read(state.db, move |store| series_of(store, &params)).await?,
    ))
}

/// The whole report, thresholds read from the session's directory, then
/// the dashboard's.
pub(crate) fn report_of(store: &Store, params: &StatsParams) -> Result<Report, AppError> {
    let cwd = std::env::current_dir().ok();
    let dirs: Vec<&std::path::Path> = cwd.iter().map(std::path::PathBuf::as_path).collect();
    Ok(Report::build(
        store,
        &params.query()?,
        &dirs,
        timeglass_report::now_unix_ns(),
    )?)
}

pub(crate) async fn report(
    State(state): State<AppState>,
    Query(params): Query<StatsParams>,
) -> Result<Json<Report>, ApiError> {
    Ok(Json(
        db::read(state.db, move |store| report_of(store, &params)).await?,
    ))
}
