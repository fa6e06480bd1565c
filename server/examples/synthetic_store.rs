//! Writes a synthetic store for `make bench` (bench/dashboard.py): N requests
//! over ten routes of N/10 requests each, with FastAPI-deep stacks, a few
//! distinct stacks per request, long-tailed durations, a context per
//! request, SQL statements and outgoing HTTP calls on most routes (90% of
//! requests run statements, 30% call out, about 9% are N+1s), and where each
//! request's time went: a breakdown per route's character (CPU-bound,
//! native code off the GIL, blocked, awaiting, queued) with the matching
//! state leaf frames (`[blocked]`, `[await asyncio.sleep]`, ...) in its
//! stacks, its CPU time, and an event-loop block on about one in a hundred
//! requests of `/reports/{report_id}` (92 in the 100,000-request store).
//! Deterministic: the same N gives the same store.
//!
//! `cargo run --release -p timeglass-server --example synthetic_store -- OUT.db [N]`

use std::path::PathBuf;
use std::process::ExitCode;

use std::collections::HashMap;

use timeglass_model::{
    Caller, Frame, HttpCall, LoopBlock, Memory, ProfiledRequest, Repeated, Request, RequestContext,
    SqlQuery, Stack, StackCount, State, Tick, TimeBreakdown, Timeline, AWAIT_FRAME_PREFIX,
    BLOCKED_FRAME, GIL_WAIT_FRAME, HTTP_FRAME_PREFIX, LOOP_BUSY_FRAME, NATIVE_FRAME,
    SQL_FRAME_PREFIX,
};
use timeglass_store::{Batch, ClockMap, NewProcess, NewSession, Store};

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/items/{item_id}"),
    ("GET", "/items"),
    ("POST", "/items"),
    ("GET", "/users/{user_id}"),
    ("GET", "/orders/{order_id}"),
    ("POST", "/orders"),
    ("GET", "/search"),
    ("GET", "/health"),
    ("DELETE", "/items/{item_id}"),
    ("GET", "/reports/{report_id}"),
];

const FRAMEWORK: &[(&str, &str)] = &[
    ("_run_module_as_main", "<frozen runpy>"),
    ("<module>", "uvicorn/__main__.py"),
    ("main", "uvicorn/main.py"),
    ("run", "uvicorn/server.py"),
    ("run", "asyncio/runners.py"),
    ("BaseEventLoop.run_forever", "asyncio/base_events.py"),
    ("BaseEventLoop._run_once", "asyncio/base_events.py"),
    ("Handle._run", "asyncio/events.py"),
    (
        "RequestResponseCycle.run_asgi",
        "uvicorn/protocols/http/h11_impl.py",
    ),
    ("FastAPI.__call__", "fastapi/applications.py"),
    ("Starlette.__call__", "starlette/applications.py"),
    (
        "ServerErrorMiddleware.__call__",
        "starlette/middleware/errors.py",
    ),
    (
        "ExceptionMiddleware.__call__",
        "starlette/middleware/exceptions.py",
    ),
    ("Router.__call__", "starlette/routing.py"),
    ("Route.handle", "starlette/routing.py"),
    ("app", "fastapi/routing.py"),
    ("run_endpoint_function", "fastapi/routing.py"),
];

const LEAVES: &[(&str, &str)] = &[
    ("execute", "sqlalchemy/engine/base.py"),
    ("dumps", "json/__init__.py"),
    ("validate_python", "pydantic/type_adapter.py"),
    ("compute_totals", "app/services.py"),
    ("render", "app/templates.py"),
    ("hash_password", "app/auth.py"),
    ("send", "httpx/_client.py"),
    ("load", "app/cache.py"),
];

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn frame(name: &str, short: &str, line: u32) -> Frame {
    let prefix = if short.starts_with("app/") {
        "/srv"
    } else {
        "/venv/lib/python3.12/site-packages"
    };
    Frame {
        name: name.to_string().into(),
        filename: format!("{prefix}/{short}").into(),
        short: short.to_string().into(),
        line,
    }
}

