//! JSON under `/api/v1/`: the same data as the pages.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use timeglass_model::StackCount;
use timeglass_render::{Profile, View, Weight};
use timeglass_store::{RequestRow, RouteRow};

use crate::error::{ApiError, AppError};
use crate::list::{split_page, ListParams};
use crate::pages::request::RequestDetail;
use crate::pages::route::{route_key, RouteDetail};
use crate::report::StatsParams;
use crate::{db, AppState};

/// One page of `GET /api/v1/requests`, in the list's order.
#[derive(Serialize)]
pub(crate) struct RequestList {
    pub requests: Vec<RequestRow>,
    /// Pass as `before` for the next page; `null` on the last one.
    pub next_before: Option<i64>,
}

pub(crate) async fn requests(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<RequestList>, ApiError> {
    let query = params.page()?;
    let limit = params.limit()?;
    let rows = db::read(state.db, move |store| {
        params.check_session(store)?;
        Ok(store.request_page(&query)?)
    })
    .await?;
    let (requests, next_before) = split_page(rows, limit, |r| r.id);
    Ok(Json(RequestList {
        requests,
        next_before,
    }))
}

/// The request, its stages, its route's p95 and its context.
pub(crate) async fn request(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<RequestDetail>, ApiError> {
    let detail = db::read(state.db, move |store| RequestDetail::read(store, id)).await?;
    Ok(Json(detail))
}

/// `?mine=true&hide_synthetic=true&cpu=true` choose the view; `icicle` the SVG's direction.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ProfileParams {
    pub mine: bool,
    pub hide_synthetic: bool,
    /// CPU time only instead of wall time.
    pub cpu: bool,
    /// Where it allocated (bytes, from sampled allocations) instead of time.
    pub memory: bool,
    pub icicle: bool,
}

impl ProfileParams {
    pub(crate) fn view(&self) -> View {
        View {
            // Allocation stacks are weighed in bytes: no CPU share to keep.
            weight: match self.cpu && !self.memory {
                true => Weight::Cpu,
                false => Weight::Wall,
            },
            mine: self.mine,
            hide_synthetic: self.hide_synthetic,
            sampled_only: false,
        }
    }
}

/// The call tree and functions the flame graph draws.
pub(crate) async fn request_profile(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(params): Query<ProfileParams>,
) -> Result<Json<Profile>, ApiError> {
    let stacks = request_stacks(&state, id, params.memory).await?;
    Ok(Json(Profile::new(&params.view().apply(&stacks))))
}

/// The request's stacks in the folded format (`timeglass export --format folded`).
pub(crate) async fn folded(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(params): Query<ProfileParams>,
) -> Result<impl IntoResponse, ApiError> {
    let stacks = request_stacks(&state, id, params.memory).await?;
    let text = timeglass_render::folded(&params.view().apply(&stacks));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// inferno's standalone SVG of the request, to download or open alone.
pub(crate) async fn request_svg(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(params): Query<ProfileParams>,
) -> Result<impl IntoResponse, ApiError> {
    let stacks = request_stacks(&state, id, params.memory).await?;
    svg_response(&format!("request {id}"), &params, &stacks)
}

/// Its sampled stacks, or with `memory` its allocation stacks (bytes).
async fn request_stacks(
    state: &AppState,
    id: i64,
    memory: bool,
) -> Result<Vec<StackCount>, AppError> {
    db::read(state.db.clone(), move |store| {
        store.request(id)?.ok_or(AppError::NoRequest(id))?;
        Ok(match memory {
            true => store.request_alloc_stacks(id)?,
            false => store.request_stacks(id)?,
        })
    })
    .await
}

pub(crate) async fn routes(State(state): State<AppState>) -> Result<Json<Vec<RouteRow>>, ApiError> {
    Ok(Json(db::read(state.db, |store| Ok(store.routes()?)).await?))
}

/// `?session=&since=&until=` as for `/api/v1/stats`.
pub(crate) async fn route(
    State(state): State<AppState>,
    Path(key): Path<(String, String)>,
    Query(params): Query<StatsParams>,
) -> Result<Json<RouteDetail>, ApiError> {
    let (method, route) = route_key(key);
    let detail = db::read(state.db, move |store| {
        RouteDetail::read(store, &method, &route, &params)
    })
    .await?;
    Ok(Json(detail))
}

/// The flame graph merged over every request of the route: its call tree
/// as JSON at `.../{route}/profile`, inferno's SVG at `.../{route}/flamegraph.svg`,
/// a download at `.../{route}/export/{format}` (`?session=`; the route
/// itself is a wildcard, so the suffix is read here).
pub(crate) async fn route_profile_or_svg(
    State(state): State<AppState>,
    Path((method, rest)): Path<(String, String)>,
    Query(params): Query<ProfileParams>,
    Query(session): Query<crate::export::SessionParam>,
) -> Result<axum::response::Response, ApiError> {
    if let Some((route, format)) = rest.rsplit_once("/export/") {
        let key = route_key((method, route.to_string()));
        return crate::export::route(&state, key, format, session.session, params).await;
    }
    let (rest, svg) = match (
        rest.strip_suffix("/profile"),
        rest.strip_suffix("/flamegraph.svg"),
    ) {
        (Some(route), _) => (route.to_string(), false),
        (None, Some(route)) => (route.to_string(), true),
        _ => return Err(AppError::NoPage.into()),
    };
    let (method, route) = route_key((method, rest));
    let stacks = route_stacks(&state, (method.clone(), route.clone()), params.memory).await?;
    if svg {
        return Ok(svg_response(&format!("{method} {route}"), &params, &stacks)?.into_response());
    }
    Ok(Json(Profile::new(&params.view().apply(&stacks))).into_response())
}

async fn route_stacks(
    state: &AppState,
    (method, route): (String, String),
    memory: bool,
) -> Result<Vec<StackCount>, AppError> {
    db::read(state.db.clone(), move |store| {
        let stacks = match memory {
            true => store.route_alloc_stacks(&method, &route)?,
            false => store.route_stacks(&method, &route)?,
        };
        if stacks.is_empty() && !store.has_route(&method, &route)? {
            return Err(AppError::NoRoute(method, route));
        }
        Ok(stacks)
    })
    .await
}

fn svg_response(
    title: &str,
    params: &ProfileParams,
    stacks: &[StackCount],
) -> Result<impl IntoResponse, ApiError> {
    let svg = timeglass_render::svg(title, &params.view().apply(stacks), params.icicle)
        .map_err(AppError::from)?
        .ok_or_else(|| AppError::BadInput("no samples: there is no flame graph to draw".into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            // inferno's SVG carries its own script and styles.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    ))
}
