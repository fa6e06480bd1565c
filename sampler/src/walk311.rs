//! A stack walker for CPython 3.11 that caches code objects.
//!
//! py-spy's walker copies every frame's code object, name, qualified name,
//! filename and line table on every walk: about eight `process_vm_readv`
//! calls per frame, ~470 µs for a 40-frame Uvicorn stack on a VM. Code
//! objects almost never change, so this walker keeps what it learned about
//! each one, keyed by address, and per walk reads only:
//!
//! * the pointer to the thread holding the GIL, that thread's state and its
//!   current frame pointer;
//! * per frame, the interpreter frame and the head of its code object, both
//!   in one vectored read (the code of frame *n* is read together with frame
//!   *n + 1*).
//!
//! A cached code object is trusted only while the pointers in its head
//! (filename, name, qualified name, line table) and its first line are the
//! same as when it was learned, so a code object freed and replaced at the
//! same address is read afresh. Frames whose code cannot be read are skipped,
//! as py-spy skips them; the torn-stack detector downstream judges the rest.
//!
//! It walks either the GIL holder only (the default) or every thread.
//! Only the interpreter layout of 3.11 is described here (the layouts are
//! stable within a minor version); other versions use py-spy's walker.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::sync::Arc;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use timeglass_model::Frame;

use crate::ThreadStack;

// The parts of CPython 3.11's structures this walker reads (64-bit, release
// build), from `Include/cpython/pystate.h`, `Include/internal/pycore_frame.h`,
// `Include/cpython/code.h` and `Include/cpython/unicodeobject.h`. Only their
// layout is used (through `offset_of!`); values are decoded from raw bytes.
#[allow(dead_code)]
#[repr(C)]
struct ThreadState {
    prev: usize,
    next: usize,
    interp: usize,
    initialized: i32,
    is_static: i32,
    recursion_remaining: i32,
    recursion_limit: i32,
    recursion_headroom: i32,
    tracing: i32,
    tracing_what: i32,
    cframe: usize,
    c_profilefunc: usize,
    c_tracefunc: usize,
    c_profileobj: usize,
    c_traceobj: usize,
    curexc_type: usize,
    curexc_value: usize,
    curexc_traceback: usize,
    exc_info: usize,
    dict: usize,
    gilstate_counter: i32,
    async_exc: usize,
    thread_id: u64,
    native_thread_id: u64,
}

#[allow(dead_code)]
#[repr(C)]
struct CFrame {
    use_tracing: u8,
    current_frame: usize,
    previous: usize,
}

#[allow(dead_code)]
#[repr(C)]
struct InterpreterFrame {
    f_func: usize,
    f_globals: usize,
    f_builtins: usize,
    f_locals: usize,
    f_code: usize,
    frame_obj: usize,
    previous: usize,
    prev_instr: usize,
    stacktop: i32,
    is_entry: i8,
    owner: i8,
}

#[allow(dead_code)]
#[repr(C)]
struct CodeObject {
    ob_refcnt: isize,
    ob_type: usize,
    ob_size: isize,
    co_consts: usize,
    co_names: usize,
    co_exceptiontable: usize,
    co_flags: i32,
    co_warmup: i16,
    co_linearray_entry_size: i16,
    co_argcount: i32,
    co_posonlyargcount: i32,
    co_kwonlyargcount: i32,
    co_stacksize: i32,
    co_firstlineno: i32,
    co_nlocalsplus: i32,
    co_nlocals: i32,
    co_nplaincellvars: i32,
    co_ncellvars: i32,
    co_nfreevars: i32,
    co_localsplusnames: usize,
    co_localspluskinds: usize,
    co_filename: usize,
    co_name: usize,
    co_qualname: usize,
    co_linetable: usize,
    co_weakreflist: usize,
    co_code: usize,
    co_linearray: usize,
    co_firsttraceable: i32,
    co_extra: usize,
    co_code_adaptive: [u8; 2],
}

/// `PyASCIIObject`; compact ASCII text follows it.
#[allow(dead_code)]
#[repr(C)]
struct AsciiObject {
    ob_refcnt: isize,
    ob_type: usize,
    length: isize,
    hash: isize,
    state: u32,
    wstr: usize,
}

