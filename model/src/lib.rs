//! Plain data that flows downstream: sampler/marker → join → store → renderers.
//! No I/O here.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A frame's text, shared: a walk copies a frame's three texts once per
/// sample, so they are reference-counted, never reallocated.
pub type Text = Arc<str>;

/// One Python frame. Frames compare by name, filename, short name, then
/// line.
#[derive(Clone, Debug, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Function name (`handler`, `<module>`).
    pub name: Text,
    /// Absolute filename as the interpreter reports it.
    pub filename: Text,
    /// Short, import-path-like filename for display (`fastapi/routing.py`).
    pub short: Text,
    /// Line number being executed; 0 if unknown.
    pub line: u32,
}

/// Samples per second while a request is in flight, unless the user says
/// otherwise (`--rate`): the sampler's default, the CLI's, and the rate a
/// reader assumes for a session that did not record one.
pub const DEFAULT_RATE_HZ: u32 = 1000;

/// The header `timeglass probe` tags each of its requests with
/// (`<run>-<n>`), so that its traffic is told from the app's own in the
/// store (its recorded request headers) and left out of coverage.
pub const PROBE_TAG_HEADER: &str = "x-timeglass-probe";

/// A recorded request that may be probe traffic, as the store reads it for
/// `timeglass probe` to match against what it sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeCandidate {
    pub id: i64,
    pub method: String,
    /// Percent-decoded, without the query (ASGI's `scope["path"]`).
    pub path: String,
    /// The raw query string, when request context was recorded.
    pub query: Option<String>,
    /// Milliseconds since the Unix epoch (stored to the millisecond).
    pub start_ms: i64,
    /// The value of [`PROBE_TAG_HEADER`], when request context was recorded.
    pub tag: Option<String>,
    pub status: Option<u16>,
}

/// Root frame of samples a request took after its response was sent
/// (BackgroundTasks): its background stage, apart from its response time.
pub const BACKGROUND_FRAME: &str = "[background]";

/// Prefix of the synthetic leaf frames standing for time spent waiting on a
/// SQL statement (`[sql] SELECT ... FROM items`).
pub const SQL_FRAME_PREFIX: &str = "[sql] ";
/// Prefix of the synthetic leaf frames standing for time spent waiting on an
/// outgoing HTTP call (`[http] GET api.example.com`).
pub const HTTP_FRAME_PREFIX: &str = "[http] ";

impl Frame {
    /// Whether both frames hold the very same texts: frames read from one
    /// store or walk share them, so equal frames are mostly told apart
    /// without reading their text (sorting a request's stacks compared the
    /// text of their shared prefix again and again).
    fn shares_texts(&self, other: &Frame) -> bool {
        self.line == other.line
            && Arc::ptr_eq(&self.name, &other.name)
            && Arc::ptr_eq(&self.filename, &other.filename)
            && Arc::ptr_eq(&self.short, &other.short)
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.shares_texts(other)
            || (self.line == other.line
                && self.name == other.name
                && self.filename == other.filename
                && self.short == other.short)
    }
}

impl Ord for Frame {
    fn cmp(&self, other: &Frame) -> std::cmp::Ordering {
        if self.shares_texts(other) {
            return std::cmp::Ordering::Equal;
        }
        (&self.name, &self.filename, &self.short, self.line).cmp(&(
            &other.name,
            &other.filename,
            &other.short,
            other.line,
        ))
    }
}

/// As derived, field by field: equal frames hash the same however their
/// texts are shared.
impl std::hash::Hash for Frame {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.filename.hash(state);
        self.short.hash(state);
        self.line.hash(state);
    }
}

impl PartialOrd for Frame {
    fn partial_cmp(&self, other: &Frame) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Frame {
    /// The label used in folded stacks and flame graphs: `name (short:line)`,
    /// the same form py-spy prints; just `name` for synthetic frames.
    pub fn label(&self) -> String {
        self.to_string()
    }

    /// A frame TimeGlass adds (`[background]`, later `[sql] ...`): a bracketed
    /// name and no file, so renderers can tell it from Python's and hide it.
    pub fn synthetic(name: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: "".into(),
            short: "".into(),
            line: 0,
        }
    }

    pub fn is_synthetic(&self) -> bool {
        self.filename.is_empty() && self.name.starts_with('[')
    }

    /// A synthetic frame for time spent waiting on a query or an HTTP call
    /// (not sampled: added from the marker's timings). Hide stacks ending in
    /// one to see only what was sampled.
    pub fn is_wait(&self) -> bool {
        self.is_synthetic()
            && (self.name.starts_with(SQL_FRAME_PREFIX) || self.name.starts_with(HTTP_FRAME_PREFIX))
    }

