//! Property tests of the ring's seqlock protocol: whatever the record sizes,
//! the interleaving of producers and the reader, and however far the ring
//! laps the reader, every record handed out is one that was published, byte
//! for byte, in publication order per producer; and every slot is either
//! part of a record handed out or counted lost.

use std::sync::Arc;

use proptest::prelude::*;
use timeglass_wire::{Geometry, Reader, Region};

const PAYLOAD_PER_SLOT: usize = 48;

fn region(ring_slots: usize) -> (tempfile::TempDir, Region) {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry {
        ring_slots,
        ..Geometry::default()
    };
    let region = Region::create(dir.path(), 4242, geometry).unwrap();
    (dir, region)
}

/// The payload of record `seq` of producer `producer`: its own bytes say
/// which record it is, so the reader can check it.
fn payload(producer: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.max(5));
    out.push(producer);
    out.extend_from_slice(&seq.to_le_bytes());
    let mut x = u32::from(producer).wrapping_mul(2_654_435_761) ^ seq;
    while out.len() < len.max(5) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.push((x >> 16) as u8);
    }
    out
}

fn slots_of(len: usize) -> u64 {
    (len + 4).div_ceil(PAYLOAD_PER_SLOT) as u64
}

#[derive(Clone, Debug)]
enum Step {
    Publish(usize),
    Poll,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0usize..200).prop_map(Step::Publish),
            1 => Just(Step::Poll),
        ],
        1..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// One producer and the reader, interleaved step by step.
    #[test]
    fn interleaved_records_are_whole_or_counted(ring_log2 in 6u32..9, steps in steps()) {
        let (_dir, region) = region(1 << ring_log2);
        let mut reader = Reader::new();
        let mut published: Vec<Vec<u8>> = Vec::new();
        let mut delivered: Vec<Vec<u8>> = Vec::new();
        let poll = |reader: &mut Reader, delivered: &mut Vec<Vec<u8>>| {
            reader.poll(&region, |kind, bytes| {
                assert_eq!(kind, 3);
                delivered.push(bytes.to_vec());
            });
        };
        for step in &steps {
            match step {
                Step::Publish(len) => {
                    let p = payload(0, published.len() as u32, *len);
                    if region.publish(3, &p) {
                        published.push(p);
                    }
                }
                Step::Poll => poll(&mut reader, &mut delivered),
            }
        }
        poll(&mut reader, &mut delivered);
        // Handed out: a subsequence of what was published, each one intact.
        let mut next = 0;
        for d in &delivered {
            let at = published[next..].iter().position(|p| p == d);
            prop_assert!(at.is_some(), "a record nobody published, or torn: {:?}", &d[..5.min(d.len())]);
            next += at.unwrap() + 1;
        }
        // Every slot was read as part of a record, or counted lost.
        let read: u64 = delivered.iter().map(|d| slots_of(d.len())).sum();
        prop_assert_eq!(read + reader.stats().lost_slots, region.ring_position());
    }

    /// Producers on their own threads and a reader polling meanwhile, on a
    /// ring small enough to lap it.
    #[test]
    fn concurrent_producers_never_hand_out_a_torn_record(
        producers in 1u8..4,
        records in 50u32..400,
        lens in prop::collection::vec(0usize..150, 1..8),
    ) {
        let (_dir, region) = region(64);
        let region = Arc::new(region);
        let threads: Vec<_> = (0..producers)
            .map(|producer| {
                let region = Arc::clone(&region);
                let lens = lens.clone();
                std::thread::spawn(move || {
                    for seq in 0..records {
                        let len = lens[seq as usize % lens.len()];
                        region.publish(3, &payload(producer, seq, len));
                    }
                })
            })
            .collect();
        let mut reader = Reader::new();
        let mut last: Vec<Option<u32>> = vec![None; producers as usize];
        let mut check = |bytes: &[u8]| -> Result<(), TestCaseError> {
            prop_assert!(bytes.len() >= 5);
            let producer = bytes[0];
            let seq = u32::from_le_bytes(bytes[1..5].try_into().unwrap());
            prop_assert!(producer < producers && seq < records);
            prop_assert_eq!(bytes, &payload(producer, seq, bytes.len())[..], "torn record");
            let before = last[producer as usize];
            prop_assert!(before.is_none_or(|b| b < seq), "out of order");
            last[producer as usize] = Some(seq);
            Ok(())
        };
        let mut failure = None;
        let mut read_slots = 0u64;
        let mut polls = |reader: &mut Reader, failure: &mut Option<TestCaseError>, read: &mut u64| {
            reader.poll(&region, |_, bytes| {
                *read += slots_of(bytes.len());
                if failure.is_none() {
                    if let Err(e) = check(bytes) {
                        *failure = Some(e);
                    }
                }
            });
        };
        while threads.iter().any(|t| !t.is_finished()) {
            polls(&mut reader, &mut failure, &mut read_slots);
        }
        for t in threads {
            t.join().unwrap();
        }
        // A producer preempted between claiming a slot and writing it can
        // finish after a producer one lap ahead wrote the same slot: its
        // older stamp then stays there, and the newer position reads "not
        // yet written" until the reader gives it up as lost (after
        // `STALL_LIMIT_POLLS` polls, 200). So the last records take more
        // than one poll; each slot must be accounted for within a bound.
        let head = region.ring_position();
        let mut rounds = 0;
        loop {
            polls(&mut reader, &mut failure, &mut read_slots);
            rounds += 1;
            if read_slots + reader.stats().lost_slots >= head || rounds == 64 * 201 {
                break;
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        prop_assert_eq!(read_slots + reader.stats().lost_slots, head);
    }
}