/// `PyCompactUnicodeObject`; compact non-ASCII text follows it, and a
/// non-compact string keeps a pointer to its text right after it.
#[allow(dead_code)]
#[repr(C)]
struct CompactUnicodeObject {
    base: AsciiObject,
    utf8_length: isize,
    utf8: usize,
    wstr_length: isize,
}

/// `PyBytesObject`: `ob_size` bytes from `ob_sval`.
#[allow(dead_code)]
#[repr(C)]
struct BytesObject {
    ob_refcnt: isize,
    ob_type: usize,
    ob_size: isize,
    ob_shash: isize,
    ob_sval: [u8; 1],
}

const FRAME_BYTES: usize = offset_of!(InterpreterFrame, owner) + 1;
const CODE_HEAD_BYTES: usize = offset_of!(CodeObject, co_linetable) + size_of::<usize>();
const THREAD_BYTES: usize = size_of::<ThreadState>();
/// `PyInterpreterState.threads.head` (after `next` and `threads.next_unique_id`).
const INTERPRETER_THREADS_HEAD: usize = 16;
/// Deeper chains are loops read from torn memory.
const MAX_FRAMES: usize = 4096;
/// Longer thread lists are loops read from torn memory.
const MAX_THREADS: usize = 4096;
/// Longer names or filenames are garbage read from torn memory.
const MAX_TEXT: usize = 64 * 1024;
/// Larger line tables are garbage (CPython's biggest are a few hundred KiB).
const MAX_LINE_TABLE: usize = 4 * 1024 * 1024;
/// The cache is dropped when it holds more code objects than this (an app
/// that keeps compiling code, e.g. templates); it refills within a few walks.
const MAX_CACHED_CODE: usize = 200_000;

/// A read of the target's memory failed or came back short.
#[derive(Debug)]
pub struct ReadFailed;

/// What a code object's head says; a cached entry is valid while it matches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct CodeHead {
    filename: usize,
    name: usize,
    qualname: usize,
    line_table: usize,
    first_line: i32,
}

impl CodeHead {
    fn parse(bytes: &[u8]) -> Self {
        CodeHead {
            filename: word(bytes, offset_of!(CodeObject, co_filename)),
            name: word(bytes, offset_of!(CodeObject, co_name)),
            qualname: word(bytes, offset_of!(CodeObject, co_qualname)),
            line_table: word(bytes, offset_of!(CodeObject, co_linetable)),
            first_line: int(bytes, offset_of!(CodeObject, co_firstlineno)),
        }
    }
}

/// What is kept about one code object.
struct CodeInfo {
    head: CodeHead,
    /// The frame as shown, but for its line.
    frame: Frame,
    line_table: Vec<u8>,
}

/// Walks stacks in a CPython 3.11 process.
pub struct Walker311 {
    pid: Pid,
    /// Address of `_PyRuntime.gilstate.tstate_current`.
    current_tstate: usize,
    /// The target's root directory as seen from here (`/proc/PID/root`)
    /// when it runs in another mount namespace, for shortening filenames.
    root: Option<String>,
    lines: bool,
    code: HashMap<usize, Arc<CodeInfo>>,
    short: HashMap<String, String>,
}

impl Walker311 {
    /// `current_tstate` is py-spy's `threadstate_address` for 3.11.
    /// With `lines` false every frame's line is 0, as with py-spy's `NoLine`.
    pub fn new(pid: u32, current_tstate: usize, dockerized: bool, lines: bool) -> Self {
        Walker311 {
            pid: Pid::from_raw(pid as i32),
            current_tstate,
            root: dockerized.then(|| format!("/proc/{pid}/root")),
            lines,
            code: HashMap::new(),
            short: HashMap::new(),
        }
    }

    /// The stack of the thread holding the GIL; none when no thread holds it.
    pub fn gil_holder(&mut self) -> Result<Vec<ThreadStack>, ReadFailed> {
        let holder = self.read_word(self.current_tstate)?;
        if holder == 0 {
            return Ok(Vec::new());
        }
        let mut thread = [0u8; THREAD_BYTES];
        self.read(&mut [(holder, &mut thread[..])])?;
        Ok(vec![self.thread_stack(&thread, true, None)?])
    }

