use std::sync::Arc;
use std::thread;

use timeglass_wire::{Geometry, Reader, Region, SlotReader};

fn region(ring_slots: usize) -> (tempfile::TempDir, Region) {
    let dir = tempfile::tempdir().unwrap();
    let region = Region::create(
        dir.path(),
        4242,
        Geometry {
            slot_count: 16,
            ring_slots,
            scope_count: 64,
        },
    )
    .unwrap();
    (dir, region)
}

fn drain(reader: &mut Reader, region: &Region) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    reader.poll(region, |k, b| out.push((k, b.to_vec())));
    out
}

#[test]
fn records_of_every_size_come_back_in_order() {
    let (_dir, region) = region(1024);
    let payloads: Vec<Vec<u8>> = (0..200)
        .map(|n| (0..n).map(|b| (b * 7 + n) as u8).collect())
        .collect();
    let mut reader = Reader::new();
    let mut got = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        assert!(region.publish(i as u16 + 1, p));
        if i % 3 == 0 {
            got.extend(drain(&mut reader, &region));
        }
    }
    got.extend(drain(&mut reader, &region));
    let want: Vec<(u16, Vec<u8>)> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u16 + 1, p.clone()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(reader.stats().lost_slots, 0);
}

#[test]
fn a_reader_that_falls_behind_loses_old_records_and_counts_them() {
    let (_dir, region) = region(64);
    for i in 0..500u32 {
        region.publish(1, &i.to_le_bytes());
    }
    let mut reader = Reader::new();
    let got = drain(&mut reader, &region);
    // Only the newest lap survives, intact and in order.
    assert_eq!(got.len(), 64);
    let values: Vec<u32> = got
        .iter()
        .map(|(_, b)| u32::from_le_bytes(b[..4].try_into().unwrap()))
        .collect();
    assert_eq!(values, (436..500).collect::<Vec<_>>());
    assert_eq!(reader.stats().lost_slots, 436);
}

#[test]
fn resynchronises_on_a_record_boundary_after_a_lap() {
    let (_dir, region) = region(64);
    // 100-byte records take three slots each, so a lap cuts records in half.
    for i in 0..100u8 {
        region.publish(2, &[i; 100]);
    }
    let mut reader = Reader::new();
    let got = drain(&mut reader, &region);
    assert!(!got.is_empty());
    for (kind, bytes) in &got {
        assert_eq!(*kind, 2);
        assert_eq!(bytes.len(), 100);
        assert!(
            bytes.iter().all(|b| *b == bytes[0]),
            "a record mixed two writes"
        );
    }
    assert_eq!(got.last().unwrap().1[0], 99);
}

#[test]
fn a_reader_attaching_late_starts_at_the_oldest_whole_record_and_counts_no_loss() {
    let (_dir, region) = region(64);
    // 100-byte records take three slots: the oldest slots of a wrapped ring
    // are the tail of a record whose start was overwritten.
    for i in 0..100u8 {
        region.publish(2, &[i; 100]);
    }
    let mut reader = Reader::from_oldest(&region);
    let got = drain(&mut reader, &region);
    let firsts: Vec<u8> = got.iter().map(|(_, b)| b[0]).collect();
    // 64 slots hold the last 21 whole records (63 slots) and one slot of the 22nd.
    assert_eq!(firsts, (79..100).collect::<Vec<_>>());
    assert!(got.iter().all(|(k, b)| *k == 2 && b.len() == 100));
    assert_eq!(reader.stats().lost_slots, 0);
    // Then it goes on like any reader.
    region.publish(3, b"after");
    assert_eq!(drain(&mut reader, &region), vec![(3, b"after".to_vec())]);
}

#[test]
fn a_reader_attaching_to_a_ring_that_never_wrapped_reads_it_all() {
    let (_dir, region) = region(64);
    for i in 0..10u32 {
        region.publish(1, &i.to_le_bytes());
    }
    let mut reader = Reader::from_oldest(&region);
    assert_eq!(drain(&mut reader, &region).len(), 10);
    assert_eq!(reader.stats().lost_slots, 0);
}

#[test]
fn oversized_records_are_dropped_and_counted() {
    let (_dir, region) = region(64);
    assert!(!region.publish(1, &vec![0u8; 64 * 48]));
    assert_eq!(region.dropped(), 1);
}

#[test]
fn concurrent_producers_never_tear_records() {
    let (_dir, region) = region(1 << 12);
    let region = Arc::new(region);
    let writers: Vec<_> = (0..4u8)
        .map(|w| {
            let region = region.clone();
            thread::spawn(move || {
                for i in 0..20_000u32 {
                    let mut p = vec![w; 60];
                    p[..4].copy_from_slice(&i.to_le_bytes());
                    region.publish(u16::from(w) + 1, &p);
                }
            })
        })
        .collect();
    let mut reader = Reader::new();
    let mut seen = 0u64;
    let mut last = [None::<u32>; 4];
    let check = |kind: u16, b: &[u8], last: &mut [Option<u32>; 4]| {
        let w = (kind - 1) as usize;
        assert!(b[4..].iter().all(|&x| x as usize == w), "torn record");
        let i = u32::from_le_bytes(b[..4].try_into().unwrap());
        if let Some(prev) = last[w] {
            assert!(i > prev, "records of one writer out of order");
        }
        last[w] = Some(i);
    };
    while writers.iter().any(|w| !w.is_finished()) {
        seen += reader.poll(&region, |k, b| check(k, b, &mut last)) as u64;
    }
    // A producer lapped while it wrote leaves a slot whose stamp went back;
    // the reader waits a while for it, then gives it up.
    for _ in 0..1000 {
        seen += reader.poll(&region, |k, b| check(k, b, &mut last)) as u64;
        if seen * 2 + reader.stats().lost_slots == 80_000 * 2 {
            break;
        }
    }
    let lost = reader.stats().lost_slots;
    assert!(seen > 0);
    assert_eq!(
        seen * 2 + lost,
        80_000 * 2,
        "every slot is either read or counted lost"
    );
}

