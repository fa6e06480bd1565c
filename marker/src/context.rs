//! A request's context for the dashboard: its headers and query string when
//! it starts, its body as the app reads it, and the response headers when the
//! response starts. Secrets are redacted here, inside the app, so they never
//! reach the ring file or the store.
//!
//! The body is copied out of the messages `receive` returns (up to
//! [`MAX_BODY_BYTES`]); the app gets the very same message objects.
//! `TIMEGLASS_CONTEXT=0` turns all of it off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use timeglass_wire::{
    env, Event, RequestContext, MAX_BODY_BYTES, PHASE_HANDLER, PHASE_REQUEST, PHASE_RESPONSE,
};

use crate::redact::{self, REDACTED};
use crate::state;
use crate::watched::{watch, OnReturn};

/// Whether contexts are captured (`TIMEGLASS_CONTEXT` is not `0`), read once.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os(env::CONTEXT).is_none_or(|v| v != "0"))
}

/// The body bytes a request's app has read so far, shared by its `receive`
/// and `send` wrappers.
#[derive(Default)]
pub struct BodyCapture {
    first: Mutex<Vec<u8>>,
    total: AtomicU64,
}

impl BodyCapture {
    /// Copies the body chunk of an `http.request` message.
    pub fn add_from_message(&self, message: &Bound<'_, PyAny>) {
        let py = message.py();
        let Ok(dict) = message.cast::<PyDict>() else {
            return;
        };
        let is_body = dict
            .get_item(intern!(py, "type"))
            .ok()
            .flatten()
            .and_then(|t| t.cast_into::<PyString>().ok())
            .is_some_and(|t| t.to_str().is_ok_and(|t| t == "http.request"));
        if !is_body {
            return;
        }
        if let Ok(Some(body)) = dict.get_item(intern!(py, "body")) {
            if let Ok(bytes) = body.cast::<PyBytes>() {
                self.add(bytes.as_bytes());
            }
        }
    }

