//! Calls into Python without an argument tuple where CPython allows it.
//!
//! The extension is built for the stable ABI of CPython 3.10, which has no
//! `PyObject_Vectorcall`, so pyo3 builds a tuple for every call. CPython
//! 3.11 and later export it: found once with `dlsym`, it passes the
//! arguments as they are. On 3.10 the tuple stays.

use std::ffi::c_void;
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

pub(crate) type Vectorcall = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    usize,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// `PyObject_Vectorcall`, where CPython exports it (3.11 and later).
pub(crate) fn vectorcall() -> Option<Vectorcall> {
    static FOUND: OnceLock<Option<Vectorcall>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym on the process's global symbols with a NUL-terminated name.
        let ptr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"PyObject_Vectorcall".as_ptr()) };
        // SAFETY: the symbol has this signature in every CPython that exports it.
        (!ptr.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, Vectorcall>(ptr) })
    })
}

/// `f(*args)`.
pub(crate) fn call<'py, const N: usize>(
    f: &Bound<'py, PyAny>,
    args: [&Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyAny>> {
    let py = f.py();
    let Some(vectorcall) = vectorcall() else {
        return f.call1(PyTuple::new(py, args)?);
    };
    let pointers = args.map(Bound::as_ptr);
    // SAFETY: the GIL is held; `f` and every argument are valid for the call.
    unsafe {
        let result = vectorcall(f.as_ptr(), pointers.as_ptr(), N, std::ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, result)
    }
}
