//! Queries for the CLI and the server: rows, and stacks rebuilt from the trie.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use timeglass_model::{Frame, Repeated, StackCount, Tick, TimeBreakdown, Timeline};

use crate::timeline::{self, Stored};
use crate::trie::Trie;
use crate::{ProcessId, SessionId};

/// One request as listed by `timeglass requests` and the server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestRow {
    pub id: i64,
    pub session_id: SessionId,
    pub process_id: ProcessId,
    pub pid: u32,
    pub tid: u32,
    pub marker_id: u64,
    pub method: String,
    pub path: String,
    pub route: Option<String>,
    pub status: Option<u16>,
    pub errored: bool,
    pub cancelled: bool,
    /// Wall-clock start, RFC 3339 UTC with milliseconds.
    pub start: String,
    /// Monotonic start and end, as the marker reported them.
    pub start_ns: u64,
    pub end_ns: u64,
    /// When the last body chunk was sent, if a response completed.
    pub response_end_ns: Option<u64>,
    /// Response time: start to the last body chunk (or to the end, if none was sent).
    pub duration_ms: f64,
    /// Work after the response (BackgroundTasks): last body chunk to the end.
    pub background_ms: Option<f64>,
    pub samples: u64,
    pub switched_samples: u64,
    pub torn_samples: u64,
    /// SQL statements it ran.
    pub queries: u64,
    /// Their summed durations.
    pub db_ms: f64,
    /// Outgoing HTTP calls it made.
    pub calls: u64,
    /// Their summed durations.
    pub http_ms: f64,
    /// It ran one normalised statement often enough to be a likely N+1.
    pub n_plus_one: bool,
    /// That statement, how often it ran and from which line; `None` unless `n_plus_one`.
    pub repeated: Option<Repeated>,
    /// CPU time its threads used for it (Python and native code); `None` for
    /// requests recorded before the store kept it (schema 6 and older).
    pub cpu_ms: Option<f64>,
    /// Where its wall time went; `None` as for `cpu_ms`.
    pub breakdown: Option<Breakdown>,
    /// Set when it held the event loop without yielding for too long.
    pub loop_block: Option<LoopBlockRow>,
    /// Its end never came (its process was killed mid-request, or recording
    /// stopped first): kept with the samples taken so far.
    pub incomplete: bool,
    /// The process's resident memory around it.
    pub memory: MemoryRow,
}

/// A request's memory figures as stored (see [`timeglass_model::Memory`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MemoryRow {
    /// The app process's RSS at the reading nearest the request's start,
    /// nearest its end, and the highest in between; `None` when the
    /// recorder read none (requests recorded before schema 12).
    pub rss_start_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    pub rss_peak_bytes: Option<u64>,
    /// Bytes it allocated, estimated from sampled allocations; `None` when
    /// its process did not sample them.
    pub alloc_bytes: Option<u64>,
    /// Garbage collections on its threads while they ran it, and their
    /// summed pause (0 for requests recorded before schema 12).
    pub gc_collections: u64,
    pub gc_pause_ms: f64,
}

impl MemoryRow {
    /// RSS at the end minus RSS at the start, when both were read.
    pub fn rss_delta_bytes(&self) -> Option<i64> {
        Some(self.rss_end_bytes? as i64 - self.rss_start_bytes? as i64)
    }
}

impl RequestRow {
    /// Its CPU time when something was measured: `None` for rows without a
    /// breakdown, and for rows whose breakdown and CPU time are both zero
    /// (nothing was sampled, or its recorder did not sample states), which
    /// a page should not show as "0 ms of CPU".
    pub fn measured_cpu_ms(&self) -> Option<f64> {
        let cpu = self.cpu_ms?;
        let sampled = self.breakdown.is_some_and(|b| b.total_ms() > 0.0);
        (sampled || cpu > 0.0).then_some(cpu)
    }
}

/// Where a request's wall time went, in milliseconds per category: the
/// store's copy of [`timeglass_model::TimeBreakdown`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// Running Python.
    pub python_ms: f64,
    /// Native code that released the GIL, on a CPU.
    pub native_ms: f64,
    /// Off the GIL and off the CPU: sleep, file or socket I/O, locks.
    pub blocked_ms: f64,
    pub gil_wait_ms: f64,
    /// Awaiting SQL statements and outgoing HTTP calls.
    pub sql_ms: f64,
    pub http_ms: f64,
    /// Awaiting anything else.
    pub await_ms: f64,
    /// Ready, but the event loop was busy or no worker thread was free.
    pub queued_ms: f64,
    /// Garbage collection, timed by the marker (schema 12; 0 before).
    pub gc_ms: f64,
}

