//! Queries the dashboard needs beyond the CLI's: filtered and sorted pages
//! of requests, requests newer than one already shown (live updates), the
//! numbers of one endpoint (method and route), and request contexts.

use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, OptionalExtension};
use serde::Serialize;
use timeglass_model::{RequestContext, StackCount, TimeBreakdown};

use crate::clock::rfc3339_ms;
use crate::read::{request_row, resolve_delayed, stacks_of_leaves, REQUEST_COLUMNS};
use crate::{Endpoint, RequestRow, SessionId, Store, StoreError, WindowQuery};

/// Which requests a list shows. Empty fields filter nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Path or route contains this text (case-insensitive for ASCII).
    pub text: Option<String>,
    /// Exactly this method (`GET`).
    pub method: Option<String>,
    /// Statuses `class`xx, e.g. 5 for 500-599.
    pub status_class: Option<u8>,
    /// Response time of at least this many microseconds.
    pub min_duration_us: Option<u64>,
    /// Requests of this session only.
    pub session: Option<SessionId>,
    /// Requests that started at or after this wall-clock time, and before
    /// `until_unix_ns` (nanoseconds since the Unix epoch). They are compared
    /// with `started_at`, so to the millisecond: the times are truncated to
    /// one, as the stored starts are.
    pub since_unix_ns: Option<i128>,
    pub until_unix_ns: Option<i128>,
}

/// The order of a list of requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    /// Newest first.
    #[default]
    Newest,
    Oldest,
    /// Longest response time first.
    Slowest,
    Fastest,
    /// Most CPU time first.
    MostCpu,
    LeastCpu,
    /// Highest peak RSS first (requests without a reading last).
    MostMemory,
    LeastMemory,
    /// Most bytes allocated first (requests whose allocations were not sampled last).
    MostAllocated,
    LeastAllocated,
}

/// A request's response time to the nanosecond, as lists show it: the
/// stored `duration_us` is floored, so two requests within the same
/// microsecond tie on it.
const EXACT_DURATION: &str = "(coalesce({t}.response_end_ns, {t}.end_ns) - {t}.start_ns)";

impl Sort {
    /// `(key expressions over table {t}, descending)`; `id` breaks the
    /// ties left, in the same direction. The first expression is an indexed
    /// column; a second one only orders rows that tie on it.
    fn key(self) -> (&'static [&'static str], bool) {
        match self {
            Sort::Newest => (&["{t}.started_at"], true),
            Sort::Oldest => (&["{t}.started_at"], false),
            Sort::Slowest => (&["{t}.duration_us", EXACT_DURATION], true),
            Sort::Fastest => (&["{t}.duration_us", EXACT_DURATION], false),
            Sort::MostCpu => (&["{t}.cpu_us"], true),
            Sort::LeastCpu => (&["{t}.cpu_us"], false),
            Sort::MostMemory => (&["{t}.rss_peak_bytes"], true),
            Sort::LeastMemory => (&["{t}.rss_peak_bytes"], false),
            Sort::MostAllocated => (&["{t}.alloc_bytes"], true),
            Sort::LeastAllocated => (&["{t}.alloc_bytes"], false),
        }
    }

    /// The key expressions over table `table`, then its id.
    fn key_over(self, table: &str) -> Vec<String> {
        let (keys, _) = self.key();
        keys.iter()
            .map(|k| k.replace("{t}", table))
            .chain([format!("{table}.id")])
            .collect()
    }
}

/// One page of a list of requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestPage {
    pub limit: usize,
    /// Only requests listed after this one in `sort` order. An unknown id
    /// gives an empty page.
    pub before: Option<i64>,
    pub filter: RequestFilter,
    pub sort: Sort,
}

/// One endpoint as the endpoints page lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteRow {
    pub method: String,
    pub route: String,
    pub count: u64,
    /// Responses with a 5xx status, or none because the app raised.
    pub errors: u64,
    pub avg_ms: f64,
    pub max_ms: f64,
    /// Start of its newest stored request (RFC 3339).
    pub last: String,
}