    /// The stack of every thread of the interpreter at `interpreter`, with
    /// whether each is running on a CPU from `/proc` (as py-spy does).
    pub fn all_threads(&mut self, interpreter: usize) -> Result<Vec<ThreadStack>, ReadFailed> {
        let holder = self.read_word(self.current_tstate)?;
        let mut next = self.read_word(interpreter + INTERPRETER_THREADS_HEAD)?;
        let mut stacks = Vec::new();
        let mut thread = [0u8; THREAD_BYTES];
        while next != 0 {
            if stacks.len() >= MAX_THREADS {
                return Err(ReadFailed);
            }
            let address = next;
            self.read(&mut [(address, &mut thread[..])])?;
            next = word(&thread, offset_of!(ThreadState, next));
            let tid = word(&thread, offset_of!(ThreadState, native_thread_id)) as u32;
            let running = running_on_cpu(self.pid, tid);
            stacks.push(self.thread_stack(&thread, address == holder, running)?);
        }
        Ok(stacks)
    }

    /// One thread's stack from its `PyThreadState`; `running` is what the OS
    /// says, when asked.
    fn thread_stack(
        &mut self,
        thread: &[u8],
        owns_gil: bool,
        running: Option<bool>,
    ) -> Result<ThreadStack, ReadFailed> {
        let cframe = word(thread, offset_of!(ThreadState, cframe));
        let pthread_id = word(thread, offset_of!(ThreadState, thread_id)) as u64;
        let tid = word(thread, offset_of!(ThreadState, native_thread_id)) as u32;
        let mut frames = Vec::new();
        if cframe != 0 {
            let first = self.read_word(cframe + offset_of!(CFrame, current_frame))?;
            self.walk(first, &mut frames)?;
        }
        frames.reverse();
        let active = running.unwrap_or(true) && frames.last().is_none_or(|leaf| !looks_idle(leaf));
        Ok(ThreadStack {
            tid: (tid != 0).then_some(tid),
            pthread_id,
            active,
            owns_gil,
            on_cpu: None,
            frames,
        })
    }

    fn read_word(&self, address: usize) -> Result<usize, ReadFailed> {
        let mut buf = [0u8; 8];
        self.read(&mut [(address, &mut buf[..])])?;
        Ok(usize::from_ne_bytes(buf))
    }

    /// Pushes the frames from `frame` outwards, leaf first.
    fn walk(&mut self, mut frame: usize, out: &mut Vec<Frame>) -> Result<(), ReadFailed> {
        let mut frame_buf = [0u8; FRAME_BYTES];
        let mut head_buf = [0u8; CODE_HEAD_BYTES];
        // The code object (and the frame's instruction pointer) read with
        // the next frame.
        let mut pending: Option<(usize, usize)> = None;
        let mut seen = 0;
        while frame != 0 || pending.is_some() {
            seen += 1;
            if seen > MAX_FRAMES {
                return Err(ReadFailed);
            }
            let read_frame = frame != 0;
            let code_read = match (read_frame, pending) {
                (true, Some((code, _))) => self
                    .read(&mut [(frame, &mut frame_buf[..]), (code, &mut head_buf[..])])
                    .map(|()| true),
                (true, None) => self
                    .read(&mut [(frame, &mut frame_buf[..])])
                    .map(|()| false),
                (false, Some((code, _))) => Ok(self.read(&mut [(code, &mut head_buf[..])]).is_ok()),
                (false, None) => unreachable!("the loop ends when there is nothing to read"),
            };
            let code_read = match code_read {
                Ok(read) => read,
                // A frame that cannot be read ends the walk as py-spy's does;
                // when the read failed with a code head, try the frame alone
                // (the code object may be the unreadable one).
                Err(ReadFailed) if pending.is_some() => {
                    self.read(&mut [(frame, &mut frame_buf[..])])?;
                    false
                }
                Err(e) => return Err(e),
            };
            if let Some((code, prev_instr)) = pending.take() {
                if code_read {
                    if let Some(info) = self.code_info(code, CodeHead::parse(&head_buf)) {
                        let mut shown = info.frame.clone();
                        shown.line = if self.lines {
                            line_of(&info, code, prev_instr)
                        } else {
                            0
                        };
                        out.push(shown);
                    }
                }
            }
            if read_frame {
                let code = word(&frame_buf, offset_of!(InterpreterFrame, f_code));
                let prev_instr = word(&frame_buf, offset_of!(InterpreterFrame, prev_instr));
                frame = word(&frame_buf, offset_of!(InterpreterFrame, previous));
                if code != 0 {
                    pending = Some((code, prev_instr));
                }
            }
        }
        Ok(())
    }