impl Breakdown {
    pub fn from_model(b: &TimeBreakdown) -> Breakdown {
        let ms = |ns: u64| ns as f64 / 1e6;
        Breakdown {
            python_ms: ms(b.python_ns),
            native_ms: ms(b.native_ns),
            blocked_ms: ms(b.blocked_ns),
            gil_wait_ms: ms(b.gil_wait_ns),
            sql_ms: ms(b.sql_ns),
            http_ms: ms(b.http_ns),
            await_ms: ms(b.await_ns),
            queued_ms: ms(b.queued_ns),
            gc_ms: ms(b.gc_ns),
        }
    }

    /// Python and native code on a CPU, garbage collection included.
    pub fn cpu_ms(&self) -> f64 {
        self.python_ms + self.native_ms + self.gc_ms
    }

    /// Every category summed.
    pub fn total_ms(&self) -> f64 {
        self.categories().iter().map(|(_, _, ms)| ms).sum()
    }

    /// `(name, label, ms)` in the order pages and the CLI show them: on a
    /// CPU first, then off it, then waiting to run.
    pub fn categories(&self) -> [(&'static str, &'static str, f64); 9] {
        [
            ("python", "Python (CPU)", self.python_ms),
            ("native", "native, off the GIL (CPU)", self.native_ms),
            ("gc", "garbage collection (CPU)", self.gc_ms),
            ("gil_wait", "waiting for the GIL", self.gil_wait_ms),
            ("blocked", "blocked (sleep, I/O, locks)", self.blocked_ms),
            ("sql", "awaiting SQL", self.sql_ms),
            ("http", "awaiting HTTP", self.http_ms),
            ("await", "awaiting other", self.await_ms),
            ("queued", "queued (loop busy, no worker)", self.queued_ms),
        ]
    }
}

/// An `async def` request that held the event loop without yielding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoopBlockRow {
    /// The longest stretch without yielding.
    pub blocked_ms: f64,
    /// When it began, since the request started.
    pub start_ms: f64,
    /// `file:line in function` of the app's line seen most meanwhile.
    pub line: Option<String>,
    /// The marker ids of the same process's requests it delayed.
    pub delayed_marker_ids: Vec<u64>,
    /// The store's ids of those of them that are stored (a request still
    /// in flight, or recorded without its start, is not), in id order.
    pub delayed: Vec<i64>,
}

/// One SQL statement of a request, as `timeglass show` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryRow {
    /// The statement, cut to 8 KiB (`sql_length` tells how long it was).
    pub sql: String,
    /// Length of the whole statement, in characters.
    pub sql_length: u64,
    /// Literals and parameters replaced by `?`: what repeated statements share.
    pub normalized: String,
    /// The parameters as Python shows them, cut to 2 KiB; `None` when not recorded.
    pub params: Option<String>,
    pub params_length: u64,
    /// Since the request started.
    pub start_ms: f64,
    pub duration_ms: f64,
    /// Rows returned or affected, when the driver said.
    pub rows: Option<i64>,
    pub driver: String,
    pub error: Option<String>,
    /// The code that ran it, innermost frame first.
    pub caller: Vec<Frame>,
}

/// One outgoing HTTP call of a request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallRow {
    pub method: String,
    /// Secret-looking query values and passwords redacted.
    pub url: String,
    /// `None` when no response came.
    pub status: Option<u16>,
    /// Since the request started.
    pub start_ms: f64,
    pub duration_ms: f64,
    pub error: Option<String>,
    /// `httpx` or `requests`.
    pub library: String,
    /// The code that made it, innermost frame first.
    pub caller: Vec<Frame>,
}

