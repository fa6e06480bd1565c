//! What `timeglass report` and `/api/v1/stats` judge: one session's requests
//! in a time window, endpoint by endpoint, its processes' resource samples,
//! and its latest bad-input probe run.
//!
//! Times here are on the session's monotonic clock (`requests.start_ns`):
//! integers compare and bucket cheaply, and `requests_in_window` (schema v8)
//! covers every column [`Store::window`] reads, so a scan over a million
//! requests reads the index alone.

use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, params_from_iter, OptionalExtension};
use serde::Serialize;

use crate::{ClockMap, SessionId, Store, StoreError};

/// Which requests of a session to judge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowQuery {
    pub session: SessionId,
    /// Requests that started at or after this monotonic time.
    pub since_ns: Option<u64>,
    /// Requests that started before this monotonic time.
    pub until_ns: Option<u64>,
    /// Exactly this method (`GET`).
    pub method: Option<String>,
    pub route: Option<RouteMatch>,
}

/// How a route filter matches a request's route template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteMatch {
    /// The template itself (`/items/{item_id}`), as the API takes it.
    Exact(String),
    /// The template contains this text, case-insensitive for ASCII, as
    /// `report --route` takes it.
    Contains(String),
}

/// A method and the route template that served it (`None`: no route
/// matched, as for a 404 of an unknown path).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    pub method: String,
    pub route: Option<String>,
}

/// One request as the statistics see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowRequest {
    /// Index into [`Window::endpoints`].
    pub endpoint: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub duration_us: u64,
    pub status: Option<u16>,
    pub errored: bool,
    /// `None` for requests recorded before CPU time was kept (schema < 7).
    pub cpu_us: Option<u64>,
    pub db_us: u64,
    pub queries: u64,
    pub n_plus_one: bool,
    pub loop_blocked: bool,
}

/// The requests a [`WindowQuery`] selects, in start order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub endpoints: Vec<Endpoint>,
    pub requests: Vec<WindowRequest>,
}

/// What a report needs to know about its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    /// RFC 3339.
    pub started_at: String,
    pub ended_at: Option<String>,
    /// Where the app was started; its `pyproject.toml` is looked for there.
    pub cwd: String,
    pub clock: ClockMap,
}

/// One resource sample of one process (schema v8's `process_samples`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ProcessSample {
    /// On the monotonic clock of `requests.start_ns`.
    pub ts_ns: u64,
    /// User + system CPU since the previous sample; 100 is one core.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub threads: u32,
    pub fds: u32,
}

/// The samples of one process, as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessSamples {
    pub process_id: i64,
    pub pid: u32,
    pub samples: Vec<ProcessSample>,
}

/// The session's latest `timeglass probe` run, as stored by the probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeRun {
    pub id: i64,
    /// Every operation of the app's OpenAPI schema.
    pub operations: Vec<Endpoint>,
    /// The answer's status of each malformed request sent (`None`: none
    /// came: a timeout or a refused connection).
    pub statuses: Vec<Option<u16>>,
}

impl Store {
    /// The session, if there is one with that id.
    pub fn session_info(&self, session: SessionId) -> Result<Option<SessionInfo>, StoreError> {
        self.session_where("id = ?1", params![session.0])
    }

    /// The session that started last.
    pub fn latest_session(&self) -> Result<Option<SessionInfo>, StoreError> {
        self.session_where(
            "id = (SELECT id FROM sessions ORDER BY started_at DESC, id DESC LIMIT 1)",
            params![],
        )
    }

