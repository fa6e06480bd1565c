//! Writing batches: interning frames and stacks, one transaction per batch.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use timeglass_model::{Frame, HttpCall, ProfiledRequest, RequestContext, SqlQuery};

use crate::clock::{rfc3339_ms, ClockMap};
use crate::Batch;

/// Ids of frames and trie nodes already in the database, so a repeated
/// stack costs hash lookups and no query.
///
/// Must be cleared when a transaction rolls back: it may hold ids that were
/// never committed.
#[derive(Default)]
pub struct Interner {
    frames: HashMap<Frame, i64>,
    /// (parent node, frame) → node; parent 0 is the root.
    nodes: HashMap<(i64, i64), i64>,
}

impl Interner {
    pub fn clear(&mut self) {
        self.frames.clear();
        self.nodes.clear();
    }

    /// The id of the stack's leaf node; 0 for an empty stack.
    fn stack_id(&mut self, conn: &Connection, stack: &[Frame]) -> rusqlite::Result<i64> {
        let mut node = 0;
        for frame in stack {
            let frame_id = self.frame_id(conn, frame)?;
            node = self.node_id(conn, node, frame_id)?;
        }
        Ok(node)
    }

    fn frame_id(&mut self, conn: &Connection, frame: &Frame) -> rusqlite::Result<i64> {
        if let Some(&id) = self.frames.get(frame) {
            return Ok(id);
        }
        let found = conn
            .prepare_cached(
                "SELECT id FROM frames WHERE name = ?1 AND filename = ?2 AND line = ?3",
            )?
            .query_row(params![frame.name, frame.filename, frame.line], |r| {
                r.get(0)
            })
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                conn.prepare_cached(
                    "INSERT INTO frames (name, filename, short, line) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    frame.name,
                    frame.filename,
                    frame.short,
                    frame.line
                ])?;
                conn.last_insert_rowid()
            }
        };
        self.frames.insert(frame.clone(), id);
        Ok(id)
    }

    fn node_id(&mut self, conn: &Connection, parent: i64, frame: i64) -> rusqlite::Result<i64> {
        if let Some(&id) = self.nodes.get(&(parent, frame)) {
            return Ok(id);
        }
        let found = conn
            .prepare_cached("SELECT id FROM stacks WHERE parent_id = ?1 AND frame_id = ?2")?
            .query_row(params![parent, frame], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO stacks (parent_id, frame_id) VALUES (?1, ?2)")?
                    .execute(params![parent, frame])?;
                conn.last_insert_rowid()
            }
        };
        self.nodes.insert((parent, frame), id);
        Ok(id)
    }
}

/// Writes the whole batch or nothing.
pub fn write_batch(
    conn: &mut Connection,
    interner: &mut Interner,
    clock: ClockMap,
    batch: &Batch,
) -> rusqlite::Result<()> {
    // IMMEDIATE: take the write lock up front so a busy database is waited
    // for by busy_timeout instead of failing mid-transaction.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (process, request) in &batch.requests {
        let id = insert_request(&tx, batch.session.0, process.0, clock, request)?;
        if let Some(context) = &request.context {
            insert_context(&tx, id, context)?;
        }
        let mut insert = tx.prepare_cached(
            "INSERT INTO request_stacks (request_id, stack_id, samples) VALUES (?1, ?2, ?3)
             ON CONFLICT DO UPDATE SET samples = samples + excluded.samples",
        )?;
        // Waits end in a synthetic frame, so they never share a row with samples.
        for counted in request.stacks.iter().chain(&request.waits) {
            let stack = interner.stack_id(&tx, &counted.stack)?;
            insert.execute(params![id, stack, counted.samples])?;
        }
        insert_queries(&tx, id, &request.queries)?;
        insert_calls(&tx, id, &request.calls)?;
    }
    let mut outside = tx.prepare_cached(
        "INSERT INTO outside_stacks (session_id, process_id, stack_id, samples)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO UPDATE SET samples = samples + excluded.samples",
    )?;
    for (process, counted) in &batch.outside {
        let stack = interner.stack_id(&tx, &counted.stack)?;
        outside.execute(params![batch.session.0, process.0, stack, counted.samples])?;
    }
    drop(outside);
    tx.commit()
}

fn insert_request(
    conn: &Connection,
    session: i64,
    process: i64,
    clock: ClockMap,
    profiled: &ProfiledRequest,
) -> rusqlite::Result<i64> {
    let r = &profiled.request;
    let started_at = rfc3339_ms(clock.unix_ns_at(r.start_ns));
    conn.prepare_cached(
        "INSERT INTO requests (session_id, process_id, marker_id, method, path, route, status,
             errored, cancelled, tid, start_ns, end_ns, started_at, duration_us,
             samples, switched_samples, torn_samples, response_end_ns,
             queries, db_us, calls, http_us, n_plus_one_count, n_plus_one_sql, n_plus_one_caller)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
    )?
    .execute(params![
        session,
        process,
        r.marker_id,
        r.method,
        r.path,
        r.route,
        r.status,
        r.errored,
        r.cancelled,
        r.tid,
        r.start_ns,
        r.end_ns,
        started_at,
        r.duration_ns() / 1000,
        profiled.samples(),
        profiled.switched_samples,
        profiled.torn_samples,
        r.response_end_ns,
        profiled.queries.len(),
        profiled.db_ns() / 1000,
        profiled.calls.len(),
        profiled.http_ns() / 1000,
        profiled.n_plus_one.as_ref().map(|n| n.count),
        profiled.n_plus_one.as_ref().map(|n| &n.normalized),
        profiled.n_plus_one.as_ref().and_then(|n| n.caller.as_ref()),
    ])?;
    Ok(conn.last_insert_rowid())
}

fn insert_context(conn: &Connection, request: i64, c: &RequestContext) -> rusqlite::Result<()> {
    let headers = |h: &[(String, String)]| serde_json::to_string(h).expect("strings serialize");
    conn.prepare_cached(
        "INSERT INTO request_context (request_id, request_headers, query, body, body_bytes,
             response_headers, response_start_ns, handler_start_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        request,
        headers(&c.request_headers),
        c.query,
        c.body,
        c.body_bytes,
        headers(&c.response_headers),
        c.response_start_ns,
        c.handler_start_ns,
    ])?;
    Ok(())
}

fn insert_queries(conn: &Connection, request: i64, queries: &[SqlQuery]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO queries (request_id, seq, sql, sql_length, normalized, params, params_length,
             start_ns, duration_ns, rows, driver, error, caller)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for (seq, q) in queries.iter().enumerate() {
        insert.execute(params![
            request,
            seq,
            q.sql,
            q.sql_len,
            q.normalized,
            q.params,
            q.params_len,
            q.start_ns,
            q.duration_ns(),
            q.rows,
            q.driver,
            q.error,
            caller_json(&q.caller),
        ])?;
    }
    Ok(())
}

fn insert_calls(conn: &Connection, request: i64, calls: &[HttpCall]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO calls (request_id, seq, method, url, status, start_ns, duration_ns, error,
             library, caller)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (seq, c) in calls.iter().enumerate() {
        insert.execute(params![
            request,
            seq,
            c.method,
            c.url,
            c.status,
            c.start_ns,
            c.duration_ns(),
            c.error,
            c.library,
            caller_json(&c.caller),
        ])?;
    }
    Ok(())
}

fn caller_json(frames: &[Frame]) -> String {
    serde_json::to_string(frames).expect("frames serialize")
}
