//! The SQLite store: every recorded session, process, request and stack,
//! and the SQL statements and HTTP calls of each request.
//!
//! One [`Store`] owns one connection. The recorder's writer thread opens it
//! with [`Store::open`] and writes a [`Batch`] every ~100 ms; the CLI and the
//! server open it with [`Store::open_existing`] and read, concurrently (WAL).
//! Frames and stacks are interned (stacks as a trie of frames), so a sample
//! costs a few bytes. The schema lives in `schema.rs`, the rest of the crate
//! is generic over it.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod baseline;
mod clock;
pub mod dashboard;
mod error;
mod interrupted;
mod open;
mod private;
mod probe;
mod prune;
mod read;
mod schema;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod timeline;
mod trie;
mod window;
mod write;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use timeglass_model::{ProfiledRequest, StackCount, Timeline};

pub use baseline::{BaselineRow, RequestFigure, StatementCount};
pub use clock::{local_time, ClockMap};
pub use dashboard::{RequestFilter, RequestPage, RouteRow, RouteSample, Sort};
pub use error::StoreError;
pub use probe::{
    NewProbeOperation, NewProbeResult, NewProbeRun, ProbeCandidate, ProbeOutcome, ProbeSummary,
};
pub use prune::{defaults as retention_defaults, Prune, Pruned, Retention};
pub use read::{
    Breakdown, CallRow, LoopBlockRow, MemoryRow, ProcessRow, QueryRow, RequestQuery, RequestRow,
    SessionRow,
};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use window::{
    Endpoint, EndpointTotals, ProcessSample, ProcessSamples, RouteMatch, SessionInfo, Timing,
    Totals, WindowQuery,
};

use open::Found;
use write::Interner;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SessionId(pub i64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProcessId(pub i64);

/// The start of a `timeglass run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// The profiled command's argv.
    pub command: Vec<String>,
    pub cwd: String,
    pub rate_hz: u32,
    /// Taken when the session starts; also gives the session's `started_at`.
    pub clock: ClockMap,
}

/// A Python process that joined the session (a uvicorn worker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProcess {
    pub pid: u32,
    pub command_line: Vec<String>,
    /// `None` if it could not be determined.
    pub python_version: Option<String>,
}

/// How a process of a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessExit {
    /// Exited normally: its marker removed its ring file when the server
    /// finished its ASGI lifespan shutdown or when the interpreter exited.
    Clean,
    /// Died without its interpreter's exit handlers running (killed, crashed).
    Crashed,
    /// Still running when recording stopped.
    Running,
    /// Gone, and nothing tells how (a process sampled without its marker).
    Unknown,
}

impl ProcessExit {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessExit::Clean => "clean",
            ProcessExit::Crashed => "crashed",
            ProcessExit::Running => "running",
            ProcessExit::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SessionEnd {
    pub exit_code: Option<i32>,
    pub samples: u64,
    pub torn_samples: u64,
    pub lost_events: u64,
    pub load: MachineLoad,
}

/// How busy the machine was over a session, as shares of its wall time;
/// `None` where the kernel keeps no such counter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineLoad {
    /// Some task ready to run waited for a CPU (`/proc/pressure/cpu`).
    pub cpu_wait: Option<f64>,
    /// The hypervisor gave the CPUs to other guests (`steal`, `/proc/stat`).
    pub steal: Option<f64>,
    /// The app's request threads waited for a CPU this long per unit of
    /// CPU time they got (their `schedstat`): 0.5 is half a second of
    /// waiting per second of running.
    pub app_wait: Option<f64>,
}

/// What the writer thread flushes at once; written in one transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub session: SessionId,
    pub requests: Vec<(ProcessId, ProfiledRequest)>,
    /// Samples taken outside any request; added to what is already stored.
    pub outside: Vec<(ProcessId, StackCount)>,
    /// The same samples at their times, per process (each in time order).
    pub outside_timeline: Vec<(ProcessId, Timeline)>,
    /// Resource samples of the session's processes.
    pub process_samples: Vec<(ProcessId, ProcessSample)>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    interner: Interner,
    /// Clock maps of the sessions written to, to date requests.
    clocks: HashMap<SessionId, ClockMap>,
}

