//! A stack walker for CPython 3.10 to 3.13 (and, from its published debug
//! offsets, 3.14) that caches code objects.
//!
//! py-spy's walker copies every frame's code object, name, qualified name,
//! filename and line table on every walk: about eight `process_vm_readv`
//! calls per frame. Code objects almost never change, so this walker keeps
//! what it learned about each one ([`code`]), keyed by address, and per walk
//! reads only:
//!
//! * the pointer to the thread holding the GIL, that thread's state and its
//!   current frame pointer;
//! * per frame, the frame and the head of its code object, both in one
//!   vectored read (the code of frame *n* is read together with frame
//!   *n + 1*);
//! * or, on 3.11+, where frames that are not generators' live in per-thread
//!   data-stack chunks: the used part of the current chunk in one read, the
//!   frames outside it (coroutines' and generators', older chunks') one read
//!   each, then the code heads of all frames in one vectored read.
//!
//! Frames whose code cannot be read are skipped, as py-spy skips them; the
//! torn-stack detector downstream judges the rest. All version knowledge is
//! in [`layout`]; the await chains of suspended coroutines are in [`chain`].

mod chain;
mod code;
pub(crate) mod layout;
mod memory;
mod pthread;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use timeglass_model::Frame;

use crate::procfs::{run_state, TaskFiles};
use crate::{Collector, ThreadStack};
use code::{CodeCache, CodeHead, CodeInfo};
use layout::{FrameKind, GilKind, Layout};
pub(crate) use memory::ReadFailed;
use memory::{int, word, Memory};
use pthread::PthreadTids;

/// Deeper chains are loops read from torn memory.
const MAX_FRAMES: usize = 4096;
/// Longer thread lists are loops read from torn memory.
const MAX_THREADS: usize = 4096;
/// A larger used part of a data-stack chunk is garbage (CPython's chunks
/// start at 16 KiB and grow with the frames pushed).
const MAX_CHUNK_READ: usize = 1 << 20;
/// A tid asked for but absent from the thread list (a thread that ended,
/// or one that runs no Python) does not cause another scan for this long.
const MISSING_RESCAN: Duration = Duration::from_millis(100);
/// Code heads read per vectored read (Linux takes up to 1024 pieces).
const HEADS_PER_READ: usize = 512;
/// Frames outside the data-stack chunk read ahead at once at most (the
/// kernel takes at most `IOV_MAX`, 1024, parts per read).
const READ_AHEAD_FRAMES: usize = 512;

/// `sizeof(struct _gil_runtime_state)` in every supported version with the
/// GIL (`Include/internal/pycore_gil.h`): `interval`, `last_holder`,
/// `locked` (padded to 8), `switch_number`, then `cond`, `mutex`,
/// `switch_cond`, `switch_mutex` (`FORCE_SWITCHING` is always defined). The
/// target runs on this machine's libc, so its pthread sizes are ours.
const GIL_STATE_BYTES: usize = 4 * 8
    + 2 * std::mem::size_of::<nix::libc::pthread_cond_t>()
    + 2 * std::mem::size_of::<nix::libc::pthread_mutex_t>();

/// Where the walker starts: addresses in the target, found at attach.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Roots {
    /// The `PyInterpreterState`.
    pub interpreter: usize,
    /// 3.10/3.11: `&_PyRuntime.gilstate.tstate_current`; 3.12+: the
    /// `_gil_runtime_state` (what `interp->ceval.gil` points to).
    pub gil: usize,
    /// `PyCoro_Type`, `PyGen_Type`, `PyAsyncGen_Type`, when the binary's
    /// symbols say (else types are told by name).
    pub coroutine_type: Option<usize>,
    pub generator_type: Option<usize>,
    pub async_generator_type: Option<usize>,
}

/// Walks stacks in one CPython process.
pub(crate) struct Walker {
    memory: Memory,
    layout: Layout,
    roots: Roots,
    lines: bool,
    code: CodeCache,
    /// Native tid → thread state address, from the last scan of the
    /// interpreter's thread list; checked against the thread state read.
    threads: HashMap<u32, usize>,
    /// Tids asked for that the last scan that looked for them did not find.
    missing: HashMap<u32, Instant>,
    /// Type address → `tp_name`, `tp_base`.
    types: HashMap<usize, (String, usize)>,
    /// 3.10: where glibc keeps each thread's tid.
    pthread_tids: PthreadTids,
    /// Read the used part of the thread's data-stack chunk in one go (3.11+;
    /// on by default: it more than halves the cost of a 40-frame walk).
    chunk_reads: bool,
    /// Open `/proc/PID/task/TID/stat` files: a run state is one `pread`.
    stat_files: TaskFiles,
    /// Per thread (by tid), the frames outside its data-stack chunk at its
    /// last walk, innermost first: read ahead at the next.
    outside: FxHashMap<usize, Vec<usize>>,
    /// The collector's state, read with the GIL holder in the same system
    /// call by the last walk (so the two are of one instant), until asked.
    collector_seen: Cell<Option<Collector>>,
    /// A read of the collector failed where the holder's alone works: its
    /// offsets are wrong for this build, and it is not read again.
    collector_broken: Cell<bool>,
}