    /// The cached code object at `address`, learned afresh when its head
    /// changed; `None` when it cannot be read (a torn read).
    fn code_info(&mut self, address: usize, head: CodeHead) -> Option<Arc<CodeInfo>> {
        if let Some(info) = self.code.get(&address) {
            if info.head == head {
                return Some(Arc::clone(info));
            }
        }
        let info = Arc::new(self.learn(head)?);
        if self.code.len() >= MAX_CACHED_CODE {
            self.code.clear();
        }
        self.code.insert(address, Arc::clone(&info));
        Some(info)
    }

    fn learn(&mut self, head: CodeHead) -> Option<CodeInfo> {
        let filename = self.text(head.filename).ok()?;
        let name = self
            .text(head.qualname)
            .or_else(|_| self.text(head.name))
            .ok()?;
        let line_table = self.bytes(head.line_table).ok()?;
        let short = self.shorten(&filename);
        Some(CodeInfo {
            head,
            frame: Frame {
                name,
                filename,
                short,
                line: 0,
            },
            line_table,
        })
    }

    /// A `str` object's text.
    fn text(&self, address: usize) -> Result<String, ReadFailed> {
        if address == 0 {
            return Err(ReadFailed);
        }
        let mut head = [0u8; size_of::<CompactUnicodeObject>() + size_of::<usize>()];
        self.read(&mut [(address, &mut head[..])])?;
        let length = word(&head, offset_of!(AsciiObject, length));
        let state = u32::from_ne_bytes(
            head[offset_of!(AsciiObject, state)..][..4]
                .try_into()
                .expect("four bytes"),
        );
        let kind = ((state >> 2) & 7) as usize;
        let compact = state & (1 << 5) != 0;
        let ascii = state & (1 << 6) != 0;
        if !matches!(kind, 1 | 2 | 4) || length * kind > MAX_TEXT {
            return Err(ReadFailed);
        }
        let data = if compact && ascii {
            address + size_of::<AsciiObject>()
        } else if compact {
            address + size_of::<CompactUnicodeObject>()
        } else {
            word(&head, size_of::<CompactUnicodeObject>())
        };
        let mut raw = vec![0u8; length * kind];
        self.read(&mut [(data, &mut raw[..])])?;
        decode_text(&raw, kind).ok_or(ReadFailed)
    }

    /// A `bytes` object's contents.
    fn bytes(&self, address: usize) -> Result<Vec<u8>, ReadFailed> {
        if address == 0 {
            return Err(ReadFailed);
        }
        let mut head = [0u8; offset_of!(BytesObject, ob_sval)];
        self.read(&mut [(address, &mut head[..])])?;
        let size = word(&head, offset_of!(BytesObject, ob_size));
        if size > MAX_LINE_TABLE {
            return Err(ReadFailed);
        }
        let mut raw = vec![0u8; size];
        self.read(&mut [(address + offset_of!(BytesObject, ob_sval), &mut raw[..])])?;
        Ok(raw)
    }

    /// `fastapi/routing.py` for `/venv/.../site-packages/fastapi/routing.py`:
    /// the path from the outermost directory of its package, as py-spy shows.
    fn shorten(&mut self, filename: &str) -> String {
        if let Some(short) = self.short.get(filename) {
            return short.clone();
        }
        let seen_from_here = match &self.root {
            Some(root) if Path::new(&format!("{root}{filename}")).exists() => {
                format!("{root}{filename}")
            }
            _ => filename.to_string(),
        };
        let full = Path::new(&seen_from_here);
        let mut package_parent = full;
        while let Some(parent) = package_parent.parent() {
            package_parent = parent;
            if !parent.join("__init__.py").exists() {
                break;
            }
        }
        let short = full
            .strip_prefix(package_parent)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.short.insert(filename.to_string(), short.clone());
        short
    }

