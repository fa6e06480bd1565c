//! Process-wide marker state: the ring file of this process and each thread's slot.
//!
//! The region is created once (or once more in a forked child) and then leaked,
//! so the hot path reaches it through one atomic load and every `ThreadSlot`
//! can be `'static`. A fork changes the pid: the child creates its own ring
//! file and bumps [`GENERATION`], which makes every thread re-claim its slot
//! in the new file instead of writing into the parent's.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;

use timeglass_wire::{env, Event, Geometry, Region, ThreadSlot};

/// The ring of this process; null when the marker is off or could not start.
static REGION: AtomicPtr<Region> = AtomicPtr::new(std::ptr::null_mut());
/// Bumped whenever `REGION` changes; thread slot caches compare against it.
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// Serialises region creation; holds whether creation was already attempted.
static INIT: Mutex<bool> = Mutex::new(false);
/// The "cannot start" warning is printed at most once per process.
static WARNED: AtomicBool = AtomicBool::new(false);

/// What the calling thread knows of itself: one thread-local, so a step of a
/// request looks it up once on the way in and once on the way out (a
/// `cdylib`'s thread-locals cost a `__tls_get_addr` call each).
#[derive(Clone, Copy)]
struct ThreadState {
    /// Generation of `slot`; 0 = not looked up yet.
    generation: u64,
    slot: Option<ThreadSlot<'static>>,
    /// Where the request this thread is stepping notes when FastAPI calls
    /// its endpoint (see [`as_request`]); null when no request is stepped,
    /// or a child task is.
    handler: *const AtomicU64,
}

thread_local! {
    static SLOT: Cell<ThreadState> = const {
        Cell::new(ThreadState { generation: 0, slot: None, handler: std::ptr::null() })
    };
    /// Its destructor gives the thread's slot back when the thread exits.
    static RELEASE_ON_EXIT: ReleaseOnExit = const { ReleaseOnExit };
}

struct ReleaseOnExit;

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        let generation = GENERATION.load(Ordering::Acquire);
        if let Ok(ThreadState {
            generation: cached,
            slot: Some(slot),
            ..
        }) = SLOT.try_with(Cell::get)
        {
            // A slot of an older generation lives in a ring this process no
            // longer owns (the parent's, after a fork): leave it alone.
            if cached == generation {
                slot.release();
            }
        }
    }
}

/// Changes whenever this process's ring does (a fork gives the child its own).
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The ring of this process, if the marker is running.
#[inline]
pub(crate) fn region() -> Option<&'static Region> {
    let ptr = REGION.load(Ordering::Acquire);
    // SAFETY: non-null pointers stored in REGION come from `Box::leak` and are never freed.
    unsafe { ptr.as_ref() }
}

/// Whether `TIMEGLASS_ENABLED=0` turned the marker off.
pub(crate) fn disabled_by_env() -> bool {
    std::env::var_os(env::ENABLED).is_some_and(|v| v == "0")
}

/// Creates this process's ring file unless that was already tried. Never fails:
/// a ring that cannot be created leaves the marker passing requests through.
pub(crate) fn ensure_region() -> Option<&'static Region> {
    if let Some(r) = region() {
        return Some(r);
    }
    let Ok(mut tried) = INIT.lock() else {
        return None;
    };
    if !*tried {
        *tried = true;
        install_new_region();
    }
    region()
}

fn install_new_region() {
    if disabled_by_env() {
        REGION.store(std::ptr::null_mut(), Ordering::Release);
        GENERATION.fetch_add(1, Ordering::AcqRel);
        return;
    }
    let dir = timeglass_wire::runtime_dir();
    let ptr = match Region::create(&dir, std::process::id(), Geometry::default()) {
        Ok(region) => Box::into_raw(Box::new(region)),
        Err(e) => {
            warn_once(&format!("{e}; requests pass through unrecorded"));
            std::ptr::null_mut()
        }
    };
    REGION.store(ptr, Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Prints one `timeglass: ...` line to stderr, once per process. Never panics.
pub(crate) fn warn_once(msg: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        let _ = writeln!(std::io::stderr(), "timeglass: {msg}");
    }
}

/// The calling thread's slot in the current ring, claimed on first use.
#[inline]
pub(crate) fn current_slot() -> Option<ThreadSlot<'static>> {
    SLOT.try_with(|cell| fresh(cell).slot).ok().flatten()
}

/// The thread's state with its slot claimed in the current ring.
#[inline]
fn fresh(cell: &Cell<ThreadState>) -> ThreadState {
    let generation = GENERATION.load(Ordering::Acquire);
    let state = cell.get();
    if state.generation == generation {
        return state;
    }
    let state = ThreadState {
        generation,
        slot: region().and_then(|r| r.claim_slot(gettid())),
        ..state
    };
    cell.set(state);
    // Registers the destructor; fails only while the thread is exiting.
    let _ = RELEASE_ON_EXIT.try_with(|_| ());
    state
}

