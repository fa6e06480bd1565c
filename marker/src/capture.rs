//! Timing SQL statements and outgoing HTTP calls: what the driver patches of
//! `timeglass._on_driver_import` call around each one.
//!
//! `query_begin()` is the whole cost outside a request (one slot read). Inside
//! one, `query_end(...)`/`call_end(...)` take the end time, the issuing stack
//! (`stack.rs`), render the statement and its parameters within their size
//! limits, and publish one event. Nothing here raises into the app: bad
//! arguments are recorded as best they can be, and failures drop the event.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use timeglass_wire::{
    truncate_str, Call, Event, Query, MAX_ERROR_BYTES, MAX_PARAMS_BYTES, MAX_SQL_BYTES,
};

use crate::{stack, state};

/// Set by `configure_capture`: capture is on once a patch may call us.
static ON: AtomicBool = AtomicBool::new(false);
/// Whether parameters are recorded (`--no-sql-params` turns this off).
static PARAMS: AtomicBool = AtomicBool::new(true);

/// Sequences of parameters longer than this are shown by their first items.
const SHOWN_ITEMS: usize = 64;

/// `_native.configure_capture(hidden, params)`: where TimeGlass's own code
/// lives, and whether to record parameters. Idempotent.
#[pyfunction]
pub(crate) fn configure_capture(hidden: Vec<String>, params: bool) {
    stack::configure(stack::Config { hidden });
    PARAMS.store(params, Ordering::Relaxed);
    ON.store(true, Ordering::Release);
}

/// `_native.query_begin()`: the start time (monotonic ns) when the calling
/// thread runs a recorded request, else 0 (then call nothing else).
#[pyfunction]
pub(crate) fn query_begin() -> u64 {
    if !ON.load(Ordering::Relaxed) || state::region().is_none() {
        return 0;
    }
    match state::current_slot().map_or(0, |s| s.get()) {
        0 => 0,
        _ => timeglass_wire::monotonic_ns().max(1),
    }
}

/// `_native.query_end(start_ns, driver, sql, params, rows, error, outer)`.
///
/// `rows` is -1 when unknown; `error` the exception the statement raised;
/// `outer` a frame to put outside the current stack (SQLAlchemy's async
/// greenlets run apart from the coroutine that awaits them).
#[pyfunction]
#[pyo3(signature = (start_ns, driver, sql, params=None, rows=None, error=None, outer=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn query_end(
    py: Python<'_>,
    start_ns: &Bound<'_, PyAny>,
    driver: &Bound<'_, PyAny>,
    sql: &Bound<'_, PyAny>,
    params: Option<&Bound<'_, PyAny>>,
    rows: Option<&Bound<'_, PyAny>>,
    error: Option<&Bound<'_, PyAny>>,
    outer: Option<&Bound<'_, PyAny>>,
) {
    let start = start_ns.extract().unwrap_or(0);
    record_query(py, start, driver, sql, params, rows, error, outer);
}

/// Publishes one statement of the calling thread's request; does nothing
/// outside a request. Never fails.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_query(
    py: Python<'_>,
    start_ns: u64,
    driver: &Bound<'_, PyAny>,
    sql: &Bound<'_, PyAny>,
    params: Option<&Bound<'_, PyAny>>,
    rows: Option<&Bound<'_, PyAny>>,
    error: Option<&Bound<'_, PyAny>>,
    outer: Option<&Bound<'_, PyAny>>,
) {
    let end_ns = timeglass_wire::monotonic_ns();
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let Some((region, request_id)) = recording() else {
            return;
        };
        let (sql, sql_len) = text(sql, MAX_SQL_BYTES);
        let (params, params_len) = match params.filter(|p| !p.is_none()) {
            Some(p) if PARAMS.load(Ordering::Relaxed) => {
                let (text, len) = render_params(p);
                (Some(text), len)
            }
            _ => (None, 0),
        };
        let start_ns = if start_ns == 0 { end_ns } else { start_ns };
        crate::info::add_db(request_id, end_ns.saturating_sub(start_ns));
        let event = Event::Query(Query {
            request_id,
            start_ns,
            end_ns,
            rows: rows.and_then(|r| r.extract().ok()).unwrap_or(-1),
            driver: text(driver, 64).0,
            sql,
            sql_len,
            params,
            params_len,
            error: error.filter(|e| !e.is_none()).map(describe),
            stack: stack::capture(py, region, outer.filter(|o| !o.is_none())),
        });
        state::publish(region, &event);
    }));
}

/// `_native.call_end(start_ns, library, method, url, status, error, outer)`:
/// an outgoing HTTP call; `status` 0 when no response came.
#[pyfunction]
#[pyo3(signature = (start_ns, library, method, url, status=None, error=None, outer=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn call_end(
    py: Python<'_>,
    start_ns: &Bound<'_, PyAny>,
    library: &Bound<'_, PyAny>,
    method: &Bound<'_, PyAny>,
    url: &Bound<'_, PyAny>,
    status: Option<&Bound<'_, PyAny>>,
    error: Option<&Bound<'_, PyAny>>,
    outer: Option<&Bound<'_, PyAny>>,
) {
    let end_ns = timeglass_wire::monotonic_ns();
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let Some((region, request_id)) = recording() else {
            return;
        };
        let event = Event::Call(Call {
            request_id,
            start_ns: start_ns.extract().unwrap_or(end_ns),
            end_ns,
            method: text(method, 32).0,
            url: redact_url(&text(url, MAX_SQL_BYTES).0),
            status: status.and_then(|s| s.extract().ok()).unwrap_or(0),
            error: error.filter(|e| !e.is_none()).map(describe),
            library: text(library, 64).0,
            stack: stack::capture(py, region, outer.filter(|o| !o.is_none())),
        });
        state::publish(region, &event);
    }));
}

