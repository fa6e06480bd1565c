//! Garbage-collector pauses, per request: a native function in
//! `gc.callbacks`. CPython calls it with `"start"` before each collection
//! and `"stop"` after it, on the thread that collects; a collection that
//! ran while that thread's slot held a request is published as one ring
//! event (start, end, thread), so the request pays for the pause it sat
//! through. Outside a request the whole cost is one slot read.

use std::cell::Cell;

use pyo3::prelude::*;
use pyo3::types::PyString;
use timeglass_wire::{monotonic_ns, Event, Gc};

use crate::state;

thread_local! {
    /// `(request, start)` of the collection running on this thread; request 0 when none.
    static STARTED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// `gc.callbacks` entry: `(phase, info)`. Never raises: an exception from a
/// GC callback would be reported by CPython as unraisable in the app.
#[pyfunction]
pub(crate) fn gc_callback(phase: &Bound<'_, PyAny>, _info: &Bound<'_, PyAny>) {
    if state::region().is_none() {
        return;
    }
    let Ok(phase) = phase.cast::<PyString>() else {
        return;
    };
    // "start" and "stop" differ in their third byte.
    match phase.to_str().map(str::as_bytes) {
        Ok(b"start") => start(),
        Ok(b"stop") => stop(),
        _ => {}
    }
}

fn start() {
    let rid = state::current_slot().map_or(0, |s| s.get());
    let at = if rid == 0 { 0 } else { monotonic_ns() };
    let _ = STARTED.try_with(|c| c.set((rid, at)));
}

fn stop() {
    let Ok((rid, start_ns)) = STARTED.try_with(|c| c.replace((0, 0))) else {
        return;
    };
    if rid == 0 {
        return;
    }
    let Some(region) = state::region() else {
        return;
    };
    let event = Event::Gc(Gc {
        request_id: rid,
        tid: state::gettid(),
        start_ns,
        end_ns: monotonic_ns(),
    });
    state::publish(region, &event);
}

/// Adds `_native.gc_callback` and appends it to `gc.callbacks` (once per
/// interpreter: the module is initialised once in each).
pub(crate) fn install(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gc_callback, m)?)?;
    let callback = m.getattr("gc_callback")?;
    m.py()
        .import("gc")?
        .getattr("callbacks")?
        .call_method1("append", (callback,))?;
    Ok(())
}