/// Runs `f` with the calling thread's slot set to request `rid`, then puts
/// back what the slot held (the request this thread ran before, or 0).
#[inline]
pub(crate) fn as_request<R>(rid: u64, f: impl FnOnce() -> R) -> R {
    as_request_noting(rid, None, f)
}

/// [`as_request`], with `handler` (or nothing, for `None`) where
/// [`note_handler`] notes the endpoint call meanwhile.
#[inline]
pub(crate) fn as_request_noting<R>(
    rid: u64,
    handler: Option<&AtomicU64>,
    f: impl FnOnce() -> R,
) -> R {
    let handler = handler.map_or(std::ptr::null(), std::ptr::from_ref);
    let entered = SLOT.try_with(|cell| {
        let state = fresh(cell);
        cell.set(ThreadState { handler, ..state });
        (state.slot.map(|s| (s, s.set(rid))), state.handler)
    });
    let r = f();
    if let Ok((slot, outer_handler)) = entered {
        if let Some((s, prev)) = slot {
            s.set(prev);
        }
        let _ = SLOT.try_with(|cell| {
            cell.set(ThreadState {
                handler: outer_handler,
                ..cell.get()
            });
        });
    }
    r
}

/// FastAPI calls the endpoint of the request this thread steps: its time
/// goes where that request's step said (the first call only). `false` when
/// the step named no place (a child task, or no request): the caller then
/// publishes it as an event of its own.
pub(crate) fn note_handler(ts_ns: u64) -> bool {
    let handler = SLOT.try_with(|cell| cell.get().handler);
    match handler {
        Ok(ptr) if !ptr.is_null() => {
            // SAFETY: set by `as_request_noting` from a reference that lives
            // for the whole step, and reset when the step ends: a non-null
            // pointer read during a step points at that step's cell.
            let cell = unsafe { &*ptr };
            let _ = cell.compare_exchange(0, ts_ns, Ordering::Relaxed, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}

/// Forks seen by this process, so that a thread id cached before a fork is
/// not trusted after it (the forking thread has a new id in the child).
static FORKS: AtomicU64 = AtomicU64::new(0);

/// Native thread id of the calling thread, asked of the kernel once per
/// thread (and again after a fork): every request's start event carries it,
/// and a system call per request is measurable on a trivial endpoint.
pub(crate) fn gettid() -> u32 {
    thread_local! {
        static TID: Cell<(u64, u32)> = const { Cell::new((u64::MAX, 0)) };
    }
    let forks = FORKS.load(Ordering::Relaxed);
    TID.try_with(|cell| {
        let (seen, tid) = cell.get();
        if seen == forks {
            return tid;
        }
        let tid = raw_gettid();
        cell.set((forks, tid));
        tid
    })
    .unwrap_or_else(|_| raw_gettid())
}

fn raw_gettid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Publishes one event; counts it as dropped if the ring refuses it.
pub(crate) fn publish(region: &Region, event: &impl Encode) {
    thread_local! {
        /// Every statement publishes an event: one encoding buffer per thread.
        static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    }
    let send = |buf: &mut Vec<u8>| {
        let kind = event.encode(buf);
        region.publish(kind, buf);
    };
    // A thread being torn down has no buffer left: it gets a fresh one.
    let sent = BUF
        .try_with(|buf| buf.try_borrow_mut().map(|mut buf| send(&mut buf)).is_ok())
        .unwrap_or(false);
    if !sent {
        send(&mut Vec::with_capacity(256));
    }
}

/// Publishes the record that `write` puts in the thread's encoding buffer
/// (it returns the record's kind), counted as dropped if the ring refuses it.
pub(crate) fn publish_with(region: &Region, write: impl FnOnce(&mut Vec<u8>) -> u16) {
    publish(region, &Direct(std::cell::Cell::new(Some(write))));
}

/// Encodes itself: a record written by a closure instead of an [`Event`].
pub(crate) trait Encode {
    fn encode(&self, buf: &mut Vec<u8>) -> u16;
}

impl Encode for Event {
    fn encode(&self, buf: &mut Vec<u8>) -> u16 {
        Event::encode(self, buf)
    }
}

struct Direct<F>(std::cell::Cell<Option<F>>);

impl<F: FnOnce(&mut Vec<u8>) -> u16> Encode for Direct<F> {
    fn encode(&self, buf: &mut Vec<u8>) -> u16 {
        match self.0.take() {
            Some(write) => write(buf),
            None => 0,
        }
    }
}

/// `os.register_at_fork(after_in_child=...)`: a child of a marked process gets
/// its own ring file (the inherited mapping is the parent's).
pub(crate) fn after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
    let Some(old) = region() else {
        return;
    };
    if old.pid() == std::process::id() {
        return;
    }
    // The lock may have been held by another thread of the parent at fork
    // time; creation in the child is single-threaded anyway.
    install_new_region();
}

/// `atexit`, and the app's lifespan shutdown: removes this process's ring
/// file. A reader keeps its mapping.
pub(crate) fn remove_ring_file() {
    if let Some(r) = region() {
        if r.pid() == std::process::id() {
            let _ = std::fs::remove_file(r.path());
        }
    }
}
