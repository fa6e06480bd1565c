//! The await chain of a suspended coroutine, read from the coroutine object
//! without running it: its frame, then the object it awaits (CPython's
//! `_PyGen_yf` in `Objects/genobject.c`), and so on while that object is a
//! coroutine or generator.

use timeglass_model::Frame;

use super::layout::FrameKind;
use super::memory::{int, word, ReadFailed};
use super::Walker;
use crate::AwaitChain;

/// Longer chains are loops read from torn memory.
const MAX_LINKS: usize = 1024;
/// Longer `tp_base` chains are garbage.
const MAX_BASES: usize = 64;
/// Bytes read at once from the start of each object in a chain: its type,
/// and for a 3.11+ coroutine its state, its embedded frame and the first
/// slots of that frame's stack, where the awaited object usually is. One
/// read per link instead of four.
const OBJECT_BLOCK: usize = 512;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A coroutine, generator or async generator.
    Generator,
    Other,
}

/// One link: the frame of a generator-like object and what it awaits.
struct Link {
    frame: Option<Frame>,
    running: bool,
    awaits: usize,
}

impl Walker {
    /// Whether this walker reads await chains for its version.
    pub(crate) fn reads_await_chains(&self) -> bool {
        self.layout.frame_stack_depth.is_some() && self.layout.minor <= 13
    }

    /// The await chain of the coroutine (or generator, or async generator)
    /// at `address`.
    pub(crate) fn await_chain(&mut self, address: usize) -> Result<AwaitChain, ReadFailed> {
        self.code.begin_walk();
        let mut chain = AwaitChain::default();
        let mut object = address;
        let mut block = [0u8; OBJECT_BLOCK];
        for depth in 0..MAX_LINKS {
            // An object near the end of a mapping cannot be read whole: then
            // each part is read on its own.
            let whole = self.memory.read(&mut [(object, &mut block[..])]).is_ok();
            let block = whole.then_some(&block[..]);
            let ob_type = match block {
                Some(block) => word(block, self.layout.ob_type),
                None => self.memory.word(object.wrapping_add(self.layout.ob_type))?,
            };
            if self.kind(ob_type)? == Kind::Other {
                if depth == 0 {
                    // Not a coroutine at all.
                    return Err(ReadFailed);
                }
                let (name, _) = self.type_info(ob_type)?;
                chain.ready = self.future_done(object, ob_type)?;
                chain.awaits = Some(name);
                chain.awaited = object as u64;
                return Ok(chain);
            }
            let link = match self.layout.frame_kind {
                FrameKind::Object => self.link_310(object)?,
                _ => self.link_311(object, block)?,
            };
            if depth == 0 {
                chain.running = link.running;
            }
            chain.frames.extend(link.frame);
            if link.awaits == 0 {
                return Ok(chain);
            }
            object = link.awaits;
        }
        Err(ReadFailed)
    }

    /// 3.10: the frame is a heap `PyFrameObject` at `gi_frame` (none once
    /// the generator finished); it awaits the top of its value stack when
    /// the next instruction is `YIELD_FROM`.
    fn link_310(&mut self, object: usize) -> Result<Link, ReadFailed> {
        let layout = self.layout.clone();
        let gen_frame = layout.gen_frame.ok_or(ReadFailed)?;
        let frame_address = self.memory.word(object.wrapping_add(gen_frame))?;
        if frame_address == 0 {
            return Ok(Link {
                frame: None,
                running: false,
                awaits: 0,
            });
        }
        let mut frame = vec![0u8; layout.frame_bytes];
        self.memory.read(&mut [(frame_address, &mut frame[..])])?;
        let state = frame[layout.frame_state.ok_or(ReadFailed)?] as i8;
        let code = word(&frame, layout.frame_code);
        let lasti = int(&frame, layout.frame_instr);
        let shown = self.frame_at(code, lasti as usize);
        let mut awaits = 0;
        if state == layout.frame_states.suspended && lasti >= 0 {
            let co_code = self.memory.word(code.wrapping_add(layout.code_code))?;
            let mut next = [0u8; 1];
            let at = co_code
                .wrapping_add(layout.bytes_data)
                .wrapping_add((lasti as usize + 1) * 2);
            self.memory.read(&mut [(at, &mut next[..])])?;
            if Some(next[0]) == layout.yield_from_op {
                let depth = int(&frame, layout.frame_stack_depth.ok_or(ReadFailed)?);
                let stack = word(&frame, layout.frame_stack);
                awaits = self.stack_top(stack, depth)?;
            }
        }
        Ok(Link {
            frame: shown,
            running: state == layout.frame_states.executing,
            awaits,
        })
    }

