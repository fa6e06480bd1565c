//! `RequestScope`: the awaitable around a request's coroutine that keeps the
//! thread slot equal to the request id while, and only while, the request runs.
//!
//! It implements the coroutine protocol itself instead of being an `async`
//! function, so it adds no Python frame and costs two slot writes per step.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use timeglass_wire::{write, RequestEnd, ScopeEntry, END_CANCELLED, END_ERROR, END_NO_RESPONSE};

use crate::call::{self, MethodDef};
use crate::context::{self, ResponseContext};
use crate::info::{self, Timing};
use crate::state;
use crate::watched::{has_send, watch, OnReturn};

/// What the end event needs beyond the id; absent for child-task scopes.
pub struct Recording {
    pub scope: Py<PyDict>,
    pub send: Py<SendWrapper>,
}

/// Wraps a request's coroutine (or a child task's) and switches the thread slot around every step.
#[pyclass(module = "timeglass._native", frozen)]
pub struct RequestScope {
    rid: u64,
    inner: Py<PyAny>,
    recording: Option<Recording>,
    finished: AtomicBool,
    /// Where the sampler learns whether `inner` runs or is suspended (and
    /// so reads its await chain); `None` when the table was full or the
    /// marker is off.
    entry: Option<ScopeEntry<'static>>,
    /// The entry was given back (it may already serve another coroutine).
    released: AtomicBool,
}

/// How the wrapped coroutine finished.
enum Outcome<'a> {
    Returned,
    Raised(&'a PyErr),
    Abandoned,
}

impl RequestScope {
    /// Wraps `awaitable`, taking its `__await__()` iterator unless it already is a coroutine/iterator.
    pub fn new(
        py: Python<'_>,
        rid: u64,
        awaitable: Bound<'_, PyAny>,
        recording: Option<Recording>,
    ) -> PyResult<Self> {
        let inner = if has_send(&awaitable) {
            awaitable
        } else {
            awaitable.call_method0(intern!(py, "__await__"))?
        };
        let entry = state::region().and_then(|r| r.claim_scope(rid, inner.as_ptr() as u64));
        Ok(RequestScope {
            rid,
            inner: inner.unbind(),
            recording,
            finished: AtomicBool::new(false),
            entry,
            released: AtomicBool::new(false),
        })
    }

    /// Runs one step of `inner` (a send, throw or close) with the thread
    /// slot set to the request and the scope entry saying "running".
    #[inline]
    fn stepping<R>(&self, f: impl FnOnce() -> R) -> R {
        if let Some(e) = &self.entry {
            e.enter();
        }
        let timing = self
            .recording
            .as_ref()
            .and_then(|r| r.send.get().timing.as_ref());
        if let Some(t) = timing {
            t.step_begins();
        }
        let handler = self.recording.as_ref().map(|r| &r.send.get().handler_ns);
        let r = state::as_request_noting(self.rid, handler, f);
        if let Some(t) = timing {
            t.step_ends();
        }
        if let Some(e) = &self.entry {
            e.leave();
        }
        r
    }

    /// Gives the scope entry back, once: the coroutine is done with.
    fn release(&self) {
        if let Some(e) = &self.entry {
            if !self.released.swap(true, Ordering::AcqRel) {
                e.release();
            }
        }
    }

