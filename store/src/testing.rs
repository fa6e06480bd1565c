//! Stores for tests and cost measurements (feature `testing`): a new store
//! with one session and one process, the way most tests of what reads the
//! store begin. Tests enable it from their crate's dev-dependencies.
//!
//! The defaults are a plain `uvicorn app:app` run; a test that needs another
//! value says so with struct update syntax:
//! `NewSession { cwd: "/srv".into(), ..testing::session() }`.

use std::path::Path;

use timeglass_model::ProfiledRequest;

use crate::{Batch, ClockMap, NewProcess, NewSession, ProcessId, SessionId, Store};

/// 2026-09-21T14:13:20Z at monotonic 0, so requests' monotonic times are
/// their offsets from the session's start.
pub const CLOCK: ClockMap = ClockMap {
    mono_ns: 0,
    unix_ns: 1_790_000_000_000_000_000,
};

/// `uvicorn app:app` in `/app`, sampled at 1 kHz, started at [`CLOCK`].
pub fn session() -> NewSession {
    NewSession {
        command: vec!["uvicorn".into(), "app:app".into()],
        cwd: "/app".into(),
        rate_hz: 1000,
        clock: CLOCK,
    }
}

/// Process 4242, `python`, of an unknown version.
pub fn process() -> NewProcess {
    NewProcess {
        pid: 4242,
        command_line: vec!["python".into()],
        python_version: None,
    }
}

/// A store, its session and the one process that joined it.
pub struct TestStore {
    pub store: Store,
    pub session: SessionId,
    pub process: ProcessId,
}

impl TestStore {
    /// A new store at `path` with the default [`session`] and [`process`].
    pub fn open(path: &Path) -> TestStore {
        TestStore::open_with(path, &session(), &process())
    }

    /// A new store at `path` with this session and process.
    pub fn open_with(path: &Path, s: &NewSession, p: &NewProcess) -> TestStore {
        let mut store = Store::open(path).expect("a new store");
        let (session, process) = begin(&mut store, s, p);
        TestStore {
            store,
            session,
            process,
        }
    }

    /// Writes `requests`, all of the process, in one batch.
    pub fn write(&mut self, requests: impl IntoIterator<Item = ProfiledRequest>) {
        let batch = Batch {
            session: self.session,
            requests: requests.into_iter().map(|r| (self.process, r)).collect(),
            ..Batch::default()
        };
        self.store.write(&batch).expect("the batch is written");
    }
}

/// Another session in `store`, with its one process.
pub fn begin(store: &mut Store, s: &NewSession, p: &NewProcess) -> (SessionId, ProcessId) {
    let session = store.begin_session(s).expect("a session");
    let process = store.add_process(session, p).expect("a process");
    (session, process)
}
