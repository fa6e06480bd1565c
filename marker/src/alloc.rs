//! Sampled allocations, per request: a wrapper around CPython's allocators
//! of the `PyMem_Malloc` (MEM) and `PyObject_Malloc` (OBJ) domains.
//!
//! Every allocation adds its size to its thread's byte count. Sampling
//! points are Poisson-spaced, [`MEAN_INTERVAL`] bytes apart on average: the
//! allocation that crosses one takes the thread's Python stack and publishes
//! one ring event charging every byte the thread allocated since its last
//! sample to that stack and to the request in the thread's slot (the
//! technique of sampling heap profilers, Datadog's memalloc among them). A
//! realloc counts its new size, as memalloc does. What the app gets back is
//! always what the wrapped allocator returned; nothing else changes.
//!
//! Re-entrancy: taking the stack allocates (frame objects on 3.11+, names
//! of new code objects), so a per-thread guard is up meanwhile and every
//! allocation made under it is passed through uncounted. The GIL is held in
//! both domains (the API requires it), so the stack walk is safe; it is
//! skipped in sub-interpreters and once the interpreter is shutting down.

use std::cell::Cell;
use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use timeglass_wire::{env, monotonic_ns, Alloc, Event};

use crate::{stack, state};

/// Mean distance between samples, in bytes allocated by a thread.
pub(crate) const MEAN_INTERVAL: f64 = 512.0 * 1024.0;

/// `PyMemAllocatorEx` (Include/cpython/pymem.h), the same in 3.5 to 3.13.
#[repr(C)]
#[derive(Clone, Copy)]
struct Allocator {
    ctx: *mut c_void,
    malloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
    calloc: unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void,
    realloc: unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void, *mut c_void),
}

/// `PyMemAllocatorDomain`.
const DOMAIN_MEM: c_int = 1;
const DOMAIN_OBJ: c_int = 2;

type GetSet = unsafe extern "C" fn(c_int, *mut Allocator);

/// Whether samples are taken (installed, not shutting down).
static ON: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The interpreter the wrapper was installed from: the only one sampled.
static MAIN: AtomicPtr<ffi::PyInterpreterState> = AtomicPtr::new(std::ptr::null_mut());

/// One thread's count. `const`-initialised without a destructor, so it is
/// there for every thread, including those started before the install and
/// while a thread is torn down.
struct Counter {
    /// Bytes until the next sampling point; 0 before the thread's first allocation.
    left: Cell<usize>,
    /// Bytes allocated since the last sample.
    since: Cell<usize>,
    /// Taking a sample: allocations pass through uncounted.
    guard: Cell<bool>,
    rng: Cell<u64>,
}

thread_local! {
    static COUNTER: Counter = const {
        Counter {
            left: Cell::new(0),
            since: Cell::new(0),
            guard: Cell::new(false),
            rng: Cell::new(0),
        }
    };
}

#[inline]
fn count(size: usize) {
    COUNTER.with(|c| {
        if c.guard.get() {
            return;
        }
        let left = c.left.get();
        if left > size {
            c.left.set(left - size);
            c.since.set(c.since.get() + size);
            return;
        }
        crossed(c, size);
    });
}

/// The allocation of `size` bytes reached the thread's sampling point.
#[cold]
fn crossed(c: &Counter, size: usize) {
    let first = c.left.get() == 0 && c.since.get() == 0;
    let bytes = c.since.get() + size;
    c.since.set(0);
    c.left.set(interval(c));
    if first || !ON.load(Ordering::Relaxed) {
        return;
    }
    c.guard.set(true);
    sample(bytes as u64);
    c.guard.set(false);
}