    fn session_where(
        &self,
        condition: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Option<SessionInfo>, StoreError> {
        let sql = format!(
            "SELECT id, started_at, ended_at, cwd, clock_mono_ns, clock_unix_ns
             FROM sessions WHERE {condition}"
        );
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row(values, |r| {
                    Ok(SessionInfo {
                        id: SessionId(r.get(0)?),
                        started_at: r.get(1)?,
                        ended_at: r.get(2)?,
                        cwd: r.get(3)?,
                        clock: ClockMap {
                            mono_ns: r.get(4)?,
                            unix_ns: r.get(5)?,
                        },
                    })
                })
                .optional()
            })
            .map_err(|e| self.sql_err(e))
    }

    /// The requests the query selects, in start order, from the
    /// `requests_in_window` index alone.
    pub fn window(&self, q: &WindowQuery) -> Result<Window, StoreError> {
        let mut conditions = vec!["session_id = ?".to_string()];
        let mut values = vec![Value::Integer(q.session.0)];
        let mut bound = |condition: &str, ns: Option<u64>| {
            if let Some(ns) = ns {
                conditions.push(condition.to_string());
                values.push(Value::Integer(i64::try_from(ns).unwrap_or(i64::MAX)));
            }
        };
        bound("start_ns >= ?", q.since_ns);
        bound("start_ns < ?", q.until_ns);
        if let Some(method) = q.method.as_deref().filter(|m| !m.is_empty()) {
            conditions.push("method = ?".into());
            values.push(Value::Text(method.to_ascii_uppercase()));
        }
        match &q.route {
            Some(RouteMatch::Exact(route)) => {
                conditions.push("route = ?".into());
                values.push(Value::Text(route.clone()));
            }
            Some(RouteMatch::Contains(text)) => {
                conditions.push("route LIKE ? ESCAPE '\\'".into());
                values.push(Value::Text(crate::dashboard::like_pattern(text)));
            }
            None => {}
        }
        let sql = format!(
            "SELECT method, route, start_ns, end_ns, duration_us, status, errored, python_us,
                 cpu_us, db_us, queries, n_plus_one_count IS NOT NULL, loop_blocked_us IS NOT NULL
             FROM requests INDEXED BY requests_in_window
             WHERE {} ORDER BY session_id, start_ns",
            conditions.join(" AND ")
        );
        let mut window = Window::default();
        let scan = || -> rusqlite::Result<()> {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(values))?;
            while let Some(r) = rows.next()? {
                let endpoint = endpoint_index(&mut window.endpoints, r.get_ref(0)?, r.get_ref(1)?)?;
                let measured = !matches!(r.get_ref(7)?, ValueRef::Null);
                window.requests.push(WindowRequest {
                    endpoint,
                    start_ns: r.get(2)?,
                    end_ns: r.get(3)?,
                    duration_us: r.get(4)?,
                    status: r.get(5)?,
                    errored: r.get(6)?,
                    cpu_us: measured.then(|| r.get(8)).transpose()?,
                    db_us: r.get(9)?,
                    queries: r.get(10)?,
                    n_plus_one: r.get(11)?,
                    loop_blocked: r.get(12)?,
                });
            }
            Ok(())
        };
        scan().map_err(|e| self.sql_err(e))?;
        Ok(window)
    }

    /// Every process of the session with its resource samples in
    /// `[since_ns, until_ns)`, in time order.
    pub fn process_samples(
        &self,
        session: SessionId,
        since_ns: Option<u64>,
        until_ns: Option<u64>,
    ) -> Result<Vec<ProcessSamples>, StoreError> {
        let as_sql = |ns: Option<u64>, or: i64| ns.map_or(or, |n| i64::try_from(n).unwrap_or(or));
        let read = || -> rusqlite::Result<Vec<ProcessSamples>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT p.id, p.pid, s.ts_ns, s.cpu_percent, s.rss_bytes, s.threads, s.fds
                 FROM processes p JOIN process_samples s ON s.process_id = p.id
                 WHERE p.session_id = ?1 AND s.ts_ns >= ?2 AND s.ts_ns < ?3
                 ORDER BY p.id, s.ts_ns",
            )?;
            let mut rows = stmt.query(params![
                session.0,
                as_sql(since_ns, 0),
                as_sql(until_ns, i64::MAX)
            ])?;
            let mut out: Vec<ProcessSamples> = Vec::new();
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                if out.last().is_none_or(|p| p.process_id != id) {
                    out.push(ProcessSamples {
                        process_id: id,
                        pid: r.get(1)?,
                        samples: Vec::new(),
                    });
                }
                out.last_mut().expect("pushed").samples.push(ProcessSample {
                    ts_ns: r.get(2)?,
                    cpu_percent: r.get(3)?,
                    rss_bytes: r.get(4)?,
                    threads: r.get(5)?,
                    fds: r.get(6)?,
                });
            }
            Ok(out)
        };
        read().map_err(|e| self.sql_err(e))
    }

    /// The session's latest probe run, if one ran while it recorded.
    pub fn latest_probe(&self, session: SessionId) -> Result<Option<ProbeRun>, StoreError> {
        let read = || -> rusqlite::Result<Option<ProbeRun>> {
            let id: Option<i64> = self
                .conn
                .prepare_cached("SELECT max(id) FROM probe_runs WHERE session_id = ?1")?
                .query_row(params![session.0], |r| r.get(0))?;
            let Some(id) = id else {
                return Ok(None);
            };
            let operations = self
                .conn
                .prepare_cached(
                    "SELECT method, route FROM probe_operations WHERE run_id = ?1
                     ORDER BY route, method",
                )?
                .query_map(params![id], |r| {
                    Ok(Endpoint {
                        method: r.get(0)?,
                        route: Some(r.get(1)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let statuses = self
                .conn
                .prepare_cached("SELECT status FROM probe_results WHERE run_id = ?1 ORDER BY seq")?
                .query_map(params![id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(ProbeRun {
                id,
                operations,
                statuses,
            }))
        };
        read().map_err(|e| self.sql_err(e))
    }

    /// The endpoints of the session that received at least one request
    /// not sent by any of the session's probe runs.
    pub fn exercised_endpoints(&self, session: SessionId) -> Result<Vec<Endpoint>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT DISTINCT method, route FROM requests
                 WHERE session_id = ?1 AND route IS NOT NULL AND id NOT IN (
                     SELECT pr.request_id FROM probe_results pr
                     JOIN probe_runs p ON p.id = pr.run_id
                     WHERE p.session_id = ?1 AND pr.request_id IS NOT NULL)
                 ORDER BY route, method",
            )
            .and_then(|mut s| {
                s.query_map(params![session.0], |r| {
                    Ok(Endpoint {
                        method: r.get(0)?,
                        route: r.get(1)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| self.sql_err(e))
    }
}

/// The index of `(method, route)` in `endpoints`, added if new. A session
/// has a few dozen endpoints, so a scan beats hashing borrowed text.
fn endpoint_index(
    endpoints: &mut Vec<Endpoint>,
    method: ValueRef<'_>,
    route: ValueRef<'_>,
) -> rusqlite::Result<u32> {
    let method = method.as_str()?;
    let route = route.as_str_or_null()?;
    let found = endpoints
        .iter()
        .position(|e| e.method == method && e.route.as_deref() == route);
    let at = found.unwrap_or_else(|| {
        endpoints.push(Endpoint {
            method: method.to_string(),
            route: route.map(str::to_string),
        });
        endpoints.len() - 1
    });
    Ok(at as u32)
}