    /// A synthetic leaf that says what a request did instead of running
    /// Python: native code, blocked, awaiting, queued, waiting for the GIL.
    pub fn is_state(&self) -> bool {
        self.is_synthetic()
            && [
                NATIVE_FRAME,
                GC_FRAME,
                BLOCKED_FRAME,
                GIL_WAIT_FRAME,
                LOOP_BUSY_FRAME,
                WORKER_WAIT_FRAME,
            ]
            .contains(&&*self.name)
            || (self.is_synthetic() && self.name.starts_with(AWAIT_FRAME_PREFIX))
    }

    /// A leaf whose time was spent off the CPU: waits, blocked calls,
    /// awaits, queueing. A CPU-time view leaves the stacks ending in one out.
    pub fn is_off_cpu(&self) -> bool {
        self.is_wait() || (self.is_state() && ![NATIVE_FRAME, GC_FRAME].contains(&&*self.name))
    }

    /// `file:line in function`, the way a user looks for the line.
    pub fn location(&self) -> String {
        let file = if self.short.is_empty() {
            &self.filename
        } else {
            &self.short
        };
        format!("{file}:{} in {}", self.line, self.name)
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_synthetic() {
            return f.write_str(&self.name);
        }
        let file = if self.short.is_empty() {
            &self.filename
        } else {
            &self.short
        };
        if self.line > 0 {
            write!(f, "{} ({}:{})", self.name, file, self.line)
        } else {
            write!(f, "{} ({})", self.name, file)
        }
    }
}

/// A call stack, outermost frame first. Shared because many samples carry
/// the same stack.
pub type Stack = Arc<[Frame]>;

/// The frames of the code that issued a statement or call, innermost
/// first. Shared, as a [`Stack`] is: a line in a loop issues many.
pub type Caller = Arc<[Frame]>;

/// How far a sample can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quality {
    /// The thread's request slot did not change while the stack was read.
    Clean,
    /// The thread switched requests during the walk: the stack may belong
    /// to either. Counted on the request it was running when the walk began,
    /// never charged to it.
    Switched,
    /// The stack itself is damaged (cut short, or frames of two tasks mixed):
    /// never charged to a request.
    Torn,
}

/// What a request was doing at a sampled instant. Every in-flight request
/// is sampled at every tick in one of these states, so its samples account
/// for its whole wall time, not only the time it ran Python.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Running Python on a thread (it holds the GIL).
    #[default]
    Python,
    /// On a thread, without the GIL, on a CPU: native code that released
    /// the GIL (argon2, hashlib, zlib, numpy).
    Native,
    /// On a thread, without the GIL, off the CPU: a blocking call
    /// (`time.sleep`, file or socket I/O, a `threading.Lock`).
    Blocked,
    /// On a thread, waiting to take the GIL back.
    GilWait,
    /// Suspended at an `await`, its awaited object not done yet.
    Awaiting,
    /// Suspended but ready to resume: the event loop is busy with other
    /// work, or a sync call waits for a free worker thread.
    Queued,
}

impl State {
    /// Whether the request used a CPU in this state.
    pub fn on_cpu(self) -> bool {
        matches!(self, State::Python | State::Native)
    }
}

/// Leaf frame of a sample taken in native code that released the GIL.
pub const NATIVE_FRAME: &str = "[native, on CPU]";
/// Leaf frame of a sample taken while the garbage collector ran (on the
/// CPU, holding the GIL), under the code whose allocation triggered it.
pub const GC_FRAME: &str = "[gc]";
/// Leaf frame of a sample taken in a blocking call.
pub const BLOCKED_FRAME: &str = "[blocked]";
/// Leaf frame of a sample taken while the thread waited for the GIL.
pub const GIL_WAIT_FRAME: &str = "[waiting for the GIL]";
/// Prefix of the leaf frame of a request suspended at an await:
/// `[await]`, `[await asyncio.sleep]`, `[await asyncio.Lock]`.
pub const AWAIT_FRAME_PREFIX: &str = "[await";
/// Leaf frame of a request that could resume but the event loop was busy.
pub const LOOP_BUSY_FRAME: &str = "[ready, event loop busy]";
/// Leaf frame of a sync call waiting for a free thread-pool worker.
pub const WORKER_WAIT_FRAME: &str = "[waiting for a worker thread]";

