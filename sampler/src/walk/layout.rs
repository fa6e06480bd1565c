//! Everything this walker knows about CPython's memory layout, in one place:
//! one table of offsets per minor version (64-bit Linux, release builds with
//! the GIL), chosen by [`Layout::for_version`], and the reader of the
//! `_Py_DebugOffsets` table that CPython 3.13 and later publish at the start
//! of `_PyRuntime` for external readers ([`Layout::from_debug_offsets`]).
//!
//! The offsets come from each version's headers (`Include/cpython/pystate.h`,
//! `Include/internal/pycore_frame.h`, `Include/cpython/code.h`,
//! `Include/cpython/genobject.h` or `Include/internal/pycore_genobject.h`,
//! `Include/cpython/unicodeobject.h`, `Include/internal/pycore_gil.h`) and,
//! for asyncio's futures, from `FutureObj_HEAD` in `Modules/_asynciomodule.c`.
//! The unit tests below pin every one of them; the live tests check them
//! against py-spy and against the running interpreter.

/// How a frame's line is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineFormat {
    /// 3.10's `co_linetable`: (bytecode delta, line delta) byte pairs,
    /// indexed by `2 * f_lasti`.
    Pairs310,
    /// 3.11+'s location table (PEP 657), indexed by the instruction's byte
    /// offset into `co_code_adaptive`.
    Locations311,
}

/// How frames are linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// 3.10: heap `PyFrameObject`s linked by `f_back`; `thread.frame` points
    /// at the innermost one.
    Object,
    /// 3.11 and 3.12: `_PyInterpreterFrame`s; the innermost is
    /// `thread.cframe->current_frame`.
    ViaCFrame,
    /// 3.13+: `_PyInterpreterFrame`s; the innermost is `thread.current_frame`.
    Direct,
}

/// Where the GIL holder is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GilKind {
    /// 3.10 and 3.11: `_PyRuntime.gilstate.tstate_current` is the holder.
    TstateCurrent,
    /// 3.12+: the interpreter's `_gil_runtime_state` (at `interp->ceval.gil`)
    /// has `last_holder`, which holds it while `locked` is set.
    RuntimeState { last_holder: usize, locked: usize },
}

/// Where `interp->gc` (`struct _gc_runtime_state`,
/// `Include/internal/pycore_gc.h`) keeps what the recorder reads of the
/// collector from outside: `generation_stats`, three `{collections,
/// collected, uncollectable}` triples of `Py_ssize_t`, and the `collecting`
/// flag (an `int`) that is set while a collection runs. The struct is the
/// same from 3.10 to 3.13; only where it sits in the interpreter moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GcLayout {
    /// `interp->gc`.
    pub state: usize,
    /// `generation_stats`, from `state`.
    pub stats: usize,
    /// `collecting`, from `state`.
    pub collecting: usize,
}

impl GcLayout {
    /// Bytes to read from `state + stats` to cover the stats and the flag.
    pub(crate) fn span(&self) -> usize {
        self.collecting + 4 - self.stats
    }
}

/// `generation_stats` and `collecting` in `struct _gc_runtime_state`, 3.10-3.13.
const GC_STATS: usize = 128;
const GC_COLLECTING: usize = 200;

/// The states of a generator's frame that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameStates {
    pub created: i8,
    pub suspended: i8,
    /// 3.13+: suspended in `yield from` / `await` (then the awaited object is
    /// on top of the frame's stack).
    pub suspended_yield_from: Option<i8>,
    pub executing: i8,
}

