//! The Python stack that issued a query or call, cheaply.
//!
//! Every query walks the calling thread's frames, but only to build a key of
//! `(code object, instruction offset)` pairs: names, files and line numbers
//! are looked up once per distinct stack and the stack gets an id. The first
//! event of a stack carries its frames; later ones only the id, until the
//! definition may have been overwritten in the ring, when it is sent again.
//! Code objects in the tables are kept alive, so their addresses cannot be
//! reused for other code while they serve as keys.
//!
//! Frames are named as py-spy names them (qualified name, file, line, and
//! the file shortened the same way), so a stack built here merges with the
//! sampled stacks of the same code.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use timeglass_wire::{frame_bytes, Region, StackFrame, StackRef, MAX_STACK_BYTES};

use crate::state;

/// Frames walked at most; deeper recursion keeps its innermost frames.
const MAX_DEPTH: usize = 512;
/// Above these sizes the tables start over (a pathological app creating
/// code objects at run time); every stack is then defined again.
const MAX_CODES: usize = 16_384;
const MAX_STACKS: usize = 8_192;

/// Where frames come from and what they are.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    /// Files under these prefixes are TimeGlass's own wrappers (or an event
    /// dispatcher calling them): dropped from the inner end of a stack.
    /// Library code is told apart by [`timeglass_wire::is_library_file`],
    /// the renderers' rule, so a caller and a flame graph agree.
    pub hidden: Vec<String>,
}

struct Code {
    /// Keeps the code object, and so its address, alive while it is a key.
    _pin: Py<PyAny>,
    name: String,
    filename: String,
    short: String,
    library: bool,
    hidden: bool,
}

struct Defined {
    id: u64,
    /// Ring position when its frames were last published.
    published_at: u64,
    /// Innermost frames of TimeGlass's own (or a dispatcher's) to leave out.
    skip: usize,
}

/// A multiply-rotate hasher for keys of pointers and offsets: the default
/// SipHash costs more than the rest of a lookup on these short keys, and
/// nothing here is exposed to hash flooding (keys are our own addresses).
#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u32 as u64);
    }
}

type Fast = BuildHasherDefault<FastHasher>;

struct Tables {
    config: Config,
    generation: u64,
    codes: HashMap<usize, Code, Fast>,
    stacks: HashMap<Vec<(usize, i32)>, Defined, Fast>,
    next_id: u64,
    /// The last walk's buffers, kept for the next: a walk is a few dozen
    /// frames, and growing fresh vectors to that size cost more than the
    /// rest of a lookup.
    walked: Vec<Walked>,
    key: Vec<(usize, i32)>,
}

static TABLES: Mutex<Option<Tables>> = Mutex::new(None);

/// Sets the prefixes; may be called again (the tables start over).
pub(crate) fn configure(config: Config) {
    if let Ok(mut t) = TABLES.lock() {
        *t = Some(Tables {
            config,
            generation: 0,
            codes: HashMap::default(),
            stacks: HashMap::default(),
            next_id: 1,
            walked: Vec::new(),
            key: Vec::new(),
        });
    }
}

/// Configures with no prefixes unless [`configure`] already ran: allocation
/// samples take stacks even when statements are not captured.
pub(crate) fn ensure_configured() {
    let unset = TABLES.lock().is_ok_and(|t| t.is_none());
    if unset {
        configure(Config::default());
    }
}

/// One walked frame: an owned frame reference and its key.
struct Walked {
    frame: *mut ffi::PyFrameObject,
    code: usize,
    at: i32,
}

// SAFETY: a `Walked` holds a frame reference only during a walk, with the
// GIL held; the buffer kept in `Tables` between walks is always empty.
unsafe impl Send for Walked {}

/// Owned frame references, released on drop.
struct Walk(Vec<Walked>);

impl Walk {
    /// Releases the frames and hands the emptied buffer back for reuse.
    fn release(mut self) -> Vec<Walked> {
        self.release_frames();
        std::mem::take(&mut self.0)
    }

    fn release_frames(&mut self) {
        for w in self.0.drain(..) {
            // SAFETY: each `frame` is an owned (new) reference taken in `walk`,
            // released once, with the GIL held (we are called with it).
            unsafe { ffi::Py_DECREF(w.frame.cast()) };
        }
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        self.release_frames();
    }
}