/// What the endpoint view computes its numbers from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSample {
    /// Response times of every request of the route, ascending.
    pub durations_us: Vec<u64>,
    /// Peak RSS of its requests that have one (schema 12 or later), ascending.
    pub rss_peak_bytes: Vec<u64>,
    /// Bytes allocated by its requests whose allocations were sampled, ascending.
    pub alloc_bytes: Vec<u64>,
    pub errors: u64,
    /// SQL statements its requests ran, and their summed time.
    pub queries: u64,
    pub db_us: u64,
    /// Its requests flagged as likely N+1s.
    pub n_plus_one: u64,
    /// Its requests with a time breakdown (recorded by schema 7 or later),
    /// their breakdowns and CPU time summed, and their summed response time.
    pub measured: u64,
    pub breakdown: TimeBreakdown,
    pub cpu_ns: u64,
    pub measured_duration_us: u64,
    /// Its requests that blocked the event loop.
    pub loop_blocks: u64,
    /// `(process, RSS at the end)` of its requests that have a reading, in
    /// the order they started: what a leak hint tests for a trend.
    pub rss_ends: Vec<(i64, u64)>,
}

/// The sums of a [`RouteSample`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sums {
    errors: u64,
    queries: u64,
    db_us: u64,
    n_plus_one: u64,
    measured: u64,
    breakdown: TimeBreakdown,
    cpu_ns: u64,
    measured_duration_us: u64,
    loop_blocks: u64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        let (b, ob) = (&mut self.breakdown, &o.breakdown);
        self.errors += o.errors;
        self.queries += o.queries;
        self.db_us += o.db_us;
        self.n_plus_one += o.n_plus_one;
        self.measured += o.measured;
        b.python_ns += ob.python_ns;
        b.native_ns += ob.native_ns;
        b.blocked_ns += ob.blocked_ns;
        b.gil_wait_ns += ob.gil_wait_ns;
        b.sql_ns += ob.sql_ns;
        b.http_ns += ob.http_ns;
        b.await_ns += ob.await_ns;
        b.queued_ns += ob.queued_ns;
        b.gc_ns += ob.gc_ns;
        self.cpu_ns += o.cpu_ns;
        self.measured_duration_us += o.measured_duration_us;
        self.loop_blocks += o.loop_blocks;
    }

    /// Reads a row of [`SUMS_OF_REQUESTS`] or [`SUMS_OF_MINUTES`].
    fn of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Sums> {
        let ns = |at: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, u64>(at)? * 1000) };
        Ok(Sums {
            errors: r.get(0)?,
            queries: r.get(1)?,
            db_us: r.get(2)?,
            n_plus_one: r.get(3)?,
            measured: r.get(4)?,
            breakdown: TimeBreakdown {
                python_ns: ns(5)?,
                native_ns: ns(6)?,
                blocked_ns: ns(7)?,
                gil_wait_ns: ns(8)?,
                sql_ns: ns(9)?,
                http_ns: ns(10)?,
                await_ns: ns(11)?,
                queued_ns: ns(12)?,
                gc_ns: ns(13)?,
            },
            cpu_ns: ns(14)?,
            measured_duration_us: r.get(15)?,
            loop_blocks: r.get(16)?,
        })
    }
}

impl Sums {
    /// A sample of these sums and no reading.
    fn into_sample(self) -> RouteSample {
        RouteSample {
            errors: self.errors,
            queries: self.queries,
            db_us: self.db_us,
            n_plus_one: self.n_plus_one,
            measured: self.measured,
            breakdown: self.breakdown,
            cpu_ns: self.cpu_ns,
            measured_duration_us: self.measured_duration_us,
            loop_blocks: self.loop_blocks,
            ..RouteSample::default()
        }
    }
}

/// The readings of a [`RouteSample`], each list in its order.
#[derive(Default)]
struct Readings {
    durations_us: Vec<u64>,
    rss_peak_bytes: Vec<u64>,
    alloc_bytes: Vec<u64>,
    rss_ends: Vec<(i64, u64)>,
}