/// One `timeglass run` or `timeglass attach`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    pub id: SessionId,
    pub started_at: String,
    /// `None` while recording, or if the recorder died.
    pub ended_at: Option<String>,
    pub command: Vec<String>,
    pub cwd: String,
    pub rate_hz: u32,
    pub exit_code: Option<i32>,
    pub samples: u64,
    pub torn_samples: u64,
    pub lost_events: u64,
    /// Requests recorded so far.
    pub requests: u64,
    /// Python processes recorded (a supervisor's workers, and the ones that
    /// replaced them).
    pub processes: u64,
    /// Processes that died without exiting cleanly (killed, crashed).
    pub crashed: u64,
    /// Its recorder died before ending it (`kill -9`, a crash); it ends at
    /// the recorder's last write.
    pub interrupted: bool,
    /// Requests whose start the recorder had read but that it never
    /// stored, because it was interrupted.
    pub lost_requests: u64,
    /// Requests kept without their end (their process died mid-request).
    pub incomplete: u64,
}

/// One process of a session, as `timeglass sessions` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessRow {
    pub id: ProcessId,
    pub session_id: SessionId,
    pub pid: u32,
    pub command_line: Vec<String>,
    pub python_version: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// `clean`, `crashed`, `running` or `unknown`; `None` while recording.
    pub exit: Option<String>,
    /// Requests it served that were recorded.
    pub requests: u64,
}

/// Which requests to list, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestQuery {
    pub limit: usize,
    pub session: Option<SessionId>,
}

pub(crate) const REQUEST_COLUMNS: &str =
    "r.id, r.session_id, r.process_id, p.pid, r.tid, r.marker_id,
    r.method, r.path, r.route, r.status, r.errored, r.cancelled, r.started_at,
    r.start_ns, r.end_ns, r.samples, r.switched_samples, r.torn_samples, r.response_end_ns,
    r.queries, r.db_us, r.calls, r.http_us, r.n_plus_one_count, r.n_plus_one_sql,
    r.n_plus_one_caller,
    r.python_us, r.native_us, r.blocked_us, r.gil_wait_us, r.sql_wait_us, r.http_wait_us,
    r.await_us, r.queued_us, r.cpu_us, r.loop_blocked_us, r.loop_block_start_ns,
    r.loop_block_line, r.loop_block_delayed, r.rss_start_bytes, r.rss_end_bytes, r.rss_peak_bytes,
    r.gc_us, r.gc_collections, r.gc_pause_us, r.alloc_bytes, r.incomplete
    FROM requests r JOIN processes p ON p.id = r.process_id";

pub(crate) fn request_row(row: &Row<'_>) -> rusqlite::Result<RequestRow> {
    let start_ns: u64 = row.get(13)?;
    let end_ns: u64 = row.get(14)?;
    let response_end_ns: Option<u64> = row.get(18)?;
    let ms = |ns: u64| ns as f64 / 1e6;
    let repeated_count: Option<u64> = row.get(23)?;
    let repeated = match repeated_count {
        Some(count) => Some(Repeated {
            count,
            normalized: row.get::<_, Option<String>>(24)?.unwrap_or_default(),
            caller: row.get(25)?,
        }),
        None => None,
    };
    let breakdown = breakdown(row)?;
    let cpu_ms = match breakdown {
        Some(_) => Some(row.get::<_, u64>(34)? as f64 / 1e3),
        None => None,
    };
    Ok(RequestRow {
        id: row.get(0)?,
        session_id: SessionId(row.get(1)?),
        process_id: ProcessId(row.get(2)?),
        pid: row.get(3)?,
        tid: row.get(4)?,
        marker_id: row.get(5)?,
        method: row.get(6)?,
        path: row.get(7)?,
        route: row.get(8)?,
        status: row.get(9)?,
        errored: row.get(10)?,
        cancelled: row.get(11)?,
        start: row.get(12)?,
        start_ns,
        end_ns,
        response_end_ns,
        duration_ms: ms(response_end_ns.unwrap_or(end_ns).saturating_sub(start_ns)),
        background_ms: response_end_ns.map(|r| ms(end_ns.saturating_sub(r))),
        samples: row.get(15)?,
        switched_samples: row.get(16)?,
        torn_samples: row.get(17)?,
        queries: row.get(19)?,
        db_ms: row.get::<_, u64>(20)? as f64 / 1e3,
        calls: row.get(21)?,
        http_ms: row.get::<_, u64>(22)? as f64 / 1e3,
        n_plus_one: repeated.is_some(),
        repeated,
        cpu_ms,
        breakdown,
        loop_block: loop_block(row, start_ns)?,
        incomplete: row.get(46)?,
        memory: memory(row)?,
    })
}

