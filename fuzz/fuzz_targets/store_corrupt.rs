//! A store whose pages were damaged (a crash of the disk, a hostile file
//! named like a store): every read the CLI and the dashboard make ends in
//! rows or an error, never a panic or a hang.
//!
//! The input patches a small valid store: chunks of a 2-byte offset (in
//! units of 4 bytes into the file) and up to 14 bytes to write there.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use timeglass_model::{Frame, ProfiledRequest, Request, StackCount, State, Tick, Timeline};
use timeglass_store::{
    Batch, ClockMap, NewProcess, NewSession, RequestFilter, RequestQuery, SessionEnd, Store,
};

struct Fixture {
    template: Vec<u8>,
    path: PathBuf,
}

fn frame(name: &str) -> Frame {
    Frame {
        name: name.into(),
        filename: format!("/srv/{name}.py").into(),
        short: format!("{name}.py").into(),
        line: 3,
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // On tmpfs: on disk, the store's syncs made this target three times
        // slower (245 executions a second against 711).
        let dir = timeglass_fuzz::scratch_dir();
        let source = dir.join("template.db");
        let mut store = Store::open(&source).unwrap();
        let clock = ClockMap {
            mono_ns: 1_000_000_000,
            unix_ns: 1_714_564_800_000_000_000,
        };
        let session = store
            .begin_session(&NewSession {
                command: vec!["uvicorn".into(), "app:app".into()],
                cwd: "/srv".into(),
                rate_hz: 1000,
                clock,
            })
            .unwrap();
        let process = store
            .add_process(
                session,
                &NewProcess {
                    pid: 42,
                    command_line: vec!["python".into()],
                    python_version: Some("3.12.1".into()),
                },
            )
            .unwrap();
        let requests = (0..8u64)
            .map(|i| {
                let start = clock.mono_ns as u64 + i * 10_000_000;
                let stacks = vec![StackCount {
                    stack: vec![frame("main"), frame(&format!("handler{i}"))].into(),
                    samples: 3 + i,
                }];
                let request = Request {
                    marker_id: i + 1,
                    pid: 42,
                    tid: 7,
                    method: "GET".into(),
                    path: format!("/items/{i}"),
                    route: Some("/items/{id}".into()),
                    status: Some(200),
                    start_ns: start,
                    end_ns: start + 5_000_000,
                    response_end_ns: Some(start + 4_000_000),
                    ..Request::default()
                };
                // Its samples at their times too (schema v13's blobs).
                let ticks = (0..3 + i)
                    .map(|k| Tick {
                        ts_ns: start + k * 1_000_000,
                        tid: 7,
                        state: State::Python,
                        stack: 0,
                    })
                    .collect();
                let timeline = Timeline {
                    stacks: stacks.iter().map(|s| s.stack.clone()).collect(),
                    ticks,
                };
                (
                    process,
                    ProfiledRequest {
                        stacks,
                        timeline,
                        ..ProfiledRequest::new(request)
                    },
                )
            })
            .collect();
        store
            .write(&Batch {
                session,
                requests,
                ..Batch::default()
            })
            .unwrap();
        store
            .end_session(
                session,
                &SessionEnd {
                    exit_code: Some(0),
                    samples: 60,
                    torn_samples: 0,
                    lost_events: 0,
                    load: Default::default(),
                },
            )
            .unwrap();
        drop(store);
        let template = std::fs::read(&source).unwrap();
        let path = dir.join("damaged.db");
        Fixture { template, path }
    })
}

fn read_everything(store: &Store) {
    let Ok(sessions) = store.sessions() else {
        return;
    };
    for s in &sessions {
        let _ = store.processes(s.id);
        let _ = store.outside_stacks(s.id);
        let _ = store.outside_timelines(s.id);
    }
    let Ok(rows) = store.requests(&RequestQuery {
        limit: 20,
        session: None,
    }) else {
        return;
    };
    for r in &rows {
        let _ = store.request(r.id);
        let _ = store.request_stacks(r.id);
        let _ = store.request_profile(r.id);
        let _ = store.request_queries(r.id);
        let _ = store.request_calls(r.id);
    }
    let _ = RequestFilter::default();
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut bytes = f.template.clone();
    for chunk in data.chunks(16) {
        let Some((at, patch)) = chunk.split_first_chunk::<2>() else {
            break;
        };
        let at = usize::from(u16::from_le_bytes(*at)) * 4 % bytes.len();
        let end = (at + patch.len()).min(bytes.len());
        bytes[at..end].copy_from_slice(&patch[..end - at]);
    }
    // Written in place: the store keeps header files open by inode.
    for suffix in ["-wal", "-shm"] {
        let mut name = f.path.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    std::fs::write(&f.path, &bytes).unwrap();
    if let Ok(store) = Store::open_existing(&f.path) {
        read_everything(&store);
    }
});
