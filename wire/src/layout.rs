//! Where everything lives in the file. All offsets are in 8-byte words.

/// First word of every ring file (the format version is the next word).
pub const MAGIC: u64 = u64::from_le_bytes(*b"TGLASS\x00\x01");
/// Bumped whenever the layout below, or the events a marker publishes,
/// change incompatibly (4: a request's start and end carry its context,
/// kinds 8 and 9, so a reader of 3 would see no request at all).
pub const FORMAT_VERSION: u64 = 4;

/// Header words (each an `AtomicU64`).
pub(crate) mod header {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const VERSION: usize = 1;
    pub(crate) const PID: usize = 2;
    pub(crate) const SLOT_COUNT: usize = 3;
    pub(crate) const RING_SLOTS: usize = 4;
    /// Next ring position to claim; only ever grows.
    pub(crate) const RING_HEAD: usize = 5;
    /// Requests started and not yet ended.
    pub(crate) const INFLIGHT: usize = 6;
    /// Last request id handed out (ids start at 1; 0 means "no request").
    pub(crate) const NEXT_REQUEST_ID: usize = 7;
    /// Records written into the ring since creation.
    pub(crate) const RECORDS_WRITTEN: usize = 8;
    /// Events the marker could not publish (too large, no thread slot left...).
    pub(crate) const DROPPED: usize = 9;
    /// Monotonic time the file was created.
    pub(crate) const CREATED_NS: usize = 10;
    /// Monotonic time a recorder last read the ring; 0 if none ever did.
    pub(crate) const READER_HEARTBEAT_NS: usize = 11;
    /// Threads that found the slot table full.
    pub(crate) const SLOTLESS_THREADS: usize = 12;
    /// Non-zero while a sampler sleeps on `INFLIGHT` (a futex) waiting for a request.
    pub(crate) const SAMPLER_SLEEPING: usize = 13;
    /// Number of entries in the scope table.
    pub(crate) const SCOPE_COUNT: usize = 14;
    /// One past the highest scope entry ever claimed: readers scan no further.
    pub(crate) const SCOPE_HIGH: usize = 15;
    /// Bumped at every suspend of a scope: orders a request's scopes by how
    /// recently each suspended.
    pub(crate) const SUSPEND_CLOCK: usize = 16;
    /// Scopes that found the scope table full (their waits go unsampled).
    pub(crate) const SCOPELESS: usize = 17;
    /// Bumped whenever a thread claims a slot: a reader rescans then.
    pub(crate) const SLOT_CLAIMS: usize = 18;
    /// Words reserved for the header (one page).
    pub(crate) const WORDS: usize = 512;
}

/// Words per thread slot: tid, change counter, request id, pthread id.
pub(crate) const SLOT_WORDS: usize = 4;
/// Words per scope entry: request id, coroutine address, step counter,
/// suspend order.
pub(crate) const SCOPE_WORDS: usize = 4;
/// Words per ring slot: stamp, info, then payload.
pub(crate) const RING_SLOT_WORDS: usize = 8;
/// Payload bytes carried by one ring slot.
pub(crate) const RING_PAYLOAD_BYTES: usize = (RING_SLOT_WORDS - 2) * 8;

/// Sizes of the three tables; fixed when the file is created and recorded in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Number of thread slots.
    pub slot_count: usize,
    /// Number of 64-byte ring slots; a power of two.
    pub ring_slots: usize,
    /// Number of scope entries: coroutines of in-flight requests (and their
    /// child tasks) at once.
    pub scope_count: usize,
}

impl Default for Geometry {
    /// 1024 threads and a 4 MiB ring (about 40,000 request events).
    fn default() -> Self {
        Geometry {
            slot_count: 1024,
            ring_slots: 1 << 16,
            scope_count: 4096,
        }
    }
}

impl Geometry {
    pub(crate) fn slots_offset(&self) -> usize {
        header::WORDS
    }

    pub(crate) fn ring_offset(&self) -> usize {
        self.slots_offset() + self.slot_count * SLOT_WORDS
    }

    pub(crate) fn scopes_offset(&self) -> usize {
        self.ring_offset() + self.ring_slots * RING_SLOT_WORDS
    }

    pub(crate) fn total_words(&self) -> usize {
        self.scopes_offset() + self.scope_count * SCOPE_WORDS
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.slot_count > 0
            && self.slot_count <= 1 << 20
            && self.ring_slots.is_power_of_two()
            && self.ring_slots >= 64
            && self.ring_slots <= 1 << 24
            && self.scope_count > 0
            && self.scope_count <= 1 << 20
    }
}
