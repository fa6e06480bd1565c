//! The dashboard (`timeglass ui`): an axum server that renders the store as
//! HTML pages and JSON.
//!
//! Every request opens the store afresh, read-only in effect, on a blocking
//! thread, so SQLite never runs on the async runtime and a store that is
//! being recorded into is always read as of now. Only loopback `Host`
//! headers are answered unless the server was bound elsewhere (DNS
//! rebinding protection, `host.rs`). The one route that changes data,
//! `POST /clear`, also checks `Origin` and a per-server token
//! (`actions.rs`); every other route is a GET; no CORS headers are sent.
//! Page templates, CSS and JavaScript live in `server/templates/` and
//! `server/static/` (the flame graphs' own in `flamegraph-templates/`) and
//! are compiled in.
//!
//! Stacks go through a view of `timeglass-render` ("my code only",
//! synthetic frames hidden, CPU time) before one of its renderers (call
//! tree, functions, inferno SVG, the profile formats). Comparisons come from `timeglass-compare` (`compare.rs`);
//! `diff.rs` turns their per-request paths into a differential call tree.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod actions;
mod api;
mod assets;
mod compare;
mod db;
mod diff;
mod error;
mod export;
mod headers;
mod host;
mod html;
mod leak;
mod list;
mod live;
mod pages;
mod report;
mod serve;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use error::ServerError;
pub use serve::Server;

/// Defaults of [`ServerOptions`].
pub mod defaults {
    /// Loopback only: recorded requests may carry secrets.
    pub const HOST: &str = "127.0.0.1";
    pub const PORT: u16 = 7477;
}

/// What `timeglass ui` serves and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// The store to read; it may not exist yet.
    pub db: PathBuf,
    /// Address to bind: an IP address or a name (default [`defaults::HOST`]).
    pub host: String,
    /// Port to bind, 0 for any free one (default [`defaults::PORT`]).
    pub port: u16,
}

impl ServerOptions {
    pub fn new(db: PathBuf) -> ServerOptions {
        ServerOptions {
            db,
            host: defaults::HOST.to_string(),
            port: defaults::PORT,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    db: Arc<PathBuf>,
    /// This server's token for actions that change data (`actions.rs`).
    token: Arc<str>,
    p95: Arc<pages::P95Cache>,
}

/// The whole dashboard as a router, for [`Server`] and for tests.
pub fn app(options: &ServerOptions) -> Router {
    let state = AppState {
        db: Arc::new(options.db.clone()),
        token: actions::new_token().into(),
        p95: Arc::default(),
    };
    let allowed = host::AllowedHosts::new(&options.host);
    Router::new()
        .route("/", get(pages::list::requests))
        .route("/requests/{id}", get(pages::request::request))
        .route(
            "/requests/by-marker/{pid}/{marker_id}",
            get(pages::request::by_marker),
        )
        .route("/routes", get(pages::route::routes))
        .route("/report", get(pages::report::report))
        .route("/compare", get(pages::compare::compare))
        .route("/compare/endpoint", get(pages::compare::endpoint))
        .route("/compare/requests", get(pages::compare_requests::requests))
        .route("/routes/{method}/{*route}", get(pages::route::route))
        .route("/assets/{name}", get(assets::asset))
        .route("/clear", post(actions::clear))
        .route("/api/v1/requests", get(api::requests))
        .route("/api/v1/requests/stream", get(live::stream))
        .route("/api/v1/requests/{id}", get(api::request))
        .route("/api/v1/requests/{id}/profile", get(api::request_profile))
        .route("/api/v1/requests/{id}/folded", get(api::folded))
        .route(
            "/api/v1/requests/{id}/flamegraph.svg",
            get(api::request_svg),
        )
        .route(
            "/api/v1/requests/{id}/export/{format}",
            get(export::request),
        )
        .route(
            "/api/v1/sessions/{id}/export/{format}",
            get(export::session),
        )
        .route("/api/v1/routes", get(api::routes))
        .route("/api/v1/stats", get(report::stats))
        .route("/api/v1/series", get(report::series))
        .route("/api/v1/report", get(report::report))
        .route("/api/v1/compare", get(compare::api))
        .route("/api/v1/compare/endpoint", get(compare::api_endpoint))
        .route(
            "/api/v1/compare/requests",
            get(pages::compare_requests::api),
        )
        .route("/api/v1/routes/{method}/{*route}", get(api::route))
        .route(
            "/api/v1/route-profiles/{method}/{*route}",
            get(api::route_profile_or_svg),
        )
        .fallback(pages::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(headers::add))
        .layer(axum::middleware::from_fn_with_state(allowed, host::check))
}
