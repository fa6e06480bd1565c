//! The schema and its migrations: the only place that knows table layouts
//! by version.
//!
//! A new file is version 0; `MIGRATIONS[v]` takes a database from version
//! `v` to `v + 1`, so creating a store and upgrading an old one run the same
//! steps. Adding version 2 means appending one script and bumping nothing else.

use rusqlite::{Connection, TransactionBehavior};

/// `PRAGMA application_id` of every TimeGlass database: "TmGl" in ASCII.
pub const APPLICATION_ID: i32 = i32::from_be_bytes(*b"TmGl");

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

const MIGRATIONS: &[&str] = &[
    V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14, V15, V16,
];

/// The sums of `endpoint_minutes` per endpoint and minute over `requests`
/// (a `SELECT` to be completed by a filter and `GROUP BY 1, 2, 3, 4`): what
/// version 14 filled the table with, and what the writer adds per batch.
macro_rules! minute_sums {
    () => {
        "SELECT session_id, method, coalesce(route, ''), start_ns / 60000000000, count(*),
    sum(duration_us), min(duration_us), max(duration_us), max(end_ns),
    count(CASE WHEN status >= 500 OR (status IS NULL AND errored) THEN 1 END),
    count(CASE WHEN status BETWEEN 400 AND 499 THEN 1 END),
    sum(db_us), sum(queries), count(n_plus_one_count), count(loop_blocked_us),
    coalesce(sum(CASE WHEN python_us IS NOT NULL THEN cpu_us END), 0), count(python_us),
    coalesce(sum(python_us), 0), coalesce(sum(native_us), 0), coalesce(sum(blocked_us), 0),
    coalesce(sum(gil_wait_us), 0), coalesce(sum(sql_wait_us), 0),
    coalesce(sum(http_wait_us), 0), coalesce(sum(await_us), 0), coalesce(sum(queued_us), 0),
    sum(gc_us), coalesce(sum(CASE WHEN python_us IS NOT NULL THEN duration_us END), 0)
FROM requests"
    };
}

/// Version 16: how busy the machine was over each session: as shares of
/// its wall time, a task ready to run waited for a CPU (`cpu_wait_share`,
/// CPU pressure) and the hypervisor ran other guests (`steal_share`); and
/// how long the app's request threads waited for a CPU per unit of CPU
/// time they got (`app_wait_per_cpu`). NULL where the kernel keeps no such
/// counter, for sessions that did not end and for sessions of older
/// versions. `compare` reads them.
const V16: &str = "
ALTER TABLE sessions ADD COLUMN cpu_wait_share REAL;
ALTER TABLE sessions ADD COLUMN steal_share REAL;
ALTER TABLE sessions ADD COLUMN app_wait_per_cpu REAL;
";

/// Version 15: lists sorted by response time keep the nanosecond order they
/// show. `duration_us` is floored, so requests within one microsecond tied
/// on it and came back by id; `requests_by_duration` gains the exact
/// duration (the expression `dashboard` sorts by), so the slowest-first and
/// fastest-first lists still walk one index, ties included.
///
/// `endpoint_minutes` is no longer kept by a trigger: the writer adds each
/// batch's requests to it in one statement ([`ADD_BATCH_TO_MINUTES`]), as
/// it does for `endpoint_stacks`. The trigger ran an upsert per request
/// and made every insert into `requests` keep a statement journal.
const V15: &str = "
DROP INDEX requests_by_duration;
CREATE INDEX requests_by_duration
    ON requests(duration_us, (coalesce(response_end_ns, end_ns) - start_ns));
DROP TRIGGER requests_sum_per_minute;
";

/// Adds the requests with ids `?1..=?2` (one batch, just inserted) to
/// `endpoint_minutes`: the sums version 14 filled the table with, per
/// endpoint and minute, added to a minute's row if it has one.
pub(crate) const ADD_BATCH_TO_MINUTES: &str = concat!(
    "
INSERT INTO endpoint_minutes
",
    minute_sums!(),
    " WHERE id BETWEEN ?1 AND ?2 GROUP BY 1, 2, 3, 4
ON CONFLICT DO UPDATE SET
    requests = requests + excluded.requests,
    duration_us = duration_us + excluded.duration_us,
    min_us = min(min_us, excluded.min_us),
    max_us = max(max_us, excluded.max_us),
    last_end_ns = max(last_end_ns, excluded.last_end_ns),
    errors_5xx = errors_5xx + excluded.errors_5xx,
    answered_4xx = answered_4xx + excluded.answered_4xx,
    db_us = db_us + excluded.db_us,
    queries = queries + excluded.queries,
    n_plus_one = n_plus_one + excluded.n_plus_one,
    loop_blocks = loop_blocks + excluded.loop_blocks,
    cpu_us = cpu_us + excluded.cpu_us,
    cpu_measured = cpu_measured + excluded.cpu_measured,
    python_us = python_us + excluded.python_us,
    native_us = native_us + excluded.native_us,
    blocked_us = blocked_us + excluded.blocked_us,
    gil_wait_us = gil_wait_us + excluded.gil_wait_us,
    sql_wait_us = sql_wait_us + excluded.sql_wait_us,
    http_wait_us = http_wait_us + excluded.http_wait_us,
    await_us = await_us + excluded.await_us,
    queued_us = queued_us + excluded.queued_us,
    gc_us = gc_us + excluded.gc_us,
    measured_us = measured_us + excluded.measured_us
"
);