/// The offsets (in bytes) of the fields this walker reads, for one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub minor: u8,
    // PyInterpreterState
    pub interp_threads_head: usize,
    /// `interp->ceval.gil`, a pointer to the GIL in use (3.12+).
    pub interp_ceval_gil: Option<usize>,
    /// The garbage collector's state in the interpreter; `None` where it
    /// is not known (3.14's table).
    pub interp_gc: Option<GcLayout>,
    pub gil: GilKind,
    // PyThreadState
    pub thread_next: usize,
    pub thread_interp: usize,
    /// The frame pointer (3.10 `frame`, 3.13+ `current_frame`) or the
    /// `cframe` pointer (3.11, 3.12).
    pub thread_frame: usize,
    pub thread_id: usize,
    /// `native_thread_id` (3.11+; 3.10 does not record it).
    pub thread_native_id: Option<usize>,
    /// `datastack_chunk` and `datastack_top` (3.11+): the data-stack chunk
    /// the thread's newest non-generator frames live in, and the end of its
    /// used part.
    pub thread_datastack: Option<(usize, usize)>,
    /// How much of the thread state to read (covers every field above).
    pub thread_bytes: usize,
    // _PyCFrame (3.11, 3.12)
    pub cframe_current_frame: usize,
    // The frame (PyFrameObject or _PyInterpreterFrame)
    pub frame_kind: FrameKind,
    pub frame_code: usize,
    pub frame_previous: usize,
    /// 3.10 `f_lasti` (an i32 instruction index); 3.11+ `prev_instr` /
    /// `instr_ptr` (a pointer into `co_code_adaptive`).
    pub frame_instr: usize,
    /// `owner` (3.11+).
    pub frame_owner: Option<usize>,
    /// Frames with this owner are the C stack's entry shims, skipped as
    /// py-spy skips them (3.12+).
    pub owner_cstack: Option<u8>,
    /// 3.14: frames owned by the interpreter are skipped too.
    pub owner_interpreter: Option<u8>,
    /// Bits of `f_executable` that tag it rather than address it (3.14's
    /// `_PyStackRef`).
    pub code_tag_bits: usize,
    /// 3.10 `f_valuestack` (pointer); 3.11+ `localsplus` (inline array).
    pub frame_stack: usize,
    /// 3.10 `f_stackdepth`, 3.11-3.13 `stacktop` (i32 counts of slots);
    /// `None` where the layout has neither (3.14 keeps a pointer).
    pub frame_stack_depth: Option<usize>,
    /// 3.10 `f_state` (i8).
    pub frame_state: Option<usize>,
    pub frame_bytes: usize,
    // PyCodeObject
    pub code_first_line: usize,
    pub code_filename: usize,
    pub code_name: usize,
    pub code_qualname: Option<usize>,
    pub code_line_table: usize,
    /// 3.10 `co_code` (a bytes object); 3.11+ offset of `co_code_adaptive`.
    pub code_code: usize,
    pub code_head_bytes: usize,
    pub line_format: LineFormat,
    // Generators and coroutines
    /// 3.10 `gi_frame` (pointer to a PyFrameObject).
    pub gen_frame: Option<usize>,
    /// 3.11+ `gi_frame_state` (i8) and the embedded `gi_iframe`.
    pub gen_frame_state: Option<usize>,
    pub gen_iframe: Option<usize>,
    pub frame_states: FrameStates,
    /// 3.10: `YIELD_FROM`; 3.11/3.12: `RESUME` and its specialised or
    /// instrumented forms (a suspended `yield from` resumes at one with an
    /// oparg of 2 or more).
    pub yield_from_op: Option<u8>,
    pub resume_ops: &'static [u8],
    // Objects
    pub ob_type: usize,
    pub type_name: usize,
    pub type_base: usize,
    pub ascii_size: usize,
    pub compact_size: usize,
    pub unicode_length: usize,
    pub unicode_state: usize,
    pub bytes_size: usize,
    pub bytes_data: usize,
    // asyncio (`Modules/_asynciomodule.c`)
    pub future_state: usize,
    pub future_iter_future: usize,
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// CPython 3.10.
pub(crate) const V3_10: Layout = Layout {
    minor: 10,
    interp_threads_head: 8,
    interp_ceval_gil: None,
    interp_gc: Some(GcLayout {
        state: 616,
        stats: GC_STATS,
        collecting: GC_COLLECTING,
    }),
    gil: GilKind::TstateCurrent,
    thread_next: 8,
    thread_interp: 16,
    thread_frame: 24,
    thread_id: 176,
    thread_native_id: None,
    thread_datastack: None,
    thread_bytes: 184,
    cframe_current_frame: 0,
    frame_kind: FrameKind::Object,
    frame_code: 32,
    frame_previous: 24,
    frame_instr: 96,
    frame_owner: None,
    owner_cstack: None,
    owner_interpreter: None,
    code_tag_bits: 0,
    frame_stack: 64,
    frame_stack_depth: Some(80),
    frame_state: Some(108),
    frame_bytes: 112,
    code_first_line: 40,
    code_filename: 104,
    code_name: 112,
    code_qualname: None,
    code_line_table: 120,
    code_code: 48,
    code_head_bytes: 128,
    line_format: LineFormat::Pairs310,
    gen_frame: Some(16),
    gen_frame_state: None,
    gen_iframe: None,
    frame_states: FrameStates {
        created: -2,
        suspended: -1,
        suspended_yield_from: None,
        executing: 0,
    },
    yield_from_op: Some(72),
    resume_ops: &[],
    ob_type: 8,
    type_name: 24,
    type_base: 256,
    ascii_size: 48,
    compact_size: 72,
    unicode_length: 16,
    unicode_state: 32,
    bytes_size: 16,
    bytes_data: 32,
    future_state: 88,
    future_iter_future: 16,
};

/// CPython 3.11.
pub(crate) const V3_11: Layout = Layout {
    minor: 11,
    interp_threads_head: 16,
    interp_ceval_gil: None,
    interp_gc: Some(GcLayout {
        state: 648,
        stats: GC_STATS,
        collecting: GC_COLLECTING,
    }),
    gil: GilKind::TstateCurrent,
    thread_next: 8,
    thread_interp: 16,
    thread_frame: 56,
    thread_id: 152,
    thread_native_id: Some(160),
    thread_datastack: Some((296, 304)),
    thread_bytes: 312,
    cframe_current_frame: 8,
    frame_kind: FrameKind::ViaCFrame,
    frame_code: 32,
    frame_previous: 48,
    frame_instr: 56,
    frame_owner: Some(69),
    owner_cstack: None,
    owner_interpreter: None,
    code_tag_bits: 0,
    frame_stack: 72,
    frame_stack_depth: Some(64),
    frame_state: None,
    frame_bytes: 72,
    code_first_line: 72,
    code_filename: 112,
    code_name: 120,
    code_qualname: Some(128),
    code_line_table: 136,
    code_code: 184,
    code_head_bytes: 144,
    line_format: LineFormat::Locations311,
    gen_frame: None,
    gen_frame_state: Some(75),
    gen_iframe: Some(80),
    frame_states: FrameStates {
        created: -2,
        suspended: -1,
        suspended_yield_from: None,
        executing: 0,
    },
    yield_from_op: None,
    // RESUME, RESUME_QUICK
    resume_ops: &[151, 150],
    ob_type: 8,
    type_name: 24,
    type_base: 256,
    ascii_size: 48,
    compact_size: 72,
    unicode_length: 16,
    unicode_state: 32,
    bytes_size: 16,
    bytes_data: 32,
    future_state: 88,
    future_iter_future: 16,
};