impl Readings {
    fn into_sample(self, sums: Sums) -> RouteSample {
        RouteSample {
            durations_us: self.durations_us,
            rss_peak_bytes: self.rss_peak_bytes,
            alloc_bytes: self.alloc_bytes,
            rss_ends: self.rss_ends,
            ..sums.into_sample()
        }
    }
}

/// [`Sums`] over rows of `requests`; the 5xx test is `is_5xx` of
/// timeglass-report, as in `endpoint_minutes`.
const SUMS_OF_REQUESTS: &str = "coalesce(sum(status >= 500 OR (status IS NULL AND errored)), 0),
     coalesce(sum(queries), 0), coalesce(sum(db_us), 0), count(n_plus_one_count),
     count(python_us), coalesce(sum(python_us), 0), coalesce(sum(native_us), 0),
     coalesce(sum(blocked_us), 0), coalesce(sum(gil_wait_us), 0),
     coalesce(sum(sql_wait_us), 0), coalesce(sum(http_wait_us), 0),
     coalesce(sum(await_us), 0), coalesce(sum(queued_us), 0), coalesce(sum(gc_us), 0),
     coalesce(sum(cpu_us), 0),
     coalesce(sum(CASE WHEN python_us IS NOT NULL THEN duration_us END), 0),
     count(loop_blocked_us)";

/// [`Sums`] over rows of `endpoint_minutes` (schema v14). Its `cpu_us` is
/// that of the requests with a breakdown only, which is all of them: the
/// others, recorded before schema 7, have 0.
const SUMS_OF_MINUTES: &str =
    "coalesce(sum(errors_5xx), 0), coalesce(sum(queries), 0), coalesce(sum(db_us), 0),
     coalesce(sum(n_plus_one), 0), coalesce(sum(cpu_measured), 0),
     coalesce(sum(python_us), 0), coalesce(sum(native_us), 0),
     coalesce(sum(blocked_us), 0), coalesce(sum(gil_wait_us), 0),
     coalesce(sum(sql_wait_us), 0), coalesce(sum(http_wait_us), 0),
     coalesce(sum(await_us), 0), coalesce(sum(queued_us), 0), coalesce(sum(gc_us), 0),
     coalesce(sum(cpu_us), 0), coalesce(sum(measured_us), 0), coalesce(sum(loop_blocks), 0)";