/// Version 14: an endpoint's page without reading its requests.
///
/// `endpoint_stacks` and `endpoint_alloc_stacks` sum `request_stacks` and
/// `request_alloc_stacks` per session, method and route (`''` for none, as
/// in `endpoint_minutes`): the endpoint's merged flame graph is a few
/// hundred rows however many requests it had. The writer adds each batch's
/// requests to them (one upsert per endpoint and stack of the batch), prune
/// deletes a session's rows with the session, and the migration fills them
/// from the stacks already stored.
///
/// `endpoint_minutes` gains the sums of the time breakdown (`python_us` to
/// `gc_us`, NULL breakdowns counted as 0) and `measured_us`, the response
/// time of the requests that have one: the endpoint page's "where the time
/// went" over whole minutes. It is rebuilt from the stored requests, with
/// its trigger.
///
/// `requests_by_endpoint` also carries what the endpoint page reads of each
/// request besides its response time (start, process, RSS at the end and
/// peak, bytes allocated), so its percentiles, memory spreads and leak hint
/// come from one walk of the index, never a row of `requests`.
const V14: &str = concat!(
    "
CREATE TABLE endpoint_stacks (
    session_id INTEGER NOT NULL,
    method     TEXT NOT NULL,
    route      TEXT NOT NULL,
    stack_id   INTEGER NOT NULL,
    samples    INTEGER NOT NULL,
    PRIMARY KEY (session_id, method, route, stack_id)
) WITHOUT ROWID;
INSERT INTO endpoint_stacks
SELECT r.session_id, r.method, coalesce(r.route, ''), rs.stack_id, sum(rs.samples)
FROM request_stacks rs JOIN requests r ON r.id = rs.request_id GROUP BY 1, 2, 3, 4;

CREATE TABLE endpoint_alloc_stacks (
    session_id INTEGER NOT NULL,
    method     TEXT NOT NULL,
    route      TEXT NOT NULL,
    stack_id   INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    PRIMARY KEY (session_id, method, route, stack_id)
) WITHOUT ROWID;
INSERT INTO endpoint_alloc_stacks
SELECT r.session_id, r.method, coalesce(r.route, ''), ra.stack_id, sum(ra.bytes)
FROM request_alloc_stacks ra JOIN requests r ON r.id = ra.request_id GROUP BY 1, 2, 3, 4;

DROP TRIGGER requests_sum_per_minute;
DROP TABLE endpoint_minutes;
CREATE TABLE endpoint_minutes (
    session_id   INTEGER NOT NULL,
    method       TEXT NOT NULL,
    route        TEXT NOT NULL,
    minute       INTEGER NOT NULL,
    requests     INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL,
    min_us       INTEGER NOT NULL,
    max_us       INTEGER NOT NULL,
    last_end_ns  INTEGER NOT NULL,
    errors_5xx   INTEGER NOT NULL,
    answered_4xx INTEGER NOT NULL,
    db_us        INTEGER NOT NULL,
    queries      INTEGER NOT NULL,
    n_plus_one   INTEGER NOT NULL,
    loop_blocks  INTEGER NOT NULL,
    cpu_us       INTEGER NOT NULL,
    cpu_measured INTEGER NOT NULL,
    python_us    INTEGER NOT NULL,
    native_us    INTEGER NOT NULL,
    blocked_us   INTEGER NOT NULL,
    gil_wait_us  INTEGER NOT NULL,
    sql_wait_us  INTEGER NOT NULL,
    http_wait_us INTEGER NOT NULL,
    await_us     INTEGER NOT NULL,
    queued_us    INTEGER NOT NULL,
    gc_us        INTEGER NOT NULL,
    measured_us  INTEGER NOT NULL,
    PRIMARY KEY (session_id, method, route, minute)
) WITHOUT ROWID;

INSERT INTO endpoint_minutes
",
    minute_sums!(),
    " GROUP BY 1, 2, 3, 4;

CREATE TRIGGER requests_sum_per_minute AFTER INSERT ON requests BEGIN
    INSERT INTO endpoint_minutes VALUES (NEW.session_id, NEW.method, coalesce(NEW.route, ''),
        NEW.start_ns / 60000000000, 1, NEW.duration_us, NEW.duration_us, NEW.duration_us,
        NEW.end_ns,
        CASE WHEN NEW.status >= 500 OR (NEW.status IS NULL AND NEW.errored) THEN 1 ELSE 0 END,
        CASE WHEN NEW.status BETWEEN 400 AND 499 THEN 1 ELSE 0 END,
        NEW.db_us, NEW.queries, NEW.n_plus_one_count IS NOT NULL,
        NEW.loop_blocked_us IS NOT NULL,
        CASE WHEN NEW.python_us IS NOT NULL THEN NEW.cpu_us ELSE 0 END,
        NEW.python_us IS NOT NULL,
        coalesce(NEW.python_us, 0), coalesce(NEW.native_us, 0), coalesce(NEW.blocked_us, 0),
        coalesce(NEW.gil_wait_us, 0), coalesce(NEW.sql_wait_us, 0),
        coalesce(NEW.http_wait_us, 0), coalesce(NEW.await_us, 0), coalesce(NEW.queued_us, 0),
        NEW.gc_us,
        CASE WHEN NEW.python_us IS NOT NULL THEN NEW.duration_us ELSE 0 END)
    ON CONFLICT DO UPDATE SET
        requests = requests + 1,
        duration_us = duration_us + excluded.duration_us,
        min_us = min(min_us, excluded.min_us),
        max_us = max(max_us, excluded.max_us),
        last_end_ns = max(last_end_ns, excluded.last_end_ns),
        errors_5xx = errors_5xx + excluded.errors_5xx,
        answered_4xx = answered_4xx + excluded.answered_4xx,
        db_us = db_us + excluded.db_us,
        queries = queries + excluded.queries,
        n_plus_one = n_plus_one + excluded.n_plus_one,
        loop_blocks = loop_blocks + excluded.loop_blocks,
        cpu_us = cpu_us + excluded.cpu_us,
        cpu_measured = cpu_measured + excluded.cpu_measured,
        python_us = python_us + excluded.python_us,
        native_us = native_us + excluded.native_us,
        blocked_us = blocked_us + excluded.blocked_us,
        gil_wait_us = gil_wait_us + excluded.gil_wait_us,
        sql_wait_us = sql_wait_us + excluded.sql_wait_us,
        http_wait_us = http_wait_us + excluded.http_wait_us,
        await_us = await_us + excluded.await_us,
        queued_us = queued_us + excluded.queued_us,
        gc_us = gc_us + excluded.gc_us,
        measured_us = measured_us + excluded.measured_us;
END;

DROP INDEX requests_by_endpoint;
CREATE INDEX requests_by_endpoint ON requests(session_id, method, route, duration_us,
    start_ns, process_id, rss_end_bytes, rss_peak_bytes, alloc_bytes);
"
);

/// Version 11: how a recording ended when it did not end cleanly.
///
/// `recorder_pid` and `recorder_started` (the process's start time in clock
/// ticks since boot, `/proc/PID/stat` field 22, so a reused pid is told
/// apart) name the process that records the session. A session without an
/// end whose recorder is gone is `interrupted` the next time any command
/// opens the store; it ends at `progress_at`, the recorder's last write.
/// `requests_seen` is how many request starts the recorder had read by
/// then; those of them never stored are `lost_requests`. A request whose
/// end never came (its process was killed mid-request, or recording
/// stopped first) is kept with its samples so far as `incomplete`.
const V11: &str = "
ALTER TABLE sessions ADD COLUMN recorder_pid INTEGER;
ALTER TABLE sessions ADD COLUMN recorder_started INTEGER;
ALTER TABLE sessions ADD COLUMN progress_at TEXT;
ALTER TABLE sessions ADD COLUMN requests_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN lost_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN incomplete INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sessions_unended ON sessions(id) WHERE ended_at IS NULL;
CREATE INDEX requests_incomplete ON requests(session_id) WHERE incomplete;
";

/// Version 13: when each sample was taken.
///
/// `request_samples` keeps a request's samples in time order as one blob
/// (`timeline.rs`: per sample its time since the previous one, its thread,
/// its state and its stack, a few bytes each), times counted from the
/// request's `start_ns`; the stacks are those of its `request_stacks`
/// (waits are timed, not sampled, and are not in it). `outside_samples`
/// keeps the samples taken outside any request the same way, one row per
/// process per write, times from its `start_ns` (the row's first sample).
/// The counts of `request_stacks` and `outside_stacks` stay what the
/// dashboard reads; these are for the exports that draw a timeline.
/// Requests and sessions recorded before have no rows here.
const V13: &str = "
CREATE TABLE request_samples (
    request_id INTEGER PRIMARY KEY REFERENCES requests(id),
    samples    BLOB NOT NULL
);
CREATE TABLE outside_samples (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    process_id INTEGER NOT NULL REFERENCES processes(id),
    start_ns   INTEGER NOT NULL,
    samples    BLOB NOT NULL
);
CREATE INDEX outside_samples_by_session ON outside_samples(session_id, start_ns);
";