impl Store {
    /// Opens the store for writing, creating it (and its parent directories)
    /// if the path is missing or an empty file. Refuses any file that is not
    /// a TimeGlass database, without changing it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        match open::probe(path)? {
            Found::Absent => {
                create_parent(path)?;
                // SQLite gives the `-wal` and `-shm` files the mode of the
                // database, so they are private too.
                private::create_file(path)?;
            }
            Found::Empty | Found::TimeGlass => private::tighten(path)?,
        }
        Self::connect(path)
    }

    /// Opens an existing store, for readers: a missing or empty file is
    /// [`StoreError::Missing`].
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        match open::probe(path)? {
            Found::Absent | Found::Empty => Err(StoreError::Missing {
                path: path.to_owned(),
            }),
            Found::TimeGlass => Self::connect(path),
        }
    }

    fn connect(path: &Path) -> Result<Store, StoreError> {
        let store = Store {
            conn: open::connect(path)?,
            path: path.to_owned(),
            interner: Interner::default(),
            clocks: HashMap::new(),
        };
        // Best effort: a store this user may only read is shown as it is.
        let _ = interrupted::settle(&store.conn);
        Ok(store)
    }

    /// Deletes the sessions `what` names (never one being recorded) and
    /// gives the space back.
    pub fn prune(&mut self, what: &Prune) -> Result<Pruned, StoreError> {
        prune::prune(&mut self.conn, what).map_err(|e| self.sql_err(e))
    }

    /// Deletes the oldest ended sessions until `retention` holds.
    pub fn enforce_retention(&mut self, retention: &Retention) -> Result<Pruned, StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        prune::enforce(&mut self.conn, retention, now).map_err(|e| self.sql_err(e))
    }

    /// Counts `n` more requests of `session` that were recorded but could
    /// not be stored.
    pub fn add_lost_requests(&mut self, session: SessionId, n: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE sessions SET lost_requests = lost_requests + ?2 WHERE id = ?1",
                params![session.0, n],
            )
            .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    /// Names this process as the recorder of `session`: when it dies
    /// before ending the session, the next command that opens the store
    /// ends it as interrupted.
    pub fn set_recorder(&mut self, session: SessionId) -> Result<(), StoreError> {
        let (pid, started) = interrupted::this_process();
        let changed = self
            .conn
            .execute(
                "UPDATE sessions SET recorder_pid = ?2, recorder_started = ?3 WHERE id = ?1",
                params![session.0, pid, started],
            )
            .map_err(|e| self.sql_err(e))?;
        self.expect_row(changed, "session", session.0)
    }

    /// Notes that the recorder is alive and has read `requests_seen`
    /// request starts: an interrupted session ends here, and those of them
    /// never stored are counted as lost.
    pub fn record_progress(
        &mut self,
        session: SessionId,
        requests_seen: u64,
    ) -> Result<(), StoreError> {
        let now = clock::now_rfc3339_ms();
        self.conn
            .prepare_cached(
                "UPDATE sessions SET progress_at = ?2, requests_seen = ?3 WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![session.0, now, requests_seen]))
            .map_err(|e| self.sql_err(e))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn begin_session(&mut self, s: &NewSession) -> Result<SessionId, StoreError> {
        let command = serde_json::to_string(&s.command).expect("argv serializes");
        let started_at = clock::rfc3339_ms(s.clock.unix_ns.into());
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (started_at, command, cwd, rate_hz, clock_mono_ns, clock_unix_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    started_at,
                    command,
                    s.cwd,
                    s.rate_hz,
                    s.clock.mono_ns,
                    s.clock.unix_ns
                ])
            })
            .map_err(|e| self.sql_err(e))?;
        let id = SessionId(self.conn.last_insert_rowid());
        self.clocks.insert(id, s.clock);
        Ok(id)
    }

    pub fn add_process(
        &mut self,
        session: SessionId,
        p: &NewProcess,
    ) -> Result<ProcessId, StoreError> {
        self.session_clock(session)?;
        let command_line = serde_json::to_string(&p.command_line).expect("argv serializes");
        self.conn
            .prepare_cached(
                "INSERT INTO processes (session_id, pid, command_line, python_version, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    session.0,
                    p.pid,
                    command_line,
                    p.python_version,
                    clock::now_rfc3339_ms()
                ])
            })
            .map_err(|e| self.sql_err(e))?;
        Ok(ProcessId(self.conn.last_insert_rowid()))
    }

    pub fn end_process(&mut self, process: ProcessId) -> Result<(), StoreError> {
        let changed = self
            .conn
            .prepare_cached("UPDATE processes SET ended_at = ?2 WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute(params![process.0, clock::now_rfc3339_ms()]))
            .map_err(|e| self.sql_err(e))?;
        self.expect_row(changed, "process", process.0)
    }

    /// Records how the process ended (see [`ProcessExit`]).
    pub fn set_process_exit(
        &mut self,
        process: ProcessId,
        exit: ProcessExit,
    ) -> Result<(), StoreError> {
        let changed = self
            .conn
            .prepare_cached("UPDATE processes SET exit = ?2 WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute(params![process.0, exit.as_str()]))
            .map_err(|e| self.sql_err(e))?;
        self.expect_row(changed, "process", process.0)
    }

    /// Writes the batch in one transaction: all of it or, on error, none.
    pub fn write(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let clock = self.session_clock(batch.session)?;
        let written = write::write_batch(&mut self.conn, &mut self.interner, clock, batch);
        if let Err(e) = written {
            // The rollback may have dropped rows the interner already cached.
            self.interner.clear();
            return Err(self.sql_err(e));
        }
        Ok(())
    }

    pub fn end_session(&mut self, session: SessionId, end: &SessionEnd) -> Result<(), StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE sessions SET ended_at = ?2, exit_code = ?3, samples = ?4,
                     torn_samples = ?5, lost_events = ?6, cpu_wait_share = ?7,
                     steal_share = ?8, app_wait_per_cpu = ?9
                 WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    session.0,
                    clock::now_rfc3339_ms(),
                    end.exit_code,
                    end.samples,
                    end.torn_samples,
                    end.lost_events,
                    end.load.cpu_wait,
                    end.load.steal,
                    end.load.app_wait,
                ])
            })
            .map_err(|e| self.sql_err(e))?;
        self.expect_row(changed, "session", session.0)
    }

    /// Newest first.
    pub fn requests(&self, q: &RequestQuery) -> Result<Vec<RequestRow>, StoreError> {
        read::requests(&self.conn, q).map_err(|e| self.sql_err(e))
    }

    pub fn request(&self, id: i64) -> Result<Option<RequestRow>, StoreError> {
        read::request(&self.conn, id).map_err(|e| self.sql_err(e))
    }

    /// The stored id of the request the marker of process `pid` numbered
    /// `marker_id` (what `request.scope["timeglass"].url` links to).
    pub fn request_by_marker(&self, pid: u32, marker_id: u64) -> Result<Option<i64>, StoreError> {
        read::request_by_marker(&self.conn, pid, marker_id).map_err(|e| self.sql_err(e))
    }

    /// The request's stacks with full frames, most samples first. Empty for
    /// an unknown request.
    pub fn request_stacks(&self, id: i64) -> Result<Vec<StackCount>, StoreError> {
        read::request_stacks(&self.conn, id).map_err(|e| self.sql_err(e))
    }

    /// The request's samples at the times they were taken; empty for an
    /// unknown request and for requests recorded before schema v13.
    pub fn request_timeline(&self, id: i64) -> Result<Timeline, StoreError> {
        read::request_timeline(&self.conn, id).map_err(|e| self.sql_err(e))
    }

    /// [`Self::request_stacks`] and [`Self::request_timeline`] at once, for
    /// less than the two.
    pub fn request_profile(&self, id: i64) -> Result<(Vec<StackCount>, Timeline), StoreError> {
        read::request_profile(&self.conn, id).map_err(|e| self.sql_err(e))
    }

    /// The session's samples outside any request at their times, per
    /// process pid, in pid order.
    pub fn outside_timelines(
        &self,
        session: SessionId,
    ) -> Result<Vec<(u32, Timeline)>, StoreError> {
        read::outside_timelines(&self.conn, session).map_err(|e| self.sql_err(e))
    }

    /// Where the request allocated: stacks weighed in bytes (in `samples`);
    /// empty when its allocations were not sampled.
    pub fn request_alloc_stacks(&self, id: i64) -> Result<Vec<StackCount>, StoreError> {
        read::request_alloc_stacks(&self.conn, id).map_err(|e| self.sql_err(e))
    }

    /// The SQL statements the request ran, in the order they started. Empty
    /// for an unknown request.
    pub fn request_queries(&self, id: i64) -> Result<Vec<QueryRow>, StoreError> {
        read::request_queries(&self.conn, id).map_err(|e| self.sql_err(e))
    }

    /// The outgoing HTTP calls the request made, in the order they started.
    /// Empty for an unknown request.
    pub fn request_calls(&self, id: i64) -> Result<Vec<CallRow>, StoreError> {
        read::request_calls(&self.conn, id).map_err(|e| self.sql_err(e))
    }

    /// Samples taken outside any request, summed over the session's
    /// processes, most samples first.
    pub fn outside_stacks(&self, session: SessionId) -> Result<Vec<StackCount>, StoreError> {
        read::outside_stacks(&self.conn, session).map_err(|e| self.sql_err(e))
    }

    /// The session's processes in the order they joined it.
    pub fn processes(&self, session: SessionId) -> Result<Vec<ProcessRow>, StoreError> {
        read::processes(&self.conn, session).map_err(|e| self.sql_err(e))
    }

    /// Newest first.
    pub fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        read::sessions(&self.conn).map_err(|e| self.sql_err(e))
    }

    /// Stores a finished `timeglass probe` run in one transaction; returns
    /// its id.
    pub fn write_probe_run(&mut self, run: &NewProbeRun) -> Result<i64, StoreError> {
        probe::write_run(&mut self.conn, run).map_err(|e| self.sql_err(e))
    }

    /// The latest probe run of `session`, summed up; `None` when the
    /// session was never probed. What `report` scores bad input and
    /// coverage from.
    pub fn probe_summary(&self, session: SessionId) -> Result<Option<ProbeSummary>, StoreError> {
        probe::summary(&self.conn, session).map_err(|e| self.sql_err(e))
    }

    /// The session's requests that started at or after `since_ms` (Unix
    /// milliseconds), oldest first, each with the value of its
    /// `tag_header` request header when request context was recorded:
    /// where a probe looks for the requests it sent.
    pub fn probe_candidates(
        &self,
        session: SessionId,
        since_ms: i64,
        tag_header: &str,
    ) -> Result<Vec<ProbeCandidate>, StoreError> {
        probe::candidates(&self.conn, session, since_ms, tag_header).map_err(|e| self.sql_err(e))
    }

    fn session_clock(&mut self, session: SessionId) -> Result<ClockMap, StoreError> {
        if let Some(&clock) = self.clocks.get(&session) {
            return Ok(clock);
        }
        let clock = self
            .conn
            .prepare_cached("SELECT clock_mono_ns, clock_unix_ns FROM sessions WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![session.0], |r| {
                    Ok(ClockMap {
                        mono_ns: r.get(0)?,
                        unix_ns: r.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.sql_err(e))?
            .ok_or_else(|| self.unknown("session", session.0))?;
        self.clocks.insert(session, clock);
        Ok(clock)
    }

    fn expect_row(&self, changed: usize, what: &'static str, id: i64) -> Result<(), StoreError> {
        if changed == 0 {
            return Err(self.unknown(what, id));
        }
        Ok(())
    }

    fn unknown(&self, what: &'static str, id: i64) -> StoreError {
        StoreError::UnknownId {
            path: self.path.clone(),
            what,
            id,
        }
    }

    fn sql_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// Creates the missing directories above the store, private (`0700`): the
/// store holds request bodies, headers and SQL parameters.
fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(private::DIR_MODE)
            .create(dir)
            .map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            }),
        _ => Ok(()),
    }
}
