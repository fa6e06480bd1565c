//! What an export costs, for `make bench` (`bench/exports.py`).
//!
//! `export_cost [--samples N] [--requests N] [--rounds N] [--format F]` builds two
//! stores in a temporary directory: one request with N samples (default
//! 10,000) over distinct FastAPI-deep stacks and 20 statements, each sample
//! at its time and in another stack than the one before it (the most a
//! timeline can cost: every sample closes and opens frames), and N
//! requests (default 100,000) with breakdowns and N+1 flags. It then times,
//! as `timeglass export` and `timeglass requests` run them (store read
//! included), each profile format of the one request (the median of the
//! rounds, against the 50 ms target) and the requests table to CSV and
//! Parquet (rows per second, against 200,000). Exit 1 when a target is
//! missed. `--format F` times that profile format only (`none`: none), and
//! `--requests 0` skips the table, for callgrind: the instructions of a run
//! with `--format F` less those of one with `--format none` are what the
//! export of that format costs, store read included.

use std::time::Instant;

use timeglass_model::{
    Frame, ProfiledRequest, Request, SqlQuery, StackCount, State, Tick, TimeBreakdown, Timeline,
};
use timeglass_render::{requests_table, Format, Recording, Subject, TableFormat, View};
use timeglass_store::testing::{self, TestStore};
use timeglass_store::{NewSession, RequestFilter, RequestPage, Sort, Store};

const MS: u64 = 1_000_000;
const EXPORT_TARGET_MS: f64 = 50.0;
const ROWS_TARGET: f64 = 200_000.0;

fn frame(name: String, file: &str, line: u32) -> Frame {
    Frame {
        name: name.into(),
        filename: format!("/venv/lib/python3.12/site-packages/{file}").into(),
        short: file.into(),
        line,
    }
}

/// `samples` samples over stacks 40 frames deep: a shared FastAPI prefix
/// and a distinct app tail per 10 samples.
fn stacks(samples: u64) -> Vec<StackCount> {
    let prefix: Vec<Frame> = (0..30)
        .map(|i| frame(format!("framework_{i}"), "starlette/routing.py", 100 + i))
        .collect();
    (0..samples.div_ceil(10))
        .map(|i| {
            let mut stack = prefix.clone();
            stack.extend((0..10).map(|d| Frame {
                name: format!("handler_{}_{d}", i % 97).into(),
                filename: "/srv/app/main.py".into(),
                short: "main.py".into(),
                line: (i % 500) as u32 + d,
            }));
            StackCount {
                stack: stack.into(),
                samples: 10,
            }
        })
        .collect()
}

/// One sample a millisecond from `start_ns`, each in another of `stacks`
/// than the one before (a stride through them).
fn timeline(stacks: &[StackCount], start_ns: u64, samples: u64) -> Timeline {
    let n = stacks.len() as u64;
    let ticks = (0..samples)
        .map(|i| Tick {
            ts_ns: start_ns + i * MS,
            tid: 99,
            state: State::Python,
            stack: ((i * 7) % n) as u32,
        })
        .collect();
    Timeline {
        stacks: stacks.iter().map(|s| s.stack.clone()).collect(),
        ticks,
    }
}

fn request(id: u64, at_ms: u64, duration_ms: u64) -> Request {
    Request {
        marker_id: id,
        pid: 4242,
        tid: 99,
        method: "GET".into(),
        path: format!("/items/{}", id % 1000),
        route: Some("/items/{item_id}".into()),
        status: Some(if id.is_multiple_of(50) { 500 } else { 200 }),
        errored: false,
        cancelled: false,
        start_ns: at_ms * MS,
        end_ns: (at_ms + duration_ms) * MS,
        response_end_ns: Some((at_ms + duration_ms) * MS),
    }
}