    /// Reads each `(remote address, buffer)` pair, all in one system call.
    fn read(&self, parts: &mut [(usize, &mut [u8])]) -> Result<(), ReadFailed> {
        let remote: Vec<RemoteIoVec> = parts
            .iter()
            .map(|(base, buf)| RemoteIoVec {
                base: *base,
                len: buf.len(),
            })
            .collect();
        let wanted: usize = remote.iter().map(|r| r.len).sum();
        let mut local: Vec<IoSliceMut> = parts
            .iter_mut()
            .map(|(_, buf)| IoSliceMut::new(buf))
            .collect();
        match process_vm_readv(self.pid, &mut local, &remote) {
            Ok(n) if n == wanted => Ok(()),
            _ => Err(ReadFailed),
        }
    }
}

/// The line a frame is on: the line-table entry covering its last
/// instruction (CPython 3.11's location table, PEP 657).
fn line_of(info: &CodeInfo, code: usize, prev_instr: usize) -> u32 {
    let start = code + offset_of!(CodeObject, co_code_adaptive);
    let offset = prev_instr as isize - start as isize;
    line_at(&info.line_table, info.head.first_line, offset).max(0) as u32
}

/// The line of the instruction `offset` bytes into the code, walking the
/// location table from `first_line`.
fn line_at(table: &[u8], first_line: i32, offset: isize) -> i32 {
    let mut line = first_line;
    let mut end: isize = 0;
    let mut at = 0;
    while at < table.len() {
        let entry = table[at];
        at += 1;
        end += (((entry & 7) as isize) + 1) * 2;
        let delta = match (entry >> 3) & 15 {
            // No location: the line stays as it was.
            15 => 0,
            // Long form: line delta, end line, start and end columns.
            14 => {
                let delta = signed_varint(table, &mut at);
                for _ in 0..3 {
                    varint(table, &mut at);
                }
                delta
            }
            // No columns: just a line delta.
            13 => signed_varint(table, &mut at),
            // One-line form: the delta is in the code, two column bytes.
            code @ 10..=12 => {
                at += 2;
                i32::from(code) - 10
            }
            // Short form: same line, one column byte.
            _ => {
                at += 1;
                0
            }
        };
        line = line.wrapping_add(delta);
        if end > offset {
            break;
        }
    }
    line
}

fn varint(table: &[u8], at: &mut usize) -> u32 {
    let mut value = 0u32;
    let mut shift = 0;
    while let Some(&byte) = table.get(*at) {
        *at += 1;
        value |= u32::from(byte & 63).wrapping_shl(shift);
        shift += 6;
        if byte & 64 == 0 {
            break;
        }
    }
    value
}

fn signed_varint(table: &[u8], at: &mut usize) -> i32 {
    let value = varint(table, at);
    if value & 1 != 0 {
        -((value >> 1) as i32)
    } else {
        (value >> 1) as i32
    }
}