/// CPython 3.12.
pub(crate) const V3_12: Layout = Layout {
    minor: 12,
    interp_threads_head: 72,
    interp_ceval_gil: Some(384),
    interp_gc: Some(GcLayout {
        state: 112,
        stats: GC_STATS,
        collecting: GC_COLLECTING,
    }),
    gil: GilKind::RuntimeState {
        last_holder: 8,
        locked: 16,
    },
    thread_next: 8,
    thread_interp: 16,
    thread_frame: 56,
    thread_id: 136,
    thread_native_id: Some(144),
    thread_datastack: Some((232, 240)),
    thread_bytes: 248,
    cframe_current_frame: 0,
    frame_kind: FrameKind::ViaCFrame,
    frame_code: 0,
    frame_previous: 8,
    frame_instr: 56,
    frame_owner: Some(70),
    owner_cstack: Some(3),
    owner_interpreter: None,
    code_tag_bits: 0,
    frame_stack: 72,
    frame_stack_depth: Some(64),
    frame_state: None,
    frame_bytes: 72,
    code_first_line: 68,
    code_filename: 112,
    code_name: 120,
    code_qualname: Some(128),
    code_line_table: 136,
    code_code: 192,
    code_head_bytes: 144,
    line_format: LineFormat::Locations311,
    gen_frame: None,
    gen_frame_state: Some(67),
    gen_iframe: Some(72),
    frame_states: FrameStates {
        created: -2,
        suspended: -1,
        suspended_yield_from: None,
        executing: 0,
    },
    yield_from_op: None,
    // RESUME, INSTRUMENTED_RESUME
    resume_ops: &[151, 240],
    ob_type: 8,
    type_name: 24,
    type_base: 256,
    ascii_size: 40,
    compact_size: 56,
    unicode_length: 16,
    unicode_state: 32,
    bytes_size: 16,
    bytes_data: 32,
    future_state: 88,
    future_iter_future: 16,
};

/// CPython 3.13, used when the process's `_Py_DebugOffsets` cannot be read.
pub(crate) const V3_13: Layout = Layout {
    minor: 13,
    interp_threads_head: 7344,
    interp_ceval_gil: Some(16),
    interp_gc: Some(GcLayout {
        state: 7400,
        stats: GC_STATS,
        collecting: GC_COLLECTING,
    }),
    gil: GilKind::RuntimeState {
        last_holder: 8,
        locked: 16,
    },
    thread_next: 8,
    thread_interp: 16,
    thread_frame: 72,
    thread_id: 152,
    thread_native_id: Some(160),
    thread_datastack: Some((232, 240)),
    thread_bytes: 248,
    cframe_current_frame: 0,
    frame_kind: FrameKind::Direct,
    frame_code: 0,
    frame_previous: 8,
    frame_instr: 56,
    frame_owner: Some(70),
    owner_cstack: Some(3),
    owner_interpreter: None,
    code_tag_bits: 0,
    frame_stack: 72,
    frame_stack_depth: Some(64),
    frame_state: None,
    frame_bytes: 72,
    code_first_line: 68,
    code_filename: 112,
    code_name: 120,
    code_qualname: Some(128),
    code_line_table: 136,
    code_code: 200,
    code_head_bytes: 144,
    line_format: LineFormat::Locations311,
    gen_frame: None,
    gen_frame_state: Some(67),
    gen_iframe: Some(72),
    frame_states: FrameStates {
        created: -3,
        suspended: -2,
        suspended_yield_from: Some(-1),
        executing: 0,
    },
    yield_from_op: None,
    resume_ops: &[],
    ob_type: 8,
    type_name: 24,
    type_base: 256,
    ascii_size: 40,
    compact_size: 56,
    unicode_length: 16,
    unicode_state: 32,
    bytes_size: 16,
    bytes_data: 32,
    future_state: 96,
    future_iter_future: 16,
};

impl Layout {
    /// The built-in table for CPython `major.minor`; `None` for versions this
    /// walker does not read (py-spy's walker reads those).
    pub(crate) fn for_version(major: u64, minor: u64) -> Option<&'static Layout> {
        match (major, minor) {
            (3, 10) => Some(&V3_10),
            (3, 11) => Some(&V3_11),
            (3, 12) => Some(&V3_12),
            (3, 13) => Some(&V3_13),
            _ => None,
        }
    }

    /// Whether the sizes the walker reads (and slices) are sane: a table read
    /// from the process must not make it read megabytes or past its buffers.
    pub(crate) fn plausible(&self) -> bool {
        let gil_fits = match self.gil {
            GilKind::TstateCurrent => true,
            GilKind::RuntimeState {
                last_holder,
                locked,
            } => last_holder + 8 <= 32 && locked + 4 <= 32,
        };
        gil_fits
            && self.thread_bytes <= 4096
            && self.frame_bytes <= 1024
            && self.code_head_bytes <= 1024
            && self.ascii_size <= 64
            && self.compact_size + 8 <= 96
            && self.unicode_state + 4 <= self.ascii_size
            && self.unicode_length + 8 <= self.ascii_size
    }

    /// Whether the interpreter publishes `_Py_DebugOffsets` (3.13+).
    pub(crate) fn has_debug_offsets(major: u64, minor: u64) -> bool {
        major == 3 && minor >= 13
    }
}

