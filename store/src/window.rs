//! What `timeglass report` and `/api/v1/stats` judge: one session's requests
//! in a time window, endpoint by endpoint, its processes' resource samples,
//! and its latest bad-input probe run.
//!
//! Times here are on the session's monotonic clock (`requests.start_ns`):
//! integers compare and bucket cheaply, and `requests_in_window` (schema v8)
//! and `requests_by_endpoint` (v9) cover every column read here, so a
//! scan reads an index alone. Each endpoint's sums come mostly from
//! `endpoint_minutes` (v9, added to by the writer a batch at a time), its response times already
//! in order ([`Store::durations`]): over a million requests the statistics
//! read one integer a request, never a whole row. A status or response time
//! filter sums the window request by request instead (the minutes cannot
//! tell those requests apart).

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension};
use serde::Serialize;
use timeglass_model::PROBE_TAG_HEADER;

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
    /// Statuses `class`xx, e.g. 5 for 500-599 (a request that raised
    /// without answering has no status, so no class), as the request
    /// list's filter.
    pub status_class: Option<u8>,
    /// A response time of at least this many microseconds.
    pub min_duration_us: Option<u64>,
}

/// The span of one row of `endpoint_minutes` (schema v9).
const MINUTE_NS: u64 = 60_000_000_000;

impl WindowQuery {
    /// The SQL condition (`?` placeholders) and its values.
    pub(crate) fn conditions(&self) -> (String, Vec<Value>) {
        let mut conditions = vec!["session_id = ?"];
        let mut values = vec![Value::Integer(self.session.0)];
        if let Some(ns) = self.since_ns {
            conditions.push("start_ns >= ?");
            values.push(as_sql(ns));
        }
        if let Some(ns) = self.until_ns {
            conditions.push("start_ns < ?");
            values.push(as_sql(ns));
        }
        self.endpoint_conditions(&mut conditions, &mut values, false);
        if let Some(class) = self.status_class {
            conditions.push("status BETWEEN ? AND ?");
            values.push(Value::Integer(i64::from(class) * 100));
            values.push(Value::Integer(i64::from(class) * 100 + 99));
        }
        if let Some(us) = self.min_duration_us {
            conditions.push("duration_us >= ?");
            values.push(as_sql(us));
        }
        (conditions.join(" AND "), values)
    }

    /// Whether a filter looks at each request's own row (its status or
    /// response time), which `endpoint_minutes` has only summed.
    fn filters_rows(&self) -> bool {
        self.status_class.is_some() || self.min_duration_us.is_some()
    }

    /// The method and route filters; `keyed`: of `endpoint_minutes`,
    /// where '' is no route.
    fn endpoint_conditions(
        &self,
        conditions: &mut Vec<&str>,
        values: &mut Vec<Value>,
        keyed: bool,
    ) {
        if let Some(method) = self.method.as_deref().filter(|m| !m.is_empty()) {
            conditions.push("method = ?");
            values.push(Value::Text(method.to_ascii_uppercase()));
        }
        match &self.route {
            Some(RouteMatch::Exact(route)) => {
                conditions.push("route = ?");
                values.push(Value::Text(route.clone()));
            }
            Some(RouteMatch::Contains(text)) => {
                conditions.push(if keyed {
                    "route LIKE ? ESCAPE '\\' AND route <> ''"
                } else {
                    "route LIKE ? ESCAPE '\\'"
                });
                values.push(Value::Text(crate::dashboard::like_pattern(text)));
            }
            None => {}
        }
    }

    /// This query over `[since_ns, until_ns)` instead.
    fn between(&self, since_ns: u64, until_ns: u64) -> WindowQuery {
        WindowQuery {
            since_ns: Some(since_ns),
            until_ns: Some(until_ns),
            ..self.clone()
        }
    }

    /// The whole minutes `[first, end)` of the window, and the parts of
    /// it before and after them, which are summed request by request; the
    /// whole window request by request when a filter looks at rows.
    pub(crate) fn split(&self) -> (Option<(u64, Option<u64>)>, Vec<WindowQuery>) {
        if self.filters_rows() {
            return (None, vec![self.clone()]);
        }
        let first = self.since_ns.map_or(0, |s| s.div_ceil(MINUTE_NS));
        let end = self.until_ns.map(|u| u / MINUTE_NS);
        match (self.since_ns, self.until_ns, end) {
            (Some(since), Some(until), Some(end)) if first >= end => {
                (None, vec![self.between(since, until)])
            }
            _ => {
                let mut edges = Vec::new();
                if let Some(since) = self.since_ns.filter(|s| s % MINUTE_NS != 0) {
                    edges.push(self.between(since, first * MINUTE_NS));
                }
                if let (Some(until), Some(end)) = (self.until_ns, end) {
                    if until % MINUTE_NS != 0 {
                        edges.push(self.between(end * MINUTE_NS, until));
                    }
                }
                (Some((first, end)), edges)
            }
        }
    }
}

