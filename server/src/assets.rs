//! The dashboard's CSS and JavaScript, compiled in from `server/static/` (the
//! flame graphs' scripts from `flamegraph-templates/`).

use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::AppError;

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    ),
    (
        "list.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/list.js"),
    ),
    (
        "boxes.js",
        "text/javascript; charset=utf-8",
        include_str!("../../flamegraph-templates/boxes.js"),
    ),
    (
        "flame.js",
        "text/javascript; charset=utf-8",
        include_str!("../../flamegraph-templates/flame.js"),
    ),
    (
        "diff.js",
        "text/javascript; charset=utf-8",
        include_str!("../../flamegraph-templates/diff.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/charts.js"),
    ),
    // uPlot 1.6.32 from the npm registry, MIT (vendor/uplot/LICENSE).
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../static/vendor/uplot/uPlot.min.css"),
    ),
];

pub(crate) async fn asset(Path(name): Path<String>) -> Result<impl IntoResponse, AppError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or(AppError::NoPage)?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *body,
    ))
}
