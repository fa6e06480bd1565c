//! The overwriting multi-producer event ring.
//!
//! A record occupies one or more consecutive 64-byte slots:
//! `[stamp, info, payload x 6 words]`. Producers claim positions with one
//! `fetch_add` on the header's head and never wait for the reader. Each slot
//! is a tiny seqlock: `stamp` is `2*pos + 1` while position `pos` is being
//! written and `2*pos + 2` once it is complete, so the reader can tell a
//! finished slot from one still being written or already overwritten by a
//! later lap. `info` packs the record kind, the slot's index within its record
//! and the record's slot count, which lets the reader resynchronise on a
//! record boundary after losing slots, plus a 16-bit check of the slot's
//! position and contents.
//!
//! The stamp alone cannot see one race: a producer descheduled between
//! claiming a position and finishing its slot while the whole ring laps it,
//! so that a later producer writes the same slot at the same time. The slot
//! can then hold words of both, under a stamp that says complete. The check,
//! written after the payload by whichever producer finished last, no longer
//! matches what the reader finds there, and the slot is counted lost.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::layout::{header, RING_PAYLOAD_BYTES, RING_SLOT_WORDS};
use crate::Region;

/// Largest record payload the ring accepts; larger ones are dropped and counted
/// (the encoders truncate strings well below this).
pub const MAX_RECORD_BYTES: usize = 64 * 1024 - 4;

/// How long the reader waits for a claimed slot to be completed before it
/// gives up on it (the writer may have been killed half-way).
const STALL_LIMIT_POLLS: u32 = 200;

fn pack_info(kind: u16, index: u16, nslots: u16) -> u64 {
    u64::from(kind) | (u64::from(index) << 16) | (u64::from(nslots) << 32)
}

fn unpack_info(info: u64) -> (u16, u16, u16) {
    (info as u16, (info >> 16) as u16, (info >> 32) as u16)
}

const CHECK_SHIFT: u32 = 48;

/// Mixes a slot's position, its info and its payload words into 16 bits.
#[derive(Clone, Copy)]
struct SlotCheck(u64);

impl SlotCheck {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new(pos: u64, info: u64) -> Self {
        SlotCheck((pos ^ info.rotate_left(17)).wrapping_mul(Self::K))
    }

    fn add(&mut self, word: u64) {
        let h = (self.0 ^ word).wrapping_mul(Self::K);
        self.0 = h ^ (h >> 29);
    }

    fn value(self) -> u64 {
        self.0 >> CHECK_SHIFT
    }
}

/// Bytes `from..from + out.len()` of a record as the ring carries it (its
/// payload's length as a little-endian `u32`, then the payload), zeros past
/// its end.
fn record_bytes(payload: &[u8], from: usize, out: &mut [u8]) {
    out.fill(0);
    let len = (payload.len() as u32).to_le_bytes();
    let mut at = 0;
    while from + at < len.len() && at < out.len() {
        out[at] = len[from + at];
        at += 1;
    }
    let start = (from + at).saturating_sub(len.len()).min(payload.len());
    let n = (payload.len() - start).min(out.len() - at);
    out[at..at + n].copy_from_slice(&payload[start..start + n]);
}

impl Region {
    fn ring_slot(&self, pos: u64) -> &[AtomicU64] {
        let g = self.geometry();
        let index = (pos as usize) & (g.ring_slots - 1);
        self.words(g.ring_offset() + index * RING_SLOT_WORDS, RING_SLOT_WORDS)
    }