/// Why a `_Py_DebugOffsets` table was not used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DebugOffsetsError {
    /// The cookie is not `xdebugpy`: not the table (or not readable).
    NoCookie,
    /// A version whose table layout this reader does not know.
    UnknownVersion(u64),
    /// A free-threaded (`Py_GIL_DISABLED`) build.
    FreeThreaded,
    /// Offsets out of any sane range: torn or garbage.
    Implausible,
}

/// The cookie at the start of `_Py_DebugOffsets`.
pub(crate) const DEBUG_COOKIE: &[u8; 8] = b"xdebugpy";
/// Bytes to read for either known table layout (3.14's is the longer).
pub(crate) const DEBUG_OFFSETS_BYTES: usize = 95 * 8;

/// Where each field sits in the `_Py_DebugOffsets` struct, as an index of
/// 8-byte words (the struct is `char cookie[8]` then only `uint64_t`s).
/// 3.13 (`Include/internal/pycore_runtime.h`) and 3.14
/// (`Include/internal/pycore_debug_offsets.h`) differ: 3.14 inserts
/// `threads_main`, `code_object_generation`, `tlbc_generation`, the frame's
/// `stackpointer` and `tlbc_index`, `co_tlbc`, and a `set_object` section,
/// and appends `gen_object`, `llist_node` and `debugger_support`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DebugWords {
    pub version: usize,
    pub free_threaded: usize,
    pub interpreters_head: usize,
    pub interp_threads_head: usize,
    pub interp_ceval_gil: usize,
    pub interp_gil_runtime_state: usize,
    pub interp_gil_locked: usize,
    pub interp_gil_holder: usize,
    pub thread_next: usize,
    pub thread_interp: usize,
    pub thread_current_frame: usize,
    pub thread_id: usize,
    pub thread_native_id: usize,
    pub thread_datastack_chunk: usize,
    pub frame_previous: usize,
    pub frame_executable: usize,
    pub frame_instr_ptr: usize,
    pub frame_localsplus: usize,
    pub frame_owner: usize,
    pub code_filename: usize,
    pub code_name: usize,
    pub code_qualname: usize,
    pub code_linetable: usize,
    pub code_firstlineno: usize,
    pub code_adaptive: usize,
    pub ob_type: usize,
    pub tp_name: usize,
    pub bytes_ob_size: usize,
    pub bytes_ob_sval: usize,
    pub unicode_state: usize,
    pub unicode_length: usize,
    pub unicode_ascii_size: usize,
    pub gen_iframe: Option<usize>,
    pub gen_frame_state: Option<usize>,
    /// `interpreter_state.gc` and `gc.collecting`, where the collector's
    /// struct around them is known (3.13's).
    pub interp_gc: Option<usize>,
    pub gc_collecting: Option<usize>,
}

/// The 3.13 table.
pub(crate) const DEBUG_WORDS_3_13: DebugWords = DebugWords {
    version: 1,
    free_threaded: 2,
    interpreters_head: 5,
    interp_threads_head: 9,
    interp_ceval_gil: 14,
    interp_gil_runtime_state: 15,
    interp_gil_locked: 17,
    interp_gil_holder: 18,
    thread_next: 21,
    thread_interp: 22,
    thread_current_frame: 23,
    thread_id: 24,
    thread_native_id: 25,
    thread_datastack_chunk: 26,
    frame_previous: 29,
    frame_executable: 30,
    frame_instr_ptr: 31,
    frame_localsplus: 32,
    frame_owner: 33,
    code_filename: 35,
    code_name: 36,
    code_qualname: 37,
    code_linetable: 38,
    code_firstlineno: 39,
    code_adaptive: 43,
    ob_type: 45,
    tp_name: 47,
    bytes_ob_size: 65,
    bytes_ob_sval: 66,
    unicode_state: 68,
    unicode_length: 69,
    unicode_ascii_size: 70,
    gen_iframe: None,
    gen_frame_state: None,
    interp_gc: Some(10),
    gc_collecting: Some(72),
};