/// Columns 39-41 and 43-44; `None` when nothing was read (stored as 0).
fn memory(row: &Row<'_>) -> rusqlite::Result<MemoryRow> {
    let bytes = |at: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<u64>>(at)?.filter(|b| *b > 0))
    };
    Ok(MemoryRow {
        rss_start_bytes: bytes(39)?,
        rss_end_bytes: bytes(40)?,
        rss_peak_bytes: bytes(41)?,
        gc_collections: row.get(43)?,
        gc_pause_ms: row.get::<_, u64>(44)? as f64 / 1e3,
        alloc_bytes: u64::try_from(row.get::<_, i64>(45)?).ok(),
    })
}

/// Columns 26-33, `None` when the row predates them.
fn breakdown(row: &Row<'_>) -> rusqlite::Result<Option<Breakdown>> {
    let Some(python_us) = row.get::<_, Option<u64>>(26)? else {
        return Ok(None);
    };
    let ms = |at: usize| -> rusqlite::Result<f64> {
        Ok(row.get::<_, Option<u64>>(at)?.unwrap_or(0) as f64 / 1e3)
    };
    Ok(Some(Breakdown {
        python_ms: python_us as f64 / 1e3,
        native_ms: ms(27)?,
        blocked_ms: ms(28)?,
        gil_wait_ms: ms(29)?,
        sql_ms: ms(30)?,
        http_ms: ms(31)?,
        await_ms: ms(32)?,
        queued_ms: ms(33)?,
        gc_ms: ms(42)?,
    }))
}

/// Columns 35-38; `delayed` is filled by [`resolve_delayed`].
fn loop_block(row: &Row<'_>, request_start_ns: u64) -> rusqlite::Result<Option<LoopBlockRow>> {
    let Some(blocked_us) = row.get::<_, Option<u64>>(35)? else {
        return Ok(None);
    };
    let start_ns: Option<i64> = row.get(36)?;
    let delayed: Option<String> = row.get(38)?;
    let delayed_marker_ids = match delayed {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(38, Type::Text, Box::new(e)))?,
        None => Vec::new(),
    };
    Ok(Some(LoopBlockRow {
        blocked_ms: blocked_us as f64 / 1e3,
        start_ms: start_ns.map_or(0.0, |ns| offset_ms(ns, request_start_ns as i64)),
        line: row.get(37)?,
        delayed_marker_ids,
        delayed: Vec::new(),
    }))
}

/// Fills in the stored ids of the requests each loop block delayed: one
/// indexed lookup per row that has a block, none for the others.
pub(crate) fn resolve_delayed(conn: &Connection, rows: &mut [RequestRow]) -> rusqlite::Result<()> {
    for r in rows.iter_mut() {
        let Some(block) = r
            .loop_block
            .as_mut()
            .filter(|b| !b.delayed_marker_ids.is_empty())
        else {
            continue;
        };
        let ids = serde_json::to_string(&block.delayed_marker_ids).expect("integers serialize");
        block.delayed = conn
            .prepare_cached(
                "SELECT id FROM requests WHERE process_id = ?1
                     AND marker_id IN (SELECT value FROM json_each(?2)) ORDER BY id",
            )?
            .query_map(params![r.process_id.0, ids], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(())
}

/// Milliseconds between two monotonic readings, negative if `ns` is earlier.
fn offset_ms(ns: i64, since: i64) -> f64 {
    (ns - since) as f64 / 1e6
}

fn caller(row: &Row<'_>, index: usize) -> rusqlite::Result<Vec<Frame>> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

pub(crate) fn request_queries(conn: &Connection, request: i64) -> rusqlite::Result<Vec<QueryRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT q.sql, q.sql_length, q.normalized, q.params, q.params_length, q.start_ns,
             q.duration_ns, q.rows, q.driver, q.error, k.frames, r.start_ns
         FROM queries q JOIN requests r ON r.id = q.request_id
             JOIN callers k ON k.id = q.caller_id
         WHERE q.request_id = ?1 ORDER BY q.seq",
    )?;
    let rows = stmt.query_map(params![request], |row| {
        Ok(QueryRow {
            sql: row.get(0)?,
            sql_length: row.get(1)?,
            normalized: row.get(2)?,
            params: row.get(3)?,
            params_length: row.get(4)?,
            start_ms: offset_ms(row.get(5)?, row.get(11)?),
            duration_ms: row.get::<_, u64>(6)? as f64 / 1e6,
            rows: row.get(7)?,
            driver: row.get(8)?,
            error: row.get(9)?,
            caller: caller(row, 10)?,
        })
    })?;
    rows.collect()
}

pub(crate) fn request_calls(conn: &Connection, request: i64) -> rusqlite::Result<Vec<CallRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.method, c.url, c.status, c.start_ns, c.duration_ns, c.error, c.library,
             k.frames, r.start_ns
         FROM calls c JOIN requests r ON r.id = c.request_id
             JOIN callers k ON k.id = c.caller_id
         WHERE c.request_id = ?1 ORDER BY c.seq",
    )?;
    let rows = stmt.query_map(params![request], |row| {
        Ok(CallRow {
            method: row.get(0)?,
            url: row.get(1)?,
            status: row.get(2)?,
            start_ms: offset_ms(row.get(3)?, row.get(8)?),
            duration_ms: row.get::<_, u64>(4)? as f64 / 1e6,
            error: row.get(5)?,
            library: row.get(6)?,
            caller: caller(row, 7)?,
        })
    })?;
    rows.collect()
}

