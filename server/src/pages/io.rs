//! What a request waited on: its SQL statements (in order, repeated ones
//! grouped, the likely N+1 highlighted) and its outgoing HTTP calls.

use std::collections::HashMap;

use askama::Template;
use timeglass_model::Repeated;
use timeglass_store::{CallRow, QueryRow, RequestRow};

use crate::html::{ms, render};

/// Statements run this many times or more by one request are grouped as repeated.
const REPEATED: usize = 2;

/// Statements that share a normalised form, in order of first appearance.
#[derive(Debug, PartialEq)]
pub(crate) struct Group<'a> {
    pub normalized: &'a str,
    pub count: usize,
    pub total_ms: f64,
    /// The `file:line in function` lines that ran it, most frequent first.
    pub callers: Vec<String>,
}

/// The normalised statements that ran [`REPEATED`] times or more, most
/// often first (then most total time).
pub(crate) fn repeated(queries: &[QueryRow]) -> Vec<Group<'_>> {
    let mut order: Vec<&str> = Vec::new();
    let mut by: HashMap<&str, (usize, f64, HashMap<String, usize>)> = HashMap::new();
    for q in queries {
        let entry = by.entry(&q.normalized).or_insert_with(|| {
            order.push(&q.normalized);
            Default::default()
        });
        entry.0 += 1;
        entry.1 += q.duration_ms;
        if let Some(line) = caller_line(q) {
            *entry.2.entry(line).or_default() += 1;
        }
    }
    let mut groups: Vec<Group<'_>> = order
        .into_iter()
        .filter_map(|normalized| {
            let (count, total_ms, lines) = by.remove(normalized)?;
            let mut callers: Vec<(String, usize)> = lines.into_iter().collect();
            callers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            (count >= REPEATED).then(|| Group {
                normalized,
                count,
                total_ms,
                callers: callers.into_iter().map(|(line, _)| line).collect(),
            })
        })
        .collect();
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| b.total_ms.total_cmp(&a.total_ms))
    });
    groups
}

fn caller_line(q: &QueryRow) -> Option<String> {
    q.caller.first().map(timeglass_model::Frame::location)
}

/// The normalised statement flagged as the request's likely N+1, if any.
fn n_plus_one(r: &RequestRow) -> Option<&str> {
    r.repeated
        .as_ref()
        .filter(|_| r.n_plus_one)
        .map(|rep| rep.normalized.as_str())
}

/// A repeated statement as the queries panel shows it.
struct GroupRow<'a> {
    group: Group<'a>,
    total: String,
    /// The one flagged as the request's likely N+1.
    hot: bool,
}

/// A statement as the queries panel shows it.
struct StatementRow<'a> {
    q: &'a QueryRow,
    classes: String,
    start: String,
    duration: String,
    /// How many times its normalised form ran, when it repeated.
    repeat: Option<usize>,
    /// `(shown, length)` in characters of a statement or parameters cut short.
    sql_cut: Option<(u64, u64)>,
    params_cut: Option<(u64, u64)>,
    caller: Option<String>,
}

/// The queries panel: the repeated statements, then every statement in order.
#[derive(Template)]
#[template(path = "parts/queries.html")]
struct QueriesTemplate<'a> {
    n_plus_one: Option<&'a Repeated>,
    groups: Vec<GroupRow<'a>>,
    statements: Vec<StatementRow<'a>>,
}

/// `(shown, length)` when `length` is more than what was `shown`.
fn cut(shown: u64, length: u64) -> Option<(u64, u64)> {
    (length > shown).then_some((shown, length))
}

pub(crate) fn queries_panel(r: &RequestRow, queries: &[QueryRow]) -> String {
    let flagged = n_plus_one(r);
    let groups = repeated(queries);
    let counts: HashMap<&str, usize> = groups.iter().map(|g| (g.normalized, g.count)).collect();
    let statements = queries
        .iter()
        .map(|q| {
            let mut classes = vec!["stmt"];
            if flagged == Some(q.normalized.as_str()) {
                classes.push("nplus1");
            }
            if q.error.is_some() {
                classes.push("err");
            }
            StatementRow {
                q,
                classes: classes.join(" "),
                start: ms(q.start_ms),
                duration: ms(q.duration_ms),
                repeat: counts.get(q.normalized.as_str()).copied(),
                sql_cut: cut(q.sql.chars().count() as u64, q.sql_length),
                params_cut: q
                    .params
                    .as_ref()
                    .and_then(|p| cut(p.chars().count() as u64, q.params_length)),
                caller: caller_line(q),
            }
        })
        .collect();
    let groups = groups
        .into_iter()
        .map(|group| GroupRow {
            total: ms(group.total_ms),
            hot: flagged == Some(group.normalized),
            group,
        })
        .collect();
    render(&QueriesTemplate {
        n_plus_one: r.repeated.as_ref().filter(|_| r.n_plus_one),
        groups,
        statements,
    })
}

/// A call as the calls panel shows it.
struct CallView<'a> {
    c: &'a CallRow,
    start: String,
    duration: String,
}

/// The calls panel: every outgoing HTTP call in order.
#[derive(Template)]
#[template(path = "parts/calls.html")]
struct CallsTemplate<'a> {
    calls: Vec<CallView<'a>>,
}

pub(crate) fn calls_panel(calls: &[CallRow]) -> String {
    render(&CallsTemplate {
        calls: calls
            .iter()
            .map(|c| CallView {
                c,
                start: ms(c.start_ms),
                duration: ms(c.duration_ms),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeglass_model::Frame;

    fn q(normalized: &str, duration_ms: f64, line: u32) -> QueryRow {
        QueryRow {
            sql: normalized.replace('?', "1"),
            sql_length: normalized.len() as u64,
            normalized: normalized.into(),
            params: None,
            params_length: 0,
            start_ms: 0.0,
            duration_ms,
            rows: Some(1),
            driver: "sqlite3".into(),
            error: None,
            caller: vec![Frame {
                name: "load".into(),
                filename: "/srv/app/main.py".into(),
                short: "app/main.py".into(),
                line,
            }],
        }
    }

    #[test]
    fn repeated_statements_group_by_normalised_text() {
        let queries = [
            q("SELECT a FROM t WHERE id = ?", 1.0, 10),
            q("SELECT b FROM u", 5.0, 12),
            q("SELECT a FROM t WHERE id = ?", 2.0, 10),
            q("SELECT a FROM t WHERE id = ?", 3.0, 11),
        ];
        let groups = repeated(&queries);
        assert_eq!(
            groups,
            [Group {
                normalized: "SELECT a FROM t WHERE id = ?",
                count: 3,
                total_ms: 6.0,
                callers: vec![
                    "app/main.py:10 in load".to_string(),
                    "app/main.py:11 in load".to_string()
                ],
            }]
        );
    }
}
