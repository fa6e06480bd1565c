//! The recorder: everything between the app and the store.
//!
//! One thread per marked process runs a [`Sampler`] against it; one writer
//! thread owns the [`Join`] and the [`Store`]: it discovers ring files,
//! drains their events, takes the samplers' batches, and every 100 ms writes
//! the requests that are complete. SQLite is only ever touched from that
//! thread.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod machine;
pub mod resources;
mod whole;
mod worker;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Process inspection, for the CLI too: one module reads `/proc`.
pub use timeglass_sampler::procfs;
pub use timeglass_sampler::{PySpyOptions, SamplerOptions, SourceError, SUPPORTED_PYTHONS};
pub use timeglass_store::ProcessExit;
use timeglass_store::{SessionId, Store, StoreError};
pub use writer::HISTORY;

/// Which processes to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Every process with a ring file in the runtime directory (`run`: the
    /// directory is private to the session).
    Directory,
    /// Only `root` and its descendants (`attach`: the directory is shared by
    /// every marked app of the user). Rings the markers wrote in the last
    /// [`HISTORY`] before recording started are read too. While none of them
    /// has a marker, each Python process of the tree is sampled as a whole.
    Tree { root: u32 },
}

/// How to record.
#[derive(Clone, Debug)]
pub struct RecorderOptions {
    /// Where the marked processes create their `<pid>.ring` files.
    pub runtime_dir: PathBuf,
    pub follow: Follow,
    pub sampler: SamplerOptions,
    pub pyspy: PySpyOptions,
    /// A request running one normalised statement this many times or more
    /// is flagged as a likely N+1 ([`defaults::N_PLUS_ONE`] by default).
    pub n_plus_one: u64,
    /// An `async def` request holding the event loop this long without
    /// yielding is flagged ([`defaults::LOOP_BLOCK_MS`] by default).
    pub loop_block_ms: u64,
}

pub use timeglass_join::defaults;

/// Things worth telling the user while recording, one line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A marked process was found and is being sampled.
    Attached { pid: u32, python_version: String },
    /// A marked process was found but cannot be sampled: its requests are
    /// recorded without stacks.
    AttachFailed { pid: u32, error: String },
    /// A process without a marker is sampled as a whole: its samples are
    /// stored outside any request.
    Unmarked { pid: u32 },
    /// A process sampled as a whole started its marker: its requests are
    /// recorded from now on.
    Marked { pid: u32 },
    /// A sampled process went away; everything it sent is stored.
    Exited { pid: u32, requests: u64 },
    /// A process died without exiting cleanly (killed, crashed); the requests
    /// it had in flight are stored as cancelled.
    Crashed { pid: u32, requests: u64 },
    /// A ring file was refused (another user's, or open to other users);
    /// that process is not recorded.
    Refused { pid: u32, error: String },
    /// Writing to the store failed; recording goes on in memory and is
    /// retried. Said once until [`Notice::StoreRecovered`].
    StoreFailed { error: String },
    /// Writing works again; `unstored` requests were dropped meanwhile
    /// (more were waiting than the recorder keeps in memory).
    StoreRecovered { unstored: u64 },
}

/// What a finished recording amounts to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub processes: u64,
    /// Pids of the processes that crashed, in the order they did.
    pub crashed: Vec<u32>,
    pub requests: u64,
    /// Samples charged to requests.
    pub request_samples: u64,
    /// Samples taken outside any request.
    pub outside_samples: u64,
    pub torn_samples: u64,
    /// Samples whose slot and whose request's time window disagreed.
    pub out_of_window: u64,
    /// Whole walks that failed (non-atomic reads racing the interpreter).
    pub failed_walks: u64,
    /// Ring slots lost before they were read, plus events the marker dropped.
    pub lost_events: u64,
    /// Requests dropped because the store could not be written for long.
    pub unstored_requests: u64,
    /// Request threads' CPU time, and their time waiting for a CPU meanwhile.
    pub threads_cpu_ns: u64,
    pub threads_wait_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the recorder's writer thread crashed; what it had written so far is in the store")]
    Crashed,
}

/// Live counters the CLI may look at while recording.
#[derive(Default)]
pub struct Progress {
    pub processes: AtomicU64,
    pub requests: AtomicU64,
}

pub type NoticeFn = Box<dyn Fn(Notice) + Send>;

/// Attaches the sampler to `pid` once and lets go, to learn before
/// recording whether it can read that process; returns its Python version.
pub fn probe(pid: u32, options: PySpyOptions) -> Result<String, SourceError> {
    worker::attach(pid, options).map(|source| source.python_version())
}

/// A running recorder.
pub struct Recorder {
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    writer: JoinHandle<Result<(Summary, Store), RecorderError>>,
}

impl Recorder {
    /// Starts recording into `session` of `store`.
    pub fn start(
        store: Store,
        session: SessionId,
        options: RecorderOptions,
        notify: NoticeFn,
    ) -> Recorder {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let writer = writer::Writer::new(
            store,
            session,
            options,
            notify,
            stop.clone(),
            progress.clone(),
        );
        let writer = std::thread::Builder::new()
            .name("timeglass-writer".into())
            .spawn(move || writer.run())
            .expect("spawning a thread");
        Recorder {
            stop,
            progress,
            writer,
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Marked processes seen so far.
    pub fn processes_seen(&self) -> u64 {
        self.progress.processes.load(Ordering::Relaxed)
    }

    /// Stops sampling, drains every ring, stores everything and returns the
    /// totals and the store. Nothing recorded is dropped.
    pub fn stop(self) -> Result<(Summary, Store), RecorderError> {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.join().map_err(|_| RecorderError::Crashed)?
    }
}