/// The 3.14 table.
pub(crate) const DEBUG_WORDS_3_14: DebugWords = DebugWords {
    version: 1,
    free_threaded: 2,
    interpreters_head: 5,
    interp_threads_head: 9,
    interp_ceval_gil: 15,
    interp_gil_runtime_state: 16,
    interp_gil_locked: 18,
    interp_gil_holder: 19,
    thread_next: 24,
    thread_interp: 25,
    thread_current_frame: 26,
    thread_id: 27,
    thread_native_id: 28,
    thread_datastack_chunk: 29,
    frame_previous: 32,
    frame_executable: 33,
    frame_instr_ptr: 34,
    frame_localsplus: 35,
    frame_owner: 36,
    code_filename: 40,
    code_name: 41,
    code_qualname: 42,
    code_linetable: 43,
    code_firstlineno: 44,
    code_adaptive: 48,
    ob_type: 51,
    tp_name: 53,
    bytes_ob_size: 75,
    bytes_ob_sval: 76,
    unicode_state: 78,
    unicode_length: 79,
    unicode_ascii_size: 80,
    gen_iframe: Some(85),
    gen_frame_state: Some(86),
    // 3.14's collector is incremental: its `_gc_runtime_state` differs.
    interp_gc: None,
    gc_collecting: None,
};

/// What the debug offsets say, beyond the layout: where the interpreter is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DebugOffsets {
    pub layout: Layout,
    /// `runtime_state.interpreters_head`: where in `_PyRuntime` the pointer
    /// to the first interpreter is.
    pub interpreters_head: usize,
}

