//! `_native.bind(rid, func)`: runs `func` with the calling thread's slot set to
//! `rid`, for work a request hands to a thread pool.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::state;

#[pyclass(module = "timeglass._native", frozen)]
pub struct BoundCall {
    rid: u64,
    #[pyo3(get)]
    func: Py<PyAny>,
}

#[pymethods]
impl BoundCall {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        state::as_request(self.rid, || self.func.bind(py).call(args, kwargs))
    }
}

#[pyfunction]
pub(crate) fn bind(rid: u64, func: Py<PyAny>) -> BoundCall {
    BoundCall { rid, func }
}
