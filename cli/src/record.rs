//! What `run` and `attach` share: a session in the store, the recorder and
//! its options, the lines printed while recording, and the summary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use timeglass_recorder::machine::Counters;
use timeglass_recorder::{
    Follow, Notice, PySpyOptions, Recorder, RecorderOptions, SamplerOptions, Summary,
};
use timeglass_store::{ClockMap, NewSession, SessionEnd, SessionId, Store};
use timeglass_wire::monotonic_ns;

use crate::args::RecordArgs;
use crate::failure::{Failure, Result};

/// What a recording is of.
pub(crate) struct Target {
    /// The app's command line, as the session shows it.
    pub command: Vec<String>,
    pub cwd: String,
    /// Where its markers create their ring files.
    pub runtime_dir: PathBuf,
    pub follow: Follow,
}

/// A session being recorded.
pub(crate) struct Recording {
    recorder: Recorder,
    session: SessionId,
    db: PathBuf,
    /// The machine's load counters when recording began.
    machine: Counters,
}

/// The sampler's options from the command line.
pub(crate) fn pyspy_options(args: &RecordArgs) -> PySpyOptions {
    PySpyOptions {
        gil_only: !args.all_threads,
        lines: true,
        pyspy_walker: args.pyspy_walker,
    }
}

impl Recording {
    /// Begins a session in `store` and starts recording `target` into it.
    pub(crate) fn start(args: &RecordArgs, mut store: Store, target: Target) -> Result<Recording> {
        let session = store.begin_session(&NewSession {
            command: target.command,
            cwd: target.cwd,
            rate_hz: args.rate,
            clock: clock_now(),
        })?;
        // A comparison refuses sessions sampled in different modes.
        let mode = if args.gil_only_samples {
            "gil-only"
        } else {
            "wall"
        };
        store.set_sample_mode(session, mode)?;
        store.set_recorder(session)?;
        let options = RecorderOptions {
            runtime_dir: target.runtime_dir,
            follow: target.follow,
            sampler: SamplerOptions {
                rate_hz: args.rate,
                idle_hz: args.idle_rate,
                wall_clock: !args.gil_only_samples,
            },
            pyspy: pyspy_options(args),
            n_plus_one: args.n_plus_one,
            loop_block_ms: args.loop_block_ms,
        };
        let rate = args.rate;
        let hinted = AtomicBool::new(false);
        let recorder = Recorder::start(
            store,
            session,
            options,
            Box::new(move |n| print_notice(&n, rate, &hinted)),
        );
        Ok(Recording {
            recorder,
            session,
            db: args.db.db.clone(),
            machine: Counters::read(),
        })
    }

    pub(crate) fn session(&self) -> SessionId {
        self.session
    }

    /// Processes found so far.
    pub(crate) fn processes_seen(&self) -> u64 {
        self.recorder.processes_seen()
    }

    /// Stops recording, stores everything and ends the session.
    pub(crate) fn finish(self, exit_code: Option<i32>) -> Result<Summary> {
        let mut load = self.machine.until(&Counters::read());
        let (summary, mut store) = self.recorder.stop().map_err(|e| Failure::error(&e))?;
        load.app_wait = timeglass_recorder::machine::app_wait(&summary);
        store.end_session(
            self.session,
            &SessionEnd {
                exit_code,
                samples: summary.request_samples + summary.outside_samples,
                torn_samples: summary.torn_samples,
                lost_events: summary.lost_events,
                load,
            },
        )?;
        if summary.unstored_requests > 0 {
            store.add_lost_requests(self.session, summary.unstored_requests)?;
        }
        Ok(summary)
    }

    pub(crate) fn db(&self) -> &Path {
        &self.db
    }
}

/// The monotonic and the wall clock read together: dates the marker's times.
fn clock_now() -> ClockMap {
    let unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    ClockMap {
        mono_ns: monotonic_ns(),
        unix_ns,
    }
}

/// One line per notice. How to get per-request data is said once, however
/// many unmarked processes there are.
fn print_notice(notice: &Notice, rate: u32, hinted: &AtomicBool) {
    match notice {
        Notice::Attached {
            pid,
            python_version,
        } => {
            eprintln!("timeglass: sampling process {pid} (Python {python_version}) at {rate} Hz");
        }
        Notice::AttachFailed { pid, error } => {
            eprintln!("timeglass: warning: process {pid} is recorded without stacks: {error}");
        }
        Notice::Unmarked { pid } => {
            if !hinted.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "timeglass: process {pid} has no TimeGlass marker, so only a whole-process profile is recorded; for per-request data add `app.add_middleware(TimeGlassMiddleware)` (`from timeglass import TimeGlassMiddleware`) and restart the app, or start it with `timeglass run`"
                );
            }
        }
        Notice::Marked { pid } => {
            eprintln!("timeglass: process {pid} started its marker: recording its requests");
        }
        Notice::Crashed { pid, requests } => eprintln!(
            "timeglass: warning: process {pid} died without exiting cleanly after {requests} requests; its supervisor may start a new one"
        ),
        Notice::Exited { .. } => {}
        Notice::Refused { pid, error } => {
            eprintln!("timeglass: warning: process {pid} is not recorded: {error}");
        }
        Notice::StoreFailed { error } => eprintln!(
            "timeglass: warning: writing the store failed: {error}; the app is not affected, requests are kept in memory and written when it works again (is the disk full?)"
        ),
        Notice::StoreRecovered { unstored: 0 } => {
            eprintln!("timeglass: writing the store works again; nothing was lost");
        }
        Notice::StoreRecovered { unstored } => eprintln!(
            "timeglass: writing the store works again; {unstored} requests could not be kept meanwhile"
        ),
    }
}

pub(crate) fn print_summary(summary: &Summary, recording_db: &Path, session: SessionId) {
    let processes = match summary.processes {
        1 => "1 process".to_string(),
        n => format!("{n} processes"),
    };
    let db = recording_db.display();
    if summary.requests == 0 && summary.outside_samples > 0 {
        eprintln!(
            "timeglass: recorded a whole-process profile ({} samples) from {processes} into `{db}`; export it with `timeglass export --session {}`",
            summary.outside_samples, session.0
        );
    } else {
        eprintln!(
            "timeglass: recorded {} requests ({} samples in requests, {} outside) from {processes} into `{db}`; list them with `timeglass requests`",
            summary.requests, summary.request_samples, summary.outside_samples,
        );
    }
    if !summary.crashed.is_empty() {
        let pids: Vec<String> = summary.crashed.iter().map(u32::to_string).collect();
        eprintln!(
            "timeglass: warning: {} worker process(es) crashed: {}; `timeglass sessions` shows them",
            pids.len(),
            pids.join(", ")
        );
    }
    if summary.unstored_requests > 0 {
        eprintln!(
            "timeglass: warning: {} requests were not stored because the store could not be written",
            summary.unstored_requests
        );
    }
    if summary.lost_events > 0 {
        eprintln!(
            "timeglass: warning: {} marker events were lost before they could be read (the recorder fell behind)",
            summary.lost_events
        );
    }
}
