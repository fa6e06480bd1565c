//! Recorded walks through the real pipeline into a real store: replay
//! (`ReplaySource` over `render/tests/data/walks/*.jsonl`) → `Sampler`
//! (slots scripted per walk) → `Join` (marker events scripted: two requests
//! and a statement) → `Store`. Shared by the golden tests of `render`,
//! `cli` and `server` (`#[path]`-included), so each checks its output over
//! the same store.
//!
//! The sampler reads the real clock; its samples are put on a 1 ms grid
//! (one walk per millisecond) before the join, so the store, and every file
//! rendered from it, is the same on every run.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use timeglass_join::{Join, JoinOptions, GRACE_NS};
use timeglass_model::Sample;
use timeglass_sampler::{ReplaySource, RequestSlots, Sampler, SamplerOptions, StackSource};
use timeglass_store::testing::{self, TestStore};
use timeglass_store::{Batch, NewProcess, NewSession, SessionEnd};
use timeglass_wire::{Event, Query, RequestEnd, RequestStart, SlotSnapshot, StackFrame, StackRef};

pub(crate) const PID: u32 = 4242;
const MS: u64 = 1_000_000;
/// Where the first request starts on the marker's clock.
const T0: u64 = 1_000 * MS;

pub(crate) fn walks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/tests/data/walks")
}

/// Every thread's slot holds request 1 for the first half of the walks and
/// request 2 after, each change counted as the marker counts it.
struct Halves {
    walk: usize,
    half: usize,
}

impl RequestSlots for Halves {
    fn read(&mut self, _tid: u32) -> Option<SlotSnapshot> {
        let (seq, request_id) = if self.walk < self.half {
            (2, 1)
        } else {
            (6, 2)
        };
        Some(SlotSnapshot { seq, request_id })
    }

    fn tid_of_pthread(&mut self, pthread_id: u64) -> Option<u32> {
        u32::try_from(pthread_id % 100_000).ok()
    }
}

fn frame(name: &str, filename: &str, short: &str, line: u32, library: bool) -> StackFrame {
    StackFrame {
        name: name.into(),
        filename: filename.into(),
        short: short.into(),
        line,
        library,
    }
}