/// The framework's frames down to the route's handler.
fn base(route: usize) -> Vec<Frame> {
    let handler = frame(
        &format!("handler_{route}"),
        "app/main.py",
        10 + route as u32,
    );
    FRAMEWORK
        .iter()
        .enumerate()
        .map(|(i, (n, f))| frame(n, f, 20 + i as u32))
        .chain(std::iter::once(handler))
        .collect()
}

fn stacks(rng: &mut Rng, route: usize, samples: u64) -> Vec<StackCount> {
    let base = base(route);
    let distinct = 1 + rng.below(6);
    let mut out = Vec::new();
    let mut left = samples;
    for i in 0..distinct {
        if left == 0 {
            break;
        }
        let take = if i + 1 == distinct {
            left
        } else {
            1 + rng.below(left)
        };
        left -= take;
        let (leaf, file) = LEAVES[((route as u64 + rng.below(3)) % LEAVES.len() as u64) as usize];
        let mut stack = base.clone();
        stack.push(frame(
            &format!("helper_{}", rng.below(4)),
            "app/services.py",
            40,
        ));
        stack.push(frame(leaf, file, 100 + rng.below(5) as u32));
        out.push(StackCount {
            stack: stack.into(),
            samples: take,
        });
    }
    out
}

/// A process that grows slowly from 80 MiB, with a few MiB of churn per request.
fn memory(rng: &mut Rng, i: u64) -> Memory {
    let start = (80 << 20) + i * 64 + rng.below(4 << 20);
    let end = start + rng.below(2 << 20);
    Memory {
        rss_start_bytes: Some(start),
        rss_end_bytes: Some(end),
        rss_peak_bytes: Some(end + rng.below(1 << 20)),
        gc_collections: rng.below(3),
        gc_pause_ns: rng.below(400_000),
        // Recorded without `--memory`.
        alloc_bytes: None,
    }
}