impl Walker {
    /// With `lines` false every frame's line is 0, as with py-spy's `NoLine`.
    pub(crate) fn new(
        pid: u32,
        layout: Layout,
        roots: Roots,
        dockerized: bool,
        lines: bool,
    ) -> Self {
        Walker {
            memory: Memory::new(pid),
            layout,
            roots,
            lines,
            code: CodeCache::new(dockerized.then(|| format!("/proc/{pid}/root"))),
            threads: HashMap::new(),
            missing: HashMap::new(),
            types: HashMap::new(),
            chunk_reads: true,
            stat_files: TaskFiles::new("stat"),
            outside: FxHashMap::default(),
            collector_seen: Cell::new(None),
            collector_broken: Cell::new(false),
            pthread_tids: PthreadTids::default(),
        }
    }

    /// Whether to read the thread's data-stack chunk in one read, parsing
    /// the frames in it locally and reading all code heads in one vectored
    /// read (3.11+; other layouts ignore it).
    pub(crate) fn set_chunk_reads(&mut self, on: bool) {
        self.chunk_reads = on;
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The addresses of the interpreter's GIL state (`_gil_runtime_state`:
    /// its mutex and condition variables), as `start..end`: a thread asleep
    /// in a futex inside it is waiting for the GIL. 3.10/3.11 keep it in
    /// `_PyRuntime.ceval.gil`, right before `_PyRuntime.gilstate`, whose
    /// `tstate_current` (after an `int`, so at 8) is the root found; 3.12+
    /// point `interp->ceval.gil` at it.
    pub(crate) fn gil_region(&self) -> std::ops::Range<usize> {
        let start = match self.layout.gil {
            GilKind::TstateCurrent => self.roots.gil.wrapping_sub(8 + GIL_STATE_BYTES),
            GilKind::RuntimeState { .. } => self.roots.gil,
        };
        start..start.wrapping_add(GIL_STATE_BYTES)
    }

    /// The garbage collector's state, in one read of the interpreter:
    /// whether a collection is running, and how many have run in all
    /// generations. `Ok(None)` where the layout does not know where the
    /// collector keeps them.
    ///
    /// What the last walk read with the GIL holder, if it has not been
    /// asked for yet: then the holder walked is the thread that collects.
    pub(crate) fn collector(&self) -> Result<Option<Collector>, ReadFailed> {
        if let Some(seen) = self.collector_seen.take() {
            return Ok(Some(seen));
        }
        let Some((at, gc)) = self.collector_at() else {
            return Ok(None);
        };
        let mut bytes = [0u8; COLLECTOR_BYTES];
        let bytes = &mut bytes[..gc.span()];
        self.memory.read(&mut [(at, &mut bytes[..])])?;
        Ok(Some(collector_of(bytes, gc)))
    }

    /// Where to read the collector's stats and flag, and their layout.
    fn collector_at(&self) -> Option<(usize, layout::GcLayout)> {
        let gc = self
            .layout
            .interp_gc
            .filter(|_| !self.collector_broken.get())?;
        let at = self
            .roots
            .interpreter
            .wrapping_add(gc.state)
            .wrapping_add(gc.stats);
        Some((at, gc))
    }

    /// The stack of the thread holding the GIL; none when no thread holds it.
    pub(crate) fn gil_holder(&mut self) -> Result<Vec<ThreadStack>, ReadFailed> {
        self.code.begin_walk();
        let holder = self.holder()?;
        if holder == 0 {
            return Ok(Vec::new());
        }
        let thread = self.thread(holder)?;
        let tid = self.native_id(&thread);
        Ok(vec![self.thread_stack(&thread, tid, true, None)?])
    }

    /// The stack of every thread, with whether each is on a CPU.
    pub(crate) fn all_threads(&mut self) -> Result<Vec<ThreadStack>, ReadFailed> {
        self.code.begin_walk();
        let holder = self.holder()?;
        let mut stacks = Vec::new();
        for (address, thread) in self.scan()? {
            let tid = self.native_id(&thread);
            let on_cpu = self.on_cpu(tid);
            stacks.push(self.thread_stack(&thread, tid, address == holder, on_cpu)?);
        }
        Ok(stacks)
    }

    /// The GIL holder's stack and those of the threads with native ids
    /// `tids`, each once, reading no other thread state (but for a rescan
    /// of the thread list when a tid is not where it was last seen).
    pub(crate) fn stacks_with(&mut self, tids: &[u32]) -> Result<Vec<ThreadStack>, ReadFailed> {
        self.code.begin_walk();
        if self.layout.thread_native_id.is_none() && !self.pthread_tids.observed() {
            // 3.10: learn where tids are before the GIL holder's is needed.
            self.scan()?;
        }
        let holder = self.holder()?;
        let mut stacks = Vec::new();
        let mut done = HashSet::new();
        if holder != 0 {
            let thread = self.thread(holder)?;
            let tid = self.native_id(&thread);
            done.insert(tid);
            let on_cpu = self.on_cpu(tid);
            stacks.push(self.thread_stack(&thread, tid, true, on_cpu)?);
        }
        let mut rescanned = false;
        for &tid in tids {
            if !done.insert(Some(tid)) {
                continue;
            }
            let Some((address, thread)) = self.find_thread(tid, &mut rescanned)? else {
                continue;
            };
            let on_cpu = self.on_cpu(Some(tid));
            // A thread whose frames moved under the walk is left out of
            // this tick; the others' stacks still count.
            if let Ok(stack) = self.thread_stack(&thread, Some(tid), address == holder, on_cpu) {
                stacks.push(stack);
            }
        }
        Ok(stacks)
    }

    /// The thread state of native thread `tid`: where it was last seen if
    /// it is still there, else from a fresh scan (at most one per call).
    fn find_thread(
        &mut self,
        tid: u32,
        rescanned: &mut bool,
    ) -> Result<Option<(usize, Vec<u8>)>, ReadFailed> {
        if let Some(&address) = self.threads.get(&tid) {
            if let Ok(thread) = self.thread(address) {
                if self.is_thread(&thread, tid) {
                    return Ok(Some((address, thread)));
                }
            }
        }
        let recently_missing = self
            .missing
            .get(&tid)
            .is_some_and(|at| at.elapsed() < MISSING_RESCAN);
        if !*rescanned && !recently_missing {
            *rescanned = true;
            self.scan()?;
        }
        if let Some(&address) = self.threads.get(&tid) {
            let thread = self.thread(address)?;
            if self.is_thread(&thread, tid) {
                self.missing.remove(&tid);
                return Ok(Some((address, thread)));
            }
        }
        if *rescanned {
            if self.missing.len() >= MAX_THREADS {
                self.missing.clear();
            }
            self.missing.insert(tid, Instant::now());
        }
        Ok(None)
    }

    fn is_thread(&self, thread: &[u8], tid: u32) -> bool {
        self.native_id(thread) == Some(tid)
            && word(thread, self.layout.thread_interp) == self.roots.interpreter
    }

    /// Every thread state of the interpreter, head first; refreshes the
    /// tid → thread state map.
    fn scan(&mut self) -> Result<Vec<(usize, Vec<u8>)>, ReadFailed> {
        let mut next = self.memory.word(
            self.roots
                .interpreter
                .wrapping_add(self.layout.interp_threads_head),
        )?;
        let mut threads = Vec::new();
        while next != 0 {
            if threads.len() >= MAX_THREADS {
                return Err(ReadFailed);
            }
            let thread = self.thread(next)?;
            let address = next;
            next = word(&thread, self.layout.thread_next);
            threads.push((address, thread));
        }
        if self.layout.thread_native_id.is_none() {
            let pthreads: Vec<usize> = threads
                .iter()
                .map(|(_, thread)| word(thread, self.layout.thread_id))
                .collect();
            self.pthread_tids.observe(&self.memory, &pthreads);
        }
        self.threads = threads
            .iter()
            .filter_map(|(address, thread)| Some((self.native_id(thread)?, *address)))
            .collect();
        Ok(threads)
    }

    fn thread(&self, address: usize) -> Result<Vec<u8>, ReadFailed> {
        let mut thread = vec![0u8; self.layout.thread_bytes];
        self.memory.read(&mut [(address, &mut thread[..])])?;
        Ok(thread)
    }

    /// The thread's native tid: from its thread state (3.11+), or from
    /// glibc's `struct pthread` once its place is known (3.10).
    fn native_id(&self, thread: &[u8]) -> Option<u32> {
        let Some(at) = self.layout.thread_native_id else {
            let pthread = word(thread, self.layout.thread_id);
            return self.pthread_tids.tid(&self.memory, pthread);
        };
        let tid = word(thread, at) as u32;
        (tid != 0).then_some(tid)
    }

    /// What the OS says of the thread `tid`; `None` without one.
    fn on_cpu(&mut self, tid: Option<u32>) -> Option<bool> {
        let mut stat = [0u8; 512];
        let pid = self.memory.pid().as_raw() as u32;
        let n = self.stat_files.read(pid, tid?, &mut stat)?;
        run_state(&stat[..n]).map(|state| state == b'R')
    }

    /// The thread state holding the GIL, or 0.
    /// The GIL holder's thread state (0 for none), read in one system call
    /// with the collector's state, which is kept for [`Walker::collector`].
    fn holder(&self) -> Result<usize, ReadFailed> {
        let mut gil = [0u8; 32];
        let wanted = match self.layout.gil {
            GilKind::TstateCurrent => 8,
            GilKind::RuntimeState {
                last_holder,
                locked,
            } => (last_holder + 8).max(locked + 4),
        };
        let wanted = &mut gil[..wanted];
        let mut gc_bytes = [0u8; COLLECTOR_BYTES];
        self.collector_seen.set(None);
        match self.collector_at() {
            Some((at, gc)) => {
                let gc_bytes = &mut gc_bytes[..gc.span()];
                let both = self
                    .memory
                    .read(&mut [(self.roots.gil, &mut wanted[..]), (at, &mut gc_bytes[..])]);
                if both.is_ok() {
                    self.collector_seen.set(Some(collector_of(gc_bytes, gc)));
                } else {
                    self.memory.read(&mut [(self.roots.gil, &mut wanted[..])])?;
                    self.collector_broken.set(true);
                }
            }
            None => self.memory.read(&mut [(self.roots.gil, &mut wanted[..])])?,
        }
        Ok(match self.layout.gil {
            GilKind::TstateCurrent => word(wanted, 0),
            GilKind::RuntimeState {
                last_holder,
                locked,
            } => {
                if int(wanted, locked) != 0 {
                    word(wanted, last_holder)
                } else {
                    0
                }
            }
        })
    }

    /// One thread's stack from its thread state; `on_cpu` is what the OS
    /// says, when asked.
    fn thread_stack(
        &mut self,
        thread: &[u8],
        tid: Option<u32>,
        owns_gil: bool,
        on_cpu: Option<bool>,
    ) -> Result<ThreadStack, ReadFailed> {
        let layout = &self.layout;
        let pointer = word(thread, layout.thread_frame);
        let first = match layout.frame_kind {
            FrameKind::Object | FrameKind::Direct => pointer,
            FrameKind::ViaCFrame if pointer == 0 => 0,
            FrameKind::ViaCFrame => self
                .memory
                .word(pointer.wrapping_add(layout.cframe_current_frame))?,
        };
        let mut frames = Vec::new();
        match layout.thread_datastack.filter(|_| self.chunk_reads) {
            Some((chunk, top)) => {
                let window = self.chunk(word(thread, chunk), word(thread, top));
                self.walk_chunked(first, window, tid.unwrap_or(0) as usize, &mut frames)?;
            }
            None => self.walk(first, &mut frames)?,
        }
        frames.reverse();
        let active = on_cpu.unwrap_or(true) && frames.last().is_none_or(|leaf| !looks_idle(leaf));
        Ok(ThreadStack {
            tid,
            pthread_id: word(thread, self.layout.thread_id) as u64,
            active,
            owns_gil,
            on_cpu,
            frames,
        })
    }

    /// Pushes the frames from `frame` outwards, leaf first.
    fn walk(&mut self, mut frame: usize, out: &mut Vec<Frame>) -> Result<(), ReadFailed> {
        let mut frame_buf = vec![0u8; self.layout.frame_bytes];
        let mut head_buf = vec![0u8; self.layout.code_head_bytes];
        // The code object (and the frame's instruction) read with the next
        // frame.
        let mut pending: Option<(usize, usize)> = None;
        let mut seen = 0;
        while frame != 0 || pending.is_some() {
            seen += 1;
            if seen > MAX_FRAMES {
                return Err(ReadFailed);
            }
            let read_frame = frame != 0;
            // A code object trusted from the cache needs no head read.
            if let Some((code, instr)) = pending {
                if let Some(info) = self.code.trusted(code) {
                    pending = None;
                    out.extend(self.shown(&info, code, instr));
                    if !read_frame {
                        break;
                    }
                }
            }
            let code_read = match (read_frame, pending) {
                (true, Some((code, _))) => self
                    .memory
                    .read(&mut [(frame, &mut frame_buf[..]), (code, &mut head_buf[..])])
                    .map(|()| true),
                (true, None) => self
                    .memory
                    .read(&mut [(frame, &mut frame_buf[..])])
                    .map(|()| false),
                (false, Some((code, _))) => {
                    Ok(self.memory.read(&mut [(code, &mut head_buf[..])]).is_ok())
                }
                (false, None) => unreachable!("the loop ends when there is nothing to read"),
            };
            let code_read = match code_read {
                Ok(read) => read,
                // A frame that cannot be read ends the walk as py-spy's does;
                // when the read failed with a code head, try the frame alone
                // (the code object may be the unreadable one).
                Err(ReadFailed) if pending.is_some() => {
                    self.memory.read(&mut [(frame, &mut frame_buf[..])])?;
                    false
                }
                Err(e) => return Err(e),
            };
            if let Some((code, instr)) = pending.take() {
                if code_read {
                    if let Some(shown) = self.frame_of(code, instr, &head_buf) {
                        out.push(shown);
                    }
                }
            }
            if read_frame {
                let (code, instr, previous) = self.parse_frame(&frame_buf);
                frame = previous;
                if code != 0 {
                    pending = Some((code, instr));
                }
            }
        }
        Ok(())
    }

    /// The used part of the data-stack chunk at `chunk`, up to `top`, with
    /// its address; `None` when it cannot be read.
    fn chunk(&self, chunk: usize, top: usize) -> Option<(usize, Vec<u8>)> {
        let len = top
            .checked_sub(chunk)
            .filter(|&l| l > 0 && l <= MAX_CHUNK_READ)?;
        let mut bytes = vec![0u8; len];
        self.memory.read(&mut [(chunk, &mut bytes[..])]).ok()?;
        Some((chunk, bytes))
    }

    /// As [`walk`](Self::walk), but frames inside `window` (the chunk) are
    /// parsed from it, and the code heads of all frames are read together.
    ///
    /// Frames outside the chunk (coroutines' frames live in their objects)
    /// would be one read each. The addresses of those the thread `key` had
    /// at its last walk are read together instead, from the first of them
    /// met: a step of a request keeps its coroutines, so their frames are at
    /// the same addresses. Only the bytes of frames the links lead to are
    /// used, and they are read now, so a wrong guess costs bytes, not truth.
    fn walk_chunked(
        &mut self,
        mut frame: usize,
        window: Option<(usize, Vec<u8>)>,
        key: usize,
        out: &mut Vec<Frame>,
    ) -> Result<(), ReadFailed> {
        let frame_bytes = self.layout.frame_bytes;
        let mut own = vec![0u8; frame_bytes];
        let mut links = Vec::new();
        let mut outside = Vec::new();
        let last = self.outside.remove(&key).unwrap_or_default();
        let mut ahead: Option<(usize, Vec<u8>)> = None;
        let mut seen = 0;
        while frame != 0 {
            seen += 1;
            if seen > MAX_FRAMES {
                return Err(ReadFailed);
            }
            let inside = window.as_ref().and_then(|(base, bytes)| {
                let start = frame.checked_sub(*base)?;
                bytes.get(start..start.checked_add(frame_bytes)?)
            });
            let bytes = match inside {
                Some(bytes) => bytes,
                None => {
                    outside.push(frame);
                    if ahead.is_none() {
                        ahead = last
                            .iter()
                            .position(|&at| at == frame)
                            .and_then(|from| Some((from, self.read_ahead(&last[from..])?)));
                    }
                    let read_ahead = ahead.as_ref().and_then(|(first, bytes)| {
                        let at = last[*first..].iter().position(|&at| at == frame)?;
                        bytes.get(at * frame_bytes..(at + 1) * frame_bytes)
                    });
                    match read_ahead {
                        Some(bytes) => bytes,
                        None => {
                            self.memory.read(&mut [(frame, &mut own[..])])?;
                            &own[..]
                        }
                    }
                }
            };
            let (code, instr, previous) = self.parse_frame(bytes);
            if code != 0 {
                links.push((code, instr));
            }
            frame = previous;
        }
        if !outside.is_empty() {
            if self.outside.len() >= MAX_THREADS {
                self.outside.clear();
            }
            self.outside.insert(key, outside);
        }
        // Code objects trusted from the cache need no head read; the others'
        // heads are read together.
        let mut shown: Vec<Option<Frame>> = Vec::with_capacity(links.len());
        let mut unknown = Vec::new();
        for (at, &(code, instr)) in links.iter().enumerate() {
            match self.code.trusted(code) {
                Some(info) => shown.push(self.shown(&info, code, instr)),
                None => {
                    shown.push(None);
                    unknown.push(at);
                }
            }
        }
        if unknown.is_empty() {
            out.extend(shown.into_iter().flatten());
            return Ok(());
        }
        let all = links;
        let links: Vec<(usize, usize)> = unknown.iter().map(|&at| all[at]).collect();
        let head_bytes = self.layout.code_head_bytes;
        let mut heads = vec![0u8; links.len() * head_bytes];
        let mut read = vec![true; links.len()];
        for (group, (heads, read)) in heads
            .chunks_mut(HEADS_PER_READ * head_bytes)
            .zip(read.chunks_mut(HEADS_PER_READ))
            .enumerate()
        {
            let codes = &links[group * HEADS_PER_READ..][..read.len()];
            let mut parts: Vec<(usize, &mut [u8])> = codes
                .iter()
                .map(|(code, _)| *code)
                .zip(heads.chunks_mut(head_bytes))
                .collect();
            if self.memory.read(&mut parts).is_err() {
                // Some code object is unreadable: find which, one by one.
                for (part, ok) in parts.iter_mut().zip(read.iter_mut()) {
                    *ok = self.memory.read(std::slice::from_mut(part)).is_ok();
                }
            }
        }
        for ((&at, head), ok) in unknown.iter().zip(heads.chunks(head_bytes)).zip(read) {
            if ok {
                let (code, instr) = all[at];
                shown[at] = self.frame_of(code, instr, head);
            }
        }
        out.extend(shown.into_iter().flatten());
        Ok(())
    }

    /// The frames at `addresses`, in one vectored read, back to back;
    /// `None` when one of them cannot be read (the guess is dropped).
    fn read_ahead(&self, addresses: &[usize]) -> Option<Vec<u8>> {
        let frame_bytes = self.layout.frame_bytes;
        let addresses = &addresses[..addresses.len().min(READ_AHEAD_FRAMES)];
        let mut bytes = vec![0u8; addresses.len() * frame_bytes];
        let mut parts: Vec<(usize, &mut [u8])> = addresses
            .iter()
            .copied()
            .zip(bytes.chunks_mut(frame_bytes))
            .collect();
        self.memory.read(&mut parts).ok()?;
        Some(bytes)
    }

    /// A frame's code object (0 for a frame py-spy does not show), its
    /// instruction (see [`code::CodeInfo::line`]) and the next frame out.
    fn parse_frame(&self, frame: &[u8]) -> (usize, usize, usize) {
        let layout = &self.layout;
        let previous = word(frame, layout.frame_previous);
        let code = word(frame, layout.frame_code) & !layout.code_tag_bits;
        let instr = match layout.frame_kind {
            FrameKind::Object => int(frame, layout.frame_instr) as usize,
            _ => word(frame, layout.frame_instr),
        };
        let owner = layout.frame_owner.map(|at| frame[at]);
        let skipped =
            owner.is_some() && (owner == layout.owner_cstack || owner == layout.owner_interpreter);
        (if skipped { 0 } else { code }, instr, previous)
    }

    /// The frame shown for `code` at `instr`, from its head; `None` for a
    /// code object that cannot be read, or a shim.
    fn frame_of(&mut self, code: usize, instr: usize, head: &[u8]) -> Option<Frame> {
        let head = CodeHead::parse(&self.layout, head);
        let info = self.code.get(&self.memory, &self.layout, code, head)?;
        self.shown(&info, code, instr)
    }

    /// The frame shown for a frame of `info`'s code at `instr`; `None` for
    /// a shim.
    fn shown(&self, info: &CodeInfo, code: usize, instr: usize) -> Option<Frame> {
        if info.shim {
            return None;
        }
        let mut shown = info.frame.clone();
        shown.line = if self.lines {
            info.line(&self.layout, code, instr)
        } else {
            0
        };
        Some(shown)
    }
}

/// One word of process `pid`'s memory (for finding the roots at attach).
pub(crate) fn read_word(pid: u32, address: usize) -> Option<usize> {
    Memory::new(pid).word(address).ok()
}

/// `len` bytes of process `pid`'s memory.
pub(crate) fn read_bytes(pid: u32, address: usize, len: usize) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    Memory::new(pid)
        .read(&mut [(address, &mut bytes[..])])
        .ok()?;
    Some(bytes)
}