/// Version 12: each request's memory.
///
/// `rss_start_bytes`, `rss_end_bytes` and `rss_peak_bytes` are the app
/// process's resident memory at the recorder's readings nearest the
/// request's start and end and the highest in between; 0 when nothing was
/// read (rows of earlier versions too: a live process never has 0 bytes
/// resident), so sorting by them pages through every row.
/// `requests_by_rss_peak` serves the list sorted by peak RSS.
///
/// `gc_collections` and `gc_pause_us` are the garbage collections that ran
/// on the request's threads while they ran it and their summed pause;
/// `gc_us` is the part of the pause within the response time, a category
/// of the time breakdown beside `python_us` (whose samples no longer count
/// it). All three are 0 for requests recorded before.
///
/// `alloc_bytes` is what the request allocated, estimated from the
/// marker's sampled allocations (`timeglass run --memory`), -1 when its
/// process did not sample them; `request_alloc_stacks` is where, in bytes
/// per stack (the trie of `stacks`, as `request_stacks`).
/// `requests_by_alloc` serves the list sorted by it.
const V12: &str = "
ALTER TABLE requests ADD COLUMN alloc_bytes INTEGER NOT NULL DEFAULT -1;
CREATE INDEX requests_by_alloc ON requests(alloc_bytes);
CREATE TABLE request_alloc_stacks (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    stack_id   INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    PRIMARY KEY (request_id, stack_id)
) WITHOUT ROWID;
ALTER TABLE requests ADD COLUMN rss_start_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN rss_end_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN rss_peak_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN gc_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN gc_collections INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN gc_pause_us INTEGER NOT NULL DEFAULT 0;
CREATE INDEX requests_by_rss_peak ON requests(rss_peak_bytes);
";

/// Version 10: what `timeglass baseline` and `timeglass compare` need.
///
/// `sessions.sample_mode` is how the session sampled: `wall` (every
/// in-flight request, on CPU or not) or `gil-only` (the GIL holder only);
/// NULL for sessions recorded before it was stored, which a comparison
/// treats as unknown. `baselines` keeps each named baseline as one JSON
/// document (`timeglass-compare`'s format, with its own format version), so
/// the store needs no migration when that format grows.
const V10: &str = "
ALTER TABLE sessions ADD COLUMN sample_mode TEXT;

CREATE TABLE baselines (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    session_id INTEGER,  -- the session it was saved from; NULL when imported
    body       TEXT NOT NULL
);
";

/// Version 9: the statistics of a session's endpoints without a scan.
///
/// `endpoint_minutes` sums each endpoint's requests per minute of start
/// time (on the monotonic clock: `start_ns / 60e9`); `route` is '' for
/// requests no route matched, so the key is unique. A trigger keeps it up
/// to date on every insert into `requests`, whoever writes, and the
/// migration fills it from the requests already stored. `/api/v1/stats`
/// and `timeglass report` add up its rows for the whole minutes of a
/// window and sum only the requests of the window's partial first and
/// last minutes from `requests_in_window`: summing a million rows'
/// columns costs SQLite some 300 ms, adding a thousand rows' nothing.
///
/// The 5xx test is `is_5xx` of timeglass-report: a status of 500 or more,
/// or none because the app raised.
///
/// `requests_by_endpoint` holds each endpoint's response times in order,
/// for the nearest-rank percentiles without a sort; `start_ns` follows, so
/// a time range filters within the index.
const V9: &str = "
CREATE TABLE endpoint_minutes (
    session_id   INTEGER NOT NULL,
    method       TEXT NOT NULL,
    route        TEXT NOT NULL,
    minute       INTEGER NOT NULL,
    requests     INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL,
    min_us       INTEGER NOT NULL,
    max_us       INTEGER NOT NULL,
    last_end_ns  INTEGER NOT NULL,
    errors_5xx   INTEGER NOT NULL,
    answered_4xx INTEGER NOT NULL,
    db_us        INTEGER NOT NULL,
    queries      INTEGER NOT NULL,
    n_plus_one   INTEGER NOT NULL,
    loop_blocks  INTEGER NOT NULL,
    cpu_us       INTEGER NOT NULL,
    cpu_measured INTEGER NOT NULL,
    PRIMARY KEY (session_id, method, route, minute)
) WITHOUT ROWID;

INSERT INTO endpoint_minutes
SELECT session_id, method, coalesce(route, ''), start_ns / 60000000000, count(*),
    sum(duration_us), min(duration_us), max(duration_us), max(end_ns),
    count(CASE WHEN status >= 500 OR (status IS NULL AND errored) THEN 1 END),
    count(CASE WHEN status BETWEEN 400 AND 499 THEN 1 END),
    sum(db_us), sum(queries), count(n_plus_one_count), count(loop_blocked_us),
    coalesce(sum(CASE WHEN python_us IS NOT NULL THEN cpu_us END), 0), count(python_us)
FROM requests GROUP BY 1, 2, 3, 4;

CREATE TRIGGER requests_sum_per_minute AFTER INSERT ON requests BEGIN
    INSERT INTO endpoint_minutes VALUES (NEW.session_id, NEW.method, coalesce(NEW.route, ''),
        NEW.start_ns / 60000000000, 1, NEW.duration_us, NEW.duration_us, NEW.duration_us,
        NEW.end_ns,
        CASE WHEN NEW.status >= 500 OR (NEW.status IS NULL AND NEW.errored) THEN 1 ELSE 0 END,
        CASE WHEN NEW.status BETWEEN 400 AND 499 THEN 1 ELSE 0 END,
        NEW.db_us, NEW.queries, NEW.n_plus_one_count IS NOT NULL,
        NEW.loop_blocked_us IS NOT NULL,
        CASE WHEN NEW.python_us IS NOT NULL THEN NEW.cpu_us ELSE 0 END,
        NEW.python_us IS NOT NULL)
    ON CONFLICT DO UPDATE SET
        requests = requests + 1,
        duration_us = duration_us + excluded.duration_us,
        min_us = min(min_us, excluded.min_us),
        max_us = max(max_us, excluded.max_us),
        last_end_ns = max(last_end_ns, excluded.last_end_ns),
        errors_5xx = errors_5xx + excluded.errors_5xx,
        answered_4xx = answered_4xx + excluded.answered_4xx,
        db_us = db_us + excluded.db_us,
        queries = queries + excluded.queries,
        n_plus_one = n_plus_one + excluded.n_plus_one,
        loop_blocks = loop_blocks + excluded.loop_blocks,
        cpu_us = cpu_us + excluded.cpu_us,
        cpu_measured = cpu_measured + excluded.cpu_measured;
END;

