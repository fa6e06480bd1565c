//! What one captured SQL statement costs the recorder's writer thread:
//! decoding its ring event, joining it to its request, and storing it.
//!
//! Replays `/queries?n=10` of the fixture app without a process: requests
//! of ten statements issued from one line, ~30 frames deep, joined and
//! written in batches of 100 like the writer's 100 ms flushes, to a real
//! SQLite file. The same requests without statements are the baseline, so
//! the difference is the per-statement cost.
//!
//!     cargo run --release -p timeglass-recorder --example statement_cost [REQUESTS [STATEMENTS]]
//!
//! With STATEMENTS it runs that one configuration only: for instruction
//! counts, which do not drift with the machine's load, run the built binary
//! under `valgrind --tool=callgrind` with 0 and with 10 statements.

use std::time::Instant;

use timeglass_join::Join;
use timeglass_store::testing::{self, TestStore};
use timeglass_store::{Batch, NewProcess, NewSession};
use timeglass_wire::{Event, Query, RequestEnd, RequestStart, StackFrame, StackRef};

const PID: u32 = 4242;
const STATEMENTS: u64 = 10;
const DEPTH: usize = 30;
const BATCH: u64 = 100;

fn main() {
    let requests: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    if let Some(statements) = std::env::args().nth(2).and_then(|n| n.parse().ok()) {
        let seconds = run(requests, statements);
        println!("{requests} requests of {statements} statements: {seconds:.3} s");
        return;
    }
    let without = run(requests, 0);
    let with = run(requests, STATEMENTS);
    let per_request = |s: f64| s * 1e6 / requests as f64;
    println!(
        "{requests} requests: {:.1} us each without statements, {:.1} us with {STATEMENTS}; \
         {:.2} us per statement",
        per_request(without),
        per_request(with),
        (per_request(with) - per_request(without)) / STATEMENTS as f64,
    );
}

/// Seconds to decode, join and store `requests` requests of `statements` each.
fn run(requests: u64, statements: u64) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let session = NewSession {
        command: vec!["uvicorn".into()],
        cwd: "/srv".into(),
        ..testing::session()
    };
    let process = NewProcess {
        pid: PID,
        ..testing::process()
    };
    let TestStore {
        mut store,
        session,
        process,
    } = TestStore::open_with(&dir.path().join("bench.db"), &session, &process);
    let events = events(requests, statements);
    let mut join = Join::new();
    let mut buf = Vec::new();
    let t0 = Instant::now();
    for (i, event) in events.iter().enumerate() {
        let kind = event.encode(&mut buf);
        join.event(PID, Event::decode(kind, &buf).expect("decodes"));
        let last = i + 1 == events.len();
        if last || is_batch_end(event) {
            let done = join.flush(None);
            let batch = Batch {
                session,
                requests: done.into_iter().map(|r| (process, r)).collect(),
                outside: Vec::new(),
                outside_timeline: vec![],
                process_samples: vec![],
            };
            store.write(&batch).expect("written");
        }
    }
    t0.elapsed().as_secs_f64()
}

fn is_batch_end(event: &Event) -> bool {
    matches!(event, Event::RequestEnd(e) if e.request_id % BATCH == 0)
}

fn events(requests: u64, statements: u64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut ts = 1_000_000_000;
    for id in 1..=requests {
        out.push(Event::RequestStart(RequestStart {
            request_id: id,
            ts_ns: ts,
            tid: 7,
            method: "GET".into(),
            path: "/queries".into(),
        }));
        for n in 0..statements {
            // Every statement comes from the same line: the marker sends the
            // stack's frames with the first one only.
            let frames = (id == 1 && n == 0).then(frames);
            out.push(Event::Query(Query {
                request_id: id,
                start_ns: ts + 10_000 + n * 50_000,
                end_ns: ts + 40_000 + n * 50_000,
                rows: -1,
                driver: "sqlite3".into(),
                sql: "SELECT price FROM items WHERE id = ?".into(),
                sql_len: 36,
                params: Some(format!("({},)", n + 1)),
                params_len: 4,
                error: None,
                stack: StackRef { id: 1, frames },
            }));
        }
        ts += 1_000_000;
        out.push(Event::RequestEnd(RequestEnd {
            request_id: id,
            ts_ns: ts,
            response_ns: ts - 1000,
            status: 200,
            flags: 0,
            route: "/queries".into(),
        }));
        ts += 10_000;
    }
    out
}

/// Outermost first: uvicorn and Starlette library frames, then the app's own.
fn frames() -> Vec<StackFrame> {
    (0..DEPTH)
        .map(|i| {
            let library = i < DEPTH - 2;
            let (dir, name) = if library {
                ("/venv/lib/python3.11/site-packages/starlette", "layer")
            } else {
                ("/srv/app", "handler")
            };
            StackFrame {
                name: format!("{name}_{i}"),
                filename: format!("{dir}/module_{i}.py"),
                short: format!("module_{i}.py"),
                line: 10 + i as u32,
                library,
            }
        })
        .collect()
}
