//! The code-object cache and the line tables.
//!
//! Code objects almost never change, so what was learned about one (its
//! names, filename and line table) is kept by address. An entry is trusted
//! only while the pointers in the code object's head (filename, name,
//! qualified name, line table) and its first line are what they were when it
//! was learned, so a code object freed and replaced at the same address is
//! read afresh.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use timeglass_model::Frame;

use super::layout::{Layout, LineFormat};
use super::memory::{int, word, Memory};

/// The cache is dropped when it holds more code objects than this (an app
/// that keeps compiling code, e.g. templates); it refills within a few walks.
const MAX_CACHED_CODE: usize = 200_000;

/// A code object whose head matched within this many walks is taken from
/// the cache without reading its head again. A frame holds a reference to
/// its code object, and a code object's head never changes, so a code object
/// seen in a live frame is the one cached at its address; only a frame read
/// torn (popped meanwhile, its code freed and another allocated at the same
/// address) could be named after the code that was there, and a head is
/// checked again at least this often.
const TRUST_WALKS: u64 = 64;

/// What a code object's head says; a cached entry is valid while it matches.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct CodeHead {
    filename: usize,
    name: usize,
    qualname: usize,
    line_table: usize,
    first_line: i32,
}

impl CodeHead {
    pub(super) fn parse(layout: &Layout, bytes: &[u8]) -> Self {
        CodeHead {
            filename: word(bytes, layout.code_filename),
            name: word(bytes, layout.code_name),
            qualname: layout.code_qualname.map_or(0, |at| word(bytes, at)),
            line_table: word(bytes, layout.code_line_table),
            first_line: int(bytes, layout.code_first_line),
        }
    }
}

/// What is kept about one code object.
pub(super) struct CodeInfo {
    head: CodeHead,
    /// The frame as shown, but for its line.
    pub frame: Frame,
    /// A shim py-spy does not show (3.13's `<shim>` entry frames).
    pub shim: bool,
    line_table: Vec<u8>,
    /// Where the line table's ranges end, in the units of a frame's offset,
    /// and the line it reaches there: an offset at or past the end (a torn
    /// or garbage frame) has that line without walking the whole table.
    table_end: (isize, i32),
    /// The last lines found, as `(instruction + 1) << 32 | line`, 0 when
    /// empty. A frame waiting in a call stays at one instruction for as long
    /// as the call lasts, so most walks find its line here rather than in
    /// the table. Two ways, so that two frames of one function (recursion,
    /// or one middleware class at two depths) do not evict each other.
    lines: [AtomicU64; 2],
    /// The same for "the instruction after this one follows a `yield from`
    /// or `await`" (3.11's RESUME oparg), as `(instruction + 1) << 32 | 0/1`.
    resumes: [AtomicU64; 2],
    /// The cache's walk count when the head last matched.
    verified: AtomicU64,
}

/// Code objects by address, and shortened filenames.
pub(super) struct CodeCache {
    code: FxHashMap<usize, Arc<CodeInfo>>,
    short: HashMap<String, String>,
    /// Code objects that could not be read in this walk, by address and
    /// head: a frame chain of garbage names the same bad code object again
    /// and again, and each try would decode its texts again (found by the
    /// `walker` fuzz target: 4,096 frames took 17 ms).
    unreadable: FxHashSet<(usize, CodeHead)>,
    /// Walks begun, for [`TRUST_WALKS`].
    walks: u64,
    /// The target's root directory as seen from here (`/proc/PID/root`)
    /// when it runs in another mount namespace, for shortening filenames.
    root: Option<String>,
}

impl CodeCache {
    pub(super) fn new(root: Option<String>) -> Self {
        CodeCache {
            code: FxHashMap::default(),
            short: HashMap::new(),
            unreadable: FxHashSet::default(),
            walks: TRUST_WALKS,
            root,
        }
    }