    /// Appends one record. Never blocks; returns `false` (and counts the drop)
    /// only when the record is larger than [`MAX_RECORD_BYTES`].
    pub fn publish(&self, kind: u16, payload: &[u8]) -> bool {
        let total = payload.len() + 4;
        let nslots = total.div_ceil(RING_PAYLOAD_BYTES);
        if payload.len() > MAX_RECORD_BYTES || nslots > self.geometry().ring_slots / 4 {
            self.count_dropped();
            return false;
        }
        let start = self
            .word(header::RING_HEAD)
            .fetch_add(nslots as u64, Ordering::Relaxed);
        let mut chunk = [0u8; RING_PAYLOAD_BYTES];
        for i in 0..nslots {
            let pos = start + i as u64;
            let slot = self.ring_slot(pos);
            slot[0].store(2 * pos + 1, Ordering::Relaxed);
            fence(Ordering::Release);
            let info = pack_info(kind, i as u16, nslots as u16);
            let mut check = SlotCheck::new(pos, info);
            record_bytes(payload, i * RING_PAYLOAD_BYTES, &mut chunk);
            for (word, bytes) in slot[2..].iter().zip(chunk.chunks_exact(8)) {
                let value = u64::from_le_bytes(bytes.try_into().expect("chunks of 8"));
                check.add(value);
                word.store(value, Ordering::Relaxed);
            }
            slot[1].store(info | (check.value() << CHECK_SHIFT), Ordering::Relaxed);
            slot[0].store(2 * pos + 2, Ordering::Release);
        }
        self.word(header::RECORDS_WRITTEN)
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The write cursor as the reader trusts it: the app can write any
    /// value there, and stamps are `2·pos + 2`, so a cursor past
    /// [`MAX_POSITION`] (centuries of records away) is taken as that, and
    /// what it points at is read as lost slots instead of overflowing.
    /// Found by the `ring_reader` fuzz target.
    fn ring_head(&self) -> u64 {
        self.word(header::RING_HEAD)
            .load(Ordering::Acquire)
            .min(MAX_POSITION)
    }

    /// Ring positions claimed so far. A record published at position `p` is
    /// certainly overwritten once this passes `p + ring_slots`.
    pub fn ring_position(&self) -> u64 {
        self.word(header::RING_HEAD).load(Ordering::Relaxed)
    }
}

/// Counters kept by a [`Reader`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records delivered.
    pub records: u64,
    /// Ring slots overwritten or abandoned before they could be read.
    pub lost_slots: u64,
}

enum SlotRead {
    Ready { kind: u16, index: u16, nslots: u16 },
    NotYet,
    Lost,
}

/// Drains a ring in order. One reader per ring.
pub struct Reader {
    tail: u64,
    stats: ReadStats,
    stalled_polls: u32,
    buf: Vec<u8>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new()
    }
}

/// The largest ring position a reader believes (see `Region::ring_head`).
const MAX_POSITION: u64 = 1 << 62;

impl Reader {
    /// A reader that starts at the oldest record still in the ring.
    pub fn new() -> Self {
        Reader {
            tail: 0,
            stats: ReadStats::default(),
            stalled_polls: 0,
            buf: Vec::new(),
        }
    }

