//! Comparisons for the dashboard: the two sides a query names, and the
//! comparison of `timeglass-compare` between them, served as the same JSON
//! as `timeglass compare --format json` (`/api/v1/compare`). Nothing here
//! judges anything: the compare crate does.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use timeglass_compare::{baseline, CompareError, Comparison, Snapshot, TestOptions};
use timeglass_store::{SessionRow, Store};

use crate::diff::{self, DiffProfile};
use crate::error::{ApiError, AppError};
use crate::{db, AppState};

/// One side of a comparison: `session:ID` or `baseline:NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Session(i64),
    Baseline(String),
}

impl Side {
    pub(crate) fn parse(text: &str) -> Result<Side, AppError> {
        let bad = || {
            AppError::BadInput(format!(
                "`{text}` names no side of a comparison: give `session:ID` or `baseline:NAME`"
            ))
        };
        match text.trim().split_once(':') {
            Some(("session", id)) => id.trim().parse().map(Side::Session).map_err(|_| bad()),
            Some(("baseline", name)) if !name.trim().is_empty() => {
                Ok(Side::Baseline(name.trim().to_string()))
            }
            _ => Err(bad()),
        }
    }

    /// The query-string value naming this side.
    pub(crate) fn value(&self) -> String {
        match self {
            Side::Session(id) => format!("session:{id}"),
            Side::Baseline(name) => format!("baseline:{name}"),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Side::Session(id) => format!("session {id}"),
            Side::Baseline(name) => format!("baseline `{name}`"),
        }
    }

    fn snapshot(&self, store: &Store) -> Result<Snapshot, AppError> {
        match self {
            Side::Session(id) => Snapshot::capture(store, Some(*id)),
            Side::Baseline(name) => baseline::load(store, name),
        }
        .map_err(compare_error)
    }
}

/// The store failing is the server's fault; anything else is the query's.
fn compare_error(e: CompareError) -> AppError {
    match e {
        CompareError::Store(s) => AppError::from(s),
        other => AppError::BadInput(other.to_string()),
    }
}

/// `?a=…&b=…`, and for one endpoint `method` and `route` (no `route`: the
/// requests no route matched).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct CompareParams {
    pub a: Option<String>,
    pub b: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
}

impl CompareParams {
    /// A and B; by default the second latest session against the latest.
    /// B is always a session: a baseline is what a session is judged by.
    pub(crate) fn sides(&self, sessions: &[SessionRow]) -> Result<(Side, Side), AppError> {
        let latest = |nth: usize| sessions.get(nth).map(|s| Side::Session(s.id.0));
        let b = match given(&self.b) {
            Some(text) => Side::parse(text)?,
            None => latest(0).ok_or_else(|| {
                AppError::BadInput(
                    "no session recorded yet; record one with `timeglass run -- uvicorn app:app`"
                        .into(),
                )
            })?,
        };
        if let Side::Baseline(_) = b {
            return Err(AppError::BadInput(
                "B is a session (`session:ID`); a baseline can only be A".into(),
            ));
        }
        let a = match given(&self.a) {
            Some(text) => Side::parse(text)?,
            None => sessions
                .iter()
                .map(|s| Side::Session(s.id.0))
                .find(|s| *s != b)
                .ok_or_else(|| {
                    AppError::BadInput(
                        "only one session is recorded; record another, or pick a baseline as A"
                            .into(),
                    )
                })?,
        };
        Ok((a, b))
    }
}

/// Both snapshots and their comparison, as `timeglass compare` makes it.
pub(crate) struct Compared {
    pub a: Snapshot,
    pub b: Snapshot,
    pub comparison: Comparison,
}

impl Compared {
    pub(crate) fn read(store: &Store, a: &Side, b: &Side) -> Result<Compared, AppError> {
        let (a, b) = (a.snapshot(store)?, b.snapshot(store)?);
        let comparison =
            timeglass_compare::compare(&a, &b, &TestOptions::default()).map_err(compare_error)?;
        Ok(Compared { a, b, comparison })
    }

    /// The differential profile of one endpoint; `None` when either side
    /// lacks it.
    pub(crate) fn endpoint_diff(&self, method: &str, route: Option<&str>) -> Option<DiffProfile> {
        let (ea, eb) = (
            self.a.endpoint(method, route)?,
            self.b.endpoint(method, route)?,
        );
        Some(diff::DiffProfile::new(&timeglass_compare::path_diff(
            ea, eb,
        )))
    }
}

fn read_sides(store: &Store, params: &CompareParams) -> Result<Compared, AppError> {
    let (a, b) = params.sides(&store.sessions()?)?;
    Compared::read(store, &a, &b)
}

/// `GET /api/v1/compare?a=session:ID|baseline:NAME&b=session:ID`.
pub(crate) async fn api(
    State(state): State<AppState>,
    Query(params): Query<CompareParams>,
) -> Result<Json<Comparison>, ApiError> {
    let c = db::read(state.db, move |store| read_sides(store, &params)).await?;
    Ok(Json(c.comparison))
}

/// `GET /api/v1/compare/endpoint?a=…&b=…&method=…&route=…`: one endpoint's
/// differential profile, ms per request in A and B.
pub(crate) async fn api_endpoint(
    State(state): State<AppState>,
    Query(params): Query<CompareParams>,
) -> Result<Json<DiffProfile>, ApiError> {
    let diff = db::read(state.db, move |store| {
        let c = read_sides(store, &params)?;
        let (method, route) = params.endpoint()?;
        c.endpoint_diff(&method, route.as_deref())
            .ok_or_else(|| no_endpoint(&method, route.as_deref()))
    })
    .await?;
    Ok(Json(diff))
}

impl CompareParams {
    /// The endpoint named by `method` and `route`.
    pub(crate) fn endpoint(&self) -> Result<(String, Option<String>), AppError> {
        let method = self
            .method
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                AppError::BadInput("give the endpoint's `method` (and `route`)".into())
            })?;
        Ok((method, self.route.clone().filter(|r| !r.is_empty())))
    }
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

pub(crate) fn no_endpoint(method: &str, route: Option<&str>) -> AppError {
    AppError::BadInput(format!(
        "`{method} {}` is not recorded on both sides; a new or gone endpoint has no difference to draw",
        route.unwrap_or("(no route)")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_parse_and_print() {
        assert_eq!(Side::parse("session:3").unwrap(), Side::Session(3));
        assert_eq!(
            Side::parse("baseline:main").unwrap(),
            Side::Baseline("main".into())
        );
        assert_eq!(Side::Baseline("main".into()).value(), "baseline:main");
        for bad in ["3", "session:x", "baseline:", "tag:main"] {
            let e = Side::parse(bad).unwrap_err().to_string();
            assert!(e.contains("`session:ID` or `baseline:NAME`"), "{e}");
        }
    }
}