    fn add(&self, chunk: &[u8]) {
        self.total.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            let room = MAX_BODY_BYTES.saturating_sub(first.len());
            first.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
}

/// The context event published when request `rid` enters the app.
pub fn request_event(rid: u64, scope: &Bound<'_, PyDict>) -> Event {
    let py = scope.py();
    let headers = scope
        .get_item(intern!(py, "headers"))
        .ok()
        .flatten()
        .map(|h| headers(&h))
        .unwrap_or_default();
    let query = scope
        .get_item(intern!(py, "query_string"))
        .ok()
        .flatten()
        .and_then(|q| q.cast_into::<PyBytes>().ok())
        .map(|q| lossy(&redact::urlencoded(q.as_bytes())))
        .unwrap_or_default();
    Event::RequestContext(RequestContext {
        request_id: rid,
        ts_ns: timeglass_wire::monotonic_ns(),
        phase: PHASE_REQUEST,
        headers,
        query,
        body: Vec::new(),
        body_bytes: 0,
    })
}

/// FastAPI is calling the endpoint function of the request the calling
/// thread runs; what came before was middleware, routing and dependencies.
/// Does nothing outside a recorded request or with contexts off. Never
/// raises.
fn mark_handler() {
    if !enabled() {
        return;
    }
    let Some(region) = state::region() else {
        return;
    };
    let rid = state::current_slot().map_or(0, |s| s.get());
    if rid == 0 {
        return;
    }
    state::publish(
        region,
        &Event::RequestContext(RequestContext {
            request_id: rid,
            ts_ns: timeglass_wire::monotonic_ns(),
            phase: PHASE_HANDLER,
            ..RequestContext::default()
        }),
    );
}

/// `_native.MarkHandler(run_endpoint_function)`: FastAPI's function that
/// calls an endpoint, marking the handler stage first. Returns what the
/// original returns (its coroutine) and adds no Python frame, so the
/// profiled stacks show FastAPI's own frames only.
#[pyclass(module = "timeglass._native", frozen)]
pub struct MarkHandler {
    #[pyo3(get)]
    original: Py<PyAny>,
}

#[pymethods]
impl MarkHandler {
    #[new]
    fn new(original: Py<PyAny>) -> Self {
        MarkHandler { original }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        mark_handler();
        self.original.bind(py).call(args, kwargs)
    }
}

/// The context event published when request `rid`'s response starts: its
/// headers, and the body the app has read by then.
pub fn response_event(
    rid: u64,
    message: &Bound<'_, PyDict>,
    request_content_type: &str,
    capture: &BodyCapture,
) -> Event {
    let py = message.py();
    let headers = message
        .get_item(intern!(py, "headers"))
        .ok()
        .flatten()
        .map(|h| headers(&h))
        .unwrap_or_default();
    let body = capture
        .first
        .lock()
        .map(|b| redact::body(request_content_type, &b))
        .unwrap_or_default();
    Event::RequestContext(RequestContext {
        request_id: rid,
        ts_ns: timeglass_wire::monotonic_ns(),
        phase: PHASE_RESPONSE,
        headers,
        query: String::new(),
        body,
        body_bytes: capture.total.load(Ordering::Relaxed),
    })
}

/// The request's `content-type`, which says how to redact its body.
pub fn content_type(scope: &Bound<'_, PyDict>) -> String {
    let py = scope.py();
    let Ok(Some(list)) = scope.get_item(intern!(py, "headers")) else {
        return String::new();
    };
    let Ok(iter) = list.try_iter() else {
        return String::new();
    };
    for pair in iter.flatten() {
        if let Some((name, value)) = header_pair(&pair) {
            if name.as_bytes().eq_ignore_ascii_case(b"content-type") {
                return lossy(value.as_bytes());
            }
        }
    }
    String::new()
}

/// ASGI headers (an iterable of `[name, value]` byte pairs), secrets redacted.
fn headers(list: &Bound<'_, PyAny>) -> Vec<(String, String)> {
    let Ok(iter) = list.try_iter() else {
        return Vec::new();
    };
    iter.flatten()
        .filter_map(|pair| {
            let (name, value) = header_pair(&pair)?;
            let name = lossy(name.as_bytes()).to_ascii_lowercase();
            let value = match redact::secret_header(&name) {
                true => REDACTED.to_string(),
                false => lossy(value.as_bytes()),
            };
            Some((name, value))
        })
        .collect()
}

/// One `[name, value]` pair (a tuple or a list) of byte strings.
fn header_pair<'py>(
    pair: &Bound<'py, PyAny>,
) -> Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let name = pair.get_item(0).ok()?.cast_into::<PyBytes>().ok()?;
    let value = pair.get_item(1).ok()?.cast_into::<PyBytes>().ok()?;
    Some((name, value))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `receive` callable handed to the app: calls the server's `receive`
/// and notes the body chunks of what it returns.
#[pyclass(module = "timeglass._native", frozen)]
pub struct ReceiveWrapper {
    receive: Py<PyAny>,
    capture: Arc<BodyCapture>,
}

impl ReceiveWrapper {
    pub fn new(receive: Py<PyAny>, capture: Arc<BodyCapture>) -> Self {
        ReceiveWrapper { receive, capture }
    }
}

#[pymethods]
impl ReceiveWrapper {
    fn __call__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let awaitable = self.receive.bind(py).call0()?;
        let on_return = OnReturn::Received(self.capture.clone());
        Ok(watch(awaitable, on_return).unwrap_or_else(|untouched| untouched))
    }
}

/// What a request's `send` wrapper needs to publish the response context.
pub struct ResponseContext {
    pub capture: Arc<BodyCapture>,
    pub content_type: String,
}

impl ResponseContext {
    pub fn new(scope: &Bound<'_, PyDict>) -> ResponseContext {
        ResponseContext {
            capture: Default::default(),
            content_type: content_type(scope),
        }
    }
}