CREATE INDEX requests_by_endpoint ON requests(session_id, method, route, duration_us,
    start_ns);
";

/// Version 8: what the app's processes used, and how it answered bad input.
///
/// `process_samples` is a time series per recorded process: CPU (user +
/// system since the previous sample, 100 = one core), resident memory,
/// threads and open file descriptors, on the monotonic clock of
/// `requests.start_ns`.
///
/// A `timeglass probe` run sends malformed requests built from the app's
/// OpenAPI schema. `probe_runs` keeps one row per run, tied to the session
/// that was recording the app at the time (NULL when none was);
/// `probe_operations` every operation its schema listed (what "coverage"
/// is measured against, whether or not it was probed), with the number of
/// requests it got and why it got none (`skipped`: `unsafe method`,
/// `max requests reached`, `nothing to break`), and `probe_results` one
/// row per request sent: the operation (method and OpenAPI path template),
/// what was malformed (`kind`, e.g. `below_minimum`) and where (`target`,
/// e.g. `path:item_id`), the answer (`status` NULL on a timeout or a
/// refused connection) and its `outcome` (`rejected`, `accepted`,
/// `failed`, `hung`, `connection_error`), and the recorded request that
/// served it, when one matched (see `probe.rs`).
///
/// `requests_in_window` covers every column `timeglass report` and
/// `/api/v1/stats` read from a session's requests in a time window, so
/// that scan reads the index alone.
const V8: &str = "
CREATE INDEX requests_in_window ON requests(session_id, start_ns, method, route, end_ns,
    duration_us, status, errored, python_us, cpu_us, db_us, queries, n_plus_one_count,
    loop_blocked_us);

CREATE TABLE process_samples (
    process_id  INTEGER NOT NULL REFERENCES processes(id),
    ts_ns       INTEGER NOT NULL,
    cpu_percent REAL NOT NULL,
    rss_bytes   INTEGER NOT NULL,
    threads     INTEGER NOT NULL,
    fds         INTEGER NOT NULL,
    PRIMARY KEY (process_id, ts_ns)
) WITHOUT ROWID;

CREATE TABLE probe_runs (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER REFERENCES sessions(id),
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    url         TEXT NOT NULL,
    schema_url  TEXT NOT NULL,
    operations  INTEGER NOT NULL,
    sent        INTEGER NOT NULL,
    truncated   INTEGER NOT NULL
);
CREATE INDEX probe_runs_by_session ON probe_runs(session_id);

CREATE TABLE probe_operations (
    run_id  INTEGER NOT NULL REFERENCES probe_runs(id),
    method  TEXT NOT NULL,
    route   TEXT NOT NULL,
    cases   INTEGER NOT NULL,
    skipped TEXT,
    PRIMARY KEY (run_id, method, route)
) WITHOUT ROWID;

