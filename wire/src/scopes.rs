//! The scope table: where each in-flight request's coroutine is, and whether
//! it is running or suspended right now.
//!
//! A request suspended at an `await` runs on no thread, so no stack walk sees
//! it. The marker therefore publishes, for every coroutine it steps on a
//! request's behalf (the request's own and its child tasks'), an entry
//! `[request_id, coroutine address, step counter, suspend order]`:
//!
//! * the step counter is bumped when a step begins and again when it ends,
//!   so it is odd while the coroutine runs and even while it is suspended,
//!   and a reader that saw the same even value twice knows the coroutine has
//!   not moved in between: its await chain, read once, is still true;
//! * the suspend order is the value of a process-wide counter taken at the
//!   last suspend, so a reader can tell which of a request's coroutines
//!   suspended last (a `BaseHTTPMiddleware` parent waits on the child that
//!   runs the app).
//!
//! Only the thread stepping a coroutine writes its entry (a coroutine is
//! stepped by one thread at a time); an entry is claimed by CAS on its
//! request id and given back when the coroutine finishes or is dropped. The
//! coroutine is kept alive by its scope for as long as the entry names it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::{header, SCOPE_WORDS};
use crate::Region;

const RID: usize = 0;
const CORO: usize = 1;
const STEP: usize = 2;
const ORDER: usize = 3;

/// The marker's handle on one claimed scope entry.
#[derive(Clone, Copy)]
pub struct ScopeEntry<'a> {
    words: &'a [AtomicU64],
    clock: &'a AtomicU64,
}

impl ScopeEntry<'_> {
    /// A step of the coroutine begins (the counter becomes odd).
    #[inline]
    pub fn enter(&self) {
        let step = self.words[STEP].load(Ordering::Relaxed);
        self.words[STEP].store(step.wrapping_add(1), Ordering::Release);
    }

    /// The step ended: the coroutine is suspended (the counter becomes even)
    /// or finished.
    #[inline]
    pub fn leave(&self) {
        let order = self.clock.fetch_add(1, Ordering::Relaxed);
        self.words[ORDER].store(order, Ordering::Relaxed);
        let step = self.words[STEP].load(Ordering::Relaxed);
        self.words[STEP].store(step.wrapping_add(1), Ordering::Release);
    }

    /// Gives the entry back; the coroutine may be freed after this.
    pub fn release(&self) {
        self.words[CORO].store(0, Ordering::Relaxed);
        self.words[RID].store(0, Ordering::Release);
    }
}

/// One entry as a reader saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeSnapshot {
    pub request_id: u64,
    /// Address of the coroutine object in the app's memory.
    pub coroutine: u64,
    /// Odd while a step runs.
    pub step: u64,
    /// Larger for the coroutine that suspended more recently.
    pub order: u64,
}

impl ScopeSnapshot {
    pub fn suspended(&self) -> bool {
        self.step.is_multiple_of(2)
    }
}

impl Region {
    fn scope_table(&self) -> &[AtomicU64] {
        let g = self.geometry();
        self.words(g.scopes_offset(), g.scope_count * SCOPE_WORDS)
    }

    /// Claims an entry for `coroutine`, run on behalf of `request_id`. `None`
    /// when the table is full; that is counted in the header.
    pub fn claim_scope(&self, request_id: u64, coroutine: u64) -> Option<ScopeEntry<'_>> {
        debug_assert!(request_id != 0);
        let table = self.scope_table();
        let high = self.word(header::SCOPE_HIGH);
        // Lowest free entry first, so the part readers scan stays short.
        for (i, words) in table.chunks_exact(SCOPE_WORDS).enumerate() {
            if words[RID].load(Ordering::Relaxed) != 0 {
                continue;
            }
            if words[RID]
                .compare_exchange(0, request_id, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                words[STEP].store(0, Ordering::Relaxed);
                words[ORDER].store(0, Ordering::Relaxed);
                words[CORO].store(coroutine, Ordering::Release);
                high.fetch_max(i as u64 + 1, Ordering::AcqRel);
                return Some(ScopeEntry {
                    words,
                    clock: self.word(header::SUSPEND_CLOCK),
                });
            }
        }
        self.word(header::SCOPELESS).fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Scopes that found the table full.
    pub fn scopeless(&self) -> u64 {
        self.word(header::SCOPELESS).load(Ordering::Relaxed)
    }