    /// The code object at `address` whose head is `head`, learned afresh
    /// when its head changed; `None` when it cannot be read (a torn read).
    pub(super) fn get(
        &mut self,
        memory: &Memory,
        layout: &Layout,
        address: usize,
        head: CodeHead,
    ) -> Option<Arc<CodeInfo>> {
        if let Some(info) = self.code.get(&address) {
            if info.head == head {
                info.verified.store(self.walks, Ordering::Relaxed);
                return Some(Arc::clone(info));
            }
        }
        if self.unreadable.contains(&(address, head)) {
            return None;
        }
        let Some(info) = self.learn(memory, layout, head) else {
            self.unreadable.insert((address, head));
            return None;
        };
        let info = Arc::new(info);
        info.verified.store(self.walks, Ordering::Relaxed);
        if self.code.len() >= MAX_CACHED_CODE {
            self.code.clear();
        }
        self.code.insert(address, Arc::clone(&info));
        Some(info)
    }

    /// Counts a walk begun: heads matched more than [`TRUST_WALKS`] walks
    /// ago are read again.
    pub(super) fn begin_walk(&mut self) {
        self.walks += 1;
        self.unreadable.clear();
    }

    /// The code object at `address` when its head matched recently enough
    /// to be trusted without reading it (see [`TRUST_WALKS`]).
    pub(super) fn trusted(&self, address: usize) -> Option<Arc<CodeInfo>> {
        let info = self.code.get(&address)?;
        let verified = info.verified.load(Ordering::Relaxed);
        (self.walks - verified < TRUST_WALKS).then(|| Arc::clone(info))
    }

    /// Reads the head of the code object at `address` and then as [`get`].
    pub(super) fn read(
        &mut self,
        memory: &Memory,
        layout: &Layout,
        address: usize,
    ) -> Option<Arc<CodeInfo>> {
        if let Some(info) = self.trusted(address) {
            return Some(info);
        }
        let mut head = vec![0u8; layout.code_head_bytes];
        memory.read(&mut [(address, &mut head[..])]).ok()?;
        self.get(memory, layout, address, CodeHead::parse(layout, &head))
    }

    fn learn(&mut self, memory: &Memory, layout: &Layout, head: CodeHead) -> Option<CodeInfo> {
        let filename = memory.text(layout, head.filename).ok()?;
        // 3.10 has no `co_qualname`: py-spy shows the plain name there.
        let name = match head.qualname {
            0 => memory.text(layout, head.name).ok()?,
            qualname => memory
                .text(layout, qualname)
                .or_else(|_| memory.text(layout, head.name))
                .ok()?,
        };
        let line_table = memory.bytes(layout, head.line_table).ok()?;
        let table_end = scanner(layout.line_format)(&line_table, head.first_line, isize::MAX);
        let short = self.shorten(&filename);
        Some(CodeInfo {
            head,
            shim: filename.is_empty() || filename == "<shim>",
            frame: Frame {
                name: name.into(),
                filename: filename.into(),
                short: short.into(),
                line: 0,
            },
            line_table,
            table_end,
            lines: Default::default(),
            resumes: Default::default(),
            verified: AtomicU64::new(0),
        })
    }

    /// `fastapi/routing.py` for `/venv/.../site-packages/fastapi/routing.py`
    /// ([`timeglass_wire::short_filename`], which the marker uses too), seen
    /// from the process's mount namespace.
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
        let short = timeglass_wire::short_filename(Path::new(&seen_from_here));
        self.short.insert(filename.to_string(), short.clone());
        short
    }
}

impl CodeInfo {
    /// The line a frame of this code is on. `instr` is what the frame says:
    /// 3.10's `f_lasti`, or 3.11+'s instruction pointer (then `code` is the
    /// code object's address, as the pointer is into it).
    pub(super) fn line(&self, layout: &Layout, code: usize, instr: usize) -> u32 {
        // The key is the instruction's offset into the code (3.11+) or
        // `f_lasti` (3.10): small, unlike the pointer.
        let key = match layout.line_format {
            LineFormat::Pairs310 => instr,
            LineFormat::Locations311 => instr.wrapping_sub(code.wrapping_add(layout.code_code)),
        };
        let key = match u32::try_from(key.wrapping_add(1)) {
            Ok(key) if key != 0 => key,
            _ => return self.line_uncached(layout, code, instr),
        };
        if let Some(line) = recall(&self.lines, key) {
            return line;
        }
        let line = self.line_uncached(layout, code, instr);
        remember(&self.lines, key, line);
        line
    }

