//! A request's context for the dashboard: its headers and query string when
//! it starts (in its begin record), its body as the app reads it, and the
//! response headers when the response starts (both in its finish record).
//! Secrets are redacted here, inside the app, so they never reach the ring
//! file or the store.
//!
//! The body is copied out of the messages `receive` returns (up to
//! [`MAX_BODY_BYTES`]); the app gets the very same message objects.
//! `TIMEGLASS_CONTEXT=0` turns all of it off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use timeglass_wire::{
    env, write, Event, Region, RequestContext, MAX_BODY_BYTES, MAX_HEADER_BYTES, PHASE_HANDLER,
};

use crate::redact::{self, REDACTED};
use crate::state;
use crate::watched::{watch, OnReturn};

/// Whether contexts are captured (`TIMEGLASS_CONTEXT` is not `0`), read once.
pub(crate) fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os(env::CONTEXT).is_none_or(|v| v != "0"))
}

/// Whether a context event could still reach a reader: some recorder has
/// read this ring, or it has not wrapped yet (a later `timeglass attach`
/// reads what it still holds). Once a ring nobody ever read is full, each
/// event only pushes out another unread one, so the capture is skipped; the
/// first read turns it back on.
pub(crate) fn worth_capturing(region: &Region) -> bool {
    region.last_reader_beat().is_some()
        || region.ring_position() < region.geometry().ring_slots as u64
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

/// What the begin record's scan of the headers learnt, for the request's body.
#[derive(Default)]
pub(crate) struct RequestHead {
    /// Its `content-type` header, which says how to redact the body.
    pub content_type: String,
    /// Whether the request may carry a body: an HTTP/1 request without
    /// `content-length` (or with 0) and without `transfer-encoding` has none.
    pub may_have_body: bool,
}

/// Writes the context of the request of `scope` as its begin record
/// carries it: its headers, in one pass over the header list with no
/// Python object created per header, names lowercased and secrets redacted
/// on the bytes, then its query string, redacted too.
pub(crate) fn write_request(buf: &mut Vec<u8>, scope: &Bound<'_, PyDict>) -> RequestHead {
    let py = scope.py();
    let mut head = RequestHead::default();
    let mut framed = false;
    let mut list = write::Headers::start(buf);
    if let Ok(Some(headers)) = scope.get_item(intern!(py, "headers")) {
        let mut budget = MAX_HEADER_BYTES;
        for_each_header(&headers, |name, value| {
            if name.eq_ignore_ascii_case(b"content-type") {
                head.content_type = lossy(cut(value, MAX_ONE_HEADER));
            } else if name.eq_ignore_ascii_case(b"content-length") {
                framed = true;
                head.may_have_body |= value.trim_ascii() != b"0";
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                framed = true;
                head.may_have_body = true;
            }
            push_redacted(&mut list, buf, name, value, &mut budget);
        });
    }
    list.end(buf);
    if !framed && !http1(scope) {
        head.may_have_body = true;
    }
    let query = scope
        .get_item(intern!(py, "query_string"))
        .ok()
        .flatten()
        .and_then(|q| q.cast_into::<PyBytes>().ok());
    write::string_with(buf, |out| {
        if let Some(q) = &query {
            redact::urlencoded_into(cut(q.as_bytes(), MAX_HEADER_BYTES), out);
        }
    });
    head
}

/// Whether the request came over HTTP/1.x (ASGI's default is 1.1).
fn http1(scope: &Bound<'_, PyDict>) -> bool {
    match scope.get_item(intern!(scope.py(), "http_version")) {
        Ok(Some(v)) => v
            .cast::<PyString>()
            .ok()
            .and_then(|v| v.to_str().ok().map(|v| v.starts_with('1')))
            .unwrap_or(false),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Calls `f(name, value)` for each `[name, value]` pair of byte strings of
/// an ASGI header list, reading the bytes in place; anything else in the
/// list is skipped.
fn for_each_header(list: &Bound<'_, PyAny>, mut f: impl FnMut(&[u8], &[u8])) {
    let mut pair_of = |pair: &Bound<'_, PyAny>| {
        if let Ok(t) = pair.cast::<PyTuple>() {
            if t.len() == 2 {
                if let (Ok(n), Ok(v)) = (t.get_borrowed_item(0), t.get_borrowed_item(1)) {
                    if let (Ok(n), Ok(v)) = (n.cast::<PyBytes>(), v.cast::<PyBytes>()) {
                        f(n.as_bytes(), v.as_bytes());
                    }
                }
            }
        } else if let Some((n, v)) = header_pair(pair) {
            f(n.as_bytes(), v.as_bytes());
        }
    };
    if let Ok(list) = list.cast::<PyList>() {
        for pair in list.iter() {
            pair_of(&pair);
        }
    } else if let Ok(iter) = list.try_iter() {
        for pair in iter.flatten() {
            pair_of(&pair);
        }
    }
}

/// Most bytes of one header's name or value that an event carries: a
/// huge header cannot crowd out all the others.
const MAX_ONE_HEADER: usize = MAX_HEADER_BYTES / 4;

/// Appends one header as the record carries it, unless `budget` (the bytes
/// the record has room for) is spent.
fn push_redacted(
    list: &mut write::Headers,
    buf: &mut Vec<u8>,
    name: &[u8],
    value: &[u8],
    budget: &mut usize,
) {
    let name = cut(name, MAX_ONE_HEADER);
    let value = if redact::secret_header_bytes(name) {
        REDACTED.as_bytes()
    } else {
        cut(value, MAX_ONE_HEADER)
    };
    let size = name.len() + value.len();
    // One header too large for what is left is left out; the smaller ones after it still fit.
    if size > *budget {
        return;
    }
    *budget -= size;
    list.push(buf, name, value);
}

/// The first `max` bytes of `bytes`.
fn cut(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

/// FastAPI is calling the endpoint function of the request the calling
/// thread runs; what came before was middleware, routing and dependencies.
/// The request's step keeps the time for its finish record; a step that
/// has nowhere to keep it (a child task's) publishes it as an event. Does
/// nothing outside a recorded request or with contexts off. Never raises.
pub(crate) fn mark_handler() {
    if !enabled() {
        return;
    }
    let ts_ns = timeglass_wire::monotonic_ns();
    if state::note_handler(ts_ns) {
        return;
    }
    let Some(region) = state::region().filter(|r| worth_capturing(r)) else {
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
            ts_ns,
            phase: PHASE_HANDLER,
            ..RequestContext::default()
        }),
    );
}

/// Writes the response's context as request `rid`'s finish record carries
/// it: the headers of its `http.response.start` (`headers`, the message's
/// header list), and the body the app read.
pub(crate) fn write_response(
    buf: &mut Vec<u8>,
    headers: Option<&Bound<'_, PyAny>>,
    context: &ResponseContext,
) {
    let mut list = write::Headers::start(buf);
    if let Some(headers) = headers {
        let mut budget = MAX_HEADER_BYTES;
        for_each_header(headers, |name, value| {
            push_redacted(&mut list, buf, name, value, &mut budget);
        });
    }
    list.end(buf);
    let Some(capture) = &context.capture else {
        return write::body(buf, b"", 0);
    };
    let body = capture
        .first
        .lock()
        .map(|b| redact::body(&context.content_type, &b))
        .unwrap_or_default();
    write::body(buf, &body, capture.total.load(Ordering::Relaxed));
}

/// One `[name, value]` pair (a tuple or a list) of byte strings.
fn header_pair<'py>(
    pair: &Bound<'py, PyAny>,
) -> Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let name = pair.get_item(0).ok()?.cast_into::<PyBytes>().ok()?;
    let value = pair.get_item(1).ok()?.cast_into::<PyBytes>().ok()?;
    Some((name, value))
}

/// The bytes as text, invalid UTF-8 replaced (the common, valid case checked first).
fn lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
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
    /// `None` when the request has no body (no allocation for it then).
    pub capture: Option<Arc<BodyCapture>>,
    pub content_type: String,
}

impl ResponseContext {
    pub fn new(content_type: String, may_have_body: bool) -> ResponseContext {
        ResponseContext {
            capture: may_have_body.then(Default::default),
            content_type,
        }
    }
}