fn context(method: &str, path: &str) -> RequestContext {
    let mut request_headers = vec![
        ("host".to_string(), "127.0.0.1:8000".to_string()),
        ("user-agent".to_string(), "bench/1.0".to_string()),
        ("accept".to_string(), "application/json".to_string()),
        ("authorization".to_string(), "[redacted]".to_string()),
    ];
    let body = match method {
        "POST" => r#"{"name": "hourglass", "price": 12.5, "password": "[redacted]"}"#.to_string(),
        _ => String::new(),
    };
    if !body.is_empty() {
        request_headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    RequestContext {
        request_headers,
        query: format!("trace={}", path.len()),
        body_bytes: body.len() as u64,
        body,
        response_headers: vec![("content-type".to_string(), "application/json".to_string())],
        response_start_ns: None,
        handler_start_ns: None,
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synthetic_store OUT.db [REQUESTS]");
        return ExitCode::from(2);
    };
    let total: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let _ = std::fs::remove_file(&out);
    match generate(&out, total) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synthetic_store: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &std::path::Path, total: u64) -> Result<(), timeglass_store::StoreError> {
    let mut store = Store::open(out)?;
    let clock = ClockMap {
        mono_ns: 0,
        unix_ns: 1_790_000_000_000_000_000,
    };
    let session = store.begin_session(&NewSession {
        command: vec!["uvicorn".into(), "app:app".into()],
        cwd: "/srv".into(),
        rate_hz: 1000,
        clock,
    })?;
    let process = store.add_process(
        session,
        &NewProcess {
            pid: 4242,
            command_line: vec!["python".into()],
            python_version: Some("3.12.3".into()),
        },
    )?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut batch = Vec::new();
    for i in 0..total {
        let route = (i % ROUTES.len() as u64) as usize;
        let (method, template) = ROUTES[route];
        let path = template
            .replace("{item_id}", &rng.below(500).to_string())
            .replace("{user_id}", &rng.below(500).to_string())
            .replace("{order_id}", &rng.below(500).to_string())
            .replace("{report_id}", &rng.below(50).to_string());
        // Long-tailed: mostly a few ms, sometimes hundreds.
        let duration_ns =
            ((1.0 + 4.0 * rng.unit()) * (1.0 / (1.0 - 0.97 * rng.unit())) * 1e6) as u64;
        let start_ns = i * 5_000_000;
        let response_end_ns = start_ns + duration_ns;
        let status = match rng.below(100) {
            0 => 500,
            1..=3 => 404,
            _ if method == "POST" => 201,
            _ => 200,
        };
        let io = Io::new(&mut rng, route, start_ns, duration_ns);
        let end_ns = response_end_ns + rng.below(2) * 3_000_000;
        // As the join: the breakdown covers the response, CPU time all of it.
        let mut time = Time::new(&mut rng, route, duration_ns, &io);
        time.cpu_ns += (end_ns - response_end_ns) * 9 / 10;
        let mut stacks = stacks(&mut rng, route, time.breakdown.python_ns / 1_000_000);
        stacks.extend(time.state_stacks(route));
        let loop_block = time.loop_block(&mut rng, route, i, start_ns);
        batch.push((
            process,
            ProfiledRequest {
                request: Request {
                    marker_id: i + 1,
                    pid: 4242,
                    tid: 4242,
                    method: method.to_string(),
                    path: path.clone(),
                    route: Some(template.to_string()),
                    status: Some(status),
                    errored: status == 500,
                    cancelled: false,
                    start_ns,
                    end_ns,
                    response_end_ns: Some(response_end_ns),
                },
                switched_samples: rng.below(2),
                torn_samples: 0,
                queries: io.queries,
                calls: io.calls,
                waits: io.waits,
                n_plus_one: io.n_plus_one,
                context: Some(context(method, &path)),
                breakdown: time.breakdown,
                cpu_ns: time.cpu_ns,
                loop_block,
                incomplete: false,
                memory: memory(&mut rng, i),
                alloc_stacks: vec![],
                timeline: timeline(&stacks, start_ns, duration_ns),
                stacks,
            },
        ));
        if batch.len() == 2_000 {
            store.write(&Batch {
                session,
                requests: std::mem::take(&mut batch),
                outside: vec![],
                outside_timeline: vec![],
                process_samples: vec![],
            })?;
        }
    }
    store.write(&Batch {
        session,
        requests: batch,
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    })?;
    Ok(())
}

/// The samples of `stacks` at their times, as the join hands them to the
/// store: each stack's samples in a row, spread over the request.
fn timeline(stacks: &[StackCount], start_ns: u64, duration_ns: u64) -> Timeline {
    let total: u64 = stacks.iter().map(|s| s.samples).sum();
    let step = duration_ns / total.max(1);
    let ticks = stacks
        .iter()
        .enumerate()
        .flat_map(|(i, s)| std::iter::repeat_n(i as u32, s.samples as usize))
        .enumerate()
        .map(|(k, stack)| Tick {
            ts_ns: start_ns + k as u64 * step,
            tid: 4242,
            state: State::Python,
            stack,
        })
        .collect();
    Timeline {
        stacks: stacks.iter().map(|s| s.stack.clone()).collect(),
        ticks,
    }
}

/// What a request waited on, as the join would hand it to the store.
struct Io {
    queries: Vec<SqlQuery>,
    calls: Vec<HttpCall>,
    waits: Vec<StackCount>,
    n_plus_one: Option<Repeated>,
}

/// Statements a route runs: `(text with {} for a number, repeats)`; a
/// statement repeated 5 times or more is an N+1.
fn statements(rng: &mut Rng, route: usize) -> Vec<(&'static str, u64)> {
    let n_plus_one = |rng: &mut Rng, percent: u64| match rng.below(100) < percent {
        true => 5 + rng.below(26),
        false => 1 + rng.below(3),
    };
    match route {
        0 | 8 => vec![("SELECT id, name, price FROM items WHERE id = {}", 1)],
        1 => vec![
            ("SELECT id, name, price FROM items ORDER BY id LIMIT {}", 1),
            (
                "SELECT name FROM tags WHERE item_id = {}",
                n_plus_one(rng, 25),
            ),
        ],
        2 => vec![
            (
                "INSERT INTO items (name, price) VALUES ('hourglass', {})",
                1,
            ),
            ("SELECT id FROM items WHERE rowid = {}", 1),
        ],
        3 => vec![
            ("SELECT id, email FROM users WHERE id = {}", 1),
            ("SELECT count(*) FROM orders WHERE user_id = {}", 1),
        ],
        4 => vec![
            ("SELECT * FROM orders WHERE id = {}", 1),
            (
                "SELECT * FROM order_lines WHERE id = {}",
                n_plus_one(rng, 40),
            ),
        ],
        5 => vec![
            ("INSERT INTO orders (user_id, total) VALUES ({}, 99.5)", 1),
            ("UPDATE stock SET count = count - 1 WHERE item_id = {}", 2),
        ],
        6 => vec![("SELECT id, name FROM items WHERE name LIKE '%{}%'", 1)],
        9 => vec![(
            "SELECT sum(total) FROM orders WHERE day = {}",
            n_plus_one(rng, 30),
        )],
        _ => vec![],
    }
}

/// The outgoing call a route makes, if any.
fn call(route: usize) -> Option<(&'static str, &'static str)> {
    match route {
        4 => Some(("GET", "https://payments.example.com/v1/charges/{}")),
        5 => Some(("POST", "https://payments.example.com/v1/charges")),
        6 => Some(("GET", "http://search.internal:9200/items/_search?q={}")),
        _ => None,
    }
}

impl Io {
    fn new(rng: &mut Rng, route: usize, start_ns: u64, duration_ns: u64) -> Io {
        let base = base(route);
        let mut plan: Vec<(String, String, u64)> = Vec::new();
        for (text, repeats) in statements(rng, route) {
            for _ in 0..repeats {
                // As asyncpg sends it: a placeholder, its value apart.
                let sql = text.replace("{}", "$1");
                let normalized = timeglass_join::normalize_sql(&sql);
                plan.push((sql, normalized, rng.below(1000)));
            }
        }
        let call = call(route);
        // Statements take 20-60% of the request, shared out evenly with
        // jitter; a call takes 10-30%.
        let statements = plan.len().max(1) as f64;
        let db = duration_ns as f64 * (0.2 + 0.4 * rng.unit());
        let http = duration_ns as f64 * (0.1 + 0.2 * rng.unit());
        let mut at = start_ns + duration_ns / 20;
        let mut next = |rng: &mut Rng, budget: f64| {
            let took = (budget * (0.5 + rng.unit())) as u64;
            let began = at;
            at += took + took / 10;
            (began, (began + took).min(start_ns + duration_ns))
        };
        let caller = |name: &str, line: u32| -> (Caller, Stack) {
            let site = frame(name, "app/repository.py", line);
            let stack: Vec<Frame> = base.iter().cloned().chain([site.clone()]).collect();
            (
                vec![site, base[base.len() - 1].clone()].into(),
                stack.into(),
            )
        };
        let mut queries = Vec::new();
        for (i, (sql, normalized, value)) in plan.into_iter().enumerate() {
            let (begin, end) = next(rng, db / statements);
            let (caller, stack) = caller(&format!("load_{route}"), 30 + i.min(1) as u32);
            queries.push(SqlQuery {
                sql_len: sql.len() as u64,
                sql,
                normalized,
                params: Some(format!("({value},)")),
                params_len: 6,
                start_ns: begin,
                end_ns: end,
                rows: Some(rng.below(20) as i64),
                driver: "asyncpg".to_string(),
                error: (rng.below(500) == 0).then(|| "UniqueViolationError: duplicate key".into()),
                caller,
                stack,
            });
        }
        let calls: Vec<HttpCall> = call
            .map(|(method, url)| {
                let (begin, end) = next(rng, http);
                let (caller, stack) = caller("fetch_remote", 60);
                HttpCall {
                    method: method.to_string(),
                    url: url.replace("{}", &rng.below(1000).to_string()),
                    status: Some(if rng.below(50) == 0 { 503 } else { 200 }),
                    start_ns: begin,
                    end_ns: end,
                    error: None,
                    library: "httpx".to_string(),
                    caller,
                    stack,
                }
            })
            .into_iter()
            .collect();
        Io {
            waits: weigh(&queries, &calls),
            n_plus_one: n_plus_one(&queries),
            queries,
            calls,
        }
    }
}

/// Wall time per wait stack at 1000 Hz, as the join weighs it.
fn weigh(queries: &[SqlQuery], calls: &[HttpCall]) -> Vec<StackCount> {
    let mut wall: HashMap<Stack, u64> = HashMap::new();
    let sql = queries.iter().map(|q| {
        let label = timeglass_join::sql_label(&q.normalized);
        let leaf = Frame::synthetic(&format!("{SQL_FRAME_PREFIX}{label}"));
        (&q.stack, leaf, q.end_ns - q.start_ns)
    });
    let http = calls.iter().map(|c| {
        let host = c.url.split('/').nth(2).unwrap_or("");
        let leaf = Frame::synthetic(&format!("{HTTP_FRAME_PREFIX}{} {host}", c.method));
        (&c.stack, leaf, c.end_ns - c.start_ns)
    });
    for (stack, leaf, ns) in sql.chain(http) {
        let full: Stack = stack
            .iter()
            .cloned()
            .chain([leaf])
            .collect::<Vec<_>>()
            .into();
        *wall.entry(full).or_default() += ns;
    }
    wall.into_iter()
        .map(|(stack, ns)| StackCount {
            stack,
            samples: (ns + 500_000) / 1_000_000,
        })
        .filter(|s| s.samples > 0)
        .collect()
}

/// The statement run 5 times or more, if any.
fn n_plus_one(queries: &[SqlQuery]) -> Option<Repeated> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for q in queries {
        *counts.entry(&q.normalized).or_default() += 1;
    }
    let (normalized, count) = counts.into_iter().max_by_key(|(n, c)| (*c, *n))?;
    let caller = queries
        .iter()
        .find(|q| q.normalized == normalized)
        .and_then(|q| q.caller.first())
        .map(Frame::location);
    (count >= 5).then(|| Repeated {
        normalized: normalized.to_string(),
        count,
        caller,
    })
}