    /// One resumption of the inner coroutine with the slot set to our request.
    fn step<'py>(
        &self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut out: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: both pointers are valid owned references held for the call's duration.
        let r = self.stepping(|| unsafe {
            ffi::PyIter_Send(self.inner.as_ptr(), value.as_ptr(), &mut out)
        });
        match r {
            // SAFETY: PyIter_Send returned a new reference in `out`.
            ffi::PySendResult::PYGEN_NEXT => Ok(Some(unsafe { Bound::from_owned_ptr(py, out) })),
            ffi::PySendResult::PYGEN_RETURN => {
                // SAFETY: as above.
                let v = unsafe { Bound::from_owned_ptr(py, out) };
                self.finish(py, Outcome::Returned);
                if v.is_none() {
                    Ok(None)
                } else {
                    Err(PyStopIteration::new_err((v.unbind(),)))
                }
            }
            ffi::PySendResult::PYGEN_ERROR => {
                let e = PyErr::fetch(py);
                self.finish(py, Outcome::Raised(&e));
                Err(e)
            }
        }
    }

    /// Publishes the end event the first time the request finishes in any way.
    fn finish(&self, py: Python<'_>, outcome: Outcome<'_>) {
        self.release();
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        let (Some(rec), Some(region)) = (&self.recording, state::region()) else {
            return;
        };
        if rec.send.get().timing.is_some() {
            info::forget(self.rid);
        }
        let send = rec.send.get();
        let status = send.status.load(Ordering::Relaxed);
        let mut flags = match outcome {
            Outcome::Returned => 0,
            Outcome::Raised(e) if is_cancellation(py, e) => END_CANCELLED,
            Outcome::Raised(_) => END_ERROR,
            Outcome::Abandoned => END_CANCELLED,
        };
        if status == 0 {
            flags |= END_NO_RESPONSE;
        }
        let end = RequestEnd {
            request_id: self.rid,
            ts_ns: timeglass_wire::monotonic_ns(),
            response_ns: send.response_ns.load(Ordering::Relaxed),
            status,
            flags,
            route: String::new(),
        };
        let response = send.context.as_ref().zip(send.response.get());
        state::publish_with(region, |buf| {
            let kind = write::finish(buf, &end);
            write_route(buf, rec.scope.bind(py));
            let handler_ns = send.handler_ns.load(Ordering::Relaxed);
            write::finish_tail(buf, handler_ns, response.map(|(_, r)| r.ts_ns));
            if let Some((context, r)) = response {
                let headers = r.headers.as_ref().map(|h| h.bind(py));
                context::write_response(buf, headers, context);
            }
            kind
        });
        region.dec_inflight();
    }
}

#[pymethods]
impl RequestScope {
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

    /// Forwards the exception exactly as given (1- or 3-argument form).
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw<'py>(
        &self,
        py: Python<'py>,
        typ: Bound<'py, PyAny>,
        val: Option<Bound<'py, PyAny>>,
        tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = throw_args(py, typ, val, tb)?;
        let r = self.stepping(|| self.inner.bind(py).call_method1(intern!(py, "throw"), args));
        if let Err(e) = &r {
            if e.is_instance_of::<PyStopIteration>(py) {
                self.finish(py, Outcome::Returned);
            } else {
                self.finish(py, Outcome::Raised(e));
            }
        }
        r
    }

    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = self.stepping(|| self.inner.bind(py).call_method0(intern!(py, "close")));
        self.finish(py, Outcome::Abandoned);
        r
    }

    /// The request id this scope publishes while it runs.
    #[getter]
    fn request_id(&self) -> u64 {
        self.rid
    }

    // Introspection (asyncio's task repr and `Task.get_stack`) sees the inner coroutine.
    #[getter]
    fn cr_frame<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.inner_attr(py, intern!(py, "cr_frame"))
    }

    #[getter]
    fn cr_await<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.inner_attr(py, intern!(py, "cr_await"))
    }

    #[getter]
    fn cr_code<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.inner_attr(py, intern!(py, "cr_code"))
    }

    #[getter]
    fn cr_running<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.inner_attr(py, intern!(py, "cr_running"))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let inner = self
            .inner
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_default();
        format!("<RequestScope {} {inner}>", self.rid)
    }
}

impl RequestScope {
    fn inner_attr<'py>(&self, py: Python<'py>, name: &Bound<'py, PyString>) -> Bound<'py, PyAny> {
        self.inner
            .bind(py)
            .getattr(name)
            .unwrap_or_else(|_| py.None().into_bound(py))
    }
}

impl Drop for RequestScope {
    /// A request whose coroutine is dropped unfinished still gets its end event.
    fn drop(&mut self) {
        self.release();
        if self.recording.is_some() && !self.finished.load(Ordering::Relaxed) {
            let _ = Python::try_attach(|py| self.finish(py, Outcome::Abandoned));
        }
    }
}

/// `asyncio.CancelledError`, looked up once.
fn is_cancellation(py: Python<'_>, e: &PyErr) -> bool {
    static CANCELLED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match CANCELLED.import(py, "asyncio", "CancelledError") {
        Ok(t) => e.is_instance(py, t),
        Err(_) => false,
    }
}