/// Enough for the collector's stats and flag (76 bytes from 3.10 to 3.13).
const COLLECTOR_BYTES: usize = 80;

/// The collector's state from the bytes at `generation_stats`: three
/// `{collections, collected, uncollectable}` triples, then `collecting`.
fn collector_of(bytes: &[u8], gc: layout::GcLayout) -> Collector {
    let collections = (0..3).fold(0u64, |sum, g| sum.wrapping_add(word(bytes, g * 24) as u64));
    Collector {
        collecting: int(bytes, gc.collecting - gc.stats) != 0,
        collections,
    }
}

/// py-spy's rule for a thread that is waiting, not running.
fn looks_idle(leaf: &Frame) -> bool {
    (&*leaf.name == "wait" && leaf.filename.ends_with("threading.py"))
        || (&*leaf.name == "select" && leaf.filename.ends_with("selectors.py"))
        || (&*leaf.name == "poll"
            && (leaf.filename.ends_with("asyncore.py")
                || leaf.filename.contains("zmq")
                || leaf.filename.contains("gevent")
                || leaf.filename.contains("tornado")))
}

/// For the `walker` fuzz target (`fuzz/`): walks `input` laid out as memory
/// of this process, through the same reads as a live walk. The first byte
/// picks the CPython layout; every following 8 bytes become one word: by
/// its low two bits a pointer back into the memory (so reads succeed and
/// parse whatever is there), a small number, zero, or the raw value.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn fuzz_walk(input: &[u8]) {
    use layout::{V3_10, V3_11, V3_12, V3_13};
    let Some((&pick, rest)) = input.split_first() else {
        return;
    };
    let layout = [&V3_10, &V3_11, &V3_12, &V3_13][usize::from(pick) % 4].clone();
    let len = (rest.len() / 8).max(512);
    // The walker owns the buffer: moving a Vec keeps its heap address.
    let mut memory = vec![0u8; len * 8];
    let base = memory.as_ptr() as u64;
    let span = (len as u64 - 64) * 8;
    for (word, raw) in memory.chunks_exact_mut(8).zip(rest.chunks_exact(8)) {
        let raw = u64::from_le_bytes(raw.try_into().expect("eight bytes"));
        let value = match raw & 3 {
            0 => base + ((raw >> 2) % span) / 8 * 8,
            1 => (raw >> 2) % 4096,
            2 => 0,
            _ => raw,
        };
        word.copy_from_slice(&value.to_ne_bytes());
    }
    let roots = Roots {
        interpreter: base as usize + 64,
        gil: base as usize + 128,
        coroutine_type: None,
        generator_type: None,
        async_generator_type: None,
    };
    let mut walker = Walker::new(std::process::id(), layout, roots, false, true);
    walker.memory = Memory::local(memory);
    for chunk_reads in [true, false] {
        walker.set_chunk_reads(chunk_reads);
        let _ = walker.gil_holder();
        let _ = walker.all_threads();
        let _ = walker.stacks_with(&[1, 2, std::process::id()]);
    }
    for at in [0, 8, 256, 4096] {
        let _ = walker.await_chain(base as usize + at % (len * 8));
    }
    let _ = walker.collector();
}