fn store(dir: &std::path::Path, name: &str, requests: Vec<ProfiledRequest>) -> Store {
    let session = NewSession {
        cwd: "/srv/app".into(),
        ..testing::session()
    };
    let mut t = TestStore::open_with(&dir.join(name), &session, &testing::process());
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        t.write(requests.by_ref().take(5_000));
    }
    t.store
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "FAIL"
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut samples = 10_000u64;
    let mut requests = 100_000u64;
    let mut rounds = 9usize;
    let mut formats: Vec<Format> = Format::ALL.to_vec();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let text = args.next().unwrap_or_default();
        let value = text.parse::<u64>().ok();
        match (arg.as_str(), value) {
            ("--samples", Some(v)) => samples = v,
            ("--requests", Some(v)) => requests = v,
            ("--rounds", Some(v)) => rounds = v.max(1) as usize,
            ("--format", _) if text == "none" => formats.clear(),
            ("--format", _) if Format::parse(&text).is_some() => {
                formats = Format::parse(&text).into_iter().collect();
            }
            _ => {
                eprintln!(
                    "usage: export_cost [--samples N] [--requests N] [--rounds N] [--format F]"
                );
                std::process::exit(2);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut missed = false;

    let queries = (0..20)
        .map(|i| SqlQuery {
            sql: format!("SELECT * FROM items WHERE id = {i}"),
            sql_len: 32,
            normalized: "SELECT * FROM items WHERE id = ?".into(),
            params: None,
            params_len: 0,
            start_ns: (1 + i) * MS,
            end_ns: (1 + i) * MS + MS / 2,
            rows: Some(1),
            driver: "sqlite3".into(),
            error: None,
            caller: vec![].into(),
            stack: vec![].into(),
        })
        .collect();
    let stacks = stacks(samples);
    let one = ProfiledRequest {
        timeline: timeline(&stacks, 0, samples),
        stacks,
        queries,
        ..ProfiledRequest::new(request(1, 0, samples))
    };
    let single = store(dir.path(), "one.db", vec![one]);
    println!("one request of {samples} samples, median of {rounds} rounds (target < {EXPORT_TARGET_MS} ms):");
    for format in formats {
        let times: Vec<f64> = (0..rounds)
            .map(|_| {
                let started = Instant::now();
                let recording = Recording::load(&single, Subject::Request(1)).unwrap();
                let bytes = format.render(&recording, View::default()).unwrap();
                assert!(!bytes.is_empty());
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let ms = median(times);
        let ok = ms < EXPORT_TARGET_MS;
        missed |= !ok;
        println!(
            "  export {:<10} {ms:8.2} ms  {}",
            format.name(),
            verdict(ok)
        );
    }

    if requests == 0 {
        std::process::exit(i32::from(missed));
    }
    let many: Vec<ProfiledRequest> = (1..=requests)
        .map(|id| ProfiledRequest {
            breakdown: TimeBreakdown {
                python_ns: 3 * MS,
                sql_ns: MS,
                ..TimeBreakdown::default()
            },
            cpu_ns: 3 * MS,
            ..ProfiledRequest::new(request(id, id * 5, 4 + id % 17))
        })
        .collect();
    let table_store = store(dir.path(), "many.db", many);
    println!(
        "requests table of {requests} rows, median of {rounds} rounds (target >= {ROWS_TARGET:.0} rows/s):"
    );
    for format in [TableFormat::Csv, TableFormat::Parquet] {
        let mut size = 0;
        let times: Vec<f64> = (0..rounds)
            .map(|_| {
                let started = Instant::now();
                let rows = table_store
                    .request_page(&RequestPage {
                        limit: requests as usize,
                        before: None,
                        filter: RequestFilter::default(),
                        sort: Sort::Newest,
                    })
                    .unwrap();
                assert_eq!(rows.len() as u64, requests);
                size = format.render(&requests_table(&rows)).unwrap().len();
                started.elapsed().as_secs_f64()
            })
            .collect();
        let seconds = median(times);
        let rate = requests as f64 / seconds;
        let ok = rate >= ROWS_TARGET;
        missed |= !ok;
        println!(
            "  table  {:<10} {rate:10.0} rows/s  ({:.1} MB in {:.0} ms)  {}",
            format!("{format:?}").to_lowercase(),
            size as f64 / 1e6,
            seconds * 1e3,
            verdict(ok)
        );
    }
    std::process::exit(i32::from(missed));
}
