//! Writing batches: interning frames and stacks, one transaction per batch.

use rustc_hash::FxHashMap;
use std::sync::{Arc, OnceLock};

use rusqlite::{params, Connection, OptionalExtension, ToSql, TransactionBehavior};
use timeglass_model::{
    Caller, Frame, HttpCall, ProfiledRequest, RequestContext, SqlQuery, Stack, Timeline,
};

use crate::clock::{rfc3339_ms, ClockMap};
use crate::schema;
use crate::timeline::{self, Stored};
use crate::Batch;

/// Ids of frames and trie nodes already in the database, so a repeated
/// stack costs hash lookups and no query.
///
/// Must be cleared when a transaction rolls back: it may hold ids that were
/// never committed.
#[derive(Default)]
pub(crate) struct Interner {
    frames: FxHashMap<Frame, i64>,
    /// (parent node, frame) → node; parent 0 is the root.
    nodes: FxHashMap<(i64, i64), i64>,
    /// Stacks and callers the join hands over again and again (one `Arc`
    /// for every wait of a line, request after request), by address. Each
    /// entry holds its `Arc`, so the address cannot be reused meanwhile.
    by_address: FxHashMap<usize, (Arc<[Frame]>, Interned)>,
}

#[derive(Clone, Copy)]
enum Interned {
    Stack(i64),
    Caller(i64),
}

/// The address cache is dropped whole beyond this many entries.
const MAX_BY_ADDRESS: usize = 4_096;