    /// Every claimed entry, appended to `out` (cleared first). An entry
    /// being claimed or given back while it is read is left out.
    pub fn read_scopes(&self, out: &mut Vec<ScopeSnapshot>) {
        out.clear();
        let table = self.scope_table();
        let high = (self.word(header::SCOPE_HIGH).load(Ordering::Acquire) as usize)
            .min(self.geometry().scope_count);
        for words in table[..high * SCOPE_WORDS].chunks_exact(SCOPE_WORDS) {
            let request_id = words[RID].load(Ordering::Acquire);
            if request_id == 0 {
                continue;
            }
            let step = words[STEP].load(Ordering::Acquire);
            let coroutine = words[CORO].load(Ordering::Acquire);
            let order = words[ORDER].load(Ordering::Relaxed);
            if coroutine == 0 || words[RID].load(Ordering::Acquire) != request_id {
                continue;
            }
            out.push(ScopeSnapshot {
                request_id,
                coroutine,
                step,
                order,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    fn region(dir: &std::path::Path, scopes: usize) -> Region {
        Region::create(
            dir,
            4242,
            Geometry {
                slot_count: 4,
                ring_slots: 64,
                scope_count: scopes,
            },
        )
        .unwrap()
    }

    #[test]
    fn entries_say_running_or_suspended_and_which_suspended_last() {
        let dir = tempfile::tempdir().unwrap();
        let r = region(dir.path(), 8);
        let parent = r.claim_scope(7, 0x1000).unwrap();
        let child = r.claim_scope(7, 0x2000).unwrap();
        let other = r.claim_scope(9, 0x3000).unwrap();
        let mut seen = Vec::new();
        r.read_scopes(&mut seen);
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(ScopeSnapshot::suspended));
        parent.enter();
        child.enter();
        child.leave();
        other.enter();
        r.read_scopes(&mut seen);
        let by = |c: u64| *seen.iter().find(|s| s.coroutine == c).unwrap();
        assert!(!by(0x1000).suspended(), "a step of the parent is running");
        assert!(by(0x2000).suspended());
        assert!(!by(0x3000).suspended());
        parent.leave();
        r.read_scopes(&mut seen);
        let by = |c: u64| *seen.iter().find(|s| s.coroutine == c).unwrap();
        assert!(
            by(0x1000).order > by(0x2000).order,
            "the parent suspended last"
        );
        assert_eq!(by(0x1000).step, 2);
    }

    #[test]
    fn released_entries_are_reused_and_a_full_table_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let r = region(dir.path(), 2);
        let a = r.claim_scope(1, 0x10).unwrap();
        let _b = r.claim_scope(2, 0x20).unwrap();
        assert!(r.claim_scope(3, 0x30).is_none());
        assert_eq!(r.scopeless(), 1);
        a.release();
        let c = r.claim_scope(3, 0x30).unwrap();
        c.enter();
        let mut seen = Vec::new();
        r.read_scopes(&mut seen);
        let ids: Vec<u64> = seen.iter().map(|s| s.request_id).collect();
        assert_eq!(ids, [3, 2], "the freed entry was taken again");
        assert_eq!(seen[0].step, 1, "a reused entry starts afresh");
    }

    #[test]
    fn the_recorder_sees_the_markers_entries_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let marker = region(dir.path(), 8);
        let entry = marker.claim_scope(5, 0xdead_beef).unwrap();
        entry.enter();
        entry.leave();
        let reader = Region::open(marker.path()).unwrap();
        let mut seen = Vec::new();
        reader.read_scopes(&mut seen);
        assert_eq!(
            seen,
            [ScopeSnapshot {
                request_id: 5,
                coroutine: 0xdead_beef,
                step: 2,
                order: 0
            }]
        );
    }
}
