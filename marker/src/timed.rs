//! `_native.TimedMethod`: a statement method of a sync driver, timed in Rust.
//!
//! A Python wrapper around `cursor.execute` costs several function calls per
//! statement, which a loop of small SQLite queries feels. This descriptor
//! calls the original method directly, adds no Python frame (so a failing
//! statement's traceback is exactly the driver's), and records the statement
//! only when the calling thread runs a request and no ORM hook above it is
//! already timing it.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::capture;

/// Where the affected-rows count is read after a statement.
#[derive(Clone, Copy)]
enum RowsFrom {
    /// `result.rowcount` (sqlite3's `execute` returns the cursor).
    Result,
    /// `self.rowcount` (psycopg's `execute` returns nothing useful).
    Target,
}

#[pyclass(module = "timeglass._native", frozen)]
pub struct TimedMethod {
    #[pyo3(get)]
    original: Py<PyAny>,
    driver: Py<PyString>,
    rows: RowsFrom,
    /// A context variable that is true while an ORM above times the statement.
    suppress: Option<Py<PyAny>>,
}

#[pymethods]
impl TimedMethod {
    /// `TimedMethod(original, driver, rows_from_result, suppress=None)`.
    #[new]
    #[pyo3(signature = (original, driver, rows_from_result, suppress=None))]
    fn new(
        original: Py<PyAny>,
        driver: Py<PyString>,
        rows_from_result: bool,
        suppress: Option<Py<PyAny>>,
    ) -> Self {
        TimedMethod {
            original,
            driver,
            rows: if rows_from_result {
                RowsFrom::Result
            } else {
                RowsFrom::Target
            },
            suppress,
        }
    }

    fn __get__(
        slf: Py<Self>,
        py: Python<'_>,
        obj: Option<Py<PyAny>>,
        _owner: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match obj {
            Some(target) if !target.is_none(py) => Ok(Py::new(
                py,
                BoundTimed {
                    method: slf,
                    target,
                },
            )?
            .into_any()),
            _ => Ok(slf.into_any()),
        }
    }

    /// Called through the class: `Cursor.execute(cursor, sql, params)`.
    #[pyo3(signature = (target, *args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        target: Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.run(py, &target, args, kwargs)
    }
}

/// The method bound to one cursor or connection.
#[pyclass(module = "timeglass._native", frozen)]
pub struct BoundTimed {
    method: Py<TimedMethod>,
    target: Py<PyAny>,
}

#[pymethods]
impl BoundTimed {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.method
            .get()
            .run(py, self.target.bind(py), args, kwargs)
    }
}

impl TimedMethod {
    fn run<'py>(
        &self,
        py: Python<'py>,
        target: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let start = capture::query_begin();
        let call = || {
            let mut all = Vec::with_capacity(args.len() + 1);
            all.push(target.clone());
            all.extend(args.iter());
            let full = PyTuple::new(py, all)?;
            self.original.bind(py).call(full, kwargs)
        };
        if start == 0 || self.suppressed(py) {
            return call();
        }
        let result = call();
        let sql = args.get_item(0).ok();
        let sql = sql.map(|s| self.statement_text(target, s));
        let params = args.get_item(1).ok();
        let empty = PyString::new(py, "");
        let sql = sql.as_ref().unwrap_or(empty.as_any());
        match &result {
            Ok(value) => {
                let source = match self.rows {
                    RowsFrom::Result => value,
                    RowsFrom::Target => target,
                };
                let rows = source.getattr(intern!(py, "rowcount")).ok();
                capture::record_query(
                    py,
                    start,
                    self.driver.bind(py).as_any(),
                    sql,
                    params.as_ref(),
                    rows.as_ref(),
                    None,
                    None,
                );
            }
            Err(e) => {
                let error = e.value(py).clone().into_any();
                capture::record_query(
                    py,
                    start,
                    self.driver.bind(py).as_any(),
                    sql,
                    params.as_ref(),
                    None,
                    Some(&error),
                    None,
                );
            }
        }
        result
    }

    fn suppressed(&self, py: Python<'_>) -> bool {
        let Some(var) = &self.suppress else {
            return false;
        };
        // `ContextVar.get()`: the C API for it is not in the stable ABI.
        var.bind(py)
            .call_method0(intern!(py, "get"))
            .and_then(|v| v.is_truthy())
            .unwrap_or(false)
    }

    /// A `psycopg.sql.Composable` (anything with `as_string`) as the SQL it makes.
    fn statement_text<'py>(
        &self,
        target: &Bound<'py, PyAny>,
        sql: Bound<'py, PyAny>,
    ) -> Bound<'py, PyAny> {
        if sql.is_instance_of::<PyString>() || sql.is_instance_of::<PyBytes>() {
            return sql;
        }
        let py = sql.py();
        match sql.call_method1(intern!(py, "as_string"), (target,)) {
            Ok(text) => text,
            Err(_) => sql,
        }
    }
}
