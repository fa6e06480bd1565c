//! Queries the dashboard needs beyond the CLI's: one page of requests,
//! filtered by text and status class, continuing after a given request.

use rusqlite::{params_from_iter, types::Value};

use crate::{RequestRow, Store, StoreError};

/// One page of requests, newest first (the order of [`Store::requests`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestPage {
    pub limit: usize,
    /// Only requests listed after this one (older, or same start and lower id).
    pub before: Option<i64>,
    /// Only requests whose path or route contains this text (case-insensitive
    /// for ASCII).
    pub text: Option<String>,
    /// Only statuses `class`xx, e.g. 5 for 500-599.
    pub status_class: Option<u8>,
}

impl Store {
    /// Newest first. An unknown `before` id gives an empty page.
    pub fn request_page(&self, page: &RequestPage) -> Result<Vec<RequestRow>, StoreError> {
        let ids = self.page_ids(page).map_err(|e| self.sql_err(e))?;
        // Rows by primary key reuse the CLI's column mapping; a page is small.
        let rows = ids.into_iter().map(|id| self.request(id));
        rows.filter_map(Result::transpose).collect()
    }

    fn page_ids(&self, page: &RequestPage) -> rusqlite::Result<Vec<i64>> {
        let (conditions, mut values) = page_conditions(page);
        let filter = match conditions.is_empty() {
            true => String::new(),
            false => format!("WHERE {}", conditions.join(" AND ")),
        };
        values.push(Value::Integer(
            i64::try_from(page.limit).unwrap_or(i64::MAX),
        ));
        let sql = format!(
            "SELECT r.id FROM requests r {filter} ORDER BY r.started_at DESC, r.id DESC LIMIT ?"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let ids = stmt.query_map(params_from_iter(values), |r| r.get(0))?;
        ids.collect()
    }
}

/// SQL conditions on `requests r`, with their `?` parameters in order.
fn page_conditions(page: &RequestPage) -> (Vec<&'static str>, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(before) = page.before {
        conditions.push(
            "(r.started_at, r.id) < (SELECT b.started_at, b.id FROM requests b WHERE b.id = ?)",
        );
        values.push(Value::Integer(before));
    }
    if let Some(text) = page.text.as_deref().filter(|t| !t.is_empty()) {
        conditions.push("(r.path LIKE ? ESCAPE '\\' OR coalesce(r.route, '') LIKE ? ESCAPE '\\')");
        let pattern = like_pattern(text);
        values.push(Value::Text(pattern.clone()));
        values.push(Value::Text(pattern));
    }
    if let Some(class) = page.status_class {
        conditions.push("r.status BETWEEN ? AND ?");
        values.push(Value::Integer(i64::from(class) * 100));
        values.push(Value::Integer(i64::from(class) * 100 + 99));
    }
    (conditions, values)
}

/// `%text%` with LIKE's wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}