fn recording() -> Option<(&'static timeglass_wire::Region, u64)> {
    let region = state::region()?;
    let rid = state::current_slot()?.get();
    (rid != 0).then_some((region, rid))
}

/// `obj` as text cut to `max_bytes` (on a character boundary), with the
/// length of all of it in characters (bytes for `bytes`). Never fails:
/// invalid UTF-8 and lone surrogates come out replaced.
fn text(obj: &Bound<'_, PyAny>, max_bytes: usize) -> (String, u64) {
    if let Ok(s) = obj.cast::<PyString>() {
        return string_text(s, max_bytes);
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        let bytes = b.as_bytes();
        let head = &bytes[..bytes.len().min(max_bytes)];
        let lossy = String::from_utf8_lossy(head);
        return (
            truncate_str(&lossy, max_bytes).to_string(),
            bytes.len() as u64,
        );
    }
    match obj.str() {
        Ok(s) => string_text(&s, max_bytes),
        Err(_) => (String::new(), 0),
    }
}

fn string_text(s: &Bound<'_, PyString>, max_bytes: usize) -> (String, u64) {
    let chars = s.len().unwrap_or(0);
    // A character is at least one byte: cut the string first so a huge one is
    // never converted whole.
    let head = if chars > max_bytes {
        let py = s.py();
        // SAFETY: `s` is a str; PyUnicode_Substring returns a new reference or null.
        let ptr = unsafe { pyo3::ffi::PyUnicode_Substring(s.as_ptr(), 0, max_bytes as isize) };
        // SAFETY: a new reference (or null, which gives an error we ignore).
        match unsafe { Bound::from_owned_ptr_or_err(py, ptr) } {
            Ok(sub) => sub.cast_into::<PyString>().unwrap_or_else(|_| s.clone()),
            Err(_) => s.clone(),
        }
    } else {
        s.clone()
    };
    let text = head.to_string_lossy();
    (truncate_str(&text, max_bytes).to_string(), chars as u64)
}

/// The parameters' `repr`, long sequences by their first items only.
fn render_params(params: &Bound<'_, PyAny>) -> (String, u64) {
    let shown = if let Ok(t) = params.cast::<PyTuple>() {
        (t.len() > SHOWN_ITEMS).then(|| (t.get_slice(0, SHOWN_ITEMS).into_any(), t.len()))
    } else if let Ok(l) = params.cast::<PyList>() {
        (l.len() > SHOWN_ITEMS).then(|| (l.get_slice(0, SHOWN_ITEMS).into_any(), l.len()))
    } else {
        None
    };
    let rendered = match &shown {
        Some((head, n)) => head
            .repr()
            .map(|r| format!("{} (first {SHOWN_ITEMS} of {n} items)", r.to_string_lossy())),
        None => params.repr().map(|r| r.to_string_lossy().into_owned()),
    }
    .unwrap_or_else(|_| "<parameters without a repr>".into());
    let chars = rendered.chars().count() as u64;
    (truncate_str(&rendered, MAX_PARAMS_BYTES).to_string(), chars)
}

/// `ExceptionType: message`.
fn describe(error: &Bound<'_, PyAny>) -> String {
    let py = error.py();
    let name = error
        .get_type()
        .getattr(intern!(py, "__qualname__"))
        .ok()
        .and_then(|n| n.extract::<String>().ok())
        .unwrap_or_else(|| "Exception".into());
    let message = error.str().map(|s| s.to_string_lossy().into_owned());
    let full = match message {
        Ok(m) if !m.is_empty() => format!("{name}: {m}"),
        _ => name,
    };
    truncate_str(&full, MAX_ERROR_BYTES).to_string()
}

/// Query-string keys whose values are redacted when a key contains one of these.
const SECRET_KEYS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "key",
    "auth",
    "signature",
    "sig",
    "session",
    "credential",
    "jwt",
    "otp",
];

pub(crate) const REDACTED: &str = "REDACTED";

/// The URL with the password of its user info and the values of
/// secret-looking query parameters replaced by `REDACTED`.
pub(crate) fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query.split('&').map(redact_pair).collect();
        out.push_str(&pairs.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn redact_pair(pair: &str) -> String {
    match pair.split_once('=') {
        Some((key, value)) if !value.is_empty() => {
            let lower = key.to_ascii_lowercase();
            if SECRET_KEYS.iter().any(|s| lower.contains(s)) {
                format!("{key}={REDACTED}")
            } else {
                pair.to_string()
            }
        }
        _ => pair.to_string(),
    }
}

fn redact_userinfo(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let password = if userinfo.contains(':') {
                format!(":{REDACTED}")
            } else {
                String::new()
            };
            format!("{scheme}://{user}{password}@{host}{path}")
        }
        None => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url("https://api.example.com/v1/x?q=shoes&api_key=abc&Token=t&page=2#top"),
            "https://api.example.com/v1/x?q=shoes&api_key=REDACTED&Token=REDACTED&page=2#top"
        );
        assert_eq!(
            redact_url("http://bob:hunter2@db.local:8080/p?password="),
            "http://bob:REDACTED@db.local:8080/p?password="
        );
        assert_eq!(redact_url("http://h/?flag&x=1"), "http://h/?flag&x=1");
        assert_eq!(redact_url("no url at all"), "no url at all");
    }
}