    /// Whether the instruction after `instr` (a 3.11+ instruction pointer
    /// into the code at `code`) follows a `yield from` / `await`, as
    /// `read_next` tells from the next instruction's bytes; remembered, since
    /// an instruction's opcode family and oparg never change (specializing a
    /// RESUME keeps it a RESUME).
    pub(super) fn resumes_after_await(
        &self,
        layout: &Layout,
        code: usize,
        instr: usize,
        read_next: impl FnOnce() -> Option<bool>,
    ) -> Option<bool> {
        let key = instr
            .wrapping_sub(code.wrapping_add(layout.code_code))
            .wrapping_add(1);
        let key = u32::try_from(key).ok().filter(|&k| k != 0);
        if let Some(seen) = key.and_then(|key| recall(&self.resumes, key)) {
            return Some(seen == 1);
        }
        let answer = read_next()?;
        if let Some(key) = key {
            remember(&self.resumes, key, u32::from(answer));
        }
        Some(answer)
    }

    fn line_uncached(&self, layout: &Layout, code: usize, instr: usize) -> u32 {
        let offset = match layout.line_format {
            LineFormat::Pairs310 => 2 * instr as i32 as isize,
            LineFormat::Locations311 => {
                (instr as isize).wrapping_sub(code.wrapping_add(layout.code_code) as isize)
            }
        };
        let (end, last_line) = self.table_end;
        let line = if offset >= end {
            last_line
        } else {
            scanner(layout.line_format)(&self.line_table, self.head.first_line, offset).1
        };
        line.max(0) as u32
    }
}

/// The line-table walk of `format`: `(end, line)` of the instruction at an
/// offset (see [`scan_310`] and [`scan_311`]).
fn scanner(format: LineFormat) -> fn(&[u8], i32, isize) -> (isize, i32) {
    match format {
        LineFormat::Pairs310 => scan_310,
        LineFormat::Locations311 => scan_311,
    }
}

/// The value remembered for `key` in a two-way memo, if any.
fn recall(ways: &[AtomicU64; 2], key: u32) -> Option<u32> {
    ways.iter().find_map(|way| {
        let memo = way.load(Ordering::Relaxed);
        ((memo >> 32) as u32 == key).then_some(memo as u32)
    })
}

fn remember(ways: &[AtomicU64; 2], key: u32, value: u32) {
    ways[key as usize & 1].store(u64::from(key) << 32 | u64::from(value), Ordering::Relaxed);
}

/// 3.10's line table (PEP 626, `Objects/lnotab_notes.txt`): pairs of
/// (bytecode delta, signed line delta), each a range of instructions. As in
/// CPython's `PyCode_Addr2Line`, a line delta of -128 means "no line" for
/// that range, but its bytecode delta still moves the address on (py-spy
/// skips the whole pair, which shifts every later range by it): such a
/// range keeps the line reached so far. Returns where the walk stopped
/// (the end of the range holding `offset`, or of the table) and the line.
fn scan_310(table: &[u8], first_line: i32, offset: isize) -> (isize, i32) {
    let mut line = first_line;
    let mut end: isize = 0;
    for pair in table.chunks_exact(2) {
        end += pair[0] as isize;
        let line_delta = pair[1] as i8;
        if line_delta != -128 {
            line = line.wrapping_add(i32::from(line_delta));
        }
        if end > offset {
            break;
        }
    }
    (end, line)
}

