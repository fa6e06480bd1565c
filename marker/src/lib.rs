//! `timeglass._native`: the part of the TimeGlass marker that runs inside the
//! profiled app. It records each HTTP request's start and end into this
//! process's ring file and keeps every thread's slot equal to the request the
//! thread is executing, for the external sampler to read. It also times the
//! SQL statements and outgoing HTTP calls that `timeglass._on_driver_import` reports.
//!
//! Rule one: never break the app. Nothing here panics on the request path, and
//! when the ring cannot be created requests pass through untouched.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod alloc;
mod bind;
mod call;
mod capture;
mod context;
mod debug;
mod gc;
mod handler;
mod info;
mod lifespan;
mod middleware;
mod redact;
mod scope;
mod stack;
mod state;
mod timed;
mod watched;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The request the calling thread is executing now; 0 when none.
#[pyfunction]
fn current_request() -> u64 {
    state::current_slot().map_or(0, |s| s.get())
}

/// The marker's counters, for diagnostics.
#[pyfunction]
fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let region = state::region();
    d.set_item("enabled", region.is_some())?;
    d.set_item("pid", std::process::id())?;
    d.set_item("ring_path", region.map(|r| r.path().to_path_buf()))?;
    d.set_item(
        "records_written",
        region.map_or(0, timeglass_wire::Region::records_written),
    )?;
    d.set_item("dropped", region.map_or(0, timeglass_wire::Region::dropped))?;
    d.set_item(
        "ring_position",
        region.map_or(0, timeglass_wire::Region::ring_position),
    )?;
    d.set_item(
        "inflight",
        region.map_or(0, timeglass_wire::Region::inflight),
    )?;
    d.set_item(
        "slotless_threads",
        region.map_or(0, timeglass_wire::Region::slotless_threads),
    )?;
    Ok(d)
}

/// Creates this process's ring file now (normally done by the first middleware).
#[pyfunction]
fn start() -> bool {
    state::ensure_region().is_some()
}

#[pyfunction]
fn _after_fork_in_child() {
    state::after_fork_in_child();
}

/// `_native.stopped()`: the server stopped gracefully; what lets the
/// recorder tell this process's end from a crash (its ring file goes).
#[pyfunction]
fn stopped() {
    state::remove_ring_file();
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<middleware::TimeGlassMiddleware>()?;
    m.add_class::<scope::RequestScope>()?;
    m.add_class::<scope::SendWrapper>()?;
    m.add_class::<context::ReceiveWrapper>()?;
    m.add_class::<watched::Watched>()?;
    m.add_class::<info::RequestInfo>()?;
    m.add_class::<bind::BoundCall>()?;
    m.add_class::<timed::TimedMethod>()?;
    m.add_class::<timed::BoundTimed>()?;
    m.add_function(wrap_pyfunction!(current_request, m)?)?;
    m.add_function(wrap_pyfunction!(handler::mark_handler, m)?)?;
    m.add_function(wrap_pyfunction!(handler::is_mark_handler, m)?)?;
    m.add_function(wrap_pyfunction!(bind::bind, m)?)?;
    m.add_function(wrap_pyfunction!(scope::bind_task, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_function(wrap_pyfunction!(stopped, m)?)?;
    m.add_function(wrap_pyfunction!(debug::_read_events, m)?)?;
    m.add_function(wrap_pyfunction!(debug::_classify_code, m)?)?;
    m.add_function(wrap_pyfunction!(capture::configure_capture, m)?)?;
    m.add_function(wrap_pyfunction!(capture::query_begin, m)?)?;
    m.add_function(wrap_pyfunction!(capture::query_end, m)?)?;
    m.add_function(wrap_pyfunction!(capture::call_end, m)?)?;
    let after_fork = wrap_pyfunction!(_after_fork_in_child, m)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("after_in_child", after_fork)?;
    py.import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&kwargs))?;
    gc::install(m)?;
    alloc::install_from_env(m)?;
    py.import("atexit")?
        .call_method1("register", (wrap_pyfunction!(stopped, m)?,))?;
    Ok(())
}