impl Store {
    pub fn request_page(&self, page: &RequestPage) -> Result<Vec<RequestRow>, StoreError> {
        let (mut conditions, mut values) = filter_conditions(&page.filter);
        let (_, descending) = page.sort.key();
        let (cmp, dir) = if descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let ours = page.sort.key_over("r");
        if let Some(before) = page.before {
            conditions.push(format!(
                "({}) {cmp} (SELECT {} FROM requests b WHERE b.id = ?)",
                ours.join(", "),
                page.sort.key_over("b").join(", ")
            ));
            values.push(Value::Integer(before));
        }
        values.push(Value::Integer(sql_limit(page.limit)));
        let order: Vec<String> = ours.iter().map(|k| format!("{k} {dir}")).collect();
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} {} ORDER BY {} LIMIT ?",
            where_clause(&conditions),
            order.join(", ")
        );
        self.rows(&sql, values)
    }

    /// Requests stored after request `after` (by id: the order they were
    /// written), oldest first: what a live list has not shown yet.
    pub fn requests_after(
        &self,
        after: i64,
        filter: &RequestFilter,
        limit: usize,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let (mut conditions, mut values) = filter_conditions(filter);
        conditions.push("r.id > ?".to_string());
        values.push(Value::Integer(after));
        values.push(Value::Integer(sql_limit(limit)));
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} {} ORDER BY r.id ASC LIMIT ?",
            where_clause(&conditions)
        );
        self.rows(&sql, values)
    }

    /// The id of the newest stored request, 0 if there is none.
    pub fn last_request_id(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(max(id), 0) FROM requests", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.sql_err(e))
    }

    /// The 95th percentile of the route's response times (nearest rank), in
    /// microseconds; `None` for a route with fewer than `min_requests`
    /// requests (and at least one).
    pub fn route_p95_us(
        &self,
        method: &str,
        route: &str,
        min_requests: u64,
    ) -> Result<Option<u64>, StoreError> {
        // Counted from the endpoint's minutes in each session, not by
        // walking its index entries.
        let count: i64 = self
            .conn
            .prepare_cached(
                "SELECT coalesce(sum(m.requests), 0) FROM sessions s JOIN endpoint_minutes m
                     ON m.session_id = s.id AND m.method = ?1 AND m.route = ?2",
            )
            .and_then(|mut s| s.query_row(params![method, route], |r| r.get(0)))
            .map_err(|e| self.sql_err(e))?;
        if count == 0 || (count as u64) < min_requests {
            return Ok(None);
        }
        // Nearest rank: the ceil(0.95 n)-th smallest, 0-based offset one less.
        let offset = (count * 95 + 99) / 100 - 1;
        self.conn
            .prepare_cached(
                "SELECT duration_us FROM requests WHERE method = ?1 AND route = ?2
                 ORDER BY duration_us LIMIT 1 OFFSET ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![method, route, offset], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| self.sql_err(e))
    }

    /// Every route with requests, most requests first.
    pub fn routes(&self) -> Result<Vec<RouteRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                // Aggregates from the route index alone; one row lookup per
                // route for the newest request's start.
                "SELECT g.method, g.route, g.n, g.errors, g.avg_us, g.max_us, r.started_at
                 FROM (SELECT method, route, count(*) AS n,
                           sum(coalesce(status >= 500, 0) OR (status IS NULL AND errored)) AS errors,
                           avg(duration_us) AS avg_us, max(duration_us) AS max_us, max(id) AS last_id
                       FROM requests WHERE route IS NOT NULL GROUP BY method, route) g
                 JOIN requests r ON r.id = g.last_id
                 ORDER BY g.n DESC, g.route, g.method",
            )
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RouteRow {
                    method: r.get(0)?,
                    route: r.get(1)?,
                    count: r.get(2)?,
                    errors: r.get(3)?,
                    avg_ms: r.get::<_, f64>(4)? / 1000.0,
                    max_ms: r.get::<_, f64>(5)? / 1000.0,
                    last: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql_err(e))?;
        Ok(rows)
    }

    /// The route's numbers over every session, read from every one of its
    /// requests (what [`Store::window_sample`] reads from aggregates and
    /// one index).
    pub fn route_sample(&self, method: &str, route: &str) -> Result<RouteSample, StoreError> {
        let durations_us = self
            .conn
            .prepare_cached(
                "SELECT duration_us FROM requests WHERE method = ?1 AND route = ?2
                 ORDER BY duration_us",
            )
            .and_then(|mut s| {
                s.query_map(params![method, route], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<u64>>>()
            })
            .map_err(|e| self.sql_err(e))?;
        let conditions = "method = ? AND route = ?";
        let values = vec![
            Value::Text(method.to_string()),
            Value::Text(route.to_string()),
        ];
        let sums = self.request_sums(conditions, &values)?;
        let rss_peak_bytes = self.memory_column(conditions, &values, "rss_peak_bytes", 0)?;
        let alloc_bytes = self.memory_column(conditions, &values, "alloc_bytes", -1)?;
        let rss_ends = self
            .conn
            .prepare_cached(&format!(
                "SELECT process_id, rss_end_bytes FROM requests
                 WHERE {conditions} AND rss_end_bytes > 0 ORDER BY start_ns, id"
            ))
            .and_then(|mut s| {
                s.query_map(params_from_iter(values.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<(i64, u64)>>>()
            })
            .map_err(|e| self.sql_err(e))?;
        Ok(RouteSample {
            durations_us,
            rss_peak_bytes,
            alloc_bytes,
            rss_ends,
            ..sums.into_sample()
        })
    }

    /// The numbers of the requests of `endpoint` that a report's window
    /// query selects (one session, a time range), without reading a row of
    /// `requests`: the sums of the window's whole minutes from
    /// `endpoint_minutes` and of its partial first and last minutes from
    /// their requests, and every request's response time, memory and start
    /// from one walk of `requests_by_endpoint` (schema v14), response times
    /// already in order.
    pub fn window_sample(
        &self,
        q: &WindowQuery,
        endpoint: &Endpoint,
    ) -> Result<RouteSample, StoreError> {
        let mut sums = Sums::default();
        let (minutes, edges) = q.split();
        if let Some((first, end)) = minutes {
            sums.add(&self.minute_sums(q, endpoint, first, end)?);
        }
        for edge in &edges {
            let (mut conditions, mut values) = edge.conditions();
            conditions.push_str(" AND method = ? AND route IS ?");
            values.push(Value::Text(endpoint.method.clone()));
            values.push(endpoint.route.clone().map_or(Value::Null, Value::Text));
            sums.add(&self.request_sums(&conditions, &values)?);
        }
        Ok(self.endpoint_readings(q, endpoint)?.into_sample(sums))
    }

    fn minute_sums(
        &self,
        q: &WindowQuery,
        endpoint: &Endpoint,
        first: u64,
        end: Option<u64>,
    ) -> Result<Sums, StoreError> {
        let end = end.map_or(i64::MAX, |e| i64::try_from(e).unwrap_or(i64::MAX));
        let first = i64::try_from(first).unwrap_or(i64::MAX);
        let route = endpoint.route.as_deref().unwrap_or("");
        self.conn
            .prepare_cached(&format!(
                "SELECT {SUMS_OF_MINUTES} FROM endpoint_minutes
                 WHERE session_id = ?1 AND method = ?2 AND route = ?3
                     AND minute >= ?4 AND minute < ?5"
            ))
            .and_then(|mut s| {
                s.query_row(
                    params![q.session.0, endpoint.method, route, first, end],
                    Sums::of_row,
                )
            })
            .map_err(|e| self.sql_err(e))
    }

    /// The sums of a [`RouteSample`] over the requests `conditions` select.
    fn request_sums(&self, conditions: &str, values: &[Value]) -> Result<Sums, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {SUMS_OF_REQUESTS} FROM requests WHERE {conditions}"
            ))
            .and_then(|mut s| s.query_row(params_from_iter(values.iter()), Sums::of_row))
            .map_err(|e| self.sql_err(e))
    }

    /// What the endpoint page reads of each request of `endpoint` in the
    /// window, from `requests_by_endpoint` alone.
    fn endpoint_readings(
        &self,
        q: &WindowQuery,
        endpoint: &Endpoint,
    ) -> Result<Readings, StoreError> {
        let (conditions, mut values) = q.conditions();
        values.push(Value::Text(endpoint.method.clone()));
        values.push(endpoint.route.clone().map_or(Value::Null, Value::Text));
        let sql = format!(
            "SELECT duration_us, rss_peak_bytes, alloc_bytes, rss_end_bytes, start_ns, id,
                 process_id
             FROM requests INDEXED BY requests_by_endpoint
             WHERE {conditions} AND method = ? AND route IS ?
             ORDER BY session_id, method, route, duration_us"
        );
        let read = || -> rusqlite::Result<Readings> {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(values))?;
            let mut out = Readings::default();
            let mut ends = Vec::new();
            while let Some(r) = rows.next()? {
                let int = |at: usize| -> rusqlite::Result<i64> { r.get::<_, i64>(at) };
                out.durations_us.push(int(0)?.max(0) as u64);
                let (peak, alloc, end) = (int(1)?, int(2)?, int(3)?);
                if peak > 0 {
                    out.rss_peak_bytes.push(peak as u64);
                }
                if alloc > -1 {
                    out.alloc_bytes.push(alloc as u64);
                }
                if end > 0 {
                    ends.push((int(4)?, int(5)?, int(6)?, end as u64));
                }
            }
            out.rss_peak_bytes.sort_unstable();
            out.alloc_bytes.sort_unstable();
            // Start order, as `ORDER BY start_ns, id` gives it.
            ends.sort_unstable_by_key(|&(start, id, _, _)| (start, id));
            out.rss_ends = ends.into_iter().map(|(_, _, p, rss)| (p, rss)).collect();
            Ok(out)
        };
        read().map_err(|e| self.sql_err(e))
    }

    /// `column` (a memory column, `none` when not measured) of the
    /// requests `conditions` select that have one, ascending.
    fn memory_column(
        &self,
        conditions: &str,
        values: &[Value],
        column: &str,
        none: i64,
    ) -> Result<Vec<u64>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {column} FROM requests WHERE {conditions} AND {column} > {none}
                 ORDER BY {column}"
            ))
            .and_then(|mut s| {
                s.query_map(params_from_iter(values.iter()), |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<u64>>>()
            })
            .map_err(|e| self.sql_err(e))
    }

    /// The route's slowest requests, slowest first.
    pub fn route_slowest(
        &self,
        method: &str,
        route: &str,
        limit: usize,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} WHERE r.method = ? AND r.route = ?
             ORDER BY r.duration_us DESC, r.id DESC LIMIT ?"
        );
        let values = vec![
            Value::Text(method.to_string()),
            Value::Text(route.to_string()),
            Value::Integer(sql_limit(limit)),
        ];
        self.rows(&sql, values)
    }

    /// The slowest requests of `endpoint` that a report's window query
    /// selects, slowest first.
    pub fn window_slowest(
        &self,
        q: &WindowQuery,
        endpoint: &Endpoint,
        limit: usize,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let (conditions, mut values) = q.conditions();
        values.push(Value::Text(endpoint.method.clone()));
        values.push(endpoint.route.clone().map_or(Value::Null, Value::Text));
        values.push(Value::Integer(sql_limit(limit)));
        // The window's columns, unqualified, are read in a subquery of
        // `requests` alone: `processes` has a `session_id` too.
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} WHERE r.id IN (
                 SELECT id FROM requests WHERE {conditions} AND method = ? AND route IS ?
                 ORDER BY duration_us DESC, id DESC LIMIT ?)
             ORDER BY r.duration_us DESC, r.id DESC"
        );
        self.rows(&sql, values)
    }

    /// Whether any session recorded a request of the route.
    pub fn has_route(&self, method: &str, route: &str) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM requests WHERE method = ?1 AND route = ?2)",
            )
            .and_then(|mut s| s.query_row(params![method, route], |r| r.get(0)))
            .map_err(|e| self.sql_err(e))
    }

    /// The stacks of every request of the route, summed: one merged
    /// profile, from the sums per session of `endpoint_stacks` (schema v14).
    pub fn route_stacks(&self, method: &str, route: &str) -> Result<Vec<StackCount>, StoreError> {
        self.route_leaves(
            "SELECT e.stack_id, sum(e.samples)
             FROM sessions s JOIN endpoint_stacks e
                 ON e.session_id = s.id AND e.method = ?1 AND e.route = ?2
             GROUP BY e.stack_id",
            method,
            route,
        )
    }

    /// Where every request of the route allocated, summed: stacks weighed
    /// in bytes (in `samples`), from `endpoint_alloc_stacks`.
    pub fn route_alloc_stacks(
        &self,
        method: &str,
        route: &str,
    ) -> Result<Vec<StackCount>, StoreError> {
        self.route_leaves(
            "SELECT e.stack_id, sum(e.bytes)
             FROM sessions s JOIN endpoint_alloc_stacks e
                 ON e.session_id = s.id AND e.method = ?1 AND e.route = ?2
             GROUP BY e.stack_id",
            method,
            route,
        )
    }

    /// The stacks of `(stack_id, weight)` rows that `sql` sums over the
    /// requests of `method route` (`?1`, `?2`).
    fn route_leaves(
        &self,
        sql: &str,
        method: &str,
        route: &str,
    ) -> Result<Vec<StackCount>, StoreError> {
        let leaves = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| {
                s.query_map(params![method, route], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<(i64, u64)>>>()
            })
            .map_err(|e| self.sql_err(e))?;
        stacks_of_leaves(&self.conn, leaves).map_err(|e| self.sql_err(e))
    }

    /// What the request carried, if its context was captured.
    pub fn request_context(&self, id: i64) -> Result<Option<RequestContext>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT request_headers, query, body, body_bytes, response_headers,
                     response_start_ns, handler_start_ns
                 FROM request_context WHERE request_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![id], |r| {
                    Ok(RequestContext {
                        request_headers: headers(r.get(0)?, 0)?,
                        query: r.get(1)?,
                        body: r.get(2)?,
                        body_bytes: r.get(3)?,
                        response_headers: headers(r.get(4)?, 4)?,
                        response_start_ns: r.get(5)?,
                        handler_start_ns: r.get(6)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.sql_err(e))
    }

    fn rows(&self, sql: &str, values: Vec<Value>) -> Result<Vec<RequestRow>, StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| {
                let mut rows: Vec<RequestRow> = stmt
                    .query_map(params_from_iter(values), request_row)?
                    .collect::<rusqlite::Result<_>>()?;
                resolve_delayed(&self.conn, &mut rows)?;
                Ok(rows)
            })
            .map_err(|e| self.sql_err(e))
    }
}