/// One thread's (or one suspended request's) stack at one instant, charged
/// to a request (or to none). What the sampler hands the join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub pid: u32,
    /// Native thread id (0 if unknown, or for a suspended request, which is
    /// on no thread).
    pub tid: u32,
    /// `CLOCK_MONOTONIC` just before the walk.
    pub ts_ns: u64,
    /// The marker's id of the request the thread ran; 0 for none.
    pub request_id: u64,
    pub quality: Quality,
    /// What the request was doing: running Python, native, blocked, awaiting...
    pub state: State,
    /// The wall time this sample stands for: the time since the sampler's
    /// previous tick, capped at a few periods.
    pub interval_ns: u64,
    /// The thread slot's change counter before the walk: two samples of a
    /// thread with the same counter were taken within one step of the same
    /// request (it never yielded in between). 0 for suspended requests.
    pub slot_seq: u64,
    /// CPU time the thread used for this request in the interval, as the
    /// kernel counts it (exact when the thread ran only this request in the
    /// interval, else estimated from the state); 0 off the CPU.
    pub cpu_ns: u64,
    /// A garbage collection was running when the sample was taken (on
    /// this thread, which held the GIL), as the interpreter's collector
    /// state read from outside says.
    pub in_gc: bool,
    /// Collections that finished since the sampler's previous reading,
    /// charged to this sample's thread (the GIL holder's).
    pub gc_collections: u32,
    pub stack: Stack,
}

/// Where a request's wall time went, from its samples (each weighs the wall
/// time since the previous tick) and its timed queries and calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBreakdown {
    /// Running Python.
    pub python_ns: u64,
    /// Native code off the GIL, on a CPU.
    pub native_ns: u64,
    /// Blocking calls off the GIL (sleep, I/O, locks).
    pub blocked_ns: u64,
    /// Waiting for the GIL.
    pub gil_wait_ns: u64,
    /// Waiting on SQL statements (timed by the marker).
    pub sql_ns: u64,
    /// Waiting on outgoing HTTP calls (timed by the marker).
    pub http_ns: u64,
    /// Suspended at any other await.
    pub await_ns: u64,
    /// Ready but not running: event loop busy, or no free worker thread.
    pub queued_ns: u64,
    /// Garbage collection (timed by the marker): on the CPU, but not the
    /// app's Python.
    #[serde(default)]
    pub gc_ns: u64,
}

impl TimeBreakdown {
    /// CPU time: Python plus native code on a CPU, garbage collection included.
    pub fn cpu_ns(&self) -> u64 {
        self.python_ns + self.native_ns + self.gc_ns
    }

    /// Everything accounted for.
    pub fn total_ns(&self) -> u64 {
        self.python_ns
            + self.native_ns
            + self.blocked_ns
            + self.gil_wait_ns
            + self.sql_ns
            + self.http_ns
            + self.await_ns
            + self.queued_ns
            + self.gc_ns
    }

    /// Adds `ns` to the category of a sample in `state`.
    pub fn add(&mut self, state: State, ns: u64) {
        let slot = match state {
            State::Python => &mut self.python_ns,
            State::Native => &mut self.native_ns,
            State::Blocked => &mut self.blocked_ns,
            State::GilWait => &mut self.gil_wait_ns,
            State::Awaiting => &mut self.await_ns,
            State::Queued => &mut self.queued_ns,
        };
        *slot += ns;
    }
}

/// An `async def` request that held the event loop's thread without
/// yielding for longer than the threshold: every other request on that loop
/// waited meanwhile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopBlock {
    /// The longest stretch without yielding.
    pub blocked_ns: u64,
    /// When it began (monotonic ns).
    pub start_ns: u64,
    /// `file:line in function` of the app's line seen most while it blocked.
    pub line: Option<String>,
    /// Marker ids (same process) of the requests that were in flight on the
    /// same loop meanwhile and so were delayed.
    pub delayed: Vec<u64>,
}

/// One sample on a timeline: when it was taken, by which thread, in which
/// state, and which of its timeline's stacks it caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// `CLOCK_MONOTONIC` just before the walk.
    pub ts_ns: u64,
    /// Native thread id; 0 for a suspended request (read from its await
    /// chain, on no thread).
    pub tid: u32,
    pub state: State,
    /// Index of its stack in [`Timeline::stacks`].
    pub stack: u32,
}

/// Samples in the order they were taken, with the stacks they caught, each
/// stack once: where a profile's time went, when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub stacks: Vec<Stack>,
    /// In time order.
    pub ticks: Vec<Tick>,
}

impl Timeline {
    pub fn is_empty(&self) -> bool {
        self.ticks.is_empty()
    }
}

/// A stack with how many samples landed on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackCount {
    pub stack: Stack,
    pub samples: u64,
}