/// The matched route template as a string field, empty if none matched.
/// Inside a mounted app the mount's (concrete) path is prefixed, taken from
/// `root_path`.
fn write_route(buf: &mut Vec<u8>, scope: &Bound<'_, PyDict>) {
    let py = scope.py();
    let route = scope.get_item(intern!(py, "route")).ok().flatten();
    let path = route
        .as_ref()
        .and_then(|r| r.getattr(intern!(py, "path")).ok())
        .and_then(|p| p.cast_into::<PyString>().ok());
    let (Some(route), Some(path)) = (route, path) else {
        return write::joined(buf, &[]);
    };
    let path = path.to_str().unwrap_or_default();
    // An empty `root_path` (no mount) has no prefix: `app_root_path` is not looked up.
    let root = scope_text(scope, intern!(py, "root_path"));
    let root = root
        .as_ref()
        .and_then(|r| r.to_str().ok())
        .unwrap_or_default();
    let app_root = (!root.is_empty())
        .then(|| scope_text(scope, intern!(py, "app_root_path")))
        .flatten();
    let prefix = app_root
        .as_ref()
        .and_then(|app_root| root.strip_prefix(app_root.to_str().ok()?))
        .unwrap_or_default();
    // A `Mount` as the final match (e.g. static files): its own path is already in `root_path`.
    if !prefix.is_empty() && route.hasattr(intern!(py, "routes")).unwrap_or(false) {
        return write::joined(buf, &[prefix.as_bytes()]);
    }
    write::joined(buf, &[prefix.as_bytes(), path.as_bytes()]);
}

/// `scope[key]` if it is a `str`.
fn scope_text<'py>(
    scope: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
) -> Option<Bound<'py, PyString>> {
    scope.get_item(key).ok()??.cast_into::<PyString>().ok()
}

/// The `send` callable handed to the app: notes the response status,
/// publishes the response context, forwards everything.
#[pyclass(module = "timeglass._native", frozen)]
pub struct SendWrapper {
    send: Py<PyAny>,
    rid: u64,
    /// `None` when contexts are not captured.
    context: Option<ResponseContext>,
    pub status: AtomicU16,
    /// When the last body chunk was written (its `send` returned); 0 until
    /// then.
    pub response_ns: AtomicU64,
    /// `Some` when the response gets `Server-Timing` (`server_timing=True`).
    pub timing: Option<Timing>,
    /// When FastAPI called the endpoint function (monotonic ns); 0 until then.
    pub handler_ns: AtomicU64,
    /// The response's start, kept for the finish record when contexts are captured.
    pub response: OnceLock<ResponseStart>,
}

/// When the response started, and the header list it started with.
pub struct ResponseStart {
    pub ts_ns: u64,
    pub headers: Option<Py<PyAny>>,
}

impl SendWrapper {
    pub fn new(
        send: Py<PyAny>,
        rid: u64,
        context: Option<ResponseContext>,
        timing: Option<Timing>,
    ) -> Self {
        SendWrapper {
            send,
            rid,
            context,
            status: AtomicU16::new(0),
            response_ns: AtomicU64::new(0),
            timing,
            handler_ns: AtomicU64::new(0),
            response: OnceLock::new(),
        }
    }

    /// Keeps the response's start for the finish record; its headers are
    /// read then, outside the response's way to the client.
    fn note_response_start(&self, message: &Bound<'_, PyAny>) {
        if self.context.is_none() {
            return;
        }
        if let Ok(message) = message.cast::<PyDict>() {
            let headers = message.get_item(intern!(message.py(), "headers"));
            let _ = self.response.set(ResponseStart {
                ts_ns: timeglass_wire::monotonic_ns(),
                headers: headers.ok().flatten().map(Bound::unbind),
            });
        }
    }

    /// Stamps the response's end, once.
    pub fn mark_response_sent(&self) {
        let now = timeglass_wire::monotonic_ns();
        let _ = self
            .response_ns
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }
}

#[pymethods]
impl SendWrapper {
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        message: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        SendWrapper::send(slf, py, message)
    }
}

