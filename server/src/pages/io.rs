//! What a request waited on: its SQL statements (in order, repeated ones
//! grouped, the likely N+1 highlighted) and its outgoing HTTP calls.

use std::collections::HashMap;

use timeglass_store::{CallRow, QueryRow, RequestRow};

use crate::html::{escape, ms};

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

/// The queries panel: the repeated statements, then every statement in order.
pub(crate) fn queries_panel(r: &RequestRow, queries: &[QueryRow]) -> String {
    if queries.is_empty() {
        return "<p class=\"muted\">This request ran no SQL statement that TimeGlass captures \
                (SQLAlchemy, asyncpg, psycopg, sqlite3, aiosqlite).</p>"
            .to_string();
    }
    let flagged = n_plus_one(r);
    let groups = repeated(queries);
    let counts: HashMap<&str, usize> = groups.iter().map(|g| (g.normalized, g.count)).collect();
    let mut out = String::new();
    if let Some(rep) = r.repeated.as_ref().filter(|_| r.n_plus_one) {
        out.push_str(&format!(
            "<div class=\"nplus1-note\"><span class=\"badge nplus1-badge\">N+1</span> \
             One statement ran <b>{}×</b> from <code>{}</code>: load the rows in one query \
             (a join or <code>IN (...)</code>) instead of one per item.</div>",
            rep.count,
            escape(rep.caller.as_deref().unwrap_or("an unknown line"))
        ));
    }
    if !groups.is_empty() {
        out.push_str(&groups_table(&groups, flagged));
    }
    out.push_str("<h3>Every statement, in order</h3>");
    out.push_str(&statements_table(queries, &counts, flagged));
    out
}

fn groups_table(groups: &[Group<'_>], flagged: Option<&str>) -> String {
    let rows: String = groups
        .iter()
        .map(|g| {
            let hot = flagged == Some(g.normalized);
            let callers = g
                .callers
                .iter()
                .map(|c| format!("<div>{}</div>", escape(c)))
                .collect::<String>();
            format!(
                "<tr class=\"{class}\"><td class=\"num\">{flag}{count}×</td><td class=\"num\">{total}</td>\
                 <td class=\"sql\"><code>{sql}</code></td><td class=\"caller\">{callers}</td></tr>",
                class = if hot { "group nplus1" } else { "group" },
                flag = if hot {
                    "<span class=\"badge nplus1-badge\" title=\"likely N+1\">N+1</span> "
                } else {
                    ""
                },
                count = g.count,
                total = ms(g.total_ms),
                sql = escape(g.normalized),
            )
        })
        .collect();
    format!(
        "<h3>Repeated statements</h3><table class=\"list repeated\" id=\"repeated\"><thead><tr>\
         <th class=\"num\">Runs</th><th class=\"num\">Total</th><th>Statement (normalised)</th><th>Called from</th>\
         </tr></thead><tbody>{rows}</tbody></table>"
    )
}

fn statements_table(
    queries: &[QueryRow],
    counts: &HashMap<&str, usize>,
    flagged: Option<&str>,
) -> String {
    let rows: String = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut classes = vec!["stmt"];
            if flagged == Some(q.normalized.as_str()) {
                classes.push("nplus1");
            }
            if q.error.is_some() {
                classes.push("err");
            }
            let repeat = match counts.get(q.normalized.as_str()) {
                Some(n) => format!(
                    "<span class=\"badge repeat-badge\" title=\"this statement ran {n}× in the request\">×{n}</span>"
                ),
                None => String::new(),
            };
            format!(
                "<tr class=\"{classes}\"><td class=\"num muted\">{n}</td><td class=\"num\">{start}</td>\
                 <td class=\"num\">{duration}</td><td class=\"num\">{rows}</td><td>{driver}</td>\
                 <td class=\"sql\">{repeat}<code>{sql}</code>{cut}{params}{error}</td><td class=\"caller\">{caller}</td></tr>",
                classes = classes.join(" "),
                n = i + 1,
                start = ms(q.start_ms),
                duration = ms(q.duration_ms),
                rows = q.rows.map_or("<span class=\"muted\">—</span>".to_string(), |n| n.to_string()),
                driver = escape(&q.driver),
                sql = escape(&q.sql),
                cut = cut_note(q.sql.chars().count() as u64, q.sql_length, "statement"),
                params = params(q),
                error = q.error.as_deref().map_or(String::new(), |e| {
                    format!("<div class=\"q-error\">{}</div>", escape(e))
                }),
                caller = caller_line(q).map_or("<span class=\"muted\">—</span>".to_string(), |c| escape(&c)),
            )
        })
        .collect();
    format!(
        "<div class=\"scroll\"><table class=\"list statements\" id=\"statements\"><thead><tr>\
         <th class=\"num\">#</th><th class=\"num\">Start</th><th class=\"num\">Duration</th><th class=\"num\">Rows</th>\
         <th>Driver</th><th>Statement</th><th>Called from</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

fn params(q: &QueryRow) -> String {
    match &q.params {
        None => String::new(),
        Some(p) => format!(
            "<div class=\"q-params\"><span class=\"muted\">params</span> <code>{}</code>{}</div>",
            escape(p),
            cut_note(p.chars().count() as u64, q.params_length, "parameters")
        ),
    }
}

fn cut_note(shown: u64, length: u64, what: &str) -> String {
    match length > shown {
        true => format!(
            " <span class=\"muted\">(first {shown} of {length} characters of the {what})</span>"
        ),
        false => String::new(),
    }
}

/// The calls panel: every outgoing HTTP call in order.
pub(crate) fn calls_panel(calls: &[CallRow]) -> String {
    if calls.is_empty() {
        return "<p class=\"muted\">This request made no outgoing HTTP call that TimeGlass \
                captures (httpx, requests).</p>"
            .to_string();
    }
    let rows: String = calls
        .iter()
        .map(|c| {
            let status = match c.status {
                Some(s) => format!("<span class=\"status status-{}xx\">{s}</span>", s / 100),
                None => "<span class=\"status status-none\">—</span>".to_string(),
            };
            format!(
                "<tr class=\"call{err}\"><td><span class=\"method m-{mclass}\">{method}</span></td>\
                 <td class=\"url\"><code>{url}</code>{error}</td><td class=\"num\">{status}</td>\
                 <td class=\"num\">{start}</td><td class=\"num\">{duration}</td><td>{library}</td></tr>",
                err = if c.error.is_some() { " err" } else { "" },
                mclass = escape(&c.method.to_ascii_lowercase()),
                method = escape(&c.method),
                url = escape(&c.url),
                error = c.error.as_deref().map_or(String::new(), |e| {
                    format!("<div class=\"q-error\">{}</div>", escape(e))
                }),
                start = ms(c.start_ms),
                duration = ms(c.duration_ms),
                library = escape(&c.library),
            )
        })
        .collect();
    format!(
        "<table class=\"list calls\" id=\"calls\"><thead><tr><th>Method</th><th>URL</th><th class=\"num\">Status</th>\
         <th class=\"num\">Start</th><th class=\"num\">Duration</th><th>Library</th></tr></thead><tbody>{rows}</tbody></table>"
    )
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