/// A store holding the walks of `fixture` as two requests of
/// `GET /items/{item_id}` on one thread, the second with one statement.
pub(crate) fn store(fixture: &str, dir: &Path) -> PathBuf {
    let mut source = ReplaySource::from_jsonl(PID, &walks_dir().join(fixture)).unwrap();
    let walks = std::fs::read_to_string(walks_dir().join(fixture))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let mut slots = Halves {
        walk: 0,
        half: walks / 2,
    };
    let mut sampler = Sampler::new(SamplerOptions::default());
    let mut samples: Vec<Sample> = Vec::new();
    while source.alive() {
        let mut walked = Vec::new();
        sampler.tick(&mut source, &mut slots, &mut walked).unwrap();
        for mut s in walked {
            s.ts_ns = T0 + slots.walk as u64 * MS + MS / 2;
            s.interval_ns = MS;
            s.cpu_ns = 0;
            samples.push(s);
        }
        slots.walk += 1;
    }
    let tid = samples.first().map_or(1, |s| s.tid);
    let half = (walks / 2) as u64;
    let mut join = Join::with_options(JoinOptions {
        rate_hz: 1000,
        ..JoinOptions::default()
    });
    let start = |id: u64, ts_ns: u64, path: &str| {
        Event::RequestStart(RequestStart {
            request_id: id,
            ts_ns,
            tid,
            method: "GET".into(),
            path: path.into(),
        })
    };
    let end = |id: u64, ts_ns: u64| {
        Event::RequestEnd(RequestEnd {
            request_id: id,
            ts_ns,
            response_ns: ts_ns,
            status: 200,
            flags: 0,
            route: "/items/{item_id}".into(),
        })
    };
    join.event(PID, start(1, T0, "/items/1"));
    join.event(PID, end(1, T0 + half * MS));
    join.event(PID, start(2, T0 + half * MS, "/items/2"));
    let caller = StackRef {
        id: 1,
        frames: Some(vec![
            frame(
                "get_item",
                "/srv/app/demo_app.py",
                "demo_app.py",
                135,
                false,
            ),
            frame("get", "/srv/app/db.py", "db.py", 12, false),
        ]),
    };
    join.event(
        PID,
        Event::Query(Query {
            request_id: 2,
            start_ns: T0 + (half + 1) * MS,
            end_ns: T0 + (half + 3) * MS,
            rows: 1,
            driver: "sqlite3".into(),
            sql: "SELECT id, name, price FROM items WHERE id = ?".into(),
            sql_len: 46,
            params: Some("(2,)".into()),
            params_len: 4,
            error: None,
            stack: caller,
        }),
    );
    join.event(PID, end(2, T0 + walks as u64 * MS));
    // The first two walks again, 3 and 2 ms before the first request
    // started: samples outside any request, for the session's exports.
    let before: Vec<Sample> = samples
        .iter()
        .take(2)
        .enumerate()
        .map(|(i, s)| Sample {
            request_id: 0,
            ts_ns: T0 - (3 - i as u64) * MS,
            ..s.clone()
        })
        .collect();
    for s in before.into_iter().chain(samples) {
        join.sample(s);
    }
    let requests = join.finished(T0 + walks as u64 * MS + GRACE_NS);
    let db = dir.join("timeglass.db");
    let session = NewSession {
        command: vec!["uvicorn".into(), "demo_app:app".into()],
        cwd: "/srv/app".into(),
        ..testing::session()
    };
    let process = NewProcess {
        pid: PID,
        command_line: vec!["python".into(), "-m".into(), "uvicorn".into()],
        python_version: Some("3.11.7".into()),
    };
    let TestStore {
        mut store,
        session,
        process,
    } = TestStore::open_with(&db, &session, &process);
    let outside = join
        .take_outside()
        .into_iter()
        .map(|(_, s)| (process, s))
        .collect();
    let outside_timeline = join
        .take_outside_timeline()
        .into_iter()
        .map(|(_, t)| (process, t))
        .collect();
    store
        .write(&Batch {
            session,
            requests: requests.into_iter().map(|r| (process, r)).collect(),
            outside,
            outside_timeline,
            process_samples: vec![],
        })
        .unwrap();
    store
        .end_session(
            session,
            &SessionEnd {
                exit_code: Some(0),
                samples: walks as u64,
                torn_samples: 0,
                lost_events: 0,
                load: Default::default(),
            },
        )
        .unwrap();
    drop(store);
    // The store stamps a session's end and a process's start with the wall
    // clock; the recording's own times are fixed (the clock map above).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!(
        "UPDATE sessions SET ended_at = '{END}';
         UPDATE processes SET started_at = '{START}', ended_at = '{END}';"
    ))
    .unwrap();
    db
}

/// The clock map's wall-clock time, and one after the last walk.
const START: &str = "2026-09-21T12:53:20.000Z";
const END: &str = "2026-09-21T12:53:22.000Z";

/// Compares `actual` with the golden file `name` under `dir`, or rewrites it
/// under `TIMEGLASS_BLESS=1`. Run-to-run details (temporary paths, wall
/// clock times) are filtered out first.
pub(crate) fn golden(dir: &Path, name: &str, actual: &str, scrub: &[(&str, &str)]) {
    let mut text = actual.to_string();
    for (from, to) in scrub {
        text = text.replace(from, to);
    }
    let times =
        regex::Regex::new(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
            .unwrap();
    let text = times.replace_all(&text, "<time>").into_owned();
    let path = dir.join(name);
    if std::env::var_os("TIMEGLASS_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no golden file {}; write it with TIMEGLASS_BLESS=1 and review it",
            path.display()
        )
    });
    if expected != text {
        let at = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(text.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n  golden: {:?}\n  output: {:?}\n\
             if the change is meant, rewrite it with TIMEGLASS_BLESS=1 and review the diff",
            path.display(),
            at + 1,
            expected.lines().nth(at),
            text.lines().nth(at)
        );
    }
}