/// How a route spends the time it does not wait on SQL or HTTP, as shares
/// of it: `[python, native, gil_wait, blocked, await, queued]`.
fn character(route: usize) -> [f64; 6] {
    match route {
        // Password hashing in native code that releases the GIL.
        2 => [0.30, 0.50, 0.05, 0.0, 0.0, 0.15],
        // A synchronous file read in an async handler.
        4 => [0.40, 0.0, 0.0, 0.30, 0.0, 0.30],
        // Waits on asyncio.sleep and a lock between searches.
        6 => [0.30, 0.0, 0.0, 0.0, 0.60, 0.10],
        7 => [0.90, 0.0, 0.0, 0.0, 0.0, 0.10],
        8 => [0.50, 0.0, 0.10, 0.40, 0.0, 0.0],
        // Reports compute in Python, on the event loop.
        9 => [0.85, 0.10, 0.0, 0.0, 0.0, 0.05],
        1 => [0.70, 0.0, 0.0, 0.0, 0.10, 0.20],
        3 | 5 => [0.50, 0.0, 0.0, 0.0, 0.35, 0.15],
        _ => [0.60, 0.0, 0.0, 0.0, 0.25, 0.15],
    }
}

/// Where a request's wall time went, as the join would sum it.
struct Time {
    breakdown: TimeBreakdown,
    cpu_ns: u64,
}

