//! Errors: [`AppError`] for one HTTP request, turned into a response in one
//! place (an HTML page, or JSON under `/api/`), and [`ServerError`] for
//! starting and running the server.

use std::io;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use timeglass_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not start the server's runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error(
        "cannot listen on `{address}`: {source}\n\
         hint: choose another port with `--port`, or another address with `--host`"
    )]
    Bind {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("the server stopped: {0}")]
    Serve(#[source] io::Error),
}

/// Why one HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error("no TimeGlass database at `{}` yet; record some requests with `timeglass run -- uvicorn app:app`", .0.display())]
    NoStore(PathBuf),
    #[error("no request with id {0}")]
    NoRequest(i64),
    #[error("request {1} of process {0} is not in the store (yet: the recorder stores a request a moment after it ends; reload)")]
    NoMarkedRequest(u32, u64),
    #[error("no request of `{0} {1}` was recorded")]
    NoRoute(String, String),
    #[error("no page at this address")]
    NoPage,
    #[error("{0}")]
    BadInput(String),
    #[error("could not read the store: {0}")]
    Store(StoreError),
    #[error("{0}")]
    Render(#[from] timeglass_render::RenderError),
    #[error("a dashboard task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::Missing { path } => AppError::NoStore(path),
            other => AppError::Store(other),
        }
    }
}

impl AppError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            AppError::NoStore(_)
            | AppError::NoRequest(_)
            | AppError::NoMarkedRequest(..)
            | AppError::NoRoute(..)
            | AppError::NoPage => StatusCode::NOT_FOUND,
            AppError::BadInput(_) => StatusCode::BAD_REQUEST,
            AppError::Store(_) | AppError::Render(_) | AppError::Task(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Pages show errors as a page.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status(), crate::pages::error_page(&self)).into_response()
    }
}

/// The same errors under `/api/`: `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0.to_string() });
        (self.0.status(), Json(body)).into_response()
    }
}
