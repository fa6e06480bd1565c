//! Test and debugging helper: reads a ring file back. Not used by the marker itself.

use std::path::PathBuf;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use timeglass_wire::{Event, Reader, Region, StackRef};

/// `_native._read_events(path)`: every event still in the ring file at `path`,
/// oldest first, as dicts. For tests and debugging only.
#[pyfunction]
pub(crate) fn _read_events(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyList>> {
    let region = Region::open(&path).map_err(|e| PyOSError::new_err(e.to_string()))?;
    let mut events = Vec::new();
    // Begin and finish records as the events they fold, as the join reads them.
    Reader::new().poll(&region, |kind, bytes| match Event::decode(kind, bytes) {
        Ok(event) => events.extend(event.into_parts().map(Ok)),
        Err(e) => events.push(Err(e)),
    });
    let out = PyList::empty(py);
    for event in events {
        let d = PyDict::new(py);
        match event {
            Ok(Event::RequestStart(e)) => {
                d.set_item("kind", "start")?;
                d.set_item("request_id", e.request_id)?;
                d.set_item("ts_ns", e.ts_ns)?;
                d.set_item("tid", e.tid)?;
                d.set_item("method", e.method)?;
                d.set_item("path", e.path)?;
            }
            Ok(Event::RequestEnd(e)) => {
                d.set_item("kind", "end")?;
                d.set_item("request_id", e.request_id)?;
                d.set_item("ts_ns", e.ts_ns)?;
                d.set_item("response_ns", e.response_ns)?;
                d.set_item("status", e.status)?;
                d.set_item("flags", e.flags)?;
                d.set_item("route", e.route)?;
            }
            Ok(Event::RequestContext(e)) => {
                d.set_item("kind", "context")?;
                d.set_item("request_id", e.request_id)?;
                d.set_item("ts_ns", e.ts_ns)?;
                d.set_item("phase", e.phase)?;
                d.set_item("headers", e.headers)?;
                d.set_item("query", e.query)?;
                d.set_item("body", PyBytes::new(py, &e.body))?;
                d.set_item("body_bytes", e.body_bytes)?;
            }
            Ok(Event::Query(q)) => {
                d.set_item("kind", "query")?;
                d.set_item("request_id", q.request_id)?;
                d.set_item("start_ns", q.start_ns)?;
                d.set_item("end_ns", q.end_ns)?;
                d.set_item("rows", q.rows)?;
                d.set_item("driver", q.driver)?;
                d.set_item("sql", q.sql)?;
                d.set_item("sql_len", q.sql_len)?;
                d.set_item("params", q.params)?;
                d.set_item("params_len", q.params_len)?;
                d.set_item("error", q.error)?;
                set_stack(&d, &q.stack)?;
            }
            Ok(Event::Call(c)) => {
                d.set_item("kind", "call")?;
                d.set_item("request_id", c.request_id)?;
                d.set_item("start_ns", c.start_ns)?;
                d.set_item("end_ns", c.end_ns)?;
                d.set_item("method", c.method)?;
                d.set_item("url", c.url)?;
                d.set_item("status", c.status)?;
                d.set_item("error", c.error)?;
                d.set_item("library", c.library)?;
                set_stack(&d, &c.stack)?;
            }
            Ok(Event::Gc(g)) => {
                d.set_item("kind", "gc")?;
                d.set_item("request_id", g.request_id)?;
                d.set_item("tid", g.tid)?;
                d.set_item("start_ns", g.start_ns)?;
                d.set_item("end_ns", g.end_ns)?;
            }
            Ok(Event::Alloc(a)) => {
                d.set_item("kind", "alloc")?;
                d.set_item("request_id", a.request_id)?;
                d.set_item("tid", a.tid)?;
                d.set_item("ts_ns", a.ts_ns)?;
                d.set_item("bytes", a.bytes)?;
                set_stack(&d, &a.stack)?;
            }
            // Split above: never here.
            Ok(Event::RequestBegin(_) | Event::RequestFinish(_)) => {
                d.set_item("kind", "folded")?;
            }
            Ok(Event::Unknown(kind)) => {
                d.set_item("kind", "unknown")?;
                d.set_item("code", kind)?;
            }
            Err(e) => {
                d.set_item("kind", "undecodable")?;
                d.set_item("error", e.to_string())?;
            }
        }
        out.append(d)?;
    }
    Ok(out)
}

/// `stack_id`, and `frames` as `(name, short, line, library)` tuples when
/// this event defines the stack.
fn set_stack(d: &Bound<'_, PyDict>, stack: &StackRef) -> PyResult<()> {
    d.set_item("stack_id", stack.id)?;
    let frames = stack.frames.as_ref().map(|frames| {
        frames
            .iter()
            .map(|f| (f.name.clone(), f.short.clone(), f.line, f.library))
            .collect::<Vec<_>>()
    });
    d.set_item("frames", frames)
}

/// `_native._classify_code(code)`: `(short filename, library)` of a code
/// object, exactly as the frames of a query's stack get them. For tests.
#[pyfunction]
pub(crate) fn _classify_code(py: Python<'_>, code: Bound<'_, PyAny>) -> (String, bool) {
    crate::stack::classify(py, code)
}