CREATE TABLE probe_results (
    run_id     INTEGER NOT NULL REFERENCES probe_runs(id),
    seq        INTEGER NOT NULL,
    method     TEXT NOT NULL,
    route      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    target     TEXT NOT NULL,
    url        TEXT NOT NULL,
    status     INTEGER,
    outcome    TEXT NOT NULL,
    elapsed_us INTEGER NOT NULL,
    error      TEXT,
    request_id INTEGER,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
";

/// Version 7: where each request's wall time went. Every in-flight request
/// is sampled in a state (running Python, native code off the GIL, blocked,
/// waiting for the GIL, awaiting, queued), so its time splits into the
/// `*_us` columns below (SQL and HTTP waits timed by the marker); `cpu_us`
/// is the CPU time its threads used for it. Rows of earlier versions keep
/// NULL breakdowns: nothing was measured, which is not the same as zero
/// (`cpu_us` is 0 for them, so that sorting by it pages through every row).
///
/// An `async def` request that held the event loop without yielding past
/// the join's threshold has `loop_blocked_us` set, with when that began, the
/// app's line seen most meanwhile, and the marker ids of the same process's
/// requests it delayed (a JSON array, resolved to stored ids on read through
/// `requests_by_marker`: a delayed request may end, and be stored, later).
/// `requests_by_cpu` serves the list sorted by CPU time.
const V7: &str = "
ALTER TABLE requests ADD COLUMN python_us INTEGER;
ALTER TABLE requests ADD COLUMN native_us INTEGER;
ALTER TABLE requests ADD COLUMN blocked_us INTEGER;
ALTER TABLE requests ADD COLUMN gil_wait_us INTEGER;
ALTER TABLE requests ADD COLUMN sql_wait_us INTEGER;
ALTER TABLE requests ADD COLUMN http_wait_us INTEGER;
ALTER TABLE requests ADD COLUMN await_us INTEGER;
ALTER TABLE requests ADD COLUMN queued_us INTEGER;
ALTER TABLE requests ADD COLUMN cpu_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN loop_blocked_us INTEGER;
ALTER TABLE requests ADD COLUMN loop_block_start_ns INTEGER;
ALTER TABLE requests ADD COLUMN loop_block_line TEXT;
ALTER TABLE requests ADD COLUMN loop_block_delayed TEXT;
CREATE INDEX requests_by_cpu ON requests(cpu_us);
CREATE INDEX requests_by_marker ON requests(process_id, marker_id);
";

/// Version 6: callers stored once. A line in a loop issues the same
/// statement many times from the same frames; `callers` keeps each distinct
/// caller (its JSON array of frames, innermost first) once, and `queries`
/// and `calls` refer to it by `caller_id`. Both tables are rebuilt with
/// every row of version 5 kept.
const V6: &str = "
CREATE TABLE callers (
    id     INTEGER PRIMARY KEY,
    frames TEXT NOT NULL UNIQUE
);
INSERT OR IGNORE INTO callers (frames) SELECT caller FROM queries ORDER BY request_id, seq;
INSERT OR IGNORE INTO callers (frames) SELECT caller FROM calls ORDER BY request_id, seq;

CREATE TABLE queries_v6 (
    request_id    INTEGER NOT NULL REFERENCES requests(id),
    seq           INTEGER NOT NULL,
    sql           TEXT NOT NULL,
    sql_length    INTEGER NOT NULL,
    normalized    TEXT NOT NULL,
    params        TEXT,
    params_length INTEGER NOT NULL,
    start_ns      INTEGER NOT NULL,
    duration_ns   INTEGER NOT NULL,
    rows          INTEGER,
    driver        TEXT NOT NULL,
    error         TEXT,
    caller_id     INTEGER NOT NULL REFERENCES callers(id),
    PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;
INSERT INTO queries_v6
    SELECT q.request_id, q.seq, q.sql, q.sql_length, q.normalized, q.params, q.params_length,
        q.start_ns, q.duration_ns, q.rows, q.driver, q.error, c.id
    FROM queries q JOIN callers c ON c.frames = q.caller;
DROP TABLE queries;
ALTER TABLE queries_v6 RENAME TO queries;

CREATE TABLE calls_v6 (
    request_id  INTEGER NOT NULL REFERENCES requests(id),
    seq         INTEGER NOT NULL,
    method      TEXT NOT NULL,
    url         TEXT NOT NULL,
    status      INTEGER,
    start_ns    INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    error       TEXT,
    library     TEXT NOT NULL,
    caller_id   INTEGER NOT NULL REFERENCES callers(id),
    PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;
INSERT INTO calls_v6
    SELECT c.request_id, c.seq, c.method, c.url, c.status, c.start_ns, c.duration_ns, c.error,
        c.library, k.id
    FROM calls c JOIN callers k ON k.frames = c.caller;
DROP TABLE calls;
ALTER TABLE calls_v6 RENAME TO calls;
";

/// Version 5: what each request waited on. Every SQL statement and outgoing
/// HTTP call, in `queries` and `calls` (times on the marker's monotonic
/// clock, like `requests.start_ns`; `caller` is a JSON array of frames,
/// innermost first), and per request their counts, total time, and the most
/// repeated statement when it ran often enough to be a likely N+1
/// (`n_plus_one_count` NULL otherwise). Rows of earlier versions get zeros.
/// `requests_by_route` is rebuilt with the new columns so an endpoint's
/// query and N+1 totals also come from the index alone.
const V5: &str = "
ALTER TABLE requests ADD COLUMN queries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN db_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN calls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN http_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN n_plus_one_count INTEGER;
ALTER TABLE requests ADD COLUMN n_plus_one_sql TEXT;
ALTER TABLE requests ADD COLUMN n_plus_one_caller TEXT;

CREATE TABLE queries (
    request_id    INTEGER NOT NULL REFERENCES requests(id),
    seq           INTEGER NOT NULL,  -- order of start within the request
    sql           TEXT NOT NULL,     -- cut to 8 KiB
    sql_length    INTEGER NOT NULL,  -- of the whole statement, in characters
    normalized    TEXT NOT NULL,
    params        TEXT,              -- NULL when not recorded
    params_length INTEGER NOT NULL,
    start_ns      INTEGER NOT NULL,
    duration_ns   INTEGER NOT NULL,
    rows          INTEGER,
    driver        TEXT NOT NULL,
    error         TEXT,
    caller        TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;

CREATE TABLE calls (
    request_id  INTEGER NOT NULL REFERENCES requests(id),
    seq         INTEGER NOT NULL,
    method      TEXT NOT NULL,
    url         TEXT NOT NULL,  -- secret-looking values already redacted
    status      INTEGER,
    start_ns    INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    error       TEXT,
    library     TEXT NOT NULL,
    caller      TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;

DROP INDEX requests_by_route;
CREATE INDEX requests_by_route
    ON requests(method, route, duration_us, status, errored, queries, db_us, n_plus_one_count);
";

/// Version 4: what the dashboard needs.
///
/// `request_context` holds what each request carried and what its response
/// started with, as the marker captured it (secrets already redacted):
/// headers as JSON arrays of `[name, value]`, the raw query string, the first
/// 16 KiB of the body (`body_bytes` counts all of it), when FastAPI called
/// the endpoint function (the end of the middleware-and-dependencies stage;
/// NULL for other apps) and when the response started (the end of the
/// handler stage). No row for requests recorded without context
/// (`TIMEGLASS_CONTEXT=0`, older markers).
///
/// `requests_by_route` serves the endpoint view, each route's p95 and the
/// endpoints list from the index alone (durations come out sorted; status
/// and errored give the error counts); `requests_by_duration` serves the
/// list sorted by duration.
const V4: &str = "
CREATE TABLE request_context (
    request_id        INTEGER PRIMARY KEY REFERENCES requests(id),
    request_headers   TEXT NOT NULL,
    query             TEXT NOT NULL,
    body              TEXT NOT NULL,
    body_bytes        INTEGER NOT NULL,
    response_headers  TEXT NOT NULL,
    response_start_ns INTEGER,
    handler_start_ns  INTEGER
);
CREATE INDEX requests_by_route ON requests(method, route, duration_us, status, errored);
CREATE INDEX requests_by_duration ON requests(duration_us);
";

/// Version 3: how each process ended. `exit` is `clean` (its marker removed
/// its ring file at lifespan shutdown or interpreter exit), `crashed` (gone
/// with its ring file still there, or a request in flight: killed, segfault,
/// `os._exit`), `running` (still alive when recording
/// stopped, as after `timeglass attach`) or `unknown` (gone, sampled without
/// a marker). NULL while recording, for processes of a recorder that died,
/// and for rows of version 2.
const V3: &str = "
ALTER TABLE processes ADD COLUMN exit TEXT;
";

/// Version 2: when each request's last body chunk was sent. A request's
/// response time ends there; what follows (BackgroundTasks) is its
/// background stage. NULL for requests that never completed a response and
/// for requests recorded by version 1.
const V2: &str = "
ALTER TABLE requests ADD COLUMN response_end_ns INTEGER;
";

/// Version 1.
///
/// Beyond the layout: `sessions` keeps its clock map so request wall
/// times can be recomputed; `requests` keeps `start_ns`/`end_ns` so durations
/// are exact; `stacks.parent_id` is 0 (not NULL) for roots because UNIQUE
/// does not treat NULLs as equal. `requests.started_at` is fixed-width UTC, so
/// its index serves newest-first listings across sessions (the monotonic
/// `start_ns` is not comparable across reboots).
const V1: &str = "
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    command       TEXT NOT NULL,  -- JSON array of argv
    cwd           TEXT NOT NULL,
    rate_hz       INTEGER NOT NULL,
    clock_mono_ns INTEGER NOT NULL,
    clock_unix_ns INTEGER NOT NULL,
    exit_code     INTEGER,
    samples       INTEGER NOT NULL DEFAULT 0,
    torn_samples  INTEGER NOT NULL DEFAULT 0,
    lost_events   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_start ON sessions(started_at);

CREATE TABLE processes (
    id             INTEGER PRIMARY KEY,
    session_id     INTEGER NOT NULL REFERENCES sessions(id),
    pid            INTEGER NOT NULL,
    command_line   TEXT NOT NULL,  -- JSON array of argv
    python_version TEXT,
    started_at     TEXT NOT NULL,
    ended_at       TEXT
);
CREATE INDEX processes_by_session ON processes(session_id);

CREATE TABLE frames (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL,
    filename TEXT NOT NULL,
    short    TEXT NOT NULL,
    line     INTEGER NOT NULL,
    UNIQUE (name, filename, line)
);

-- A trie of frames: a stack is the id of its leaf node.
CREATE TABLE stacks (
    id        INTEGER PRIMARY KEY,
    parent_id INTEGER NOT NULL,  -- 0 for a root
    frame_id  INTEGER NOT NULL REFERENCES frames(id),
    UNIQUE (parent_id, frame_id)
);

CREATE TABLE requests (
    id               INTEGER PRIMARY KEY,
    session_id       INTEGER NOT NULL REFERENCES sessions(id),
    process_id       INTEGER NOT NULL REFERENCES processes(id),
    marker_id        INTEGER NOT NULL,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    route            TEXT,
    status           INTEGER,
    errored          INTEGER NOT NULL,
    cancelled        INTEGER NOT NULL,
    tid              INTEGER NOT NULL,
    start_ns         INTEGER NOT NULL,
    end_ns           INTEGER NOT NULL,
    started_at       TEXT NOT NULL,
    duration_us      INTEGER NOT NULL,
    samples          INTEGER NOT NULL,
    switched_samples INTEGER NOT NULL,
    torn_samples     INTEGER NOT NULL
);
CREATE INDEX requests_by_start ON requests(started_at);
CREATE INDEX requests_by_session ON requests(session_id, started_at);

CREATE TABLE request_stacks (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    stack_id   INTEGER NOT NULL,  -- a stacks.id, or 0 for an empty stack
    samples    INTEGER NOT NULL,
    PRIMARY KEY (request_id, stack_id)
) WITHOUT ROWID;

-- Samples taken while no request ran on the thread, accumulated per batch.
CREATE TABLE outside_stacks (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    process_id INTEGER NOT NULL REFERENCES processes(id),
    stack_id   INTEGER NOT NULL,  -- a stacks.id, or 0 for an empty stack
    samples    INTEGER NOT NULL,
    PRIMARY KEY (session_id, process_id, stack_id)
) WITHOUT ROWID;
";

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

pub(crate) fn application_id(conn: &Connection) -> rusqlite::Result<i32> {
    conn.pragma_query_value(None, "application_id", |row| row.get(0))
}

/// What `migrate` found once it held the write lock.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Migrated {
    UpToDate,
    /// Another process upgraded the file to a newer version meanwhile.
    TooNew(u32),
}

/// Brings the database to `SCHEMA_VERSION` in one transaction.
///
/// The version is read again under the write lock because another
/// `timeglass` may have created or upgraded the file since we looked.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<Migrated> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = user_version(&tx)?;
    if from > SCHEMA_VERSION {
        return Ok(Migrated::TooNew(from));
    }
    for script in &MIGRATIONS[from as usize..] {
        tx.execute_batch(script)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(Migrated::UpToDate)
}

#[cfg(test)]
mod tests {
    use rusqlite::{params, Connection};
    use timeglass_model::Frame;

    use super::*;
    use crate::read::{self, QueryRow};

    fn frames(names: &[&str]) -> String {
        let frames: Vec<Frame> = names
            .iter()
            .map(|n| Frame {
                name: n.to_string().into(),
                filename: format!("/srv/{n}.py").into(),
                short: format!("{n}.py").into(),
                line: 7,
            })
            .collect();
        serde_json::to_string(&frames).unwrap()
    }

    /// Brings an empty file to `version` as that version's TimeGlass left
    /// it: its migrations applied and its `application_id` and
    /// `user_version` set, ready for rows written the old way.
    fn as_version(tx: &rusqlite::Transaction<'_>, version: u32) {
        for script in &MIGRATIONS[..version as usize] {
            tx.execute_batch(script).unwrap();
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        tx.pragma_update(None, "user_version", version).unwrap();
    }

    /// A store as version 5 wrote it: two requests, statements with callers
    /// inline (one repeated, like a loop's), a call sharing one of them.
    fn version_5() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        for script in &MIGRATIONS[..5] {
            tx.execute_batch(script).unwrap();
        }
        tx.pragma_update(None, "user_version", 5).unwrap();
        tx.execute_batch(
            "INSERT INTO sessions (id, started_at, command, cwd, rate_hz, clock_mono_ns,
                 clock_unix_ns) VALUES (1, '2024-05-01T12:00:00.000Z', '[]', '/', 1000, 0, 0);
             INSERT INTO processes (id, session_id, pid, command_line, started_at)
                 VALUES (1, 1, 42, '[]', '2024-05-01T12:00:00.000Z');",
        )
        .unwrap();
        for id in [1, 2] {
            tx.execute(
                "INSERT INTO requests (id, session_id, process_id, marker_id, method, path,
                     errored, cancelled, tid, start_ns, end_ns, started_at, duration_us,
                     samples, switched_samples, torn_samples, queries)
                 VALUES (?1, 1, 1, ?1, 'GET', '/q', 0, 0, 7, ?1 * 1000000000,
                     ?1 * 1000000000 + 5000000, '2024-05-01T12:00:00.000Z', 5000, 0, 0, 0, 3)",
                params![id],
            )
            .unwrap();
        }
        let looped = frames(&["load", "handler"]);
        let other = frames(&["fetch"]);
        let rows = [
            (1, 0, "SELECT 1", Some("(1,)"), None, &looped),
            (1, 1, "SELECT 2", None, Some("OperationalError: x"), &looped),
            (1, 2, "SELECT 3", Some("(3,)"), None, &other),
            (2, 0, "SELECT 4", Some("(4,)"), None, &looped),
        ];
        for (request, seq, sql, params, error, caller) in rows {
            tx.execute(
                "INSERT INTO queries (request_id, seq, sql, sql_length, normalized, params,
                     params_length, start_ns, duration_ns, rows, driver, error, caller)
                 VALUES (?1, ?2, ?3, 8, 'SELECT ?', ?4, 4, ?1 * 1000000000 + ?2 * 1000000,
                     500000, ?2, 'sqlite3', ?5, ?6)",
                params![request, seq, sql, params, error, caller],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO calls (request_id, seq, method, url, status, start_ns, duration_ns,
                 error, library, caller)
             VALUES (2, 0, 'GET', 'http://h/', 200, 2001000000, 1000000, NULL, 'httpx', ?1)",
            params![other],
        )
        .unwrap();
        tx.commit().unwrap();
        conn
    }

    /// A request's statements read the way version 5 read them.
    fn v5_queries(conn: &Connection, request: i64) -> Vec<QueryRow> {
        let mut stmt = conn
            .prepare(
                "SELECT q.sql, q.sql_length, q.normalized, q.params, q.params_length,
                     q.start_ns - r.start_ns, q.duration_ns, q.rows, q.driver, q.error, q.caller
                 FROM queries q JOIN requests r ON r.id = q.request_id
                 WHERE q.request_id = ?1 ORDER BY q.seq",
            )
            .unwrap();
        let rows = stmt.query_map(params![request], |row| {
            Ok(QueryRow {
                sql: row.get(0)?,
                sql_length: row.get(1)?,
                normalized: row.get(2)?,
                params: row.get(3)?,
                params_length: row.get(4)?,
                start_ms: row.get::<_, i64>(5)? as f64 / 1e6,
                duration_ms: row.get::<_, i64>(6)? as f64 / 1e6,
                rows: row.get(7)?,
                driver: row.get(8)?,
                error: row.get(9)?,
                caller: serde_json::from_str(&row.get::<_, String>(10)?).unwrap(),
            })
        });
        rows.unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn version_5_statements_and_calls_survive_the_move_to_shared_callers() {
        let mut conn = version_5();
        let before: Vec<Vec<QueryRow>> = [1, 2].iter().map(|&id| v5_queries(&conn, id)).collect();
        assert_eq!(before.iter().map(Vec::len).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(migrate(&mut conn).unwrap(), Migrated::UpToDate);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            (count("callers"), count("queries"), count("calls")),
            (2, 4, 1)
        );
        for (id, before) in [1, 2].into_iter().zip(before) {
            assert_eq!(read::request_queries(&conn, id).unwrap(), before);
        }
        let calls = read::request_calls(&conn, 2).unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(&*calls[0].caller[0].name, "fetch");
        assert_eq!((calls[0].status, calls[0].start_ms), (Some(200), 1.0));
    }

    /// A file as version 12 wrote it: its requests keep their counts and
    /// read as having no timeline; new ones store theirs.
    #[test]
    fn version_12_requests_open_without_sample_times_and_new_ones_keep_theirs() {
        use timeglass_model::{ProfiledRequest, Request, StackCount, State, Tick, Timeline};

        use crate::{Batch, ProcessId, SessionId, Store};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v12.db");
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        as_version(&tx, 12);
        tx.execute_batch(
            "INSERT INTO sessions (id, started_at, command, cwd, rate_hz, clock_mono_ns,
                 clock_unix_ns) VALUES (1, '2024-05-01T12:00:00.000Z', '[]', '/', 1000, 0, 0);
             INSERT INTO processes (id, session_id, pid, command_line, started_at)
                 VALUES (1, 1, 42, '[]', '2024-05-01T12:00:00.000Z');
             INSERT INTO frames (id, name, filename, short, line)
                 VALUES (1, 'handler', '/srv/app.py', 'app.py', 3);
             INSERT INTO stacks (id, parent_id, frame_id) VALUES (1, 0, 1);
             INSERT INTO requests (id, session_id, process_id, marker_id, method, path,
                 errored, cancelled, tid, start_ns, end_ns, started_at, duration_us,
                 samples, switched_samples, torn_samples)
             VALUES (1, 1, 1, 1, 'GET', '/old', 0, 0, 7, 1000000000, 1005000000,
                 '2024-05-01T12:00:01.000Z', 5000, 3, 0, 0);
             INSERT INTO request_stacks VALUES (1, 1, 3);
             INSERT INTO outside_stacks VALUES (1, 1, 1, 4);",
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.request_stacks(1).unwrap()[0].samples, 3);
        assert!(store.request_timeline(1).unwrap().is_empty());
        assert!(store.outside_timelines(SessionId(1)).unwrap().is_empty());
        assert_eq!(store.outside_stacks(SessionId(1)).unwrap()[0].samples, 4);

        let stack: timeglass_model::Stack = store.request_stacks(1).unwrap()[0].stack.clone();
        let mut new = ProfiledRequest::new(Request {
            marker_id: 2,
            tid: 7,
            method: "GET".into(),
            path: "/new".into(),
            start_ns: 2_000_000_000,
            end_ns: 2_010_000_000,
            ..Request::default()
        });
        new.stacks = vec![StackCount {
            stack: stack.clone(),
            samples: 1,
        }];
        new.timeline = Timeline {
            stacks: vec![stack],
            ticks: vec![Tick {
                ts_ns: 2_004_000_000,
                tid: 7,
                state: State::Python,
                stack: 0,
            }],
        };
        store
            .write(&Batch {
                session: SessionId(1),
                requests: vec![(ProcessId(1), new)],
                ..Batch::default()
            })
            .unwrap();
        let timeline = store.request_timeline(2).unwrap();
        assert_eq!(timeline.ticks[0].ts_ns, 2_004_000_000);
        assert_eq!(
            &*timeline.stacks[0][0].name, "handler",
            "the old frame, reused"
        );
    }

    /// Sessions of version 15 open with an unknown machine load; a session
    /// ended after the upgrade keeps its load.
    #[test]
    fn version_15_sessions_open_with_an_unknown_load() {
        use crate::{MachineLoad, NewSession, SessionEnd, SessionId, Store};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v15.db");
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        as_version(&tx, 15);
        tx.execute_batch(
            "INSERT INTO sessions (id, started_at, ended_at, command, cwd, rate_hz,
                 clock_mono_ns, clock_unix_ns)
             VALUES (1, '2024-05-01T12:00:00.000Z', '2024-05-01T12:01:00.000Z', '[]', '/',
                 1000, 0, 0);",
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let mut store = Store::open(&path).unwrap();
        let old = store.session_info(SessionId(1)).unwrap().unwrap();
        assert_eq!(old.load, MachineLoad::default());
        let new = store
            .begin_session(&NewSession {
                command: vec!["app".into()],
                cwd: "/".into(),
                rate_hz: 1000,
                clock: crate::ClockMap {
                    mono_ns: 0,
                    unix_ns: 0,
                },
            })
            .unwrap();
        let load = MachineLoad {
            cpu_wait: Some(0.04),
            steal: Some(0.02),
            app_wait: Some(0.3),
        };
        store
            .end_session(
                new,
                &SessionEnd {
                    exit_code: Some(0),
                    samples: 0,
                    torn_samples: 0,
                    lost_events: 0,
                    load,
                },
            )
            .unwrap();
        assert_eq!(store.session_info(new).unwrap().unwrap().load, load);
    }

    /// A file as version 13 wrote it: opening it fills the endpoint
    /// aggregates of version 14 from the stored requests, and later writes
    /// add to them.
    #[test]
    fn version_13_requests_fill_the_endpoint_sums() {
        use timeglass_model::{ProfiledRequest, Request, StackCount};

        use crate::{Batch, Endpoint, ProcessId, SessionId, Store, WindowQuery};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v13.db");
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        as_version(&tx, 13);
        tx.execute_batch(
            "INSERT INTO sessions (id, started_at, command, cwd, rate_hz, clock_mono_ns,
                 clock_unix_ns) VALUES (1, '2024-05-01T12:00:00.000Z', '[]', '/', 1000, 0, 0);
             INSERT INTO processes (id, session_id, pid, command_line, started_at)
                 VALUES (1, 1, 42, '[]', '2024-05-01T12:00:00.000Z');
             INSERT INTO frames (id, name, filename, short, line)
                 VALUES (1, 'handler', '/srv/app.py', 'app.py', 3),
                        (2, 'load', '/srv/db.py', 'db.py', 9);
             INSERT INTO stacks (id, parent_id, frame_id) VALUES (1, 0, 1), (2, 1, 2);
             INSERT INTO requests (id, session_id, process_id, marker_id, method, path, route,
                 status, errored, cancelled, tid, start_ns, end_ns, started_at, duration_us,
                 samples, switched_samples, torn_samples, python_us, native_us, cpu_us,
                 gc_us, rss_end_bytes, rss_peak_bytes, alloc_bytes)
             VALUES
                 (1, 1, 1, 1, 'GET', '/a/1', '/a/{id}', 200, 0, 0, 7, 1000000000, 1005000000,
                  '2024-05-01T12:00:01.000Z', 5000, 3, 0, 0, 4000, 500, 4200, 10,
                  83886080, 90000000, 4096),
                 (2, 1, 1, 2, 'GET', '/a/2', '/a/{id}', 500, 0, 0, 7, 61000000000,
                  61009000000, '2024-05-01T12:01:01.000Z', 9000, 5, 0, 0, NULL, NULL, 0, 0,
                  0, 0, -1),
                 (3, 1, 1, 3, 'POST', '/b', '/b', 200, 0, 0, 7, 62000000000, 62001000000,
                  '2024-05-01T12:01:02.000Z', 1000, 1, 0, 0, 900, 0, 950, 0,
                  84000000, 85000000, -1);
             INSERT INTO request_stacks VALUES (1, 1, 1), (1, 2, 2), (2, 2, 5), (3, 1, 1);
             INSERT INTO request_alloc_stacks VALUES (1, 2, 4096);",
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let mut store = Store::open(&path).unwrap();
        // (frames, weight) of each stack, by frames.
        let weights = |stacks: Vec<StackCount>| -> Vec<(usize, u64)> {
            let mut w: Vec<_> = stacks.iter().map(|s| (s.stack.len(), s.samples)).collect();
            w.sort_unstable();
            w
        };
        assert_eq!(
            weights(store.route_stacks("GET", "/a/{id}").unwrap()),
            [(1, 1), (2, 7)]
        );
        assert_eq!(
            weights(store.route_alloc_stacks("GET", "/a/{id}").unwrap()),
            [(2, 4096)]
        );
        let q = WindowQuery {
            session: SessionId(1),
            ..WindowQuery::default()
        };
        let get = Endpoint {
            method: "GET".into(),
            route: Some("/a/{id}".into()),
        };
        let s = store.window_sample(&q, &get).unwrap();
        assert_eq!(s.durations_us, [5000, 9000]);
        assert_eq!((s.errors, s.measured, s.measured_duration_us), (1, 1, 5000));
        assert_eq!(
            (
                s.breakdown.python_ns,
                s.breakdown.native_ns,
                s.breakdown.gc_ns
            ),
            (4_000_000, 500_000, 10_000)
        );
        assert_eq!(s.cpu_ns, 4_200_000);
        assert_eq!(
            (s.rss_peak_bytes, s.alloc_bytes),
            (vec![90000000], vec![4096])
        );
        assert_eq!(s.rss_ends, [(1, 83886080)]);
        assert_eq!(store.sessions().unwrap()[0].requests, 3);

        let stacks = store.request_stacks(1).unwrap();
        let stack = stacks
            .iter()
            .find(|s| s.stack.len() == 2)
            .unwrap()
            .stack
            .clone();
        let mut new = ProfiledRequest::new(Request {
            marker_id: 4,
            tid: 7,
            method: "GET".into(),
            path: "/a/4".into(),
            route: Some("/a/{id}".into()),
            start_ns: 2_000_000_000,
            end_ns: 2_002_000_000,
            ..Request::default()
        });
        new.stacks = vec![StackCount { stack, samples: 4 }];
        store
            .write(&Batch {
                session: SessionId(1),
                requests: vec![(ProcessId(1), new)],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(
            weights(store.route_stacks("GET", "/a/{id}").unwrap()),
            [(1, 1), (2, 11)]
        );
        assert_eq!(store.window_sample(&q, &get).unwrap().durations_us.len(), 3);
    }

    /// A file as version 6 wrote it, with one request, migrated by opening it
    /// the way the CLI and the server do.
    #[test]
    fn version_6_requests_open_without_a_breakdown_and_new_ones_carry_theirs() {
        use timeglass_model::{LoopBlock, ProfiledRequest, Request, TimeBreakdown};

        use crate::{Batch, ProcessId, RequestPage, SessionId, Sort, Store};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        as_version(&tx, 6);
        tx.execute_batch(
            "INSERT INTO sessions (id, started_at, command, cwd, rate_hz, clock_mono_ns,
                 clock_unix_ns) VALUES (1, '2024-05-01T12:00:00.000Z', '[]', '/', 1000, 0, 0);
             INSERT INTO processes (id, session_id, pid, command_line, started_at)
                 VALUES (1, 1, 42, '[]', '2024-05-01T12:00:00.000Z');
             INSERT INTO requests (id, session_id, process_id, marker_id, method, path,
                 errored, cancelled, tid, start_ns, end_ns, started_at, duration_us,
                 samples, switched_samples, torn_samples)
             VALUES (1, 1, 1, 1, 'GET', '/old', 0, 0, 7, 1000000000, 1005000000,
                 '2024-05-01T12:00:01.000Z', 5000, 3, 0, 0);",
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let old = Store::open_existing(&path)
            .unwrap()
            .request(1)
            .unwrap()
            .unwrap();
        assert_eq!(old.path, "/old");
        assert_eq!(
            (old.cpu_ms, old.breakdown, old.loop_block),
            (None, None, None)
        );
        assert_eq!(old.memory, crate::MemoryRow::default(), "no RSS read");

        let mut store = Store::open(&path).unwrap();
        let mut new = ProfiledRequest::new(Request {
            marker_id: 2,
            method: "GET".into(),
            path: "/new".into(),
            start_ns: 2_000_000_000,
            end_ns: 2_010_000_000,
            ..Request::default()
        });
        new.breakdown = TimeBreakdown {
            python_ns: 4_000_000,
            blocked_ns: 6_000_000,
            ..TimeBreakdown::default()
        };
        new.cpu_ns = 4_200_000;
        new.memory = timeglass_model::Memory {
            rss_start_bytes: Some(80 << 20),
            rss_end_bytes: Some(81 << 20),
            rss_peak_bytes: Some(99 << 20),
            ..Default::default()
        };
        new.loop_block = Some(LoopBlock {
            blocked_ns: 4_000_000,
            start_ns: 2_001_000_000,
            line: Some("app.py:9 in handler".into()),
            delayed: vec![1],
        });
        store
            .write(&Batch {
                session: SessionId(1),
                requests: vec![(ProcessId(1), new)],
                outside: vec![],
                outside_timeline: vec![],
                process_samples: vec![],
            })
            .unwrap();
        let new = store.request(2).unwrap().unwrap();
        assert_eq!(new.cpu_ms, Some(4.2));
        assert_eq!(
            (new.memory.rss_peak_bytes, new.memory.rss_delta_bytes()),
            (Some(99 << 20), Some(1 << 20))
        );
        let b = new.breakdown.unwrap();
        assert_eq!((b.python_ms, b.blocked_ms, b.total_ms()), (4.0, 6.0, 10.0));
        let block = new.loop_block.unwrap();
        assert_eq!((block.blocked_ms, block.start_ms), (4.0, 1.0));
        assert_eq!(
            block.delayed,
            [1],
            "the old request, by marker id in its process"
        );

        // Old rows count as no CPU when sorting, so paging reaches them.
        let page = |before| RequestPage {
            limit: 1,
            before,
            sort: Sort::MostCpu,
            ..RequestPage::default()
        };
        let first = store.request_page(&page(None)).unwrap();
        assert_eq!(first[0].id, 2);
        let second = store.request_page(&page(Some(2))).unwrap();
        assert_eq!(second[0].id, 1);
    }
}
