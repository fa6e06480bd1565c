//! `_native.Watched`: an awaitable that forwards the coroutine protocol to
//! the server's awaitable and notes what it returned.
//!
//! Used for the two ASGI callables whose completion matters: `receive()`,
//! whose message carries a body chunk to copy, and the `send()` of the last
//! body chunk, whose completion is when the response was written. The app
//! awaits the very same values and exceptions as without it.

use std::sync::Arc;

use pyo3::exceptions::PyStopIteration;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::context::BodyCapture;
use crate::scope::{throw_args, SendWrapper};

/// What to note when the awaitable returns.
pub(crate) enum OnReturn {
    /// Copy the body out of a received `http.request` message.
    Received(Arc<BodyCapture>),
    /// The last body chunk was written: stamp the response's end.
    Sent(Py<SendWrapper>),
}

impl OnReturn {
    fn note(&self, value: &Bound<'_, PyAny>) {
        match self {
            OnReturn::Received(capture) => capture.add_from_message(value),
            OnReturn::Sent(send) => send.get().mark_response_sent(),
        }
    }
}

#[pyclass(module = "timeglass._native", frozen)]
pub struct Watched {
    inner: Py<PyAny>,
    on_return: OnReturn,
}

/// Wraps `awaitable` so that `on_return` sees its result; `Err` gives the
/// awaitable back untouched when it is not one (the app then fails on it
/// exactly as it would without TimeGlass).
pub(crate) fn watch<'py>(
    awaitable: Bound<'py, PyAny>,
    on_return: OnReturn,
) -> Result<Bound<'py, PyAny>, Bound<'py, PyAny>> {
    let py = awaitable.py();
    let inner = if has_send(&awaitable) {
        awaitable.clone()
    } else {
        match awaitable.call_method0(intern!(py, "__await__")) {
            Ok(it) => it,
            Err(_) => return Err(awaitable),
        }
    };
    let watched = Watched {
        inner: inner.unbind(),
        on_return,
    };
    match Bound::new(py, watched) {
        Ok(w) => Ok(w.into_any()),
        Err(_) => Err(awaitable),
    }
}

/// Whether `awaitable` is stepped as it is (it has `send`: a coroutine,
/// generator or iterator-style awaitable) rather than through
/// `__await__()`. A coroutine, the usual case, is told by its type, without
/// looking `send` up (which makes a bound method).
pub(crate) fn has_send(awaitable: &Bound<'_, PyAny>) -> bool {
    static COROUTINE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let py = awaitable.py();
    let coroutine = COROUTINE.import(py, "types", "CoroutineType");
    coroutine.is_ok_and(|t| awaitable.get_type().is(t))
        || awaitable.hasattr(intern!(py, "send")).unwrap_or(false)
}

impl Watched {
    /// One step; `Ok(None)` when the awaitable returned `None`, which
    /// `__next__` reports without creating a `StopIteration`.
    fn step<'py>(
        &self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut out: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: both pointers are valid owned references held for the call's duration.
        let r = unsafe { ffi::PyIter_Send(self.inner.as_ptr(), value.as_ptr(), &mut out) };
        match r {
            // SAFETY: PyIter_Send returned a new reference in `out`.
            ffi::PySendResult::PYGEN_NEXT => Ok(Some(unsafe { Bound::from_owned_ptr(py, out) })),
            ffi::PySendResult::PYGEN_RETURN => {
                // SAFETY: as above.
                let value = unsafe { Bound::from_owned_ptr(py, out) };
                self.on_return.note(&value);
                if value.is_none() {
                    Ok(None)
                } else {
                    Err(PyStopIteration::new_err((value.unbind(),)))
                }
            }
            ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
        }
    }
}

#[pymethods]
impl Watched {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.step(py, &py.None().into_bound(py))
    }

    fn send<'py>(&self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match self.step(py, value)? {
            Some(v) => Ok(v),
            None => Err(PyStopIteration::new_err(())),
        }
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw<'py>(
        &self,
        py: Python<'py>,
        typ: Bound<'py, PyAny>,
        val: Option<Bound<'py, PyAny>>,
        tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = throw_args(py, typ, val, tb)?;
        let r = self.inner.bind(py).call_method1(intern!(py, "throw"), args);
        if let Err(e) = &r {
            if e.is_instance_of::<PyStopIteration>(py) {
                if let Ok(value) = e.value(py).getattr(intern!(py, "value")) {
                    self.on_return.note(&value);
                }
            }
        }
        r
    }

    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.bind(py).call_method0(intern!(py, "close"))
    }
}