/// The issuing stack of the current thread, below any frames of TimeGlass's
/// own, with `outer` (a frame object) and its callers put outside it: the
/// frames of the greenlet that waits for SQLAlchemy's async greenlet.
pub(crate) fn capture(
    py: Python<'_>,
    region: &Region,
    outer: Option<&Bound<'_, PyAny>>,
) -> StackRef {
    let unknown = StackRef {
        id: 0,
        frames: None,
    };
    // A finalizer run by a decref below could re-enter: never wait on ourselves.
    let Ok(mut guard) = TABLES.try_lock() else {
        return unknown;
    };
    let Some(tables) = guard.as_mut() else {
        return unknown;
    };
    // SAFETY: the GIL is held; PyEval_GetFrame returns a borrowed reference.
    let current = unsafe { ffi::PyEval_GetFrame() };
    let mut walk = Walk(std::mem::take(&mut tables.walked));
    walk_from(py, current, &mut walk);
    if let Some(outer) = outer {
        walk_from(py, outer.as_ptr().cast(), &mut walk);
    }
    let found = tables.stack(py, region, &walk);
    tables.walked = walk.release();
    found
}

/// Appends `frame` and its callers, innermost first. `frame` is borrowed.
fn walk_from(py: Python<'_>, frame: *mut ffi::PyFrameObject, out: &mut Walk) {
    if frame.is_null() {
        return;
    }
    // SAFETY: `frame` is a live frame object; we take our own reference.
    unsafe { ffi::Py_INCREF(frame.cast()) };
    let mut frame = frame;
    while !frame.is_null() && out.0.len() < MAX_DEPTH {
        // SAFETY: `frame` is an owned reference to a frame object.
        let code = unsafe { ffi::PyFrame_GetCode(frame) };
        let at = offset(frame);
        out.0.push(Walked {
            frame,
            code: code as usize,
            at,
        });
        // SAFETY: PyFrame_GetCode returned a new reference; the frame keeps
        // the code alive while we hold the frame.
        unsafe { ffi::Py_DECREF(code.cast()) };
        frame = back(py, frame);
    }
    if !frame.is_null() {
        // SAFETY: an owned reference we did not push (the walk was cut short).
        unsafe { ffi::Py_DECREF(frame.cast()) };
    }
}

type FrameFn<T> = unsafe extern "C" fn(*mut ffi::PyFrameObject) -> T;

/// Looks a C API function up at run time: `PyFrame_GetBack` and
/// `PyFrame_GetLasti` are not in the stable ABI this extension is built
/// for, but every CPython it loads in exports them (3.11+ for the second).
fn symbol<T>(name: &CStr) -> Option<FrameFn<T>> {
    // SAFETY: dlsym on the process's global symbols with a NUL-terminated name.
    let ptr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: both functions take a frame object and return `T` in every
    // CPython version that exports them.
    Some(unsafe { std::mem::transmute::<*mut c_void, FrameFn<T>>(ptr) })
}

fn get_back() -> Option<FrameFn<*mut ffi::PyFrameObject>> {
    static F: OnceLock<Option<FrameFn<*mut ffi::PyFrameObject>>> = OnceLock::new();
    *F.get_or_init(|| symbol(c"PyFrame_GetBack"))
}

fn get_lasti() -> Option<FrameFn<c_int>> {
    static F: OnceLock<Option<FrameFn<c_int>>> = OnceLock::new();
    *F.get_or_init(|| symbol(c"PyFrame_GetLasti"))
}

/// The caller of `frame` as a new reference (null at the root).
fn back(py: Python<'_>, frame: *mut ffi::PyFrameObject) -> *mut ffi::PyFrameObject {
    match get_back() {
        // SAFETY: `frame` is a live frame; returns a new reference or null.
        Some(f) => unsafe { f(frame) },
        None => {
            // SAFETY: `frame` is a live frame; borrowed for the getattr.
            let bound = unsafe { Bound::from_borrowed_ptr(py, frame.cast()) };
            match bound.getattr(intern!(py, "f_back")) {
                Ok(b) if !b.is_none() => b.into_ptr().cast(),
                _ => std::ptr::null_mut(),
            }
        }
    }
}

/// Where in its code the frame is: the instruction offset when the
/// interpreter tells it cheaply, else the line.
fn offset(frame: *mut ffi::PyFrameObject) -> i32 {
    match get_lasti() {
        // SAFETY: `frame` is a live frame object.
        Some(f) => unsafe { f(frame) },
        // SAFETY: as above; part of the stable ABI.
        None => unsafe { ffi::PyFrame_GetLineNumber(frame) },
    }
}

