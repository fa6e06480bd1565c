//! Garbage collections a request paid for. By default the sampler reads
//! the interpreter's collector state from outside at each tick: a sample of
//! the GIL holder taken while a collection ran says so, and the collections
//! finished since the last tick are charged to the holder's sample. With
//! `TIMEGLASS_GC_CALLBACKS=1` the marker also times each collection exactly
//! (`gc.callbacks`, at ~8,500 instructions a collection), and those timings
//! are used instead. Either way the time is a category of the request's
//! breakdown, and the samples taken meanwhile end in a `[gc]` leaf, under
//! the code whose allocation set the collection off.

use timeglass_model::{Frame, Stack, GC_FRAME};

use crate::wall::{union_ns, Charged};

/// Whether `sample` was taken on a thread while it collected.
pub(crate) fn inside(sample: &Charged, gcs: &[(u32, u64, u64)]) -> bool {
    !sample.suspended()
        && (sample.in_gc
            || gcs
                .iter()
                .any(|&(tid, s, e)| tid == sample.tid && s <= sample.ts_ns && sample.ts_ns <= e))
}

/// A request's collections and their pause within `[from, to)` and
/// `[from, pause_to)`: from the marker's timings when it sent any, else
/// from the samples (each collecting sample stands for its interval).
pub(crate) fn of_request<'a>(
    gcs: &[(u32, u64, u64)],
    samples: impl Iterator<Item = &'a Charged> + Clone,
    from: u64,
    to: u64,
) -> (u64, u64) {
    if !gcs.is_empty() {
        return (gcs.len() as u64, pause_within(gcs, from, to));
    }
    let collections = samples
        .clone()
        .filter(|s| s.ts_ns >= from && s.ts_ns <= to)
        .map(|s| u64::from(s.gc_collections))
        .sum();
    let windows = samples
        .filter(|s| s.in_gc && !s.suspended())
        .map(|s| (s.from_ns, s.from_ns + s.interval_ns));
    (collections, union_ns(windows, from, to))
}

/// `stack` ending in `[gc]`: the state leaf a thread sample may carry
/// (`[native, on CPU]`, `[blocked]`) is replaced, the Python frames kept.
pub(crate) fn with_leaf(stack: &Stack) -> Stack {
    let keep = match stack.last() {
        Some(leaf) if leaf.is_state() => stack.len() - 1,
        _ => stack.len(),
    };
    stack[..keep]
        .iter()
        .cloned()
        .chain(std::iter::once(Frame::synthetic(GC_FRAME)))
        .collect::<Vec<Frame>>()
        .into()
}

/// The collections' summed pause within `[from, to)` (collections on two
/// threads at once count once: one request's wall time).
pub(crate) fn pause_within(gcs: &[(u32, u64, u64)], from: u64, to: u64) -> u64 {
    union_ns(gcs.iter().map(|&(_, s, e)| (s, e)), from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeglass_model::{State, NATIVE_FRAME};

    fn sample(ts_ns: u64, in_gc: bool, gc_collections: u32) -> Charged {
        Charged {
            ts_ns,
            from_ns: ts_ns - 10,
            stack: vec![Frame::synthetic("x")].into(),
            state: State::Python,
            interval_ns: 10,
            tid: 1,
            slot_seq: 1,
            cpu_ns: 10,
            in_gc,
            gc_collections,
        }
    }

    #[test]
    fn without_timings_the_samples_say_what_the_collector_did() {
        let samples = [
            sample(10, false, 2),
            sample(20, true, 1),
            sample(30, true, 0),
            sample(40, false, 0),
            sample(90, true, 1), // after the request
        ];
        assert_eq!(of_request(&[], samples.iter(), 0, 50), (3, 20));
        // The marker's timings, when it sent any, are used instead.
        assert_eq!(of_request(&[(1, 12, 17)], samples.iter(), 0, 50), (1, 5));
        assert!(inside(&samples[1], &[]) && !inside(&samples[0], &[]));
    }

    #[test]
    fn the_gc_leaf_replaces_a_state_leaf_and_keeps_python_frames() {
        let python: Stack = vec![Frame::synthetic("x"), Frame::synthetic(NATIVE_FRAME)].into();
        let out = with_leaf(&python);
        assert_eq!(out.len(), 2);
        assert_eq!(&*out[1].name, GC_FRAME);
        assert!(out[1].is_state() && !out[1].is_off_cpu());
        assert_eq!(
            pause_within(&[(1, 10, 20), (2, 15, 30), (1, 50, 60)], 0, 55),
            25
        );
    }
}