/// A request as the marker reported it, with times on the monotonic clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The id the marker gave it, unique within its process.
    pub marker_id: u64,
    pub pid: u32,
    /// Native thread id that received the request.
    pub tid: u32,
    pub method: String,
    pub path: String,
    /// Matched route template; `None` when nothing matched (404s).
    pub route: Option<String>,
    /// HTTP status sent; `None` if the app never sent a response start.
    pub status: Option<u16>,
    /// The app raised an exception out of the request.
    pub errored: bool,
    /// The request was cancelled (client disconnected).
    pub cancelled: bool,
    pub start_ns: u64,
    /// When the app's call returned (after any BackgroundTasks).
    pub end_ns: u64,
    /// When the last body chunk was sent; `None` if no response completed.
    pub response_end_ns: Option<u64>,
}

impl Request {
    /// What the client waited: until the last body chunk was sent (or the
    /// request ended, if it never was).
    pub fn duration_ns(&self) -> u64 {
        self.response_end_ns
            .unwrap_or(self.end_ns)
            .saturating_sub(self.start_ns)
    }

    /// Work after the response was sent (BackgroundTasks), if any.
    pub fn background_ns(&self) -> Option<u64> {
        self.response_end_ns.map(|r| self.end_ns.saturating_sub(r))
    }
}

/// A SQL statement a request ran, as the marker timed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlQuery {
    /// The statement, cut to a few KiB.
    pub sql: String,
    /// Length of the whole statement, in characters.
    pub sql_len: u64,
    /// Literals and parameters replaced by `?`, whitespace collapsed: the
    /// key that groups repeated statements.
    pub normalized: String,
    /// The parameters as Python `repr`s them, cut to a few KiB; `None` when
    /// not recorded.
    pub params: Option<String>,
    pub params_len: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Rows returned or affected, when the driver said.
    pub rows: Option<i64>,
    pub driver: String,
    /// `ExceptionType: message` when it raised.
    pub error: Option<String>,
    /// A few frames of the code that issued it, innermost first, starting at
    /// the app's own code when there is any. Shared by every statement
    /// issued from the same stack.
    pub caller: Caller,
    /// The whole issuing stack, outermost first: where its wait goes in the
    /// flame graph. Empty if unknown.
    pub stack: Stack,
}

/// An outgoing HTTP call a request made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    pub method: String,
    /// Secret-looking query values and passwords redacted.
    pub url: String,
    /// `None` when no response came.
    pub status: Option<u16>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: Option<String>,
    /// `httpx` or `requests`.
    pub library: String,
    /// As for [`SqlQuery::caller`].
    pub caller: Caller,
    pub stack: Stack,
}

impl SqlQuery {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

impl HttpCall {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// The same normalised statement run many times by one request: a likely N+1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repeated {
    pub normalized: String,
    pub count: u64,
    /// `file:line in function` of the app's line that ran it most often.
    pub caller: Option<String>,
}

/// A request with the samples charged to it: what the join hands the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfiledRequest {
    pub request: Request,
    /// Clean samples, aggregated per stack. Those taken after the response
    /// was sent sit under a [`BACKGROUND_FRAME`] root.
    pub stacks: Vec<StackCount>,
    /// `Quality::Switched` samples taken on this request's thread (not in `stacks`).
    pub switched_samples: u64,
    /// Torn samples taken on this request's thread while it ran (not in `stacks`).
    pub torn_samples: u64,
    /// Statements in the order they started.
    pub queries: Vec<SqlQuery>,
    /// Outgoing HTTP calls in the order they started.
    pub calls: Vec<HttpCall>,
    /// Time waited on queries and calls, in sample units (wall time x the
    /// sampling rate), as stacks ending in a synthetic `[sql]`/`[http]`
    /// frame under the frame that waited. Kept apart from `stacks`: these
    /// were timed, not sampled.
    pub waits: Vec<StackCount>,
    /// The most repeated statement, when it ran often enough to be a likely N+1.
    pub n_plus_one: Option<Repeated>,
    /// Headers, query string and body, if the marker published them.
    pub context: Option<RequestContext>,
    /// Where its wall time went.
    pub breakdown: TimeBreakdown,
    /// CPU time its threads used for it (Python and native code).
    pub cpu_ns: u64,
    /// Set when it held the event loop too long without yielding.
    pub loop_block: Option<LoopBlock>,
    /// Its end never came: its process died mid-request (`kill -9`, a
    /// crash) or recording stopped first. Kept with its samples so far.
    pub incomplete: bool,
    /// What the process's memory did while it ran.
    pub memory: Memory,
    /// Where it allocated, from the marker's sampled allocations: stacks
    /// weighed in bytes (not samples), those after the response under
    /// [`BACKGROUND_FRAME`]. Empty when allocations were not sampled.
    pub alloc_stacks: Vec<StackCount>,
    /// Its samples at the times they were taken, over the stacks of
    /// `stacks` (the same stacks, in the same order; waits are not samples).
    pub timeline: Timeline,
}