#[cfg(test)]
mod tests {
    use super::layout::{V3_10, V3_11, V3_12, V3_13};
    use super::*;

    /// Memory in this process full of garbage whose words are mostly
    /// pointers back into it (so reads succeed and parse nonsense), small
    /// numbers, and a few zeros.
    fn garbage(seed: u64) -> Vec<u64> {
        let mut words = vec![0u64; 8192];
        let base = words.as_ptr() as u64;
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        for word in &mut words {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = state >> 33;
            *word = match r % 8 {
                0 => 0,
                1 => r % 64,
                2 => u64::MAX - r % 3,
                _ => base + (r % (8192 * 8 - 512)) / 8 * 8,
            };
        }
        words
    }

    #[test]
    fn the_committed_walker_corpus_walks_cleanly() {
        // What `make fuzz-smoke` starts from, through the same local memory.
        let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/walker");
        let mut inputs = 0;
        for entry in std::fs::read_dir(corpus).expect("the committed corpus") {
            fuzz_walk(&std::fs::read(entry.expect("an entry").path()).expect("an input"));
            inputs += 1;
        }
        assert!(inputs > 100, "{inputs} inputs in {corpus}");
    }

    #[test]
    fn a_loop_of_frames_the_walk_skips_still_ends() {
        // Two 3.12 frames owned by the C stack (skipped), each the other's
        // previous frame: the walk must give up, not spin.
        let layout = V3_12.clone();
        let mut memory = vec![0u64; 128];
        let base = memory.as_ptr() as usize;
        let (a, b) = (base + 64, base + 192);
        for (frame, previous) in [(a, b), (b, a)] {
            let at = (frame - base) / 8;
            memory[at + layout.frame_previous / 8] = previous as u64;
            memory[at + layout.frame_code / 8] = base as u64;
            memory[at + layout.frame_owner.unwrap() / 8] = 3 << ((70 % 8) * 8);
        }
        // A thread state whose cframe's current frame is `a`.
        let (thread, cframe) = (base + 320, base + 16);
        memory[(cframe - base) / 8] = a as u64;
        memory[(thread - base + layout.thread_frame) / 8] = cframe as u64;
        let roots = Roots {
            interpreter: base,
            gil: base + 8,
            ..Roots::default()
        };
        let mut walker = Walker::new(std::process::id(), layout, roots, false, true);
        let state: Vec<u8> = memory[(thread - base) / 8..]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        for chunk_reads in [true, false] {
            walker.set_chunk_reads(chunk_reads);
            assert_eq!(
                walker.thread_stack(&state, None, true, None),
                Err(ReadFailed)
            );
        }
    }

