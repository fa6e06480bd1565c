//! Exact garbage-collector pauses, per request, when asked for
//! (`TIMEGLASS_GC_CALLBACKS=1`): a native function in `gc.callbacks`. By
//! default none is installed: the recorder reads the collector's state
//! from outside at each sample, at no cost to the app (`join/src/gc.rs`).
//! CPython calls it with `"start"` before each collection
//! and `"stop"` after it, on the thread that collects; a collection that
//! ran while that thread's slot held a request is published as one ring
//! event (start, end, thread), so the request pays for the pause it sat
//! through. Outside a request the whole cost is one slot read.
//!
//! It is a plain `METH_FASTCALL` C function rather than a `#[pyfunction]`:
//! CPython calls it twice per collection, and pyo3's trampoline and
//! argument parsing cost more than everything the callback itself does.
//! Most of a collection's callback cost is still CPython's own (the phase
//! string and info dict it builds for any callback;
//! [benchmarks](../../docs/benchmarks.md#a-garbage-collections-callback)).

use std::cell::Cell;
use std::os::raw::c_char;

use pyo3::ffi;
use pyo3::prelude::*;
use timeglass_wire::{env, monotonic_ns, Event, Gc};

use crate::call::MethodDef;
use crate::state;

thread_local! {
    /// `(request, start)` of the collection running on this thread; request 0 when none.
    static STARTED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// `gc.callbacks` entry: `(phase, info, /)`. Never raises on two
/// arguments: an exception from a GC callback would be reported by CPython
/// as unraisable in the app.
///
/// # Safety
///
/// Called by CPython with the GIL held and `args` pointing at `nargs`
/// borrowed references.
unsafe extern "C" fn gc_callback(
    _module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    if nargs != 2 {
        // SAFETY: the GIL is held; both arguments are valid C strings and types.
        unsafe {
            ffi::PyErr_SetString(
                ffi::PyExc_TypeError,
                c"gc_callback() takes exactly 2 arguments".as_ptr(),
            );
        }
        return std::ptr::null_mut();
    }
    if state::region().is_some() {
        // SAFETY: `nargs` is 2, so `args[0]` is a valid borrowed reference.
        match unsafe { phase(*args) } {
            Some(b"start") => start(),
            Some(b"stop") => stop(),
            _ => {}
        }
    }
    // SAFETY: `Py_None` is immortal or reference counted; a new reference is returned.
    unsafe {
        let none = ffi::Py_None();
        ffi::Py_IncRef(none);
        none
    }
}

/// The phase's bytes if it is a `str`, read in place; any error is cleared.
///
/// # Safety
///
/// The GIL is held and `phase` is a valid reference.
unsafe fn phase<'a>(phase: *mut ffi::PyObject) -> Option<&'a [u8]> {
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: as the caller promises; a non-str sets an error and returns null.
    let utf8 = unsafe { ffi::PyUnicode_AsUTF8AndSize(phase, &mut len) };
    if utf8.is_null() {
        // SAFETY: the GIL is held.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    // SAFETY: CPython keeps the UTF-8 buffer alive as long as the string,
    // which the caller holds for the callback's duration.
    Some(unsafe { std::slice::from_raw_parts(utf8.cast::<u8>(), len as usize) })
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

static GC_CALLBACK: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"gc_callback".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFast: gc_callback,
    },
    ml_flags: ffi::METH_FASTCALL,
    ml_doc: c"gc_callback($module, phase, info, /)\n--\n\nTimeGlass's `gc.callbacks` entry: publishes a collection that ran inside a request.".as_ptr()
        as *const c_char,
});

/// Adds `_native.gc_callback`, and appends it to `gc.callbacks` (once per
/// interpreter: the module is initialised once in each) when
/// `TIMEGLASS_GC_CALLBACKS=1` asks for exact timings. Otherwise the
/// recorder reads the collector's state from outside and no callback runs.
pub(crate) fn install(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let callback = GC_CALLBACK.function(m.as_any(), Some(m.name()?.as_any()))?;
    m.add("gc_callback", &callback)?;
    if std::env::var_os(env::GC_CALLBACKS).is_some_and(|v| v == "1") {
        py.import("gc")?
            .getattr("callbacks")?
            .call_method1("append", (callback,))?;
    }
    Ok(())
}
