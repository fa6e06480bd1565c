//! What comparisons read and keep: one endpoint's requests, stacks and
//! statements within a session, a session's sampling mode, and named
//! baselines (schema v10), stored as opaque JSON documents whose format
//! belongs to `timeglass-compare`.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use timeglass_model::StackCount;

use crate::read::stacks_of_leaves;
use crate::{Endpoint, SessionId, Store, StoreError};

/// One request's response time and CPU time, as a comparison samples them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFigure {
    pub id: i64,
    pub duration_us: u64,
    /// `None` when not measured (schema before 7).
    pub cpu_us: Option<u64>,
}

/// How often one normalised statement ran across an endpoint's requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementCount {
    pub normalized: String,
    pub count: u64,
    pub duration_ns: u64,
}

/// A stored baseline, without its document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BaselineRow {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// The session it was saved from; `None` when imported.
    pub session_id: Option<i64>,
    /// Size of the document, in bytes.
    pub bytes: u64,
}

impl Store {
    /// Records how the session samples: `wall` or `gil-only`.
    pub fn set_sample_mode(&mut self, session: SessionId, mode: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE sessions SET sample_mode = ?2 WHERE id = ?1",
                params![session.0, mode],
            )
            .map(drop)
            .map_err(|e| self.sql_err(e))
    }

    /// Every request of one endpoint of the session, in id order.
    pub fn endpoint_requests(
        &self,
        session: SessionId,
        endpoint: &Endpoint,
    ) -> Result<Vec<RequestFigure>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id, duration_us, CASE WHEN python_us IS NOT NULL THEN cpu_us END
                 FROM requests WHERE session_id = ?1 AND method = ?2 AND route IS ?3
                 ORDER BY id",
            )
            .and_then(|mut s| {
                s.query_map(params![session.0, endpoint.method, endpoint.route], |r| {
                    Ok(RequestFigure {
                        id: r.get(0)?,
                        duration_us: r.get::<_, i64>(1)?.max(0) as u64,
                        cpu_us: r.get::<_, Option<i64>>(2)?.map(|c| c.max(0) as u64),
                    })
                })?
                .collect()
            })
            .map_err(|e| self.sql_err(e))
    }

    /// The request of the same endpoint and session recorded just before
    /// request `id`, or just after it when it is the first. Two aggregates
    /// over the endpoint's index entries, not its rows: a request page asks
    /// for it, and an endpoint can have 100,000 requests.
    pub fn endpoint_neighbour(
        &self,
        session: SessionId,
        endpoint: &Endpoint,
        id: i64,
    ) -> Result<Option<i64>, StoreError> {
        let one = |sql: &str| -> Result<Option<i64>, StoreError> {
            self.conn
                .prepare_cached(sql)
                .and_then(|mut s| {
                    s.query_row(
                        params![session.0, endpoint.method, endpoint.route, id],
                        |r| r.get(0),
                    )
                })
                .map_err(|e| self.sql_err(e))
        };
        let before = one("SELECT max(id) FROM requests
             WHERE session_id = ?1 AND method = ?2 AND route IS ?3 AND id < ?4")?;
        match before {
            Some(b) => Ok(Some(b)),
            None => one("SELECT min(id) FROM requests
                 WHERE session_id = ?1 AND method = ?2 AND route IS ?3 AND id > ?4"),
        }
    }

    /// The stacks of one endpoint's requests in the session, summed.
    pub fn endpoint_stacks(
        &self,
        session: SessionId,
        endpoint: &Endpoint,
    ) -> Result<Vec<StackCount>, StoreError> {
        let leaves = self
            .conn
            .prepare_cached(
                "SELECT rs.stack_id, sum(rs.samples)
                 FROM requests r JOIN request_stacks rs ON rs.request_id = r.id
                 WHERE r.session_id = ?1 AND r.method = ?2 AND r.route IS ?3
                 GROUP BY rs.stack_id",
            )
            .and_then(|mut s| {
                s.query_map(params![session.0, endpoint.method, endpoint.route], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<(i64, u64)>>>()
            })
            .map_err(|e| self.sql_err(e))?;
        stacks_of_leaves(&self.conn, leaves).map_err(|e| self.sql_err(e))
    }

    /// The statements one endpoint's requests ran in the session, by
    /// normalised SQL, most frequent first.
    pub fn endpoint_statements(
        &self,
        session: SessionId,
        endpoint: &Endpoint,
    ) -> Result<Vec<StatementCount>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT q.normalized, count(*), sum(q.duration_ns)
                 FROM requests r JOIN queries q ON q.request_id = r.id
                 WHERE r.session_id = ?1 AND r.method = ?2 AND r.route IS ?3
                 GROUP BY q.normalized ORDER BY count(*) DESC, q.normalized",
            )
            .and_then(|mut s| {
                s.query_map(params![session.0, endpoint.method, endpoint.route], |r| {
                    Ok(StatementCount {
                        normalized: r.get(0)?,
                        count: r.get(1)?,
                        duration_ns: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })?
                .collect()
            })
            .map_err(|e| self.sql_err(e))
    }

    /// Stores `body` under `name`. With `replace` false, an existing
    /// baseline of that name is an error (`Ok(false)`) and is kept.
    pub fn save_baseline(
        &mut self,
        name: &str,
        session: Option<SessionId>,
        body: &str,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let created_at = crate::clock::now_rfc3339_ms();
        let verb = if replace {
            "INSERT OR REPLACE"
        } else {
            "INSERT OR IGNORE"
        };
        let sql = format!(
            "{verb} INTO baselines (name, created_at, session_id, body) VALUES (?1, ?2, ?3, ?4)"
        );
        self.conn
            .execute(&sql, params![name, created_at, session.map(|s| s.0), body])
            .map(|n| n == 1)
            .map_err(|e| self.sql_err(e))
    }

    /// The document of the baseline called `name`.
    pub fn baseline(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT body FROM baselines WHERE name = ?1")
            .and_then(|mut s| s.query_row(params![name], |r| r.get(0)).optional())
            .map_err(|e| self.sql_err(e))
    }

    /// Every baseline, by name.
    pub fn baselines(&self) -> Result<Vec<BaselineRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT name, created_at, session_id, length(CAST(body AS BLOB))
                 FROM baselines ORDER BY name",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(BaselineRow {
                        name: r.get(0)?,
                        created_at: r.get(1)?,
                        session_id: r.get(2)?,
                        bytes: r.get(3)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| self.sql_err(e))
    }

    /// Removes the baseline; `false` when there was none of that name.
    pub fn remove_baseline(&mut self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM baselines WHERE name = ?1", params![name])
            .map(|n| n == 1)
            .map_err(|e| self.sql_err(e))
    }
}