impl Time {
    fn new(rng: &mut Rng, route: usize, wall_ns: u64, io: &Io) -> Time {
        let sql_ns: u64 = io.queries.iter().map(SqlQuery::duration_ns).sum();
        let http_ns: u64 = io.calls.iter().map(HttpCall::duration_ns).sum();
        let sql_ns = sql_ns.min(wall_ns);
        let http_ns = http_ns.min(wall_ns - sql_ns);
        let rest = (wall_ns - sql_ns - http_ns) as f64;
        // Each share moves by up to a fifth, then Python takes what is left.
        let mut shares = character(route);
        for share in shares.iter_mut().skip(1) {
            *share *= 0.8 + 0.4 * rng.unit();
        }
        let part = |i: usize| (rest * shares[i]) as u64;
        let (native, gil, blocked, awaiting, queued) =
            (part(1), part(2), part(3), part(4), part(5));
        let python = (rest as u64).saturating_sub(native + gil + blocked + awaiting + queued);
        // A collection's pause in a tenth of the requests, out of their Python time.
        let gc = if rng.below(10) == 0 { python / 20 } else { 0 };
        let breakdown = TimeBreakdown {
            python_ns: python - gc,
            gc_ns: gc,
            native_ns: native,
            blocked_ns: blocked,
            gil_wait_ns: gil,
            sql_ns,
            http_ns,
            await_ns: awaiting,
            queued_ns: queued,
        };
        Time {
            cpu_ns: ((python + native) as f64 * (0.93 + 0.06 * rng.unit())) as u64,
            breakdown,
        }
    }