/// The line of the instruction `offset` bytes into the code, walking the
/// 3.11+ location table from `first_line`; with where the walk stopped, as
/// [`scan_310`].
fn scan_311(table: &[u8], first_line: i32, offset: isize) -> (isize, i32) {
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
    (end, line)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let at = |offset| scan_311(&table, 10, offset).1;
        assert_eq!(at(-2), 10, "the instruction before the first");
        assert_eq!(at(0), 10);
        assert_eq!(at(2), 10);
        assert_eq!(at(4), 12);
        assert_eq!(at(6), 9);
        assert_eq!(at(10), 9);
        assert_eq!(at(12), 9);
        assert_eq!(at(14), 14);
        assert_eq!(at(400), 14, "past the end keeps the last line");
        assert_eq!(
            scan_311(&table, 10, isize::MAX),
            (16, 14),
            "the table's end"
        );
    }

    #[test]
    fn pair_table_gives_its_lines() {
        // (bytes, line delta): 6 bytes on +0, 4 on +2, no line for 2, 8 on -1.
        let table = [6, 0, 4, 2, 2, 0x80, 8, 0xff];
        let at = |offset| scan_310(&table, 20, offset).1;
        assert_eq!(at(0), 20);
        assert_eq!(at(5), 20);
        assert_eq!(at(6), 22);
        assert_eq!(at(9), 22);
        // CPython's ranges: [10, 12) has no line, [12, 20) is on 21.
        assert_eq!(at(10), 22, "a no-line range keeps the line reached");
        assert_eq!(at(11), 22);
        assert_eq!(at(12), 21, "and still moves the address on");
        assert_eq!(at(100), 21);
        assert_eq!(
            scan_310(&table, 20, isize::MAX),
            (20, 21),
            "the table's end"
        );
    }

    /// The memo answers what the table answers, for frames of one code
    /// object at several instructions visited in turn and revisited.
    #[test]
    fn remembered_lines_are_the_tables_lines() {
        use crate::walk::layout::V3_10;
        let info = CodeInfo {
            head: CodeHead {
                filename: 1,
                name: 2,
                qualname: 0,
                line_table: 3,
                first_line: 20,
            },
            frame: Frame::synthetic("f"),
            shim: false,
            line_table: vec![6, 0, 4, 2, 2, 0x80, 8, 0xff],
            table_end: scan_310(&[6, 0, 4, 2, 2, 0x80, 8, 0xff], 20, isize::MAX),
            lines: Default::default(),
            resumes: Default::default(),
            verified: AtomicU64::new(0),
        };
        // 3.10's `f_lasti` counts code units of two bytes.
        let visits = [0, 3, 6, 0, 3, 5, 6, 2, 100, 0, 3];
        for lasti in visits {
            let fresh = scan_310(&info.line_table, 20, 2 * lasti as isize).1 as u32;
            assert_eq!(info.line(&V3_10, 0, lasti), fresh, "f_lasti {lasti}");
        }
    }

    /// A head matched is trusted for [`TRUST_WALKS`] walks, then read again;
    /// a head that changed is learned afresh (here: cannot be, as nothing is
    /// mapped at the address).
    #[test]
    fn a_matched_head_is_trusted_for_a_while() {
        let layout = crate::walk::layout::V3_11.clone();
        let memory = Memory::new(std::process::id());
        let head = CodeHead {
            filename: 1,
            name: 2,
            qualname: 3,
            line_table: 4,
            first_line: 5,
        };
        let mut cache = CodeCache::new(None);
        let address = 8;
        assert!(cache.trusted(address).is_none(), "nothing cached yet");
        cache.code.insert(
            address,
            Arc::new(CodeInfo {
                head,
                frame: Frame::synthetic("f"),
                shim: false,
                line_table: Vec::new(),
                table_end: (0, 5),
                lines: Default::default(),
                resumes: Default::default(),
                verified: AtomicU64::new(0),
            }),
        );
        assert!(cache.trusted(address).is_none(), "never matched");
        assert!(cache.get(&memory, &layout, address, head).is_some());
        for _ in 1..TRUST_WALKS {
            cache.begin_walk();
            assert!(cache.trusted(address).is_some());
        }
        cache.begin_walk();
        assert!(cache.trusted(address).is_none(), "due for a check");
        let moved = CodeHead { name: 9, ..head };
        assert!(cache.get(&memory, &layout, address, moved).is_none());
    }
}