impl Tables {
    fn stack(&mut self, py: Python<'_>, region: &Region, walk: &Walk) -> StackRef {
        let generation = state::generation();
        if self.generation != generation {
            // A forked child's new ring has none of our definitions.
            self.generation = generation;
            self.stacks.clear();
        }
        if self.codes.len() > MAX_CODES {
            self.codes.clear();
            self.stacks.clear();
        }
        self.key.clear();
        self.key.extend(walk.0.iter().map(|w| (w.code, w.at)));
        let position = region.ring_position();
        let stale_after = (region.geometry().ring_slots / 2) as u64;
        if let Some(d) = self.stacks.get_mut(self.key.as_slice()) {
            if position.saturating_sub(d.published_at) <= stale_after {
                return StackRef {
                    id: d.id,
                    frames: None,
                };
            }
            d.published_at = position;
            let (id, skip) = (d.id, d.skip);
            return StackRef {
                id,
                frames: Some(self.frames(&walk.0[skip..])),
            };
        }
        // A stack not seen before: name its frames.
        for w in &walk.0 {
            if !self.codes.contains_key(&w.code) {
                // SAFETY: the walk holds the frame, which holds its code.
                let code = unsafe { Bound::from_borrowed_ptr(py, w.code as *mut ffi::PyObject) };
                let info = self.describe(py, code);
                self.codes.insert(w.code, info);
            }
        }
        // Our own wrappers (and the dispatchers calling them) are innermost.
        let skip = walk
            .0
            .iter()
            .take_while(|w| self.codes.get(&w.code).is_some_and(|c| c.hidden))
            .count();
        if self.stacks.len() >= MAX_STACKS {
            self.stacks.clear();
        }
        let id = self.next_id;
        self.next_id += 1;
        self.stacks.insert(
            self.key.clone(),
            Defined {
                id,
                published_at: position,
                skip,
            },
        );
        StackRef {
            id,
            frames: Some(self.frames(&walk.0[skip..])),
        }
    }

    /// Outermost first, within the byte budget (the innermost frames win).
    fn frames(&self, kept: &[Walked]) -> Vec<StackFrame> {
        let mut budget = MAX_STACK_BYTES;
        let mut out = Vec::with_capacity(kept.len());
        for w in kept {
            let Some(c) = self.codes.get(&w.code) else {
                continue;
            };
            let size = frame_bytes(&c.name, &c.filename, &c.short);
            if size > budget {
                break;
            }
            budget -= size;
            // SAFETY: the walk still holds the frame.
            let line = unsafe { ffi::PyFrame_GetLineNumber(w.frame) };
            out.push(StackFrame {
                name: c.name.clone(),
                filename: c.filename.clone(),
                short: c.short.clone(),
                line: line.max(0) as u32,
                library: c.library,
            });
        }
        out.reverse();
        out
    }

    fn describe(&self, py: Python<'_>, code: Bound<'_, PyAny>) -> Code {
        describe(&self.config, py, code)
    }
}

/// `(short filename, library)` of a code object, as a query's stack names
/// its frame. For the test that the marker and the renderers class files
/// alike (`marker/tests/test_library_frames.py`).
pub(crate) fn classify(py: Python<'_>, code: Bound<'_, PyAny>) -> (String, bool) {
    let c = describe(&Config::default(), py, code);
    (c.short, c.library)
}

fn describe(config: &Config, py: Python<'_>, code: Bound<'_, PyAny>) -> Code {
    let text = |attr: &Bound<'_, pyo3::types::PyString>| {
        code.getattr(attr)
            .ok()
            .and_then(|v| v.extract::<String>().ok())
    };
    let name = text(intern!(py, "co_qualname"))
        .or_else(|| text(intern!(py, "co_name")))
        .unwrap_or_default();
    let filename = text(intern!(py, "co_filename")).unwrap_or_default();
    let under = |prefixes: &[String]| prefixes.iter().any(|p| filename.starts_with(p.as_str()));
    let short = timeglass_wire::short_filename(Path::new(&filename));
    Code {
        hidden: under(&config.hidden),
        library: timeglass_wire::is_library_file(&filename, &short),
        short,
        name,
        filename,
        _pin: code.unbind(),
    }
}
