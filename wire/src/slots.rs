//! Per-thread "which request is running here" slots.
//!
//! Each slot is `[tid, seq, request_id, pthread_id]`. Only the thread that owns a
//! slot writes it (after claiming it by CAS on `tid`), so a write is two plain
//! atomic stores. `seq` changes on every write; the sampler reads it before
//! and after a stack walk and so knows whether the thread switched requests
//! while its stack was being read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::{header, SLOT_WORDS};
use crate::Region;

const TID: usize = 0;
const SEQ: usize = 1;
const RID: usize = 2;
/// `pthread_self()` of the owner: py-spy reports it for every Python version,
/// while the native tid is only known to it from 3.11 on.
const PTHREAD: usize = 3;

/// The marker's handle on its own thread's slot.
#[derive(Clone, Copy)]
pub struct ThreadSlot<'a> {
    words: &'a [AtomicU64],
}

impl<'a> ThreadSlot<'a> {
    /// Publishes `request_id` (0 = no request) and returns the previous value.
    #[inline]
    pub fn set(&self, request_id: u64) -> u64 {
        let prev = self.words[RID].load(Ordering::Relaxed);
        if prev != request_id {
            self.words[RID].store(request_id, Ordering::Release);
            let seq = self.words[SEQ].load(Ordering::Relaxed);
            self.words[SEQ].store(seq.wrapping_add(1), Ordering::Release);
        }
        prev
    }

    /// Gives the slot back (the owning thread is exiting), so threads that
    /// come and go (anyio's idle workers) never fill the table.
    pub fn release(&self) {
        self.set(0);
        self.words[PTHREAD].store(0, Ordering::Relaxed);
        self.words[TID].store(0, Ordering::Release);
    }

    /// The request this thread is running now (0 = none).
    #[inline]
    pub fn get(&self) -> u64 {
        self.words[RID].load(Ordering::Relaxed)
    }
}

impl Region {
    /// Finds or claims the slot of native thread `tid`. `None` when the table
    /// is full; that is counted in the header.
    pub fn claim_slot(&self, tid: u32) -> Option<ThreadSlot<'_>> {
        let tid = u64::from(tid);
        let count = self.geometry().slot_count;
        let table = self.words(self.geometry().slots_offset(), count * SLOT_WORDS);
        // Start probing at a hash of the tid so threads rarely contend.
        let start = (tid as usize).wrapping_mul(0x9E37_79B9) % count;
        for i in 0..count {
            let at = ((start + i) % count) * SLOT_WORDS;
            let words = &table[at..at + SLOT_WORDS];
            let owner = words[TID].load(Ordering::Acquire);
            let mine = owner == tid
                || (owner == 0
                    && words[TID]
                        .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok());
            if mine {
                // A reused tid may find its predecessor's request id: clear it.
                ThreadSlot { words }.set(0);
                // SAFETY: pthread_self never fails. The slot is claimed by the calling thread.
                let pthread = unsafe { libc::pthread_self() } as u64;
                words[PTHREAD].store(pthread, Ordering::Release);
                self.word(header::SLOT_CLAIMS)
                    .fetch_add(1, Ordering::Release);
                return Some(ThreadSlot { words });
            }
        }
        self.word(header::SLOTLESS_THREADS)
            .fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// What a thread's slot said at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlotSnapshot {
    pub seq: u64,
    pub request_id: u64,
}

/// The sampler's view of the slot table: finds a thread's slot once, then
/// reads it with two loads.
pub struct SlotReader<'a> {
    region: &'a Region,
    index: HashMap<u32, usize>,
    by_pthread: HashMap<u64, u32>,
    /// `SLOT_CLAIMS` when the index was last rebuilt.
    claims: u64,
}

impl<'a> SlotReader<'a> {
    pub fn new(region: &'a Region) -> Self {
        SlotReader {
            region,
            index: HashMap::new(),
            by_pthread: HashMap::new(),
            claims: u64::MAX,
        }
    }

