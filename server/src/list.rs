//! The request list's query parameters, shared by the page and the API.

use serde::Deserialize;
use timeglass_store::RequestPage;

use crate::error::AppError;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// `?before=ID&limit=N&q=TEXT&status=5xx`; empty values mean "not set", as
/// a submitted filter form sends them.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListParams {
    pub before: Option<String>,
    pub limit: Option<String>,
    pub q: Option<String>,
    pub status: Option<String>,
}

impl ListParams {
    /// The page to read: one row more than shown, to know whether more follow.
    pub fn page(&self) -> Result<RequestPage, AppError> {
        Ok(RequestPage {
            limit: self.limit()? + 1,
            before: number(&self.before, "before")?,
            text: self.text().map(str::to_string),
            status_class: self.status_class()?,
        })
    }

    pub fn limit(&self) -> Result<usize, AppError> {
        let limit = number(&self.limit, "limit")?.unwrap_or(DEFAULT_LIMIT);
        Ok(limit.clamp(1, MAX_LIMIT))
    }

    pub fn text(&self) -> Option<&str> {
        self.q.as_deref().map(str::trim).filter(|q| !q.is_empty())
    }

    /// `2xx` ... `5xx` (or just the digit).
    pub fn status_class(&self) -> Result<Option<u8>, AppError> {
        let Some(status) = self.status.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let digit = status.strip_suffix("xx").unwrap_or(status);
        match digit.parse::<u8>() {
            Ok(class @ 1..=5) => Ok(Some(class)),
            _ => Err(AppError::BadInput(format!(
                "`status` must be one of 1xx, 2xx, 3xx, 4xx, 5xx, not `{status}`"
            ))),
        }
    }
}

fn number<T: std::str::FromStr>(value: &Option<String>, name: &str) -> Result<Option<T>, AppError> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            AppError::BadInput(format!("`{name}` must be a non-negative number, not `{v}`"))
        }),
    }
}

/// Splits the one extra row off: the rows to show, and the `before` cursor
/// of the next page if there is one.
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<i64>) {
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(id);
    (rows, next)
}