impl Layout {
    /// Reads the `_Py_DebugOffsets` table from the bytes at the start of
    /// `_PyRuntime` (at least [`DEBUG_OFFSETS_BYTES`] of them, or fewer for
    /// 3.13's shorter table).
    pub(crate) fn from_debug_offsets(bytes: &[u8]) -> Result<DebugOffsets, DebugOffsetsError> {
        if bytes.len() < 8 || &bytes[..8] != DEBUG_COOKIE {
            return Err(DebugOffsetsError::NoCookie);
        }
        let at = |index: usize| -> Result<usize, DebugOffsetsError> {
            let raw = bytes
                .get(index * 8..index * 8 + 8)
                .ok_or(DebugOffsetsError::Implausible)?;
            let value = u64::from_ne_bytes(raw.try_into().expect("eight bytes"));
            // No field of these structs is anywhere near 1 MiB in.
            usize::try_from(value)
                .ok()
                .filter(|v| *v < 1 << 20)
                .ok_or(DebugOffsetsError::Implausible)
        };
        let version_raw = bytes.get(8..16).ok_or(DebugOffsetsError::Implausible)?;
        let version = u64::from_ne_bytes(version_raw.try_into().expect("eight bytes"));
        // PY_VERSION_HEX: 0xMMmmPPRS.
        let (major, minor) = (version >> 24, (version >> 16) & 0xff);
        let (words, base) = match (major, minor) {
            (3, 13) => (&DEBUG_WORDS_3_13, &V3_13),
            (3, 14) => (&DEBUG_WORDS_3_14, &V3_13),
            _ => return Err(DebugOffsetsError::UnknownVersion(version)),
        };
        if at(words.free_threaded)? != 0 {
            return Err(DebugOffsetsError::FreeThreaded);
        }
        let gil_base = at(words.interp_gil_runtime_state)?;
        let relative = |field: usize| -> Result<usize, DebugOffsetsError> {
            at(field)?
                .checked_sub(gil_base)
                .ok_or(DebugOffsetsError::Implausible)
        };
        let thread_fields = [
            at(words.thread_next)?,
            at(words.thread_interp)?,
            at(words.thread_current_frame)?,
            at(words.thread_id)?,
            at(words.thread_native_id)?,
        ];
        let frame_fields = [
            at(words.frame_previous)?,
            at(words.frame_executable)?,
            at(words.frame_instr_ptr)?,
            at(words.frame_owner)?,
        ];
        let code_fields = [
            at(words.code_filename)?,
            at(words.code_name)?,
            at(words.code_qualname)?,
            at(words.code_linetable)?,
            at(words.code_firstlineno)?,
        ];
        let fourteen = minor == 14;
        // The table has `datastack_chunk` but not `datastack_top`: chunk reads
        // only where the built-in table agrees on the chunk.
        let datastack = base
            .thread_datastack
            .filter(|(chunk, _)| !fourteen && at(words.thread_datastack_chunk) == Ok(*chunk));
        let thread_end = max(
            thread_fields.iter().fold(0, |m, &f| max(m, f)),
            datastack.map_or(0, |(_, top)| top),
        ) + 8;
        let ascii_size = at(words.unicode_ascii_size)?;
        let layout = Layout {
            minor: minor as u8,
            interp_threads_head: at(words.interp_threads_head)?,
            interp_ceval_gil: Some(at(words.interp_ceval_gil)?),
            gil: GilKind::RuntimeState {
                last_holder: relative(words.interp_gil_holder)?,
                locked: relative(words.interp_gil_locked)?,
            },
            thread_next: thread_fields[0],
            thread_interp: thread_fields[1],
            thread_frame: thread_fields[2],
            thread_id: thread_fields[3],
            thread_native_id: Some(thread_fields[4]),
            thread_datastack: datastack,
            thread_bytes: thread_end,
            frame_previous: frame_fields[0],
            frame_code: frame_fields[1],
            frame_instr: frame_fields[2],
            frame_owner: Some(frame_fields[3]),
            frame_stack: at(words.frame_localsplus)?,
            // 3.14 replaced `stacktop` by a `stackpointer` the table has but
            // the await-chain reader does not use yet.
            frame_stack_depth: if fourteen {
                None
            } else {
                base.frame_stack_depth
            },
            // Pointers, but `owner` is one byte; rounded up to whole words.
            frame_bytes: max(
                frame_fields[..3].iter().fold(0, |m, &f| max(m, f + 8)),
                frame_fields[3] + 1,
            )
            .next_multiple_of(8),
            // 3.14's owners: THREAD, GENERATOR, FRAME_OBJECT, INTERPRETER,
            // CSTACK (0..=4); f_executable is a `_PyStackRef` tagged in its
            // low `Py_TAG_BITS` (3).
            owner_cstack: Some(if fourteen { 4 } else { 3 }),
            owner_interpreter: fourteen.then_some(3),
            code_tag_bits: if fourteen { 3 } else { 0 },
            code_filename: code_fields[0],
            code_name: code_fields[1],
            code_qualname: Some(code_fields[2]),
            code_line_table: code_fields[3],
            code_first_line: code_fields[4],
            code_code: at(words.code_adaptive)?,
            code_head_bytes: code_fields.iter().fold(0, |m, &f| max(m, f)) + 8,
            gen_iframe: match words.gen_iframe {
                Some(w) => Some(at(w)?),
                None => base.gen_iframe,
            },
            gen_frame_state: match words.gen_frame_state {
                Some(w) => Some(at(w)?),
                None => base.gen_frame_state,
            },
            ob_type: at(words.ob_type)?,
            type_name: at(words.tp_name)?,
            bytes_size: at(words.bytes_ob_size)?,
            bytes_data: at(words.bytes_ob_sval)?,
            unicode_state: at(words.unicode_state)?,
            unicode_length: at(words.unicode_length)?,
            ascii_size,
            // `PyCompactUnicodeObject` adds `utf8_length` and `utf8` (3.12+).
            compact_size: ascii_size + 16,
            // Trusted only where `collecting` is where the struct puts it.
            interp_gc: match (words.interp_gc, words.gc_collecting) {
                (Some(state), Some(collecting)) if at(collecting)? == GC_COLLECTING => {
                    Some(GcLayout {
                        state: at(state)?,
                        stats: GC_STATS,
                        collecting: GC_COLLECTING,
                    })
                }
                _ => None,
            },
            ..base.clone()
        };
        if !layout.plausible() {
            return Err(DebugOffsetsError::Implausible);
        }
        Ok(DebugOffsets {
            layout,
            interpreters_head: at(words.interpreters_head)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Offsets as each version's installed headers give them (`offsetof` in
    // a program built against `include/python3.X` with `Py_BUILD_CORE`, on
    // x86-64), and asyncio's `fut_state` after `FutureObj_HEAD`'s pointers.

    #[test]
    fn layout_matches_cpython_3_10() {
        let l = &V3_10;
        assert_eq!(
            (l.interp_threads_head, l.thread_next, l.thread_interp),
            (8, 8, 16)
        );
        assert_eq!(
            (l.thread_frame, l.thread_id, l.thread_native_id),
            (24, 176, None)
        );
        assert_eq!(
            (l.frame_previous, l.frame_code, l.frame_instr),
            (24, 32, 96)
        );
        assert_eq!(
            (l.frame_stack, l.frame_stack_depth, l.frame_state),
            (64, Some(80), Some(108))
        );
        assert_eq!((l.code_first_line, l.code_code), (40, 48));
        assert_eq!(
            (l.code_filename, l.code_name, l.code_qualname),
            (104, 112, None)
        );
        assert_eq!(l.code_line_table, 120);
        assert_eq!((l.gen_frame, l.yield_from_op), (Some(16), Some(72)));
        let s = l.frame_states;
        assert_eq!((s.created, s.suspended, s.executing), (-2, -1, 0));
        assert_eq!((l.ascii_size, l.compact_size), (48, 72));
        assert_eq!((l.future_state, l.future_iter_future), (88, 16));
    }

    #[test]
    fn layout_matches_cpython_3_11() {
        let l = &V3_11;
        assert_eq!(
            (
                l.interp_threads_head,
                l.thread_frame,
                l.cframe_current_frame
            ),
            (16, 56, 8)
        );
        assert_eq!((l.thread_id, l.thread_native_id), (152, Some(160)));
        assert_eq!(
            (l.frame_code, l.frame_previous, l.frame_instr),
            (32, 48, 56)
        );
        assert_eq!(
            (l.frame_stack_depth, l.frame_owner, l.frame_stack),
            (Some(64), Some(69), 72)
        );
        assert_eq!(
            (l.code_first_line, l.code_filename, l.code_name),
            (72, 112, 120)
        );
        assert_eq!(
            (l.code_qualname, l.code_line_table, l.code_code),
            (Some(128), 136, 184)
        );
        assert_eq!((l.gen_frame_state, l.gen_iframe), (Some(75), Some(80)));
        assert_eq!(l.resume_ops, [151, 150]);
        assert_eq!((l.ascii_size, l.compact_size), (48, 72));
        assert_eq!(l.future_state, 88);
    }

    #[test]
    fn layout_matches_cpython_3_12() {
        let l = &V3_12;
        assert_eq!((l.interp_threads_head, l.interp_ceval_gil), (72, Some(384)));
        assert_eq!(
            l.gil,
            GilKind::RuntimeState {
                last_holder: 8,
                locked: 16
            }
        );
        assert_eq!((l.thread_frame, l.cframe_current_frame), (56, 0));
        assert_eq!((l.thread_id, l.thread_native_id), (136, Some(144)));
        assert_eq!(l.thread_datastack, Some((232, 240)));
        assert_eq!((l.frame_code, l.frame_previous, l.frame_instr), (0, 8, 56));
        assert_eq!(
            (l.frame_stack_depth, l.frame_owner, l.owner_cstack),
            (Some(64), Some(70), Some(3))
        );
        assert_eq!(
            (l.code_first_line, l.code_filename, l.code_name),
            (68, 112, 120)
        );
        assert_eq!(
            (l.code_qualname, l.code_line_table, l.code_code),
            (Some(128), 136, 192)
        );
        assert_eq!((l.gen_frame_state, l.gen_iframe), (Some(67), Some(72)));
        assert_eq!(l.resume_ops, [151, 240]);
        assert_eq!((l.ascii_size, l.compact_size), (40, 56));
        assert_eq!(l.future_state, 88);
    }

    #[test]
    fn layout_matches_cpython_3_13() {
        let l = &V3_13;
        assert_eq!(
            (l.interp_threads_head, l.interp_ceval_gil),
            (7344, Some(16))
        );
        assert_eq!(
            (l.thread_frame, l.thread_id, l.thread_native_id),
            (72, 152, Some(160))
        );
        assert_eq!((l.frame_code, l.frame_previous, l.frame_instr), (0, 8, 56));
        assert_eq!(
            (l.frame_stack_depth, l.frame_owner, l.frame_stack),
            (Some(64), Some(70), 72)
        );
        assert_eq!(
            (l.code_first_line, l.code_qualname, l.code_code),
            (68, Some(128), 200)
        );
        assert_eq!((l.gen_frame_state, l.gen_iframe), (Some(67), Some(72)));
        let s = l.frame_states;
        assert_eq!(
            (s.created, s.suspended, s.suspended_yield_from),
            (-3, -2, Some(-1))
        );
        assert_eq!((l.ascii_size, l.compact_size), (40, 56));
        assert_eq!((l.future_state, l.future_iter_future), (96, 16));
    }

    #[test]
    fn every_field_read_is_within_what_is_read() {
        for l in [&V3_10, &V3_11, &V3_12, &V3_13] {
            assert!(l.plausible());
            let thread = [l.thread_next, l.thread_interp, l.thread_frame, l.thread_id];
            assert!(thread
                .iter()
                .chain(&l.thread_native_id)
                .all(|f| f + 8 <= l.thread_bytes));
            assert!(l.frame_owner.is_none_or(|o| o < l.frame_bytes));
            assert!(l.frame_stack_depth.is_none_or(|d| d + 4 <= l.frame_bytes));
            assert!(l.frame_state.is_none_or(|s| s < l.frame_bytes));
            let code = [l.code_filename, l.code_name, l.code_line_table];
            assert!(code
                .iter()
                .chain(&l.code_qualname)
                .all(|f| f + 8 <= l.code_head_bytes));
            assert!(l.code_first_line + 4 <= l.code_head_bytes);
        }
    }

    /// A `_Py_DebugOffsets` image: word `i` holds `value(i)`, as a reader
    /// would find it at the start of `_PyRuntime`.
    fn image(version: u64, words: usize, value: impl Fn(usize) -> u64) -> Vec<u8> {
        let mut bytes = DEBUG_COOKIE.to_vec();
        bytes.extend(version.to_ne_bytes());
        for i in 2..words {
            bytes.extend(value(i).to_ne_bytes());
        }
        bytes
    }

    /// 3.13.0's values, word by word, in the order of
    /// `Include/internal/pycore_runtime.h`'s struct.
    fn values_3_13(i: usize) -> u64 {
        let table: [u64; 73] = [
            0, 0x030d00f0, 0, // cookie, version, free_threaded
            0, 0, 632, // runtime_state: size, finalizing, interpreters_head
            0, 0, 0, 7344, 7400, 0, 0, 0, 16, 7752, 0, 7768, 7760, // interpreter_state
            304, 0, 8, 16, 72, 152, 160, 232, 0, // thread_state
            80, 8, 0, 56, 72, 70, // interpreter_frame
            0, 112, 120, 128, 136, 68, 0, 0, 0, 200, // code_object
            16, 8, // pyobject
            0, 24, 0, 168, // type_object
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // tuple, list, dict, float, long
            33, 16, 32, // bytes_object
            0, 32, 16, 40, // unicode_object
            240, 200, // gc: size, collecting
        ];
        table[i]
    }

    #[test]
    fn the_3_13_debug_offsets_give_the_built_in_table() {
        let offsets = Layout::from_debug_offsets(&image(0x030d00f0, 73, values_3_13)).unwrap();
        assert_eq!(offsets.interpreters_head, 632);
        assert_eq!(offsets.layout, V3_13);
    }

    /// 3.14.0's struct (`Include/internal/pycore_debug_offsets.h`), with
    /// made-up but distinct offsets so that a field read from the wrong word
    /// shows.
    fn values_3_14(i: usize) -> u64 {
        let named: &[(usize, u64)] = &[
            (2, 0),     // free_threaded
            (5, 1000),  // runtime_state.interpreters_head
            (9, 2000),  // interpreter_state.threads_head (threads_main is 10)
            (10, 2008), // threads_main
            (15, 24),   // ceval_gil
            (16, 3000), // gil_runtime_state
            (18, 3016), // gil_runtime_state_locked
            (19, 3008), // gil_runtime_state_holder
            (24, 8),    // thread_state.next
            (25, 16),   // interp
            (26, 88),   // current_frame
            (27, 160),  // thread_id
            (28, 168),  // native_thread_id
            (32, 8),    // interpreter_frame.previous
            (33, 0),    // executable
            (34, 64),   // instr_ptr
            (35, 80),   // localsplus
            (36, 74),   // owner
            (37, 56),   // stackpointer
            (40, 112),  // code_object.filename
            (41, 120),  // name
            (42, 128),  // qualname
            (43, 136),  // linetable
            (44, 68),   // firstlineno
            (48, 208),  // co_code_adaptive
            (51, 8),    // pyobject.ob_type
            (53, 24),   // type_object.tp_name
            (75, 16),   // bytes_object.ob_size
            (76, 32),   // ob_sval
            (78, 32),   // unicode_object.state
            (79, 16),   // length
            (80, 40),   // asciiobject_size
            (85, 88),   // gen_object.gi_iframe
            (86, 79),   // gi_frame_state
        ];
        named
            .iter()
            .find(|(at, _)| *at == i)
            .map_or(7 + i as u64 * 10_000, |(_, v)| *v)
    }

    #[test]
    fn the_3_14_debug_offsets_are_read_from_their_own_struct() {
        let bytes = image(0x030e00f0, 95, values_3_14);
        assert_eq!(bytes.len(), DEBUG_OFFSETS_BYTES);
        let offsets = Layout::from_debug_offsets(&bytes).unwrap();
        let l = &offsets.layout;
        assert_eq!(offsets.interpreters_head, 1000);
        assert_eq!(
            (l.minor, l.interp_threads_head, l.interp_ceval_gil),
            (14, 2000, Some(24))
        );
        assert_eq!(
            l.gil,
            GilKind::RuntimeState {
                last_holder: 8,
                locked: 16
            }
        );
        assert_eq!(
            (l.thread_next, l.thread_interp, l.thread_frame),
            (8, 16, 88)
        );
        assert_eq!(
            (l.thread_id, l.thread_native_id, l.thread_bytes),
            (160, Some(168), 176)
        );
        assert_eq!((l.frame_previous, l.frame_code, l.frame_instr), (8, 0, 64));
        assert_eq!(
            (l.frame_owner, l.frame_stack, l.frame_stack_depth),
            (Some(74), 80, None)
        );
        assert_eq!(
            (l.owner_cstack, l.owner_interpreter, l.code_tag_bits),
            (Some(4), Some(3), 3)
        );
        assert_eq!(
            (l.code_filename, l.code_name, l.code_qualname),
            (112, 120, Some(128))
        );
        assert_eq!(
            (l.code_line_table, l.code_first_line, l.code_code),
            (136, 68, 208)
        );
        assert_eq!(
            (l.ob_type, l.type_name, l.bytes_size, l.bytes_data),
            (8, 24, 16, 32)
        );
        assert_eq!(
            (l.unicode_state, l.unicode_length, l.ascii_size),
            (32, 16, 40)
        );
        assert_eq!((l.gen_iframe, l.gen_frame_state), (Some(88), Some(79)));
        assert_eq!(l.frame_kind, FrameKind::Direct);
    }

    #[test]
    fn a_free_threaded_or_foreign_table_is_refused() {
        let free = image(0x030e00f0, 95, |i| if i == 2 { 1 } else { values_3_14(i) });
        assert_eq!(
            Layout::from_debug_offsets(&free),
            Err(DebugOffsetsError::FreeThreaded)
        );
        let mut wrong = image(0x030d00f0, 73, values_3_13);
        wrong[0] = b'y';
        assert_eq!(
            Layout::from_debug_offsets(&wrong),
            Err(DebugOffsetsError::NoCookie)
        );
        let future = image(0x031000a0, 95, values_3_14);
        assert_eq!(
            Layout::from_debug_offsets(&future),
            Err(DebugOffsetsError::UnknownVersion(0x031000a0))
        );
        let garbage = image(0x030d00f0, 73, |i| {
            if i == 23 {
                1 << 40
            } else {
                values_3_13(i)
            }
        });
        assert_eq!(
            Layout::from_debug_offsets(&garbage),
            Err(DebugOffsetsError::Implausible)
        );
        let wide = image(
            0x030d00f0,
            73,
            |i| if i == 70 { 4096 } else { values_3_13(i) },
        );
        assert_eq!(
            Layout::from_debug_offsets(&wide),
            Err(DebugOffsetsError::Implausible)
        );
        let far_gil = image(
            0x030d00f0,
            73,
            |i| if i == 17 { 9000 } else { values_3_13(i) },
        );
        assert_eq!(
            Layout::from_debug_offsets(&far_gil),
            Err(DebugOffsetsError::Implausible)
        );
        let short = image(0x030d00f0, 40, values_3_13);
        assert_eq!(
            Layout::from_debug_offsets(&short),
            Err(DebugOffsetsError::Implausible)
        );
    }
}
