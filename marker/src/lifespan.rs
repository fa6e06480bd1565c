//! Telling a clean shutdown from a crash.
//!
//! A server stopped by SIGTERM shuts down gracefully and then often dies of
//! that very signal (uvicorn raises it again with its default action once it
//! is done), so the interpreter's exit handlers never run and the ring file
//! would stay behind, as after a SIGKILL: the recorder would call it a crash,
//! and each stop would leave 4 MiB in `/dev/shm`. What tells the two apart is
//! the ASGI lifespan: a server that stops cleanly first sees the app send
//! `lifespan.shutdown.complete`. The marker removes its ring file then; a
//! recorder that found it keeps reading its mapping.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::state;

/// The `send` of a lifespan scope: forwards everything, and removes the ring
/// file once the app has shut down.
#[pyclass(module = "timeglass._native", frozen)]
pub struct LifespanSend {
    send: Py<PyAny>,
}

#[pymethods]
impl LifespanSend {
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        message: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // A failed shutdown is still a deliberate stop, not a crash.
        if matches!(
            message_type(&message).as_deref(),
            Some("lifespan.shutdown.complete" | "lifespan.shutdown.failed")
        ) {
            state::remove_ring_file();
        }
        self.send.bind(py).call1((message,))
    }
}

fn message_type(message: &Bound<'_, PyAny>) -> Option<String> {
    let dict = message.cast::<PyDict>().ok()?;
    dict.get_item(intern!(message.py(), "type"))
        .ok()??
        .extract()
        .ok()
}

/// `send`, wrapped when `scope` is a lifespan scope and this process has a ring.
pub(crate) fn watch<'py>(scope: &Bound<'py, PyAny>, send: Bound<'py, PyAny>) -> Bound<'py, PyAny> {
    let py = scope.py();
    let is_lifespan = state::region().is_some()
        && scope
            .cast::<PyDict>()
            .ok()
            .and_then(|d| d.get_item(intern!(py, "type")).ok().flatten())
            .and_then(|t| {
                t.cast::<PyString>()
                    .ok()?
                    .to_str()
                    .ok()
                    .map(|t| t == "lifespan")
            })
            .unwrap_or(false);
    if !is_lifespan {
        return send;
    }
    let wrapper = LifespanSend {
        send: send.clone().unbind(),
    };
    match Bound::new(py, wrapper) {
        Ok(w) => w.into_any(),
        Err(_) => send,
    }
}
