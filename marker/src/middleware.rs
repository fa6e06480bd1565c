//! `TimeGlassMiddleware`: the outermost ASGI wrapper that records each HTTP request.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use timeglass_wire::{write, Event, Region, RequestEnd, END_ERROR, END_NO_RESPONSE};

use crate::call;
use crate::context::{self, ReceiveWrapper, RequestHead, ResponseContext};
use crate::info::{self, RequestInfo, Timing};
use crate::lifespan;
use crate::scope::{self, Recording, RequestScope, SendWrapper};
use crate::state;

/// Scope key holding the request's [`RequestInfo`]; an inner marker seeing it passes through.
const SCOPE_KEY: &str = "timeglass";

#[pyclass(module = "timeglass._native", frozen, subclass)]
pub struct TimeGlassMiddleware {
    /// The wrapped ASGI app.
    #[pyo3(get)]
    app: Py<PyAny>,
    /// `server_timing=True`: responses get `Server-Timing` and `X-TimeGlass-Request`.
    #[pyo3(get)]
    server_timing: bool,
}

#[pymethods]
impl TimeGlassMiddleware {
    /// `TimeGlassMiddleware(app)`, or `app.add_middleware(TimeGlassMiddleware)`;
    /// `server_timing=True` adds `Server-Timing` and `X-TimeGlass-Request` to
    /// every response (off by default: TimeGlass then never changes a
    /// response). Other options are accepted and ignored. Creates this
    /// process's ring file.
    #[new]
    #[pyo3(signature = (app, *_args, server_timing=false, **_options))]
    fn new(
        app: Py<PyAny>,
        _args: &Bound<'_, PyTuple>,
        server_timing: bool,
        _options: Option<&Bound<'_, PyDict>>,
    ) -> Self {
        state::ensure_region();
        TimeGlassMiddleware { app, server_timing }
    }

    fn __call__<'py>(
        &self,
        py: Python<'py>,
        scope: Bound<'py, PyAny>,
        receive: Bound<'py, PyAny>,
        send: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let app = self.app.bind(py);
        let Some((region, dict)) = state::region().zip(recordable(&scope)) else {
            let send = lifespan::watch(&scope, send);
            return app.call1((scope, receive, send));
        };
        let rid = region.next_request_id();
        let attached = Bound::new(py, RequestInfo::new(rid)).is_ok_and(|i| info::attach(&dict, &i));
        if !attached {
            return app.call1((scope, receive, send));
        }
        install_patches(py);
        region.inc_inflight();
        let capture = context::enabled() && context::worth_capturing(region);
        let head = publish_begin(region, rid, &dict, capture);
        let (receive, context) = wrap_receive(&dict, head, receive);
        let timing = self.server_timing.then(|| Timing::new(rid));
        let wrapper = Bound::new(py, SendWrapper::new(send.unbind(), rid, context, timing))?;
        let app_send =
            scope::send_function(&wrapper).unwrap_or_else(|_| wrapper.clone().into_any());
        let awaitable = match call::call(app, [&scope, &receive, &app_send]) {
            Ok(a) => a,
            Err(e) => {
                end_without_scope(region, rid);
                return Err(e);
            }
        };
        let recording = Recording {
            scope: dict.unbind(),
            send: wrapper.unbind(),
        };
        match RequestScope::new(py, rid, awaitable.clone(), Some(recording)) {
            Ok(s) => Ok(Bound::new(py, s)?.into_any()),
            // Not awaitable: hand it back unchanged so the server fails exactly as before.
            Err(_) => Ok(awaitable),
        }
    }
}

/// When contexts are captured (`head` is the scan of the request's
/// headers), what the response needs for its own, and `receive` wrapped to
/// see the body if the request may carry one. On any failure `receive` is
/// left as it was.
fn wrap_receive<'py>(
    scope: &Bound<'py, PyDict>,
    head: Option<RequestHead>,
    receive: Bound<'py, PyAny>,
) -> (Bound<'py, PyAny>, Option<ResponseContext>) {
    let Some(head) = head else {
        return (receive, None);
    };
    let response = ResponseContext::new(head.content_type, head.may_have_body);
    let Some(capture) = &response.capture else {
        return (receive, Some(response));
    };
    let wrapper = ReceiveWrapper::new(receive.clone().unbind(), capture.clone());
    match Bound::new(scope.py(), wrapper) {
        Ok(wrapped) => (wrapped.into_any(), Some(response)),
        Err(_) => (receive, None),
    }
}

