//! Profile downloads, the formats of `timeglass export`:
//! `/api/v1/requests/{id}/export/{format}`,
//! `/api/v1/route-profiles/{method}/{route}/export/{format}` (`?session=`)
//! and `/api/v1/sessions/{id}/export/{format}`. Each reads a
//! `timeglass_render::Recording` and renders it as the CLI does.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use timeglass_render::{Format, LoadError, Recording, Subject};
use timeglass_store::SessionId;

use crate::api::ProfileParams;
use crate::error::{ApiError, AppError};
use crate::html::render;
use crate::{db, AppState};

/// One download link of [`links`].
struct Link {
    href: String,
    label: &'static str,
    title: &'static str,
}

#[derive(Template)]
#[template(path = "parts/exports.html")]
struct LinksTemplate {
    links: Vec<Link>,
}

/// The links a page offers, one per format, under `api` (`{api}/export/{format}`).
/// `data-export`: flame.js adds the view's parameters (CPU, my code only,
/// synthetic frames) to the address as the user switches them.
pub(crate) fn links(api: &str) -> String {
    let link = |f: Format, label, title| Link {
        href: format!("{api}/export/{}", f.name()),
        label,
        title,
    };
    render(&LinksTemplate {
        links: vec![
            link(
                Format::Speedscope,
                "speedscope",
                "speedscope's JSON file format",
            ),
            link(
                Format::Chrome,
                "Chrome trace",
                "Trace Event Format: Perfetto, chrome://tracing",
            ),
            link(
                Format::Pprof,
                "pprof",
                "gzipped profile.proto: go tool pprof, Pyroscope",
            ),
            link(
                Format::Folded,
                "folded",
                "folded stacks: inferno, flamegraph.pl",
            ),
            link(Format::Svg, "SVG", "inferno's standalone SVG"),
        ],
    })
}

/// `?session=` of an endpoint's export, beside the view's parameters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SessionParam {
    pub session: Option<i64>,
}

pub(crate) async fn request(
    State(state): State<AppState>,
    Path((id, format)): Path<(i64, String)>,
    Query(params): Query<ProfileParams>,
) -> Result<Response, ApiError> {
    download(&state, Subject::Request(id), &format, params).await
}

pub(crate) async fn session(
    State(state): State<AppState>,
    Path((id, format)): Path<(i64, String)>,
    Query(params): Query<ProfileParams>,
) -> Result<Response, ApiError> {
    download(&state, Subject::Session(SessionId(id)), &format, params).await
}

/// An endpoint's export; `route` is what followed `/export/` removed by the
/// caller (the route itself is a wildcard).
pub(crate) async fn route(
    state: &AppState,
    (method, route): (String, String),
    format: &str,
    session: Option<i64>,
    params: ProfileParams,
) -> Result<Response, ApiError> {
    let subject = Subject::Route {
        method,
        route,
        session: session.map(SessionId),
    };
    download(state, subject, format, params).await
}

async fn download(
    state: &AppState,
    subject: Subject,
    format: &str,
    params: ProfileParams,
) -> Result<Response, ApiError> {
    let format = Format::parse(format).ok_or(AppError::NoPage)?;
    let name = file_name(&subject, format);
    let view = params.view();
    let bytes = db::read(state.db.clone(), move |store| {
        let recording = Recording::load(store, subject).map_err(|e| match e {
            LoadError::Store(e) => AppError::from(e),
            LoadError::NoRequest(id) => AppError::NoRequest(id),
            LoadError::NoRoute(method, route, _) => AppError::NoRoute(method, route),
            other => AppError::BadInput(other.to_string()),
        })?;
        Ok(format.render(&recording, view)?)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `request-12.speedscope.json`, `GET-items-id.pb.gz`, `session-3.trace.json`.
fn file_name(subject: &Subject, format: Format) -> String {
    let stem = match subject {
        Subject::Request(id) => format!("request-{id}"),
        Subject::Session(s) => format!("session-{}", s.0),
        Subject::Route { method, route, .. } => {
            let words: Vec<&str> = route
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            format!("{method}-{}", words.join("-"))
        }
    };
    format!("{stem}.{}", format.extension())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain() {
        let route = Subject::Route {
            method: "GET".into(),
            route: "/items/{id}".into(),
            session: None,
        };
        assert_eq!(file_name(&route, Format::Pprof), "GET-items-id.pb.gz");
        assert_eq!(
            file_name(&Subject::Request(12), Format::Speedscope),
            "request-12.speedscope.json"
        );
    }
}