/// An exponentially distributed distance, at least one byte (xorshift64*).
fn interval(c: &Counter) -> usize {
    let mut x = c.rng.get();
    if x == 0 {
        x = monotonic_ns() ^ (u64::from(state::gettid()) << 32) | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c.rng.set(x);
    let unit = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
    (-(1.0 - unit).ln() * MEAN_INTERVAL).max(1.0) as usize
}

/// Charges `bytes` to the current stack and request, if there is one.
fn sample(bytes: u64) {
    let Some(region) = state::region() else {
        return;
    };
    let rid = state::current_slot().map_or(0, |s| s.get());
    if rid == 0 {
        return;
    }
    // SAFETY: the MEM and OBJ domains are only called with the GIL held.
    let interp = unsafe { ffi::PyInterpreterState_Get() };
    if interp != MAIN.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: as above; the stack walk runs with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let (mut kind, mut value, mut trace) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    // The allocation may come while an exception is being raised: the walk
    // must leave the interpreter's error indicator as it found it.
    // SAFETY: GIL held; the three pointers are restored below.
    unsafe { ffi::PyErr_Fetch(&mut kind, &mut value, &mut trace) };
    // On 3.10 and 3.11 an allocation runs a due collection at once (3.12 and
    // later only schedule one), and reading the stack makes frame objects: a
    // collection started from inside the allocator would traverse the object
    // being built around this allocation (seen: segfaults in
    // `deque_traverse` and `_PyObject_IS_GC` under `--memory`). Collections
    // stay off while the stack is read, and come back as they were.
    // SAFETY: GIL held; neither call allocates or raises.
    let collecting = unsafe { ffi::PyGC_Disable() };
    let found = stack::capture(py, region, None);
    if collecting != 0 {
        // SAFETY: as above.
        unsafe { ffi::PyGC_Enable() };
    }
    // SAFETY: puts back exactly what was fetched (and drops any error the walk left).
    unsafe {
        ffi::PyErr_Clear();
        ffi::PyErr_Restore(kind, value, trace);
    }
    let event = Event::Alloc(Alloc {
        request_id: rid,
        tid: state::gettid(),
        ts_ns: monotonic_ns(),
        bytes,
        stack: found,
    });
    state::publish(region, &event);
}

/// The wrapped allocators, by domain; written once, before the wrapper is set.
static mut WRAPPED: [Option<Allocator>; 3] = [None; 3];

/// # Safety
/// `ctx` is the address of the domain's entry in [`WRAPPED`].
unsafe fn inner(ctx: *mut c_void) -> &'static Allocator {
    // SAFETY: set by `install` to a filled entry that never changes again.
    unsafe {
        (*ctx.cast::<Option<Allocator>>())
            .as_ref()
            .unwrap_unchecked()
    }
}

unsafe extern "C" fn malloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: `ctx` is ours (see `install`).
    let a = unsafe { inner(ctx) };
    // SAFETY: forwarding the caller's own arguments to the wrapped allocator.
    let p = unsafe { (a.malloc)(a.ctx, size) };
    if !p.is_null() {
        count(size);
    }
    p
}

unsafe extern "C" fn calloc(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    // SAFETY: as in `malloc`.
    let a = unsafe { inner(ctx) };
    // SAFETY: as in `malloc`.
    let p = unsafe { (a.calloc)(a.ctx, nelem, elsize) };
    if !p.is_null() {
        count(nelem.saturating_mul(elsize));
    }
    p
}

unsafe extern "C" fn realloc(ctx: *mut c_void, ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: as in `malloc`.
    let a = unsafe { inner(ctx) };
    // SAFETY: as in `malloc`.
    let p = unsafe { (a.realloc)(a.ctx, ptr, size) };
    if !p.is_null() {
        count(size);
    }
    p
}

unsafe extern "C" fn free(ctx: *mut c_void, ptr: *mut c_void) {
    // SAFETY: as in `malloc`.
    let a = unsafe { inner(ctx) };
    // SAFETY: as in `malloc`.
    unsafe { (a.free)(a.ctx, ptr) }
}

fn symbol(name: &CStr) -> Option<GetSet> {
    // SAFETY: dlsym on the process's global symbols with a NUL-terminated name.
    let ptr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    // SAFETY: both functions are `void f(PyMemAllocatorDomain, PyMemAllocatorEx *)`.
    (!ptr.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, GetSet>(ptr) })
}

/// Why the wrapper was not installed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotInstalled {
    Unsupported(String),
    Wrapped,
}

