//! Builders shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use tempfile::TempDir;
use timeglass_model::{Frame, ProfiledRequest, Request, Stack, StackCount};
use timeglass_store::{testing, ClockMap, NewProcess, NewSession, ProcessId, SessionId, Store};

/// 2024-05-01T12:00:00Z at monotonic 1 s.
pub(crate) const CLOCK: ClockMap = ClockMap {
    mono_ns: 1_000_000_000,
    unix_ns: 1_714_564_800_000_000_000,
};

pub(crate) struct TestStore {
    pub dir: TempDir,
    pub path: PathBuf,
    pub store: Store,
    pub session: SessionId,
    pub process: ProcessId,
}

impl TestStore {
    /// A new store with one session and one process.
    pub(crate) fn start() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".timeglass/timeglass.db");
        let testing::TestStore {
            store,
            session,
            process,
        } = testing::TestStore::open_with(&path, &new_session(), &new_process(4242));
        TestStore {
            dir,
            path,
            store,
            session,
            process,
        }
    }

    pub(crate) fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.path).unwrap()
    }

    pub(crate) fn count(&self, table: &str) -> i64 {
        self.raw()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

pub(crate) fn new_session() -> NewSession {
    NewSession {
        command: vec![
            "uvicorn".into(),
            "app:app".into(),
            "--port".into(),
            "8000".into(),
        ],
        cwd: "/srv/app".into(),
        rate_hz: 100,
        clock: CLOCK,
    }
}

pub(crate) fn new_process(pid: u32) -> NewProcess {
    NewProcess {
        pid,
        command_line: vec!["python".into(), "-m".into(), "uvicorn".into()],
        python_version: Some("3.12.3".into()),
    }
}

pub(crate) fn frame(name: &str, line: u32) -> Frame {
    Frame {
        name: name.into(),
        filename: format!("/srv/app/{name}.py").into(),
        short: format!("{name}.py").into(),
        line,
    }
}

/// A stack from `name:line` pairs, outermost first.
pub(crate) fn stack(frames: &[(&str, u32)]) -> Stack {
    frames
        .iter()
        .map(|&(n, l)| frame(n, l))
        .collect::<Vec<_>>()
        .into()
}

pub(crate) fn counted(frames: &[(&str, u32)], samples: u64) -> StackCount {
    StackCount {
        stack: stack(frames),
        samples,
    }
}

/// A request starting `start_ms` after the clock reading, lasting `dur_ms`.
pub(crate) fn request(
    marker_id: u64,
    start_ms: u64,
    dur_ms: u64,
    stacks: Vec<StackCount>,
) -> ProfiledRequest {
    let start_ns = CLOCK.mono_ns + start_ms * 1_000_000;
    ProfiledRequest {
        stacks,
        ..ProfiledRequest::new(Request {
            marker_id,
            pid: 4242,
            tid: 7,
            method: "GET".into(),
            path: format!("/items/{marker_id}"),
            route: Some("/items/{id}".into()),
            status: Some(200),
            errored: false,
            cancelled: false,
            start_ns,
            end_ns: start_ns + dur_ms * 1_000_000,
            response_end_ns: Some(start_ns + dur_ms * 1_000_000),
        })
    }
}

/// Order-independent comparison of stacks.
pub(crate) fn sorted(mut stacks: Vec<StackCount>) -> Vec<(Vec<Frame>, u64)> {
    let mut out: Vec<_> = stacks
        .drain(..)
        .map(|s| (s.stack.iter().cloned().collect::<Vec<_>>(), s.samples))
        .collect();
    out.sort();
    out
}
