//! What storing requests costs the recorder's writer thread, the store's
//! part alone: `Store::write` of batches of 100 requests (the writer's
//! 100 ms flushes under load) to a real SQLite file, over ten endpoints,
//! each request with a few of its endpoint's 30-frame stacks, a time
//! breakdown and memory readings, as the synthetic dashboard store has.
//!
//!     cargo run --release -p timeglass-store --example write_cost [REQUESTS]
//!
//! Prints microseconds per request. For instruction counts, which do not
//! drift with the machine's load, run the built binary under
//! `valgrind --tool=callgrind` (the same binary built before and after a
//! change to the write path).

use std::time::Instant;

use timeglass_model::{Frame, Memory, ProfiledRequest, Request, StackCount, TimeBreakdown};
use timeglass_store::{Batch, NewProcess, NewSession, Store};

const BATCH: u64 = 100;
const ENDPOINTS: u64 = 10;
const DEPTH: u32 = 30;

fn main() {
    let requests: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut store = Store::open(&dir.path().join("write_cost.db")).expect("a new store");
    let session = store
        .begin_session(&NewSession {
            command: vec!["uvicorn".into(), "app:app".into()],
            cwd: "/srv".into(),
            rate_hz: 1000,
            clock: timeglass_store::ClockMap {
                mono_ns: 0,
                unix_ns: 1_790_000_000_000_000_000,
            },
        })
        .expect("a session");
    let process = store
        .add_process(
            session,
            &NewProcess {
                pid: 4242,
                command_line: vec!["python".into()],
                python_version: None,
            },
        )
        .expect("a process");
    let batches: Vec<Batch> = (0..requests.div_ceil(BATCH))
        .map(|b| Batch {
            session,
            requests: (b * BATCH..((b + 1) * BATCH).min(requests))
                .map(|i| (process, request(i)))
                .collect(),
            ..Batch::default()
        })
        .collect();
    let start = Instant::now();
    for batch in &batches {
        store.write(batch).expect("the batch is written");
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{requests} requests in batches of {BATCH}: {:.1} us each",
        seconds * 1e6 / requests as f64
    );
}

/// Request `i`: endpoint `i % 10`, three of its eight stacks.
fn request(i: u64) -> ProfiledRequest {
    let endpoint = i % ENDPOINTS;
    let start_ns = i * 1_000_000;
    let stacks = (0..3)
        .map(|k| StackCount {
            stack: stack(endpoint, (i / ENDPOINTS + k) % 8),
            samples: 1 + (i + k) % 5,
        })
        .collect();
    ProfiledRequest {
        stacks,
        breakdown: TimeBreakdown {
            python_ns: 3_000_000,
            sql_ns: 1_000_000,
            ..TimeBreakdown::default()
        },
        cpu_ns: 3_100_000,
        memory: Memory {
            rss_start_bytes: Some(80 << 20),
            rss_end_bytes: Some((80 << 20) + i % 4096),
            rss_peak_bytes: Some(81 << 20),
            ..Memory::default()
        },
        ..ProfiledRequest::new(Request {
            marker_id: i + 1,
            pid: 4242,
            tid: 7,
            method: "GET".into(),
            path: format!("/e{endpoint}/{i}"),
            route: Some(format!("/e{endpoint}/{{id}}")),
            status: Some(200),
            start_ns,
            end_ns: start_ns + 5_000_000,
            response_end_ns: Some(start_ns + 5_000_000),
            ..Request::default()
        })
    }
}

/// Stack `k` of an endpoint: `DEPTH` frames, the last two its own.
fn stack(endpoint: u64, k: u64) -> timeglass_model::Stack {
    let frame = |name: String, line: u32| Frame {
        filename: format!("/srv/app/{name}.py").into(),
        short: format!("{name}.py").into(),
        name: name.into(),
        line,
    };
    let mut frames: Vec<Frame> = (0..DEPTH - 2)
        .map(|d| frame(format!("framework{d}"), d))
        .collect();
    frames.push(frame(format!("endpoint{endpoint}"), 1));
    frames.push(frame(format!("leaf{k}"), 2));
    frames.into()
}