/// Installs the wrapper on both domains, once per process. Called with
/// the GIL held, from the main interpreter.
fn install(py: Python<'_>) -> Result<(), NotInstalled> {
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    let version = py.version_info();
    if (version.major, version.minor) < (3, 10) || (version.major, version.minor) > (3, 13) {
        return Err(NotInstalled::Unsupported(format!(
            "CPython {}.{}",
            version.major, version.minor
        )));
    }
    let gil_disabled = py
        .import("sysconfig")
        .and_then(|s| s.call_method1("get_config_var", ("Py_GIL_DISABLED",)))
        .is_ok_and(|v| v.is_truthy().unwrap_or(false));
    if gil_disabled {
        return Err(NotInstalled::Unsupported("a free-threaded build".into()));
    }
    let tracing = py
        .import("tracemalloc")
        .and_then(|t| t.call_method0("is_tracing"))
        .is_ok_and(|v| v.is_truthy().unwrap_or(false));
    let (Some(get), Some(set)) = (symbol(c"PyMem_GetAllocator"), symbol(c"PyMem_SetAllocator"))
    else {
        return Err(NotInstalled::Unsupported("no PyMem_SetAllocator".into()));
    };
    let mut current = [None; 3];
    for domain in [DOMAIN_MEM, DOMAIN_OBJ] {
        let mut a = std::mem::MaybeUninit::<Allocator>::uninit();
        // SAFETY: fills the whole struct, GIL held.
        unsafe { get(domain, a.as_mut_ptr()) };
        // SAFETY: filled above.
        let a = unsafe { a.assume_init() };
        // CPython's own allocators (pymalloc, malloc) have no context;
        // tracemalloc, the debug hooks and other profilers' wrappers do.
        if !a.ctx.is_null() || tracing {
            return Err(NotInstalled::Wrapped);
        }
        current[domain as usize] = Some(a);
    }
    // SAFETY: written once, before any wrapper that reads it is installed,
    // with the GIL held (INSTALLED keeps a second install out).
    let wrapped = unsafe {
        WRAPPED = current;
        &raw mut WRAPPED
    };
    // SAFETY: the main interpreter is the one we run in (checked by the caller).
    MAIN.store(unsafe { ffi::PyInterpreterState_Get() }, Ordering::Relaxed);
    for domain in [DOMAIN_MEM, DOMAIN_OBJ] {
        let mut ours = Allocator {
            // SAFETY: a field of a static, which lives for the process.
            ctx: unsafe { (&raw mut (*wrapped)[domain as usize]).cast() },
            malloc,
            calloc,
            realloc,
            free,
        };
        // SAFETY: `ours` wraps the allocator just read; GIL held.
        unsafe { set(domain, &mut ours) };
    }
    INSTALLED.store(true, Ordering::Release);
    ON.store(true, Ordering::Release);
    Ok(())
}

/// `_native.memory_stop()`, registered with `atexit`: no samples while the
/// interpreter shuts down (the wrapper stays, passing everything through).
#[pyfunction]
pub(crate) fn memory_stop() {
    ON.store(false, Ordering::Release);
}

/// `_native.memory_sampling()`: whether allocations are being sampled.
#[pyfunction]
pub(crate) fn memory_sampling() -> bool {
    ON.load(Ordering::Acquire)
}

/// Whether `TIMEGLASS_MEMORY` asks for allocation sampling (`1`; off
/// otherwise: see the README for its cost).
fn wanted() -> bool {
    std::env::var_os(env::MEMORY).is_some_and(|v| v == "1")
}

/// At import: installs the wrapper when asked to and the marker is on;
/// says once on stderr why it could not, and carries on without it.
pub(crate) fn install_from_env(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(memory_stop, m)?)?;
    m.add_function(wrap_pyfunction!(memory_sampling, m)?)?;
    if !wanted() || state::disabled_by_env() {
        return Ok(());
    }
    let py = m.py();
    if !is_main_interpreter() {
        return Ok(());
    }
    match install(py) {
        Ok(()) => {
            stack::ensure_configured();
            py.import("atexit")?
                .call_method1("register", (m.getattr("memory_stop")?,))?;
        }
        Err(NotInstalled::Wrapped) => state::warn_once(
            "memory: another allocator wrapper is installed (tracemalloc, PYTHONMALLOC=debug \
             or another profiler); requests are recorded without allocation samples",
        ),
        Err(NotInstalled::Unsupported(what)) => state::warn_once(&format!(
            "memory: allocation sampling does not support {what}; requests are recorded \
             without allocation samples"
        )),
    }
    Ok(())
}

fn is_main_interpreter() -> bool {
    type Main = unsafe extern "C" fn() -> *mut ffi::PyInterpreterState;
    // SAFETY: dlsym on the process's global symbols with a NUL-terminated name.
    let ptr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"PyInterpreterState_Main".as_ptr()) };
    if ptr.is_null() {
        return false;
    }
    // SAFETY: `PyInterpreterState *PyInterpreterState_Main(void)` since 3.8.
    let main = unsafe { std::mem::transmute::<*mut c_void, Main>(ptr)() };
    // SAFETY: the GIL is held (module initialisation).
    main == unsafe { ffi::PyInterpreterState_Get() }
}