impl SendWrapper {
    fn send<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        message: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let mut last_chunk = false;
        let mut message = message;
        if this.response_ns.load(Ordering::Relaxed) == 0 {
            match response_message(&message) {
                Some(Response::Start(status)) if this.status.load(Ordering::Relaxed) == 0 => {
                    this.status.store(status, Ordering::Relaxed);
                    if let Some(timing) = &this.timing {
                        message = info::with_headers(&message, timing, this.rid).unwrap_or(message);
                    }
                    this.note_response_start(&message);
                }
                Some(Response::LastChunk) => last_chunk = true,
                _ => {}
            }
        }
        let sending = call::call(this.send.bind(py), [&message])?;
        if !last_chunk {
            return Ok(sending);
        }
        // The response has ended when the server has written the last chunk,
        // not when the app handed it over.
        Ok(
            watch(sending, OnReturn::Sent(slf.clone().unbind())).unwrap_or_else(|untouched| {
                this.mark_response_sent();
                untouched
            }),
        )
    }
}

/// The `send` handed to the app: a `METH_O` C function whose `__self__` is
/// the request's [`SendWrapper`]. The app calls it twice per request, and
/// a C function is called with its one argument as it is, where the
/// wrapper's own `__call__` gets a new argument tuple each time.
pub(crate) fn send_function<'py>(wrapper: &Bound<'py, SendWrapper>) -> PyResult<Bound<'py, PyAny>> {
    SEND.function(wrapper.as_any(), None)
}

/// # Safety
///
/// Called by CPython with the GIL held, `wrapper` a [`SendWrapper`] (the
/// function's `__self__`, set by [`send_function`]) and `message` a valid
/// reference.
unsafe extern "C" fn send_call(
    wrapper: *mut ffi::PyObject,
    message: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as the caller promises.
    let (py, wrapper, message) = unsafe {
        let py = Python::assume_attached();
        let wrapper = Bound::from_borrowed_ptr(py, wrapper).cast_into_unchecked::<SendWrapper>();
        (py, wrapper, Bound::from_borrowed_ptr(py, message))
    };
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        SendWrapper::send(&wrapper, py, message)
    }));
    match sent {
        Ok(Ok(r)) => r.into_ptr(),
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            PyRuntimeError::new_err("timeglass: send failed").restore(py);
            std::ptr::null_mut()
        }
    }
}

static SEND: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"send".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: send_call,
    },
    ml_flags: ffi::METH_O,
    ml_doc: c"The server's send (its __self__ wraps it), as TimeGlass watches it.".as_ptr(),
});

enum Response {
    /// `http.response.start` with its status.
    Start(u16),
    /// The `http.response.body` without `more_body`: the response is complete.
    LastChunk,
}

fn response_message(message: &Bound<'_, PyAny>) -> Option<Response> {
    let py = message.py();
    let message = message.cast::<PyDict>().ok()?;
    let kind = message.get_item(intern!(py, "type")).ok()??;
    match kind.cast::<PyString>().ok()?.to_str().ok()? {
        "http.response.start" => message
            .get_item(intern!(py, "status"))
            .ok()??
            .extract()
            .ok()
            .map(Response::Start),
        "http.response.body" => {
            let more = match message.get_item(intern!(py, "more_body")) {
                Ok(Some(more)) => more.is_truthy().unwrap_or(false),
                _ => false,
            };
            (!more).then_some(Response::LastChunk)
        }
        _ => None,
    }
}

/// `_native.bind_task(rid, coro)`: a slot-switching scope for a child task of request `rid`.
#[pyfunction]
pub(crate) fn bind_task(
    py: Python<'_>,
    rid: u64,
    coro: Bound<'_, PyAny>,
) -> PyResult<RequestScope> {
    if rid == 0 {
        return Err(PyTypeError::new_err("request id must not be 0"));
    }
    RequestScope::new(py, rid, coro, None)
}

/// The arguments of `throw` as the caller gave them (1- or 3-argument form),
/// for awaitables that forward `throw` to the coroutine they wrap.
pub(crate) fn throw_args<'py>(
    py: Python<'py>,
    typ: Bound<'py, PyAny>,
    val: Option<Bound<'py, PyAny>>,
    tb: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    match (val, tb) {
        (None, None) => PyTuple::new(py, [typ]),
        (Some(v), None) => PyTuple::new(py, [typ, v]),
        (v, Some(t)) => PyTuple::new(py, [typ, v.unwrap_or_else(|| py.None().into_bound(py)), t]),
    }
}
