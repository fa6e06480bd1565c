//! A ring file whose header cursor, thread slots, event ring and scope table
//! hold anything a buggy or malicious app could write: the reader and the
//! slot table must not panic, hang, or hand out a record longer than a
//! record can be, and whatever they hand out decodes or is refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use memmap2::MmapRaw;
use timeglass_wire::{Event, Geometry, Reader, Region, SlotReader, MAX_RECORD_BYTES};

const GEOMETRY: Geometry = Geometry {
    slot_count: 16,
    ring_slots: 64,
    scope_count: 16,
};
/// Header words an app writes (the ring cursor and the counters after it);
/// the magic, version, pid and table sizes before them stay valid, or the
/// file is refused at open, which is tested elsewhere.
const FIRST_WRITABLE_WORD: usize = 5;
const HEADER_WORDS: usize = 512;

struct Fixture {
    region: Region,
    raw: MmapRaw,
}

// SAFETY: one fuzzing thread; the mapping is only written through `raw`.
unsafe impl Sync for Fixture {}
unsafe impl Send for Fixture {}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = timeglass_fuzz::scratch_dir();
        let region = Region::create(&dir, 4242, GEOMETRY).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(region.path())
            .unwrap();
        let raw = MmapRaw::map_raw(&file).unwrap();
        Fixture { region, raw }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let len = f.raw.len();
    // SAFETY: within the mapping; nothing else touches it meanwhile.
    let bytes = unsafe { std::slice::from_raw_parts_mut(f.raw.as_mut_ptr(), len) };
    let header = &mut bytes[FIRST_WRITABLE_WORD * 8..HEADER_WORDS * 8];
    let (head, body) = data.split_at(data.len().min(14 * 8));
    header.fill(0);
    header[..head.len()].copy_from_slice(head);
    let tables = &mut bytes[HEADER_WORDS * 8..];
    tables.fill(0);
    let n = body.len().min(tables.len());
    tables[..n].copy_from_slice(&body[..n]);

    for mut reader in [Reader::new(), Reader::from_oldest(&f.region)] {
        let mut records = 0;
        reader.poll(&f.region, |kind, payload| {
            assert!(payload.len() <= MAX_RECORD_BYTES);
            records += 1;
            let _ = Event::decode(kind, payload);
        });
        assert!(records <= GEOMETRY.ring_slots, "more records than slots");
        let _ = reader.stats();
    }

    let mut slots = SlotReader::new(&f.region);
    let mut running = Vec::new();
    slots.running(&mut running);
    assert!(running.len() <= GEOMETRY.slot_count);
    for tid in [0, 1, 7, u32::MAX] {
        let _ = slots.read(tid);
        let _ = slots.seq(tid);
    }
    let _ = slots.tid_of_pthread(u64::from_le_bytes([0xff; 8]));
    let mut scopes = Vec::new();
    f.region.read_scopes(&mut scopes);
    assert!(scopes.len() <= GEOMETRY.scope_count);
});