/// The scope as a dict if it is an HTTP request no outer marker is recording.
fn recordable<'py>(scope: &Bound<'py, PyAny>) -> Option<Bound<'py, PyDict>> {
    let py = scope.py();
    let dict = scope.cast::<PyDict>().ok()?;
    let kind = dict.get_item(intern!(py, "type")).ok()??;
    if kind.cast::<PyString>().ok()?.to_str().ok()? != "http" {
        return None;
    }
    if dict.contains(intern!(py, SCOPE_KEY)).unwrap_or(true) {
        return None;
    }
    Some(dict.clone())
}

/// Publishes request `rid`'s begin record: its start, and with `capture`
/// its context (whose scan is returned), written straight from the scope.
fn publish_begin(
    region: &Region,
    rid: u64,
    scope: &Bound<'_, PyDict>,
    capture: bool,
) -> Option<RequestHead> {
    let py = scope.py();
    let method = scope.get_item(intern!(py, "method")).ok().flatten();
    let path = scope.get_item(intern!(py, "path")).ok().flatten();
    let mut head = None;
    state::publish_with(region, |buf| {
        let kind = write::begin(
            buf,
            rid,
            timeglass_wire::monotonic_ns(),
            state::gettid(),
            text(method.as_ref()),
            text(path.as_ref()),
            capture,
        );
        if capture {
            head = Some(context::write_request(buf, scope));
        }
        kind
    });
    head
}

/// A scope value's UTF-8 bytes if it is a `str`, else none.
fn text<'a>(value: Option<&'a Bound<'_, PyAny>>) -> &'a [u8] {
    value
        .and_then(|v| v.cast::<PyString>().ok())
        .and_then(|v| v.to_str().ok())
        .map_or(b"", str::as_bytes)
}

/// The app raised before returning its coroutine.
fn end_without_scope(region: &Region, rid: u64) {
    let event = Event::RequestEnd(RequestEnd {
        request_id: rid,
        ts_ns: timeglass_wire::monotonic_ns(),
        response_ns: 0,
        status: 0,
        flags: END_ERROR | END_NO_RESPONSE,
        route: String::new(),
    });
    state::publish(region, &event);
    region.dec_inflight();
}

/// Makes sure the running loop has the task factory of `timeglass._on_first_request`
/// (and, through it, that anyio's thread pool is patched). Costs one method
/// call per request once installed; failures are ignored.
fn install_patches(py: Python<'_>) {
    static PATCHES: PyOnceLock<Option<(Py<PyAny>, Py<PyType>)>> = PyOnceLock::new();
    static GET_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let patches = PATCHES.get_or_init(py, || {
        let m = py.import("timeglass._on_first_request").ok()?;
        let install = m.getattr("install").ok()?.unbind();
        let factory = m
            .getattr("TaskFactory")
            .ok()?
            .cast_into::<PyType>()
            .ok()?
            .unbind();
        Some((install, factory))
    });
    let Some((install, factory_type)) = patches else {
        return;
    };
    let Ok(get_loop) = GET_LOOP.import(py, "asyncio.events", "_get_running_loop") else {
        return;
    };
    let Ok(event_loop) = get_loop.call0() else {
        return;
    };
    if event_loop.is_none() {
        return;
    }
    // asyncio's loops keep the factory in an attribute: reading it costs no
    // Python frame, unlike `get_task_factory()`, which other loops (uvloop) need.
    static NO_ATTRIBUTE: AtomicBool = AtomicBool::new(false);
    let attribute = match NO_ATTRIBUTE.load(Ordering::Relaxed) {
        false => event_loop.getattr(intern!(py, "_task_factory")).ok(),
        true => None,
    };
    let current = match attribute {
        Some(factory) => Ok(factory),
        None => {
            NO_ATTRIBUTE.store(true, Ordering::Relaxed);
            event_loop.call_method0(intern!(py, "get_task_factory"))
        }
    };
    if current.is_ok_and(|f| f.get_type().is(factory_type.bind(py))) {
        return;
    }
    if let Err(e) = install.bind(py).call1((event_loop,)) {
        state::warn_once(&format!("cannot follow child tasks: {e}"));
    }
}