pub(crate) fn requests(conn: &Connection, q: &RequestQuery) -> rusqlite::Result<Vec<RequestRow>> {
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    // `id` breaks ties between requests started in the same millisecond.
    let order = "ORDER BY r.started_at DESC, r.id DESC LIMIT ?1";
    let mut rows: Vec<RequestRow> = match q.session {
        None => {
            let sql = format!("SELECT {REQUEST_COLUMNS} {order}");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![limit], request_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        }
        Some(session) => {
            let sql = format!("SELECT {REQUEST_COLUMNS} WHERE r.session_id = ?2 {order}");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![limit, session.0], request_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        }
    };
    resolve_delayed(conn, &mut rows)?;
    Ok(rows)
}

pub(crate) fn request(conn: &Connection, id: i64) -> rusqlite::Result<Option<RequestRow>> {
    let sql = format!("SELECT {REQUEST_COLUMNS} WHERE r.id = ?1");
    let row = conn
        .prepare_cached(&sql)?
        .query_row(params![id], request_row)
        .optional()?;
    let mut rows: Vec<RequestRow> = row.into_iter().collect();
    resolve_delayed(conn, &mut rows)?;
    Ok(rows.pop())
}

/// The id of the request that marker id `marker_id` of process `pid` was
/// stored under, in the newest process with that pid (pids are reused).
pub(crate) fn request_by_marker(
    conn: &Connection,
    pid: u32,
    marker_id: u64,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT r.id FROM requests r
         WHERE r.process_id = (SELECT id FROM processes WHERE pid = ?1 ORDER BY id DESC LIMIT 1)
           AND r.marker_id = ?2",
    )?
    .query_row(params![pid, marker_id as i64], |row| row.get(0))
    .optional()
}

/// Every session, newest first. Its requests are counted from
/// `endpoint_minutes` (a few rows a minute), not by walking a million index
/// entries on every page that offers a session picker.
pub(crate) fn sessions(conn: &Connection) -> rusqlite::Result<Vec<SessionRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, s.started_at, s.ended_at, s.command, s.cwd, s.rate_hz, s.exit_code,
             s.samples, s.torn_samples, s.lost_events,
             (SELECT coalesce(sum(m.requests), 0) FROM endpoint_minutes m
                  WHERE m.session_id = s.id),
             (SELECT count(*) FROM processes p WHERE p.session_id = s.id),
             (SELECT count(*) FROM processes p WHERE p.session_id = s.id AND p.exit = 'crashed'),
             s.interrupted, s.lost_requests,
             (SELECT count(*) FROM requests r WHERE r.session_id = s.id AND r.incomplete)
         FROM sessions s ORDER BY s.started_at DESC, s.id DESC",
    )?;
    let rows = stmt.query_map([], |row| {
        let command: String = row.get(3)?;
        let command = serde_json::from_str(&command)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Text, Box::new(e)))?;
        Ok(SessionRow {
            id: SessionId(row.get(0)?),
            started_at: row.get(1)?,
            ended_at: row.get(2)?,
            command,
            cwd: row.get(4)?,
            rate_hz: row.get(5)?,
            exit_code: row.get(6)?,
            samples: row.get(7)?,
            torn_samples: row.get(8)?,
            lost_events: row.get(9)?,
            requests: row.get(10)?,
            processes: row.get(11)?,
            crashed: row.get(12)?,
            interrupted: row.get(13)?,
            lost_requests: row.get(14)?,
            incomplete: row.get(15)?,
        })
    })?;
    rows.collect()
}