    /// A reader for a ring that was written before anyone read it (`attach`
    /// to a running app): starts at the oldest record still whole in the
    /// ring. The laps it never saw are history, not losses: they are not
    /// counted in [`ReadStats::lost_slots`].
    pub fn from_oldest(region: &Region) -> Self {
        let ring = region.geometry().ring_slots as u64;
        let head = region.ring_head();
        let mut tail = head.saturating_sub(ring);
        if tail > 0 {
            // A full ring: the oldest slots may be the middle of a record
            // whose start was overwritten, or be overwritten right now.
            let mut scratch = Vec::new();
            while tail < head {
                scratch.clear();
                match Self::read_slot(region, tail, &mut scratch) {
                    SlotRead::Ready {
                        index: 0, nslots, ..
                    } if nslots > 0 => break,
                    // Still being written: that is where the newest records are.
                    SlotRead::NotYet => break,
                    SlotRead::Ready { .. } | SlotRead::Lost => tail += 1,
                }
            }
        }
        Reader {
            tail,
            ..Reader::new()
        }
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    fn read_slot(region: &Region, pos: u64, out: &mut Vec<u8>) -> SlotRead {
        let slot = region.ring_slot(pos);
        let done = 2 * pos + 2;
        let s1 = slot[0].load(Ordering::Acquire);
        if s1 > done {
            return SlotRead::Lost;
        }
        if s1 != done {
            return SlotRead::NotYet;
        }
        let stored = slot[1].load(Ordering::Relaxed);
        let info = stored & ((1 << CHECK_SHIFT) - 1);
        let mut check = SlotCheck::new(pos, info);
        let mark = out.len();
        for word in &slot[2..] {
            let value = word.load(Ordering::Relaxed);
            check.add(value);
            out.extend_from_slice(&value.to_le_bytes());
        }
        fence(Ordering::Acquire);
        if slot[0].load(Ordering::Relaxed) != s1 || stored >> CHECK_SHIFT != check.value() {
            out.truncate(mark);
            return SlotRead::Lost;
        }
        let (kind, index, nslots) = unpack_info(info);
        SlotRead::Ready {
            kind,
            index,
            nslots,
        }
    }

    /// Delivers every complete record now in the ring to `sink(kind, payload)`,
    /// oldest first. Returns the number delivered.
    pub fn poll(&mut self, region: &Region, mut sink: impl FnMut(u16, &[u8])) -> usize {
        region.beat();
        let ring = region.geometry().ring_slots as u64;
        let head = region.ring_head();
        if head.saturating_sub(self.tail) > ring {
            self.stats.lost_slots += head - ring - self.tail;
            self.tail = head - ring;
        }
        let mut delivered = 0;
        while self.tail < head {
            match self.read_record(region) {
                RecordRead::Complete(kind) => {
                    let len =
                        u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                            as usize;
                    if 4 + len <= self.buf.len() {
                        sink(kind, &self.buf[4..4 + len]);
                        self.stats.records += 1;
                        delivered += 1;
                    } else {
                        self.stats.lost_slots += 1;
                    }
                }
                RecordRead::Skipped => {}
                RecordRead::Wait => break,
            }
        }
        delivered
    }

    /// Reads the record starting at `tail` into `buf`, advancing `tail` past
    /// whatever was consumed.
    fn read_record(&mut self, region: &Region) -> RecordRead {
        self.buf.clear();
        let first = match Self::read_slot(region, self.tail, &mut self.buf) {
            SlotRead::Ready {
                kind,
                index: 0,
                nslots,
            } if nslots > 0 => (kind, nslots),
            SlotRead::Ready { .. } | SlotRead::Lost => {
                // Overwritten, or the middle of a record whose start we lost:
                // skip until the next record boundary.
                self.tail += 1;
                self.stats.lost_slots += 1;
                return RecordRead::Skipped;
            }
            SlotRead::NotYet => return self.stall(),
        };
        let (kind, nslots) = first;
        for i in 1..u64::from(nslots) {
            match Self::read_slot(region, self.tail + i, &mut self.buf) {
                SlotRead::Ready { index, .. } if u64::from(index) == i => {}
                SlotRead::NotYet => return self.stall(),
                SlotRead::Ready { .. } | SlotRead::Lost => {
                    self.tail += i;
                    self.stats.lost_slots += i;
                    return RecordRead::Skipped;
                }
            }
        }
        self.tail += u64::from(nslots);
        self.stalled_polls = 0;
        RecordRead::Complete(kind)
    }

    /// A claimed slot is not complete yet. Wait for it, unless its writer
    /// seems to have died half-way: then give the slot up.
    fn stall(&mut self) -> RecordRead {
        self.stalled_polls += 1;
        if self.stalled_polls < STALL_LIMIT_POLLS {
            return RecordRead::Wait;
        }
        self.stalled_polls = 0;
        self.tail += 1;
        self.stats.lost_slots += 1;
        RecordRead::Skipped
    }
}

enum RecordRead {
    Complete(u16),
    Skipped,
    Wait,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    fn region() -> (tempfile::TempDir, Region) {
        let dir = tempfile::tempdir().unwrap();
        let geometry = Geometry {
            slot_count: 16,
            ring_slots: 64,
            scope_count: 64,
        };
        let region = Region::create(dir.path(), 4242, geometry).unwrap();
        (dir, region)
    }