    /// The ring file this reader reads.
    pub fn region(&self) -> &'a Region {
        self.region
    }

    fn table(&self) -> &'a [AtomicU64] {
        let g = self.region.geometry();
        self.region
            .words(g.slots_offset(), g.slot_count * SLOT_WORDS)
    }

    fn rescan(&mut self) {
        self.claims = self
            .region
            .word(header::SLOT_CLAIMS)
            .load(Ordering::Acquire);
        self.index.clear();
        self.by_pthread.clear();
        for (i, words) in self.table().chunks_exact(SLOT_WORDS).enumerate() {
            let tid = words[TID].load(Ordering::Acquire);
            if tid != 0 {
                self.index.insert(tid as u32, i * SLOT_WORDS);
                self.by_pthread
                    .insert(words[PTHREAD].load(Ordering::Acquire), tid as u32);
            }
        }
    }

    /// Reads thread `tid`'s slot; `None` if that thread never published.
    pub fn read(&mut self, tid: u32) -> Option<SlotSnapshot> {
        let table = self.table();
        let hit = |at: usize| {
            let w = &table[at..at + SLOT_WORDS];
            if w[TID].load(Ordering::Acquire) != u64::from(tid) {
                return None;
            }
            let seq = w[SEQ].load(Ordering::Acquire);
            let request_id = w[RID].load(Ordering::Acquire);
            Some(SlotSnapshot { seq, request_id })
        };
        if let Some(found) = self.index.get(&tid).and_then(|&at| hit(at)) {
            return Some(found);
        }
        self.rescan();
        self.index.get(&tid).and_then(|&at| hit(at))
    }

    /// The native tid of the thread whose `pthread_self()` is `pthread_id`.
    pub fn tid_of_pthread(&mut self, pthread_id: u64) -> Option<u32> {
        if let Some(&tid) = self.by_pthread.get(&pthread_id) {
            return Some(tid);
        }
        self.rescan();
        self.by_pthread.get(&pthread_id).copied()
    }

    /// Every thread whose slot holds a request right now, appended to `out`
    /// (cleared first): the threads a wall-clock sampler must walk even
    /// when they do not hold the GIL. Rescans the table only when a thread
    /// claimed a slot since the last scan.
    pub fn running(&mut self, out: &mut Vec<(u32, SlotSnapshot)>) {
        out.clear();
        let claims = self
            .region
            .word(header::SLOT_CLAIMS)
            .load(Ordering::Acquire);
        if claims != self.claims {
            self.rescan();
        }
        let table = self.table();
        for (&tid, &at) in &self.index {
            let w = &table[at..at + SLOT_WORDS];
            let seq = w[SEQ].load(Ordering::Acquire);
            let request_id = w[RID].load(Ordering::Acquire);
            if request_id != 0 && w[TID].load(Ordering::Acquire) == u64::from(tid) {
                out.push((tid, SlotSnapshot { seq, request_id }));
            }
        }
    }

    /// Just the change counter of `tid`'s slot (after a stack walk).
    pub fn seq(&mut self, tid: u32) -> Option<u64> {
        self.read(tid).map(|s| s.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    #[test]
    fn running_lists_the_threads_that_hold_a_request_and_sees_new_claims() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Region::create(dir.path(), 1, Geometry::default()).unwrap();
        let reader_region = Region::open(marker.path()).unwrap();
        let mut reader = SlotReader::new(&reader_region);
        let mut out = Vec::new();
        let a = marker.claim_slot(100).unwrap();
        a.set(7);
        reader.running(&mut out);
        assert_eq!(
            out,
            [(
                100,
                SlotSnapshot {
                    seq: 1,
                    request_id: 7
                }
            )]
        );
        // A thread claiming its slot later is found without waiting for a miss.
        let b = marker.claim_slot(200).unwrap();
        b.set(9);
        a.set(0);
        reader.running(&mut out);
        assert_eq!(
            out,
            [(
                200,
                SlotSnapshot {
                    seq: 1,
                    request_id: 9
                }
            )]
        );
    }
}