    #[test]
    fn a_tid_missing_from_the_thread_list_is_looked_for_again_only_later() {
        // A 3.13 interpreter with one thread state (tid 5, no frames) and
        // an unlocked GIL.
        let layout = V3_13.clone();
        let mut memory = vec![0u64; 2048];
        let base = memory.as_ptr() as usize;
        let (interpreter, thread) = (base, base + 8192);
        memory[layout.interp_threads_head / 8] = thread as u64;
        memory[(8192 + layout.thread_interp) / 8] = interpreter as u64;
        let tid_at = (8192 + layout.thread_native_id.unwrap()) / 8;
        memory[tid_at] = 5;
        let roots = Roots {
            interpreter,
            gil: base + 15000,
            ..Roots::default()
        };
        let mut walker = Walker::new(std::process::id(), layout, roots, false, true);
        let tids = |stacks: Vec<ThreadStack>| -> Vec<Option<u32>> {
            stacks.iter().map(|s| s.tid).collect()
        };
        assert_eq!(tids(walker.stacks_with(&[5]).unwrap()), [Some(5)]);
        assert_eq!(tids(walker.stacks_with(&[9]).unwrap()), []);
        // Thread 5 ends and thread 9 takes its thread state: 9 was just
        // found missing, so the list is not scanned again at once.
        memory[tid_at] = 9;
        assert_eq!(tids(walker.stacks_with(&[9]).unwrap()), []);
        std::thread::sleep(MISSING_RESCAN);
        assert_eq!(tids(walker.stacks_with(&[9]).unwrap()), [Some(9)]);
        assert_eq!(tids(walker.stacks_with(&[5, 9]).unwrap()), [Some(9)]);
        drop(memory);
    }

    #[test]
    fn garbage_memory_is_an_error_or_a_stack_never_a_panic() {
        for layout in [&V3_10, &V3_11, &V3_12, &V3_13] {
            for seed in 0..40 {
                let memory = garbage(seed);
                let base = memory.as_ptr() as usize;
                let roots = Roots {
                    interpreter: base + 64,
                    gil: base + 128,
                    coroutine_type: None,
                    generator_type: None,
                    async_generator_type: None,
                };
                let mut walker =
                    Walker::new(std::process::id(), layout.clone(), roots, false, true);
                for chunk_reads in [true, false] {
                    walker.set_chunk_reads(chunk_reads);
                    let _ = walker.gil_holder();
                    let _ = walker.all_threads();
                    let _ = walker.stacks_with(&[1, 2, std::process::id()]);
                }
                for at in [0, 8, 256, 4096] {
                    let _ = walker.await_chain(base + at);
                }
                drop(memory);
            }
        }
    }
}