/// Leaf ids with their samples, for one id parameter (`?1`).
const REQUEST_LEAVES: &str = "SELECT stack_id, samples FROM request_stacks WHERE request_id = ?1";
const REQUEST_ALLOC_LEAVES: &str =
    "SELECT stack_id, bytes FROM request_alloc_stacks WHERE request_id = ?1";
const OUTSIDE_LEAVES: &str =
    "SELECT stack_id, sum(samples) FROM outside_stacks WHERE session_id = ?1 GROUP BY stack_id";

pub(crate) fn request_stacks(conn: &Connection, request: i64) -> rusqlite::Result<Vec<StackCount>> {
    stacks(conn, REQUEST_LEAVES, request)
}

/// Where the request allocated: stacks weighed in bytes (`samples` holds bytes).
pub(crate) fn request_alloc_stacks(
    conn: &Connection,
    request: i64,
) -> rusqlite::Result<Vec<StackCount>> {
    stacks(conn, REQUEST_ALLOC_LEAVES, request)
}

/// Summed over the session's processes.
pub(crate) fn outside_stacks(
    conn: &Connection,
    session: SessionId,
) -> rusqlite::Result<Vec<StackCount>> {
    stacks(conn, OUTSIDE_LEAVES, session.0)
}

/// Stacks for the leaves `leaves_sql` selects, most samples first.
fn stacks(conn: &Connection, leaves_sql: &str, id: i64) -> rusqlite::Result<Vec<StackCount>> {
    let leaves: Vec<(i64, u64)> = conn
        .prepare_cached(leaves_sql)?
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    stacks_of_leaves(conn, leaves)
}