impl Interner {
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.nodes.clear();
        self.by_address.clear();
    }

    /// [`Self::stack_id`] of a stack that is handed over again and again.
    fn shared_stack_id(&mut self, conn: &Connection, stack: &Stack) -> rusqlite::Result<i64> {
        if let Some((_, Interned::Stack(id))) = self.by_address.get(&address(stack)) {
            return Ok(*id);
        }
        let id = self.stack_id(conn, stack)?;
        self.remember(stack, Interned::Stack(id));
        Ok(id)
    }

    /// The `callers` row of a statement's or call's caller.
    fn caller_id(&mut self, conn: &Connection, caller: &Caller) -> rusqlite::Result<i64> {
        if let Some((_, Interned::Caller(id))) = self.by_address.get(&address(caller)) {
            return Ok(*id);
        }
        let frames = serde_json::to_string(&caller[..]).expect("frames serialize");
        let found = conn
            .prepare_cached("SELECT id FROM callers WHERE frames = ?1")?
            .query_row(params![frames], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO callers (frames) VALUES (?1)")?
                    .execute(params![frames])?;
                conn.last_insert_rowid()
            }
        };
        self.remember(caller, Interned::Caller(id));
        Ok(id)
    }

    fn remember(&mut self, frames: &Arc<[Frame]>, interned: Interned) {
        if self.by_address.len() >= MAX_BY_ADDRESS {
            self.by_address.clear();
        }
        self.by_address
            .insert(address(frames), (frames.clone(), interned));
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
pub(crate) fn write_batch(
    conn: &mut Connection,
    interner: &mut Interner,
    clock: ClockMap,
    batch: &Batch,
) -> rusqlite::Result<()> {
    // IMMEDIATE: take the write lock up front so a busy database is waited
    // for by busy_timeout instead of failing mid-transaction.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut endpoints = EndpointStacks::default();
    let mut stored = None;
    for (process, request) in &batch.requests {
        let id = insert_request(&tx, batch.session.0, process.0, clock, request)?;
        let (first, _) = stored.get_or_insert((id, id));
        stored = Some((*first, id));
        let endpoint = endpoints.endpoint(request);
        if let Some(context) = &request.context {
            insert_context(&tx, id, context)?;
        }
        let mut insert = tx.prepare_cached(
            "INSERT INTO request_stacks (request_id, stack_id, samples) VALUES (?1, ?2, ?3)
             ON CONFLICT DO UPDATE SET samples = samples + excluded.samples",
        )?;
        let mut ids = FxHashMap::default();
        for counted in &request.stacks {
            let stack = interner.stack_id(&tx, &counted.stack)?;
            insert.execute(params![id, stack, counted.samples])?;
            ids.insert(address(&counted.stack), stack);
            endpoints.add_samples(endpoint, stack, counted.samples);
        }
        // Waits end in a synthetic frame, so they never share a row with samples.
        for counted in &request.waits {
            let stack = interner.shared_stack_id(&tx, &counted.stack)?;
            insert.execute(params![id, stack, counted.samples])?;
            endpoints.add_samples(endpoint, stack, counted.samples);
        }
        drop(insert);
        if !request.timeline.is_empty() {
            let blob = timeline_blob(
                &tx,
                interner,
                &ids,
                request.request.start_ns,
                &request.timeline,
            )?;
            tx.prepare_cached("INSERT INTO request_samples (request_id, samples) VALUES (?1, ?2)")?
                .execute(params![id, blob])?;
        }
        let mut allocs = tx.prepare_cached(
            "INSERT INTO request_alloc_stacks (request_id, stack_id, bytes) VALUES (?1, ?2, ?3)
             ON CONFLICT DO UPDATE SET bytes = bytes + excluded.bytes",
        )?;
        for counted in &request.alloc_stacks {
            let stack = interner.stack_id(&tx, &counted.stack)?;
            allocs.execute(params![id, stack, counted.samples])?;
            endpoints.add_bytes(endpoint, stack, counted.samples);
        }
        drop(allocs);
        insert_queries(&tx, interner, id, &request.queries)?;
        insert_calls(&tx, interner, id, &request.calls)?;
    }
    endpoints.write(&tx, batch.session.0)?;
    // Rowids only grow, so a batch's requests are the ids between its first
    // and its last.
    if let Some((first, last)) = stored {
        tx.prepare_cached(schema::ADD_BATCH_TO_MINUTES)?
            .execute(params![first, last])?;
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
    let mut outside = tx.prepare_cached(
        "INSERT INTO outside_samples (session_id, process_id, start_ns, samples)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (process, samples) in batch.outside_timeline.iter().filter(|t| !t.1.is_empty()) {
        let start = samples.ticks[0].ts_ns;
        let blob = timeline_blob(&tx, interner, &FxHashMap::default(), start, samples)?;
        outside.execute(params![batch.session.0, process.0, start, blob])?;
    }
    drop(outside);
    let mut sample = tx.prepare_cached(
        "INSERT OR REPLACE INTO process_samples
             (process_id, ts_ns, cpu_percent, rss_bytes, threads, fds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (process, s) in &batch.process_samples {
        sample.execute(params![
            process.0,
            s.ts_ns,
            s.cpu_percent,
            s.rss_bytes,
            s.threads,
            s.fds
        ])?;
    }
    drop(sample);
    tx.commit()
}

/// A batch's stacks summed per endpoint, added to `endpoint_stacks` and
/// `endpoint_alloc_stacks` (schema v14) once per endpoint and stack: a
/// batch of a hundred requests of one endpoint repeats the same few
/// stacks, and an upsert costs about what an insert into `request_stacks`
/// does.
#[derive(Default)]
struct EndpointStacks<'a> {
    /// `(method, route or '')`, by index.
    endpoints: Vec<(&'a str, &'a str)>,
    /// `(endpoint, stack)` → samples.
    samples: FxHashMap<(usize, i64), u64>,
    /// `(endpoint, stack)` → bytes.
    bytes: FxHashMap<(usize, i64), u64>,
}

impl<'a> EndpointStacks<'a> {
    /// The index of the request's endpoint.
    fn endpoint(&mut self, profiled: &'a ProfiledRequest) -> usize {
        let r = &profiled.request;
        let key = (r.method.as_str(), r.route.as_deref().unwrap_or(""));
        match self.endpoints.iter().position(|e| *e == key) {
            Some(at) => at,
            None => {
                self.endpoints.push(key);
                self.endpoints.len() - 1
            }
        }
    }

    fn add_samples(&mut self, endpoint: usize, stack: i64, samples: u64) {
        *self.samples.entry((endpoint, stack)).or_default() += samples;
    }

    fn add_bytes(&mut self, endpoint: usize, stack: i64, bytes: u64) {
        *self.bytes.entry((endpoint, stack)).or_default() += bytes;
    }

    fn write(&self, conn: &Connection, session: i64) -> rusqlite::Result<()> {
        for (table, column, sums) in [
            ("endpoint_stacks", "samples", &self.samples),
            ("endpoint_alloc_stacks", "bytes", &self.bytes),
        ] {
            let mut upsert = conn.prepare_cached(&format!(
                "INSERT INTO {table} (session_id, method, route, stack_id, {column})
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET {column} = {column} + excluded.{column}"
            ))?;
            for (&(endpoint, stack), &sum) in sums {
                let (method, route) = self.endpoints[endpoint];
                upsert.execute(params![session, method, route, stack, sum])?;
            }
        }
        Ok(())
    }
}

/// `samples` as stored, times from `base_ns`. Stacks already interned are
/// found in `ids` by address.
fn timeline_blob(
    conn: &Connection,
    interner: &mut Interner,
    ids: &FxHashMap<usize, i64>,
    base_ns: u64,
    samples: &Timeline,
) -> rusqlite::Result<Vec<u8>> {
    let mut stack_ids = Vec::with_capacity(samples.stacks.len());
    for stack in &samples.stacks {
        stack_ids.push(match ids.get(&address(stack)) {
            Some(&id) => id,
            None => interner.stack_id(conn, stack)?,
        });
    }
    let stored: Vec<Stored> = samples
        .ticks
        .iter()
        .map(|t| Stored {
            ts_ns: t.ts_ns,
            tid: t.tid,
            state: t.state,
            stack_id: stack_ids.get(t.stack as usize).copied().unwrap_or(0),
        })
        .collect();
    Ok(timeline::encode(base_ns, &stored))
}

fn insert_request(
    conn: &Connection,
    session: i64,
    process: i64,
    clock: ClockMap,
    profiled: &ProfiledRequest,
) -> rusqlite::Result<i64> {
    let r = &profiled.request;
    let b = &profiled.breakdown;
    let block = profiled.loop_block.as_ref();
    let m = &profiled.memory;
    let started_at = rfc3339_ms(clock.unix_ns_at(r.start_ns));
    conn.prepare_cached(
        "INSERT INTO requests (session_id, process_id, marker_id, method, path, route, status,
             errored, cancelled, tid, start_ns, end_ns, started_at, duration_us,
             samples, switched_samples, torn_samples, response_end_ns,
             queries, db_us, calls, http_us, n_plus_one_count, n_plus_one_sql, n_plus_one_caller,
             python_us, native_us, blocked_us, gil_wait_us, sql_wait_us, http_wait_us, await_us,
             queued_us, cpu_us, loop_blocked_us, loop_block_start_ns, loop_block_line,
             loop_block_delayed, rss_start_bytes, rss_end_bytes, rss_peak_bytes, gc_us,
             gc_collections, gc_pause_us, alloc_bytes, incomplete)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35,
             ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, ?44, ?45, ?46)",
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
        us(b.python_ns),
        us(b.native_ns),
        us(b.blocked_ns),
        us(b.gil_wait_ns),
        us(b.sql_ns),
        us(b.http_ns),
        us(b.await_ns),
        us(b.queued_ns),
        us(profiled.cpu_ns),
        block.map(|l| us(l.blocked_ns)),
        block.map(|l| l.start_ns),
        block.and_then(|l| l.line.as_ref()),
        block.map(|l| serde_json::to_string(&l.delayed).expect("integers serialize")),
        m.rss_start_bytes.unwrap_or(0),
        m.rss_end_bytes.unwrap_or(0),
        m.rss_peak_bytes.unwrap_or(0),
        us(b.gc_ns),
        m.gc_collections,
        us(m.gc_pause_ns),
        m.alloc_bytes
            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
        profiled.incomplete,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Nanoseconds as the whole microseconds the store keeps.
fn us(ns: u64) -> u64 {
    ns / 1000
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

/// Statements are inserted this many rows at a time: running an INSERT
/// costs about as much as the rows it binds, so one for several rows
/// halves the cost of each. Fewer rows left over go one at a time.
const QUERY_ROWS_PER_INSERT: usize = 8;
const QUERY_COLUMNS: usize = 13;

fn insert_queries(
    conn: &Connection,
    interner: &mut Interner,
    request: i64,
    queries: &[SqlQuery],
) -> rusqlite::Result<()> {
    static SQL: OnceLock<(String, String)> = OnceLock::new();
    let (many, one) = SQL.get_or_init(|| (query_insert(QUERY_ROWS_PER_INSERT), query_insert(1)));
    let mut chunks = queries.chunks_exact(QUERY_ROWS_PER_INSERT);
    let mut seq = 0;
    for chunk in chunks.by_ref() {
        let mut insert = conn.prepare_cached(many)?;
        for (i, q) in chunk.iter().enumerate() {
            let caller = interner.caller_id(conn, &q.caller)?;
            bind_query(&mut insert, i * QUERY_COLUMNS, request, seq, q, caller)?;
            seq += 1;
        }
        insert.raw_execute()?;
    }
    let mut insert = conn.prepare_cached(one)?;
    for q in chunks.remainder() {
        let caller = interner.caller_id(conn, &q.caller)?;
        bind_query(&mut insert, 0, request, seq, q, caller)?;
        insert.raw_execute()?;
        seq += 1;
    }
    Ok(())
}

fn query_insert(rows: usize) -> String {
    let row = |r: usize| {
        let at = (1..=QUERY_COLUMNS).map(|c| format!("?{}", r * QUERY_COLUMNS + c));
        format!("({})", at.collect::<Vec<_>>().join(", "))
    };
    format!(
        "INSERT INTO queries (request_id, seq, sql, sql_length, normalized, params, params_length,
             start_ns, duration_ns, rows, driver, error, caller_id)
         VALUES {}",
        (0..rows).map(row).collect::<Vec<_>>().join(", ")
    )
}

/// Binds one statement's row at parameters `after + 1 ..= after + 13`.
fn bind_query(
    insert: &mut rusqlite::Statement<'_>,
    after: usize,
    request: i64,
    seq: usize,
    q: &SqlQuery,
    caller: i64,
) -> rusqlite::Result<()> {
    let values: [&dyn ToSql; QUERY_COLUMNS] = [
        &request,
        &seq,
        &q.sql,
        &q.sql_len,
        &q.normalized,
        &q.params,
        &q.params_len,
        &q.start_ns,
        &q.duration_ns(),
        &q.rows,
        &q.driver,
        &q.error,
        &caller,
    ];
    for (i, value) in values.into_iter().enumerate() {
        insert.raw_bind_parameter(after + i + 1, value)?;
    }
    Ok(())
}

fn insert_calls(
    conn: &Connection,
    interner: &mut Interner,
    request: i64,
    calls: &[HttpCall],
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO calls (request_id, seq, method, url, status, start_ns, duration_ns, error,
             library, caller_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (seq, c) in calls.iter().enumerate() {
        let caller = interner.caller_id(conn, &c.caller)?;
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
            caller,
        ])?;
    }
    Ok(())
}

fn address(frames: &[Frame]) -> usize {
    frames.as_ptr() as usize
}