fn decode_text(raw: &[u8], kind: usize) -> Option<String> {
    match kind {
        1 => Some(raw.iter().map(|&b| char::from(b)).collect()),
        2 => {
            let units: Vec<u16> = raw
                .chunks_exact(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        4 => raw
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// Whether the OS has thread `tid` running or runnable (`R` in
/// `/proc/PID/task/TID/stat`); `None` when it cannot tell.
fn running_on_cpu(pid: Pid, tid: u32) -> Option<bool> {
    let stat = std::fs::read(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).map(|&state| state == b'R')
}

/// py-spy's rule for a thread that is waiting, not running.
fn looks_idle(leaf: &Frame) -> bool {
    (leaf.name == "wait" && leaf.filename.ends_with("threading.py"))
        || (leaf.name == "select" && leaf.filename.ends_with("selectors.py"))
        || (leaf.name == "poll"
            && (leaf.filename.ends_with("asyncore.py")
                || leaf.filename.contains("zmq")
                || leaf.filename.contains("gevent")
                || leaf.filename.contains("tornado")))
}

fn word(bytes: &[u8], offset: usize) -> usize {
    usize::from_ne_bytes(bytes[offset..][..8].try_into().expect("eight bytes"))
}

fn int(bytes: &[u8], offset: usize) -> i32 {
    i32::from_ne_bytes(bytes[offset..][..4].try_into().expect("four bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_cpython_3_11() {
        // Offsets from CPython 3.11's headers on x86-64 and aarch64.
        assert_eq!(offset_of!(ThreadState, cframe), 56);
        assert_eq!(offset_of!(ThreadState, thread_id), 152);
        assert_eq!(offset_of!(ThreadState, native_thread_id), 160);
        assert_eq!(offset_of!(CFrame, current_frame), 8);
        assert_eq!(offset_of!(InterpreterFrame, f_code), 32);
        assert_eq!(offset_of!(InterpreterFrame, previous), 48);
        assert_eq!(offset_of!(InterpreterFrame, prev_instr), 56);
        assert_eq!(offset_of!(CodeObject, co_firstlineno), 72);
        assert_eq!(offset_of!(CodeObject, co_filename), 112);
        assert_eq!(offset_of!(CodeObject, co_qualname), 128);
        assert_eq!(offset_of!(CodeObject, co_linetable), 136);
        assert_eq!(offset_of!(CodeObject, co_code_adaptive), 184);
        assert_eq!(size_of::<AsciiObject>(), 48);
        assert_eq!(size_of::<CompactUnicodeObject>(), 72);
        assert_eq!(offset_of!(BytesObject, ob_sval), 32);
    }

    #[test]
    fn location_table_forms_give_their_lines() {
        // Entries: (code << 3) | (units - 1), with bit 7 set.
        let short = |units: u8| 0x80 | (units - 1); // code 0: same line, 1 column byte
        let one_line = |delta: u8, units: u8| 0x80 | ((10 + delta) << 3) | (units - 1);
        let no_column = |units: u8| 0x80 | (13 << 3) | (units - 1);
        let table = [
            short(2),
            0, // bytes 0..4: line 10
            one_line(2, 1),
            0,
            0, // bytes 4..6: line 12
            no_column(3),
            0b0000_0111,      // -3 (signed varint: 3 << 1 | 1): bytes 6..12, line 9
            0x80 | (15 << 3), // no location: bytes 12..14 keep line 9
            0x80 | (14 << 3), // long form: bytes 14..16
            0b0000_1010,      // +5
            0,
            0,
            0, // line 14
        ];
        let at = |offset| line_at(&table, 10, offset);
        assert_eq!(at(-2), 10, "the instruction before the first");
        assert_eq!(at(0), 10);
        assert_eq!(at(2), 10);
        assert_eq!(at(4), 12);
        assert_eq!(at(6), 9);
        assert_eq!(at(10), 9);
        assert_eq!(at(12), 9);
        assert_eq!(at(14), 14);
        assert_eq!(at(400), 14, "past the end keeps the last line");
    }

    #[test]
    fn text_of_every_kind_decodes() {
        assert_eq!(decode_text(b"handler", 1).as_deref(), Some("handler"));
        assert_eq!(decode_text(&[0xe9], 1).as_deref(), Some("é"));
        let two: Vec<u8> = "Ωmega".encode_utf16().flat_map(u16::to_ne_bytes).collect();
        assert_eq!(decode_text(&two, 2).as_deref(), Some("Ωmega"));
        let four: Vec<u8> = "🔥x"
            .chars()
            .flat_map(|c| (c as u32).to_ne_bytes())
            .collect();
        assert_eq!(decode_text(&four, 4).as_deref(), Some("🔥x"));
        assert_eq!(
            decode_text(&0xD800u32.to_ne_bytes(), 4),
            None,
            "a surrogate is torn memory"
        );
    }

    #[test]
    fn reading_an_unmapped_address_fails_cleanly() {
        let walker = Walker311::new(std::process::id(), 8, false, true);
        let mut buf = [0u8; 16];
        assert!(walker.read(&mut [(8, &mut buf[..])]).is_err());
    }
}