/// Stacks for `(leaf node, samples)` pairs, most samples first, with
/// one read of the trie for all of them (`trie.rs`).
pub(crate) fn stacks_of_leaves(
    conn: &Connection,
    leaves: Vec<(i64, u64)>,
) -> rusqlite::Result<Vec<StackCount>> {
    let trie = Trie::read(conn, leaves.iter().map(|l| l.0))?;
    let mut stacks = leaves
        .into_iter()
        .map(|(leaf, samples)| {
            let stack = trie.stack(leaf)?;
            Ok(StackCount { stack, samples })
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    timeglass_model::sort_stacks(&mut stacks);
    Ok(stacks)
}

/// The request's counted stacks and its timeline, with one walk of the
/// trie for both (they hold the same stacks): reading it twice was half of
/// an export's cost (callgrind).
pub(crate) fn request_profile(
    conn: &Connection,
    request: i64,
) -> rusqlite::Result<(Vec<StackCount>, Timeline)> {
    let leaves: Vec<(i64, u64)> = conn
        .prepare_cached(REQUEST_LEAVES)?
        .query_map(params![request], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let samples = request_samples(conn, request)?;
    let ids = leaves
        .iter()
        .map(|l| l.0)
        .chain(samples.iter().map(|s| s.stack_id));
    let trie = Trie::read(conn, ids)?;
    let mut by_leaf: HashMap<i64, Arc<[Frame]>> = HashMap::new();
    let mut stacks = Vec::with_capacity(leaves.len());
    for (leaf, count) in leaves {
        let stack = trie.stack(leaf)?;
        by_leaf.insert(leaf, stack.clone());
        stacks.push(StackCount {
            stack,
            samples: count,
        });
    }
    timeglass_model::sort_stacks(&mut stacks);
    let timeline = timeline_with(&trie, &mut by_leaf, samples)?;
    Ok((stacks, timeline))
}

/// The request's stored samples; none for a request without a row.
fn request_samples(conn: &Connection, request: i64) -> rusqlite::Result<Vec<Stored>> {
    let row: Option<(u64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT r.start_ns, s.samples FROM request_samples s
             JOIN requests r ON r.id = s.request_id WHERE s.request_id = ?1",
        )?
        .query_row(params![request], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((start_ns, blob)) => decoded(start_ns, &blob),
        None => Ok(Vec::new()),
    }
}

pub(crate) fn request_timeline(conn: &Connection, request: i64) -> rusqlite::Result<Timeline> {
    timeline_of(conn, request_samples(conn, request)?)
}

pub(crate) fn outside_timelines(
    conn: &Connection,
    session: SessionId,
) -> rusqlite::Result<Vec<(u32, Timeline)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.pid, o.start_ns, o.samples FROM outside_samples o
         JOIN processes p ON p.id = o.process_id
         WHERE o.session_id = ?1 ORDER BY p.pid, o.start_ns",
    )?;
    let mut rows = stmt.query(params![session.0])?;
    let mut per_pid: Vec<(u32, Vec<Stored>)> = Vec::new();
    while let Some(row) = rows.next()? {
        let pid: u32 = row.get(0)?;
        let samples = decoded(row.get(1)?, &row.get::<_, Vec<u8>>(2)?)?;
        match per_pid.last_mut() {
            Some((last, all)) if *last == pid => all.extend(samples),
            _ => per_pid.push((pid, samples)),
        }
    }
    per_pid
        .into_iter()
        .map(|(pid, mut samples)| {
            // Rows of one process can interleave when a write was retried.
            samples.sort_by_key(|s| s.ts_ns);
            Ok((pid, timeline_of(conn, samples)?))
        })
        .collect()
}

fn decoded(base_ns: u64, blob: &[u8]) -> rusqlite::Result<Vec<Stored>> {
    timeline::decode(base_ns, blob).map_err(|_| {
        let msg = "a samples blob is damaged: the database is damaged";
        rusqlite::Error::FromSqlConversionFailure(0, Type::Blob, msg.into())
    })
}

/// Stored samples with their stacks read, each distinct stack once.
fn timeline_of(conn: &Connection, samples: Vec<Stored>) -> rusqlite::Result<Timeline> {
    let trie = Trie::read(conn, samples.iter().map(|s| s.stack_id))?;
    timeline_with(&trie, &mut HashMap::new(), samples)
}

/// Stored samples with their stacks from `trie`, or `known` (by leaf id)
/// when read before.
fn timeline_with(
    trie: &Trie,
    known: &mut HashMap<i64, Arc<[Frame]>>,
    samples: Vec<Stored>,
) -> rusqlite::Result<Timeline> {
    let mut index: HashMap<i64, u32> = HashMap::new();
    let mut timeline = Timeline::default();
    for s in samples {
        let stack = match index.get(&s.stack_id) {
            Some(&at) => at,
            None => {
                let frames = match known.get(&s.stack_id) {
                    Some(stack) => stack.clone(),
                    None => trie.stack(s.stack_id)?,
                };
                timeline.stacks.push(frames);
                let at = timeline.stacks.len() as u32 - 1;
                index.insert(s.stack_id, at);
                at
            }
        };
        timeline.ticks.push(Tick {
            ts_ns: s.ts_ns,
            tid: s.tid,
            state: s.state,
            stack,
        });
    }
    Ok(timeline)
}

pub(crate) fn processes(
    conn: &Connection,
    session: SessionId,
) -> rusqlite::Result<Vec<ProcessRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.id, p.session_id, p.pid, p.command_line, p.python_version, p.started_at,
             p.ended_at, p.exit, (SELECT count(*) FROM requests r WHERE r.process_id = p.id)
         FROM processes p WHERE p.session_id = ?1 ORDER BY p.id",
    )?;
    let rows = stmt.query_map(params![session.0], |row| {
        let command_line: String = row.get(3)?;
        let command_line = serde_json::from_str(&command_line)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Text, Box::new(e)))?;
        Ok(ProcessRow {
            id: ProcessId(row.get(0)?),
            session_id: SessionId(row.get(1)?),
            pid: row.get(2)?,
            command_line,
            python_version: row.get(4)?,
            started_at: row.get(5)?,
            ended_at: row.get(6)?,
            exit: row.get(7)?,
            requests: row.get(8)?,
        })
    })?;
    rows.collect()
}
