//! `_native.mark_handler(run_endpoint_function)`: FastAPI's function that
//! calls an endpoint, marking the handler stage first
//! ([`context::mark_handler`]). It returns what the original returns (its
//! coroutine) and adds no Python frame, so the profiled stacks show
//! FastAPI's own frames only.
//!
//! It is a C function whose `__self__` is the original, called by
//! vectorcall and calling the original the same way: FastAPI calls it
//! with keyword arguments once per request, and a pyo3 `__call__` would
//! copy them into a new tuple and dict, which the original's frame then
//! unpacks again.

use std::os::raw::c_char;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::call::{vectorcall, MethodDef};
use crate::context;

/// # Safety
///
/// Called by CPython with the GIL held, `original` the function's
/// `__self__`, `args` holding `nargs` positional arguments followed by one
/// per name of `kwnames` (a tuple, or null).
unsafe extern "C" fn call(
    original: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    context::mark_handler();
    if let Some(vectorcall) = vectorcall() {
        // SAFETY: the arguments are forwarded as CPython gave them.
        return unsafe { vectorcall(original, args, nargs as usize, kwnames) };
    }
    // SAFETY: as above; the GIL is held.
    unsafe { call_with_dict(original, args, nargs, kwnames) }
}

/// The original called with a tuple and a dict, where `PyObject_Vectorcall`
/// is not exported (CPython 3.10).
///
/// # Safety
///
/// As [`call`].
unsafe fn call_with_dict(
    original: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the GIL is held and every pointer is valid for the call.
    Python::attach(|py| unsafe {
        let named = if kwnames.is_null() {
            0
        } else {
            ffi::PyTuple_Size(kwnames)
        };
        let value = |i: ffi::Py_ssize_t| Bound::from_borrowed_ptr(py, *args.offset(i));
        let positional: Vec<_> = (0..nargs).map(value).collect();
        let result = pyo3::types::PyTuple::new(py, positional).and_then(|positional| {
            let kwargs = pyo3::types::PyDict::new(py);
            for i in 0..named {
                let name = Bound::from_borrowed_ptr(py, ffi::PyTuple_GetItem(kwnames, i));
                kwargs.set_item(name, value(nargs + i))?;
            }
            Bound::from_borrowed_ptr(py, original).call(positional, Some(&kwargs))
        });
        match result {
            Ok(r) => r.into_ptr(),
            Err(e) => {
                e.restore(py);
                std::ptr::null_mut()
            }
        }
    })
}

static MARK_HANDLER: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"run_endpoint_function".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: call,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"FastAPI's run_endpoint_function (its __self__), marking the handler stage first."
        .as_ptr() as *const c_char,
});

/// `_native.mark_handler(original)`: `original` wrapped in the marking function.
#[pyfunction]
pub(crate) fn mark_handler(original: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    Ok(MARK_HANDLER.function(original, None)?.unbind())
}

/// `_native.is_mark_handler(obj)`: whether `obj` came from [`mark_handler`].
#[pyfunction]
pub(crate) fn is_mark_handler(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: the GIL is held; `obj` is checked to be a C function before it is read as one.
    unsafe {
        ffi::PyCFunction_Check(obj.as_ptr()) != 0
            && ffi::PyCFunction_GetFunction(obj.as_ptr()).map(|f| f as usize)
                == Some(MARK_HANDLER.0.ml_meth.PyCFunction as usize)
    }
}