#[test]
fn opening_checks_the_file() {
    let (dir, region) = region(64);
    let opened = Region::open(region.path()).unwrap();
    assert_eq!(opened.pid(), 4242);
    let bogus = dir.path().join("bogus.ring");
    std::fs::write(&bogus, vec![1u8; 8192]).unwrap();
    set_mode(&bogus, 0o600);
    let err = Region::open(&bogus).err().unwrap().to_string();
    assert!(err.contains("is not a TimeGlass ring file"), "{err}");
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o777
}

#[test]
fn ring_files_and_their_directory_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let region = Region::create(&runtime, 4242, Geometry::default()).unwrap();
    assert_eq!(mode(&runtime), 0o700);
    assert_eq!(mode(region.path()), 0o600);
}

#[test]
fn a_ring_open_to_other_users_is_refused() {
    let (_dir, region) = region(64);
    set_mode(region.path(), 0o644);
    let err = Region::open(region.path()).err().unwrap().to_string();
    assert!(
        err.contains("refusing") && err.contains("open to other users (mode 0644)"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn a_ring_of_another_user_is_refused() {
    let (_dir, region) = region(64);
    let me = timeglass_wire::private::current_uid();
    // Whoever we are, a ring is refused when it is not the expected user's.
    let err = Region::open_owned(region.path(), me + 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("owned by user {me}, not by user {}", me + 1)),
        "{err}"
    );
}

#[test]
fn a_linked_ring_is_not_followed() {
    let (dir, region) = region(64);
    let link = dir.path().join("1.ring");
    std::os::unix::fs::symlink(region.path(), &link).unwrap();
    assert!(Region::open(&link).is_err());
}

#[test]
fn slots_publish_the_running_request_and_count_changes() {
    let (_dir, region) = region(64);
    let slot = region.claim_slot(100).unwrap();
    let mut reader = SlotReader::new(&region);
    assert_eq!(reader.read(100).unwrap().request_id, 0);
    let before = reader.read(100).unwrap();
    assert_eq!(slot.set(5), 0);
    let after = reader.read(100).unwrap();
    assert_eq!(after.request_id, 5);
    assert_ne!(after.seq, before.seq);
    assert_eq!(slot.set(0), 5);
    assert!(reader.read(101).is_none());
    let me = unsafe { libc::pthread_self() } as u64;
    assert_eq!(reader.tid_of_pthread(me), Some(100));
}

#[test]
fn a_full_slot_table_is_counted_not_fatal() {
    let (_dir, region) = region(64);
    for tid in 1..=16 {
        assert!(region.claim_slot(tid).is_some());
    }
    assert!(region.claim_slot(17).is_none());
    assert_eq!(region.slotless_threads(), 1);
    // A thread that exits gives its slot back.
    region.claim_slot(5).unwrap().release();
    assert!(region.claim_slot(17).is_some());
    // Existing threads still find their slot.
    assert!(region.claim_slot(3).is_some());
}

#[test]
fn a_sleeping_sampler_wakes_when_a_request_starts() {
    use std::time::{Duration, Instant};
    let (_dir, region) = region(64);
    let region = Arc::new(region);
    // Nothing in flight: the wait runs to its timeout.
    let t = Instant::now();
    assert!(!region.wait_for_request(Duration::from_millis(30)));
    assert!(t.elapsed() >= Duration::from_millis(25));
    // A request starting in another thread ends the wait at once.
    let waiter = {
        let region = region.clone();
        thread::spawn(move || {
            let t = Instant::now();
            let busy = region.wait_for_request(Duration::from_secs(10));
            (busy, t.elapsed())
        })
    };
    thread::sleep(Duration::from_millis(50));
    region.inc_inflight();
    let (busy, waited) = waiter.join().unwrap();
    assert!(busy);
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
    // Already busy: no sleep at all.
    assert!(region.wait_for_request(Duration::from_secs(10)));
}

#[test]
fn a_cursor_written_near_the_end_of_time_is_read_as_loss_not_a_panic() {
    let (_dir, region) = region(64);
    region.publish(1, b"hello");
    // What a buggy or hostile app can do: the cursor is a plain word in its memory.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(region.path())
        .unwrap();
    // SAFETY: the file stays mapped by `region` too; both only write words.
    let map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    let head = u64::MAX - 3;
    // SAFETY: word 5 of the header is the ring cursor, 8-byte aligned.
    unsafe { (map.as_ptr().add(5 * 8) as *mut u64).write_volatile(head) };
    let mut reader = Reader::new();
    let delivered = reader.poll(&region, |_, _| {});
    assert_eq!(delivered, 0);
    assert!(reader.stats().lost_slots > 0);
    let mut again = Reader::from_oldest(&region);
    assert_eq!(again.poll(&region, |_, _| {}), 0);
}
