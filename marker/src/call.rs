//! Calls into Python without an argument tuple where CPython allows it, and
//! the C functions the marker hands out so that it is called without one.
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

/// A C function's method table entry, which CPython keeps a pointer to for
/// as long as any function made from it lives: always a `static`.
pub(crate) struct MethodDef(pub(crate) ffi::PyMethodDef);

// SAFETY: the entry is never written after initialisation; its pointers are to statics.
unsafe impl Sync for MethodDef {}

impl MethodDef {
    /// A new C function of this entry whose `__self__` (its first argument) is
    /// `slf`, of the module named `module` if any.
    pub(crate) fn function<'py>(
        &'static self,
        slf: &Bound<'py, PyAny>,
        module: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let def = std::ptr::from_ref(&self.0).cast_mut();
        let module = module.map_or(std::ptr::null_mut(), Bound::as_ptr);
        // SAFETY: `def` is 'static; the new function holds references to `slf` and `module`.
        unsafe {
            let f = ffi::PyCFunction_NewEx(def, slf.as_ptr(), module);
            Bound::from_owned_ptr_or_err(slf.py(), f)
        }
    }
}