fn as_sql(ns: u64) -> Value {
    Value::Integer(i64::try_from(ns).unwrap_or(i64::MAX))
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

/// What the statistics sum over a set of requests, summed by SQLite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    /// Summed, least and most response time (0 without requests).
    pub duration_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    /// When the last of them ended, on the monotonic clock.
    pub last_end_ns: u64,
    /// Answered 5xx, or not at all because the app raised.
    pub errors_5xx: u64,
    pub answered_4xx: u64,
    pub db_us: u64,
    pub queries: u64,
    /// Requests flagged as likely N+1s, and that blocked the event loop.
    pub n_plus_one: u64,
    pub loop_blocks: u64,
    /// CPU time summed over the requests with a measured one (none before
    /// schema 7), and how many those are.
    pub cpu_us: u64,
    pub cpu_measured: u64,
}

impl Totals {
    /// Adds `other`'s requests to these.
    pub fn add(&mut self, other: &Totals) {
        if other.requests == 0 {
            return;
        }
        self.min_us = if self.requests == 0 {
            other.min_us
        } else {
            self.min_us.min(other.min_us)
        };
        self.max_us = self.max_us.max(other.max_us);
        self.last_end_ns = self.last_end_ns.max(other.last_end_ns);
        self.requests += other.requests;
        self.duration_us += other.duration_us;
        self.errors_5xx += other.errors_5xx;
        self.answered_4xx += other.answered_4xx;
        self.db_us += other.db_us;
        self.queries += other.queries;
        self.n_plus_one += other.n_plus_one;
        self.loop_blocks += other.loop_blocks;
        self.cpu_us += other.cpu_us;
        self.cpu_measured += other.cpu_measured;
    }
}

/// One endpoint's [`Totals`] in a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointTotals {
    pub endpoint: Endpoint,
    pub totals: Totals,
}

/// When one request of a window ran, on the monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub start_ns: u64,
    pub end_ns: u64,
    pub duration_us: u64,
}