    /// The samples taken off Python, each under the route's frames with
    /// the state as its leaf, at 1000 Hz.
    fn state_stacks(&self, route: usize) -> Vec<StackCount> {
        let b = &self.breakdown;
        let states = [
            (
                b.native_ns,
                Some(("hash_password", "app/auth.py", 18)),
                NATIVE_FRAME.to_string(),
            ),
            (
                b.gil_wait_ns,
                Some(("hash_password", "app/auth.py", 19)),
                GIL_WAIT_FRAME.to_string(),
            ),
            (
                b.blocked_ns,
                Some(("read_report", "app/storage.py", 12)),
                BLOCKED_FRAME.to_string(),
            ),
            (
                b.await_ns,
                None,
                format!("{AWAIT_FRAME_PREFIX} asyncio.sleep]"),
            ),
            (b.queued_ns, None, LOOP_BUSY_FRAME.to_string()),
        ];
        states
            .into_iter()
            .filter(|(ns, _, _)| *ns >= 500_000)
            .map(|(ns, at, leaf)| {
                let mut stack = base(route);
                if let Some((name, file, line)) = at {
                    stack.push(frame(name, file, line));
                }
                stack.push(Frame::synthetic(&leaf));
                StackCount {
                    stack: stack.into(),
                    samples: (ns + 500_000) / 1_000_000,
                }
            })
            .collect()
    }

    /// A report that computed for long enough without yielding, now and
    /// then, held the loop: the requests that started meanwhile waited.
    fn loop_block(&self, rng: &mut Rng, route: usize, i: u64, start_ns: u64) -> Option<LoopBlock> {
        let python = self.breakdown.python_ns;
        if route != 9 || python < 20_000_000 || rng.below(6) != 0 {
            return None;
        }
        let blocked_ns = python * 4 / 5;
        // Requests start every 5 ms; marker ids are one more than the index.
        let delayed = (blocked_ns / 5_000_000).clamp(1, 12);
        Some(LoopBlock {
            blocked_ns,
            start_ns: start_ns + 1_000_000,
            line: Some(format!("app/main.py:{} in handler_{route}", 10 + route)),
            delayed: (i + 2..i + 2 + delayed).collect(),
        })
    }
}