/// A request's memory: the process's resident memory (RSS) around it, read
/// by the recorder from outside. Under concurrency RSS moves for every
/// request in flight at once: it says how big the process was, not what this
/// request allocated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// RSS at the reading nearest its start (the last one before it, or the
    /// first after it when none came before); `None` when nothing was read.
    pub rss_start_bytes: Option<u64>,
    /// RSS at the reading nearest its end (the first one after it, or the
    /// last before it).
    pub rss_end_bytes: Option<u64>,
    /// The highest RSS read while it ran, its start and end readings included.
    pub rss_peak_bytes: Option<u64>,
    /// Bytes it allocated (the MEM and OBJ domains), estimated from the
    /// marker's sampled allocations; `None` when its process did not
    /// sample them (`timeglass run --memory`).
    pub alloc_bytes: Option<u64>,
    /// Garbage collections that ran on its threads while they ran it, and
    /// their summed pause (background stage included).
    pub gc_collections: u64,
    pub gc_pause_ns: u64,
}

/// What a request carried and what its response said, as the marker saw it.
/// Secrets (`Authorization`, cookies, API keys, body fields named like
/// password/token/secret) were redacted inside the app, before this.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    /// Request headers in the order received, names lowercased.
    pub request_headers: Vec<(String, String)>,
    /// The raw query string, without `?`.
    pub query: String,
    /// The first bytes of the body the app read (at most the marker's cap),
    /// as UTF-8 with invalid bytes replaced.
    pub body: String,
    /// How many body bytes the app read in all; more than `body` holds when
    /// the body was cut.
    pub body_bytes: u64,
    /// Response headers; empty if no response started.
    pub response_headers: Vec<(String, String)>,
    /// When the app started its response (monotonic ns): the end of the
    /// handler stage and the start of sending.
    pub response_start_ns: Option<u64>,
    /// When FastAPI called the endpoint function (monotonic ns): the end of
    /// the middleware-and-dependencies stage. `None` for apps that are not
    /// FastAPI and for requests that never reached an endpoint.
    pub handler_start_ns: Option<u64>,
}

impl ProfiledRequest {
    /// A request with only its marker data: no samples, queries or calls yet.
    pub fn new(request: Request) -> Self {
        ProfiledRequest {
            request,
            stacks: Vec::new(),
            switched_samples: 0,
            torn_samples: 0,
            queries: Vec::new(),
            calls: Vec::new(),
            waits: Vec::new(),
            n_plus_one: None,
            context: None,
            breakdown: TimeBreakdown::default(),
            cpu_ns: 0,
            loop_block: None,
            incomplete: false,
            memory: Memory::default(),
            alloc_stacks: Vec::new(),
            timeline: Timeline::default(),
        }
    }

    /// Samples taken (waits are not samples).
    pub fn samples(&self) -> u64 {
        self.stacks.iter().map(|s| s.samples).sum()
    }

    /// Summed durations of its queries (concurrent ones each count in full).
    pub fn db_ns(&self) -> u64 {
        self.queries.iter().map(SqlQuery::duration_ns).sum()
    }

    pub fn http_ns(&self) -> u64 {
        self.calls.iter().map(HttpCall::duration_ns).sum()
    }
}

/// The one order of a set of stacks: most samples first, then by frames, so
/// every reader and renderer lists the same stacks the same way.
pub fn sort_stacks(stacks: &mut [StackCount]) {
    stacks.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.stack.cmp(&b.stack))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, short: &str, line: u32) -> Frame {
        Frame {
            name: name.into(),
            filename: format!("/abs/{short}").into(),
            short: short.into(),
            line,
        }
    }

    #[test]
    fn stacks_sort_by_samples_then_frames() {
        let one = |name: &str, samples| StackCount {
            stack: vec![frame(name, "app.py", 1)].into(),
            samples,
        };
        let mut stacks = vec![one("b", 1), one("c", 5), one("a", 1)];
        sort_stacks(&mut stacks);
        let order: Vec<&str> = stacks.iter().map(|s| s.stack[0].name.as_ref()).collect();
        assert_eq!(order, ["c", "a", "b"]);
    }
}