    /// 3.11+: the `_PyInterpreterFrame` is embedded at `gi_iframe`, the
    /// state is `gi_frame_state`; a suspended `yield from` / `await` has the
    /// awaited object on top of the frame's stack.
    fn link_311(&mut self, object: usize, block: Option<&[u8]>) -> Result<Link, ReadFailed> {
        let layout = self.layout.clone();
        let iframe_at = layout.gen_iframe.ok_or(ReadFailed)?;
        let state_at = layout.gen_frame_state.ok_or(ReadFailed)?;
        let iframe = object.wrapping_add(iframe_at);
        let mut state = [0u8; 1];
        let mut frame = vec![0u8; layout.frame_bytes];
        match block.filter(|b| b.len() >= iframe_at + layout.frame_bytes) {
            Some(block) => {
                state[0] = block[state_at];
                frame.copy_from_slice(&block[iframe_at..iframe_at + layout.frame_bytes]);
            }
            None => self.memory.read(&mut [
                (object.wrapping_add(state_at), &mut state[..]),
                (iframe, &mut frame[..]),
            ])?,
        }
        let state = state[0] as i8;
        let states = layout.frame_states;
        // Completed or cleared: no frame left to show.
        if state > states.executing {
            return Ok(Link {
                frame: None,
                running: false,
                awaits: 0,
            });
        }
        let code = word(&frame, layout.frame_code) & !layout.code_tag_bits;
        let instr = word(&frame, layout.frame_instr);
        let shown = self.frame_at(code, instr);
        let in_yield_from = match states.suspended_yield_from {
            Some(yield_from) => state == yield_from,
            None if state == states.suspended => {
                // The instruction after the last one run: a RESUME with an
                // oparg of 2 or more follows a `yield from` / `await`.
                let memory = &self.memory;
                let read_next = || {
                    let mut next = [0u8; 2];
                    memory
                        .read(&mut [(instr.wrapping_add(2), &mut next[..])])
                        .ok()?;
                    Some(layout.resume_ops.contains(&next[0]) && next[1] >= 2)
                };
                match self.code.trusted(code) {
                    Some(info) => info.resumes_after_await(&layout, code, instr, read_next),
                    None => read_next(),
                }
                .ok_or(ReadFailed)?
            }
            None => false,
        };
        let awaits = if in_yield_from {
            let depth = int(&frame, layout.frame_stack_depth.ok_or(ReadFailed)?);
            // The awaited object's slot, from the block when it is in it.
            let slot = (iframe_at + layout.frame_stack).checked_add(
                usize::try_from(depth)
                    .ok()
                    .filter(|&d| d >= 1)
                    .map_or(usize::MAX / 2, |d| (d - 1) * 8),
            );
            match (block, slot) {
                (Some(block), Some(slot)) if slot + 8 <= block.len() => word(block, slot),
                _ => self.stack_top(iframe.wrapping_add(layout.frame_stack), depth)?,
            }
        } else {
            0
        };
        Ok(Link {
            frame: shown,
            running: state == states.executing,
            awaits,
        })
    }

    /// The object on top of a stack of `depth` slots at `stack`.
    fn stack_top(&self, stack: usize, depth: i32) -> Result<usize, ReadFailed> {
        // CPython's deepest frames need a few thousand slots.
        if !(1..=1 << 16).contains(&depth) {
            return Err(ReadFailed);
        }
        self.memory
            .word(stack.wrapping_add((depth as usize - 1) * 8))
    }

    /// The frame shown for code object `code` at `instr`, through the
    /// walker's cache; `None` when it cannot be read.
    fn frame_at(&mut self, code: usize, instr: usize) -> Option<Frame> {
        let info = self.code.read(&self.memory, &self.layout, code)?;
        self.shown(&info, code, instr)
    }

    fn kind(&mut self, ob_type: usize) -> Result<Kind, ReadFailed> {
        let roots = self.roots;
        let known = [
            roots.coroutine_type,
            roots.generator_type,
            roots.async_generator_type,
        ];
        if known.iter().all(Option::is_some) {
            return Ok(if known.contains(&Some(ob_type)) {
                Kind::Generator
            } else {
                Kind::Other
            });
        }
        let (name, _) = self.type_info(ob_type)?;
        Ok(match name.as_str() {
            "coroutine" | "generator" | "async_generator" => Kind::Generator,
            _ => Kind::Other,
        })
    }

    /// A type's `tp_name` and `tp_base`, read once per type.
    fn type_info(&mut self, ob_type: usize) -> Result<(String, usize), ReadFailed> {
        if let Some(known) = self.types.get(&ob_type) {
            return Ok(known.clone());
        }
        let name_at = self
            .memory
            .word(ob_type.wrapping_add(self.layout.type_name))?;
        let name = self.memory.c_string(name_at)?;
        let base = self
            .memory
            .word(ob_type.wrapping_add(self.layout.type_base))?;
        self.types.insert(ob_type, (name.clone(), base));
        Ok((name, base))
    }

    /// Whether the object at `address` (the end of an await chain) is an
    /// asyncio future or task, or the iterator of one, that is done.
    pub(crate) fn awaited_done(&mut self, address: usize) -> Result<bool, ReadFailed> {
        let ob_type = self
            .memory
            .word(address.wrapping_add(self.layout.ob_type))?;
        self.future_done(address, ob_type)
    }

    /// Whether `object` (of type `ob_type`) is an asyncio future or task, or
    /// the iterator of one, that is done (`fut_state` not PENDING).
    fn future_done(&mut self, object: usize, ob_type: usize) -> Result<bool, ReadFailed> {
        let future = if self.type_info(ob_type)?.0 == "_asyncio.FutureIter" {
            // Set to NULL once the iterator is exhausted.
            match self
                .memory
                .word(object.wrapping_add(self.layout.future_iter_future))?
            {
                0 => return Ok(false),
                future => future,
            }
        } else {
            object
        };
        let future_type = self.memory.word(future.wrapping_add(self.layout.ob_type))?;
        if !self.is_future_type(future_type)? {
            return Ok(false);
        }
        // fut_state: PENDING, CANCELLED, FINISHED.
        let state = self
            .memory
            .int(future.wrapping_add(self.layout.future_state))?;
        Ok(state != 0)
    }

    /// `_asyncio.Future`, `_asyncio.Task` or a subclass of either.
    fn is_future_type(&mut self, mut ob_type: usize) -> Result<bool, ReadFailed> {
        for _ in 0..MAX_BASES {
            if ob_type == 0 {
                return Ok(false);
            }
            let (name, base) = self.type_info(ob_type)?;
            if name == "_asyncio.Future" || name == "_asyncio.Task" {
                return Ok(true);
            }
            ob_type = base;
        }
        Err(ReadFailed)
    }
}