    #[test]
    fn a_slot_written_over_by_a_lapping_producer_is_lost_not_delivered() {
        let (_dir, region) = region();
        assert!(region.publish(7, &[1; 40]));
        assert!(region.publish(7, &[2; 40]));
        // A producer that claimed this slot a lap later wrote one word into
        // it without its stamp showing: the stamp still says complete.
        region.ring_slot(0)[3].store(u64::MAX, Ordering::Relaxed);
        let mut reader = Reader::new();
        let mut got = Vec::new();
        reader.poll(&region, |_, b| got.push(b.to_vec()));
        assert_eq!(got, vec![vec![2; 40]]);
        assert_eq!(reader.stats().lost_slots, 1);
    }

    #[test]
    fn a_whole_slot_from_another_lap_is_lost_not_delivered() {
        let (_dir, region) = region();
        assert!(region.publish(7, &[1; 40]));
        assert!(region.publish(7, &[2; 40]));
        // Slot 1's words, intact, under slot 0's stamp: what a lagging
        // producer's late "complete" stamp leaves over a later lap's record.
        let (first, second) = (region.ring_slot(0), region.ring_slot(1));
        for (a, b) in first[1..].iter().zip(&second[1..]) {
            a.store(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let mut reader = Reader::new();
        let mut got = Vec::new();
        reader.poll(&region, |_, b| got.push(b.to_vec()));
        assert_eq!(got, vec![vec![2; 40]]);
        assert_eq!(reader.stats().lost_slots, 1);
    }

    #[test]
    fn a_slot_left_with_the_previous_laps_stamp_is_given_up_after_the_stall_limit() {
        let (_dir, region) = region();
        // Positions 0..64 (lap 0), then 64..66 (lap 1) over slots 0 and 1.
        for i in 0..66u8 {
            assert!(region.publish(7, &[i; 40]));
        }
        let mut reader = Reader::new();
        let mut got = Vec::new();
        reader.poll(&region, |_, b| got.push(b[0]));
        assert_eq!(got.len(), 64, "all but the two lapped slots");
        // Position 66 (slot 2) claimed, then a writer of position 2 (lap 0),
        // preempted a whole lap, finishes last: slot 2 keeps lap 0's stamp,
        // so position 66 reads "not yet written" although nobody writes it.
        assert!(region.publish(7, &[66; 40]));
        assert!(region.publish(7, &[67; 40]));
        let slot = region.ring_slot(2);
        slot[0].store(2 * 2 + 2, Ordering::Release);
        got.clear();
        for _ in 1..STALL_LIMIT_POLLS {
            reader.poll(&region, |_, b| got.push(b[0]));
        }
        assert!(
            got.is_empty(),
            "the reader waits for a slot still being written"
        );
        reader.poll(&region, |_, b| got.push(b[0]));
        assert_eq!(got, vec![67], "then gives it up and reads on");
        let stats = reader.stats();
        assert_eq!(stats.records + stats.lost_slots, region.ring_position());
    }

    #[test]
    fn record_bytes_are_the_length_then_the_payload_slot_by_slot() {
        for len in [0, 1, 3, 4, 43, 44, 45, 100, 500] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            let whole: Vec<u8> = (len as u32)
                .to_le_bytes()
                .into_iter()
                .chain(payload.iter().copied())
                .collect();
            let slots = whole.len().div_ceil(RING_PAYLOAD_BYTES);
            let mut out = [0xffu8; RING_PAYLOAD_BYTES];
            for slot in 0..slots {
                let from = slot * RING_PAYLOAD_BYTES;
                record_bytes(&payload, from, &mut out);
                let to = whole.len().min(from + RING_PAYLOAD_BYTES);
                assert_eq!(&out[..to - from], &whole[from..to], "len {len} slot {slot}");
                assert!(
                    out[to - from..].iter().all(|&b| b == 0),
                    "len {len} slot {slot}"
                );
            }
        }
        // Shorter than the length prefix.
        let mut tiny = [0u8; 2];
        record_bytes(b"xyz", 0, &mut tiny);
        assert_eq!(tiny, [3, 0]);
        record_bytes(b"xyz", 2, &mut tiny);
        assert_eq!(tiny, [0, 0]);
    }
}