fn headers(json: String, column: usize) -> rusqlite::Result<Vec<(String, String)>> {
    serde_json::from_str(&json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(e)))
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn where_clause(conditions: &[String]) -> String {
    match conditions.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conditions.join(" AND ")),
    }
}

/// SQL conditions on `requests r`, with their `?` parameters in order.
///
/// Columns are written `+r.column`: that keeps SQLite from using their
/// indexes to filter. Walking the sort key's index and stopping after one
/// page is faster than collecting every match of a filter (tens of
/// thousands of GETs) and sorting them.
fn filter_conditions(filter: &RequestFilter) -> (Vec<String>, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        conditions.push(
            "(r.path LIKE ? ESCAPE '\\' OR coalesce(+r.route, '') LIKE ? ESCAPE '\\')".to_string(),
        );
        let pattern = like_pattern(text);
        values.push(Value::Text(pattern.clone()));
        values.push(Value::Text(pattern));
    }
    if let Some(method) = filter.method.as_deref().filter(|m| !m.is_empty()) {
        conditions.push("+r.method = ?".to_string());
        values.push(Value::Text(method.to_ascii_uppercase()));
    }
    if let Some(class) = filter.status_class {
        conditions.push("+r.status BETWEEN ? AND ?".to_string());
        values.push(Value::Integer(i64::from(class) * 100));
        values.push(Value::Integer(i64::from(class) * 100 + 99));
    }
    if let Some(min) = filter.min_duration_us {
        conditions.push("+r.duration_us >= ?".to_string());
        values.push(Value::Integer(i64::try_from(min).unwrap_or(i64::MAX)));
    }
    // Without `+`: a session's requests in time order are one range of
    // `requests_by_session`, a time range one of `requests_by_start`.
    if let Some(session) = filter.session {
        conditions.push("r.session_id = ?".to_string());
        values.push(Value::Integer(session.0));
    }
    if let Some(since) = filter.since_unix_ns {
        conditions.push("r.started_at >= ?".to_string());
        values.push(Value::Text(rfc3339_ms(since)));
    }
    if let Some(until) = filter.until_unix_ns {
        conditions.push("r.started_at < ?".to_string());
        values.push(Value::Text(rfc3339_ms(until)));
    }
    (conditions, values)
}

/// `%text%` with LIKE's wildcards in `text` escaped.
pub(crate) fn like_pattern(text: &str) -> String {
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
