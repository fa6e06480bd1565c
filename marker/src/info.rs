//! What the app can see of its own request: `request.scope["timeglass"]`
//! (and `request.state.timeglass`) is a [`RequestInfo`], with the request's
//! id and the dashboard address of its profile; and, with
//! `TimeGlassMiddleware(app, server_timing=True)`, the figures of the
//! `Server-Timing` header.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use timeglass_wire::env;

/// Where `timeglass ui` listens when not told otherwise (`timeglass_server::defaults::PORT`).
const DEFAULT_UI: &str = "http://127.0.0.1:7477";

/// `request.scope["timeglass"]`: the recorded request, as the app sees it.
#[pyclass(module = "timeglass._native", frozen)]
pub struct RequestInfo {
    rid: u64,
    pid: u32,
}

impl RequestInfo {
    pub fn new(rid: u64) -> Self {
        RequestInfo {
            rid,
            pid: std::process::id(),
        }
    }
}

#[pymethods]
impl RequestInfo {
    /// The request's id in this process (what `X-TimeGlass-Request` says).
    #[getter]
    fn id(&self) -> u64 {
        self.rid
    }

    /// The process that served it.
    #[getter]
    fn pid(&self) -> u32 {
        self.pid
    }

    /// Its profile on the dashboard (`timeglass ui`; `TIMEGLASS_UI_URL` when
    /// the dashboard listens elsewhere), once the recorder has stored it.
    #[getter]
    fn url(&self) -> String {
        let base = std::env::var(env::UI_URL).unwrap_or_else(|_| DEFAULT_UI.to_owned());
        format!(
            "{}/requests/by-marker/{}/{}",
            base.trim_end_matches('/'),
            self.pid,
            self.rid
        )
    }

    fn __repr__(&self) -> String {
        format!("<timeglass request {} of process {}>", self.rid, self.pid)
    }
}

/// Puts `info` at `scope["timeglass"]` and in the request's state
/// (`scope["state"]`, which Starlette's `request.state` reads). Never fails
/// the request: a scope that refuses is left as it is.
pub(crate) fn attach(scope: &Bound<'_, PyDict>, info: &Bound<'_, RequestInfo>) -> bool {
    let py = scope.py();
    if scope.set_item(intern!(py, "timeglass"), info).is_err() {
        return false;
    }
    let state = match scope.get_item(intern!(py, "state")) {
        Ok(Some(state)) => state.cast_into::<PyDict>().ok(),
        Ok(None) => {
            let state = PyDict::new(py);
            scope
                .set_item(intern!(py, "state"), &state)
                .ok()
                .map(|_| state)
        }
        Err(_) => None,
    };
    if let Some(state) = state {
        let _ = state.set_item(intern!(py, "timeglass"), info);
    }
    true
}

/// The running figures of one request whose response gets `Server-Timing`.
pub struct Timing {
    start_ns: u64,
    /// CPU time of the request's coroutine steps so far.
    cpu_ns: AtomicU64,
    /// The thread's CPU clock when the current step began.
    step_cpu: AtomicU64,
}

impl Timing {
    pub fn new(rid: u64) -> Timing {
        DB_ANY.store(true, Ordering::Relaxed);
        if let Ok(mut db) = DB_NS.lock() {
            db.insert(rid, 0);
        }
        Timing {
            start_ns: timeglass_wire::monotonic_ns(),
            cpu_ns: AtomicU64::new(0),
            step_cpu: AtomicU64::new(0),
        }
    }

    pub fn step_begins(&self) {
        self.step_cpu.store(thread_cpu_ns(), Ordering::Relaxed);
    }

    pub fn step_ends(&self) {
        let spent = thread_cpu_ns().saturating_sub(self.step_cpu.load(Ordering::Relaxed));
        self.cpu_ns.fetch_add(spent, Ordering::Relaxed);
    }

    /// `total;dur=…, db;dur=…, cpu;dur=…` in milliseconds, now (inside a step).
    fn header(&self, rid: u64) -> String {
        let total = timeglass_wire::monotonic_ns().saturating_sub(self.start_ns);
        let db = DB_NS
            .lock()
            .ok()
            .and_then(|db| db.get(&rid).copied())
            .unwrap_or(0);
        let step = thread_cpu_ns().saturating_sub(self.step_cpu.load(Ordering::Relaxed));
        let cpu = self.cpu_ns.load(Ordering::Relaxed) + step;
        let ms = |ns: u64| ns as f64 / 1e6;
        format!(
            "total;dur={:.3}, db;dur={:.3}, cpu;dur={:.3}",
            ms(total),
            ms(db),
            ms(cpu)
        )
    }
}

/// Whether any request keeps SQL totals (a middleware has `server_timing=True`).
static DB_ANY: AtomicBool = AtomicBool::new(false);
/// SQL time so far of each request that gets `Server-Timing`.
static DB_NS: LazyLock<Mutex<HashMap<u64, u64>>> = LazyLock::new(Default::default);

/// A statement of request `rid` took `ns` (called for every captured statement).
pub(crate) fn add_db(rid: u64, ns: u64) {
    if !DB_ANY.load(Ordering::Relaxed) {
        return;
    }
    if let Ok(mut db) = DB_NS.lock() {
        if let Some(total) = db.get_mut(&rid) {
            *total += ns;
        }
    }
}

/// Request `rid` is over: its SQL total goes.
pub(crate) fn forget(rid: u64) {
    if !DB_ANY.load(Ordering::Relaxed) {
        return;
    }
    if let Ok(mut db) = DB_NS.lock() {
        db.remove(&rid);
    }
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock id is a constant.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `message` (an `http.response.start`) as a new dict with `Server-Timing`
/// and `X-TimeGlass-Request` added to its headers; `None` when it cannot be
/// (the original then goes out unchanged).
pub(crate) fn with_headers<'py>(
    message: &Bound<'py, PyAny>,
    timing: &Timing,
    rid: u64,
) -> Option<Bound<'py, PyAny>> {
    let py = message.py();
    let message = message.cast::<PyDict>().ok()?;
    let headers = PyList::empty(py);
    if let Some(existing) = message.get_item(intern!(py, "headers")).ok().flatten() {
        for pair in existing.try_iter().ok()? {
            headers.append(pair.ok()?).ok()?;
        }
    }
    let add = |name: &[u8], value: &[u8]| {
        let pair = PyTuple::new(py, [PyBytes::new(py, name), PyBytes::new(py, value)]).ok()?;
        headers.append(pair).ok()
    };
    add(b"server-timing", timing.header(rid).as_bytes())?;
    add(b"x-timeglass-request", rid.to_string().as_bytes())?;
    let copy = message.copy().ok()?;
    copy.set_item(intern!(py, "headers"), headers).ok()?;
    Some(copy.into_any())
}