/// What a report needs to know about its session.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    pub id: SessionId,
    /// RFC 3339.
    pub started_at: String,
    pub ended_at: Option<String>,
    /// Where the app was started; its `pyproject.toml` is looked for there.
    pub cwd: String,
    pub clock: ClockMap,
    /// Samples per second while a request is in flight.
    pub rate_hz: u32,
    /// `wall` or `gil-only`; `None` for sessions before schema 10.
    pub sample_mode: Option<String>,
    /// How busy the machine was (schema 16; unknown before, and until the
    /// session ends).
    pub load: crate::MachineLoad,
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
            "SELECT id, started_at, ended_at, cwd, clock_mono_ns, clock_unix_ns, rate_hz,
                 sample_mode, cpu_wait_share, steal_share, app_wait_per_cpu
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
                        rate_hz: r.get(6)?,
                        sample_mode: r.get(7)?,
                        load: crate::MachineLoad {
                            cpu_wait: r.get(8)?,
                            steal: r.get(9)?,
                            app_wait: r.get(10)?,
                        },
                    })
                })
                .optional()
            })
            .map_err(|e| self.sql_err(e))
    }

    /// The [`Totals`] of each endpoint the query selects, by method and
    /// route: the window's whole minutes from `endpoint_minutes`, the
    /// requests of its partial first and last minutes one by one (all of
    /// them one by one under a status or response time filter).
    pub fn endpoint_totals(&self, q: &WindowQuery) -> Result<Vec<EndpointTotals>, StoreError> {
        let (minutes, edges) = q.split();
        let mut sums: BTreeMap<Endpoint, Totals> = BTreeMap::new();
        let mut add = |rows: Vec<EndpointTotals>| {
            for row in rows {
                sums.entry(row.endpoint).or_default().add(&row.totals);
            }
        };
        if let Some((first, end)) = minutes {
            add(self.minute_totals(q, first, end)?);
        }
        for edge in &edges {
            add(self.request_totals(edge)?);
        }
        Ok(sums
            .into_iter()
            .map(|(endpoint, totals)| EndpointTotals { endpoint, totals })
            .collect())
    }

    fn minute_totals(
        &self,
        q: &WindowQuery,
        first: u64,
        end: Option<u64>,
    ) -> Result<Vec<EndpointTotals>, StoreError> {
        let mut conditions = vec!["session_id = ?", "minute >= ?"];
        let mut values = vec![Value::Integer(q.session.0), as_sql(first)];
        if let Some(end) = end {
            conditions.push("minute < ?");
            values.push(as_sql(end));
        }
        q.endpoint_conditions(&mut conditions, &mut values, true);
        let sql = format!(
            "SELECT method, nullif(route, ''), sum(requests), sum(duration_us), min(min_us),
                 max(max_us), max(last_end_ns), sum(errors_5xx), sum(answered_4xx), sum(db_us),
                 sum(queries), sum(n_plus_one), sum(loop_blocks), sum(cpu_us), sum(cpu_measured)
             FROM endpoint_minutes WHERE {} GROUP BY method, route",
            conditions.join(" AND ")
        );
        self.totals_by(&sql, values)
    }

    fn request_totals(&self, q: &WindowQuery) -> Result<Vec<EndpointTotals>, StoreError> {
        let (conditions, values) = q.conditions();
        // The 5xx test is `is_5xx` of timeglass-report, as in schema v9.
        let sql = format!(
            "SELECT method, route, count(*), sum(duration_us), min(duration_us),
                 max(duration_us), max(end_ns),
                 count(CASE WHEN status >= 500 OR (status IS NULL AND errored) THEN 1 END),
                 count(CASE WHEN status BETWEEN 400 AND 499 THEN 1 END),
                 sum(db_us), sum(queries), count(n_plus_one_count), count(loop_blocked_us),
                 coalesce(sum(CASE WHEN python_us IS NOT NULL THEN cpu_us END), 0),
                 count(python_us)
             FROM requests INDEXED BY requests_in_window
             WHERE {conditions} GROUP BY method, route"
        );
        self.totals_by(&sql, values)
    }

    fn totals_by(&self, sql: &str, values: Vec<Value>) -> Result<Vec<EndpointTotals>, StoreError> {
        let read = || -> rusqlite::Result<Vec<EndpointTotals>> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params_from_iter(values), |r| {
                Ok(EndpointTotals {
                    endpoint: Endpoint {
                        method: r.get(0)?,
                        route: r.get(1)?,
                    },
                    totals: Totals {
                        requests: r.get(2)?,
                        duration_us: r.get(3)?,
                        min_us: r.get(4)?,
                        max_us: r.get(5)?,
                        last_end_ns: r.get(6)?,
                        errors_5xx: r.get(7)?,
                        answered_4xx: r.get(8)?,
                        db_us: r.get(9)?,
                        queries: r.get(10)?,
                        n_plus_one: r.get(11)?,
                        loop_blocks: r.get(12)?,
                        cpu_us: r.get(13)?,
                        cpu_measured: r.get(14)?,
                    },
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| self.sql_err(e))
    }

    /// The response times of one endpoint's requests that the query
    /// selects, ascending: the `requests_by_endpoint` index is in that
    /// order, so neither SQLite nor the caller sorts.
    pub fn durations(&self, q: &WindowQuery, endpoint: &Endpoint) -> Result<Vec<u64>, StoreError> {
        let (conditions, mut values) = q.conditions();
        values.push(Value::Text(endpoint.method.clone()));
        values.push(endpoint.route.clone().map_or(Value::Null, Value::Text));
        let sql = format!(
            "SELECT duration_us FROM requests INDEXED BY requests_by_endpoint
             WHERE {conditions} AND method = ? AND route IS ?
             ORDER BY session_id, method, route, duration_us"
        );
        let read = || -> rusqlite::Result<Vec<u64>> {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(values))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(r.get::<_, i64>(0)?.max(0) as u64);
            }
            Ok(out)
        };
        read().map_err(|e| self.sql_err(e))
    }

    /// When each request the query selects ran, in start order, from the
    /// `requests_in_window` index alone.
    pub fn timeline(&self, q: &WindowQuery) -> Result<Vec<Timing>, StoreError> {
        let (conditions, values) = q.conditions();
        let sql = format!(
            "SELECT start_ns, end_ns, duration_us FROM requests INDEXED BY requests_in_window
             WHERE {conditions} ORDER BY session_id, start_ns"
        );
        let read = || -> rusqlite::Result<Vec<Timing>> {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(values))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(Timing {
                    start_ns: r.get::<_, i64>(0)?.max(0) as u64,
                    end_ns: r.get::<_, i64>(1)?.max(0) as u64,
                    duration_us: r.get::<_, i64>(2)?.max(0) as u64,
                });
            }
            Ok(out)
        };
        read().map_err(|e| self.sql_err(e))
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

    /// The endpoints of the session that received at least one request
    /// not sent by any of the session's probe runs.
    ///
    /// Probe traffic is what a probe run matched, and what carries the
    /// probe's tag header (a request that hung was answered after the probe
    /// stopped waiting, so no run matched it).
    pub fn exercised_endpoints(&self, session: SessionId) -> Result<Vec<Endpoint>, StoreError> {
        // Header names are stored as sent, lower case from the ASGI server;
        // LIKE ignores ASCII case anyway.
        let tagged = format!("%\"{PROBE_TAG_HEADER}\"%");
        self.conn
            .prepare_cached(
                "SELECT DISTINCT r.method, r.route FROM requests r
                 WHERE r.session_id = ?1 AND r.route IS NOT NULL AND r.id NOT IN (
                     SELECT pr.request_id FROM probe_results pr
                     JOIN probe_runs p ON p.id = pr.run_id
                     WHERE p.session_id = ?1 AND pr.request_id IS NOT NULL)
                 AND NOT EXISTS (
                     SELECT 1 FROM request_context c
                     WHERE c.request_id = r.id AND c.request_headers LIKE ?2)
                 ORDER BY r.route, r.method",
            )
            .and_then(|mut s| {
                s.query_map(params![session.0, tagged], |r| {
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
