//! JSON under `/api/v1/`: the same data as the pages.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use timeglass_store::RequestRow;

use crate::error::{ApiError, AppError};
use crate::list::{split_page, ListParams};
use crate::{db, AppState};

/// One page of `GET /api/v1/requests`, newest first.
#[derive(Serialize)]
pub struct RequestList {
    pub requests: Vec<RequestRow>,
    /// Pass as `before` for the next page; `null` on the last one.
    pub next_before: Option<i64>,
}

pub async fn requests(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<RequestList>, ApiError> {
    let query = params.page()?;
    let limit = params.limit()?;
    let rows = db::read(state.db, move |store| Ok(store.request_page(&query)?)).await?;
    let (requests, next_before) = split_page(rows, limit, |r| r.id);
    Ok(Json(RequestList {
        requests,
        next_before,
    }))
}

pub async fn request(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<RequestRow>, ApiError> {
    let row = db::read(state.db, move |store| {
        store.request(id)?.ok_or(AppError::NoRequest(id))
    })
    .await?;
    Ok(Json(row))
}

/// The request's stacks in the folded format (`timeglass export --format folded`).
pub async fn folded(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let text = db::read(state.db, move |store| {
        store.request(id)?.ok_or(AppError::NoRequest(id))?;
        Ok(timeglass_model::folded(&store.request_stacks(id)?))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}
