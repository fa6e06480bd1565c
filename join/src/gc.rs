//! Garbage collections a request paid for: the marker times each one that
//! ran on a thread while the thread ran the request (`gc.callbacks`).
//! Their time is a category of the request's breakdown, and the samples
//! taken on that thread meanwhile end in a `[gc]` leaf, under the code
//! whose allocation set the collection off.

use timeglass_model::{Frame, Stack, GC_FRAME};

use crate::wall::{union_ns, Charged};

/// Whether `sample` was taken on a thread while it collected.
pub(crate) fn inside(sample: &Charged, gcs: &[(u32, u64, u64)]) -> bool {
    !sample.suspended()
        && gcs
            .iter()
            .any(|&(tid, s, e)| tid == sample.tid && s <= sample.ts_ns && sample.ts_ns <= e)
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
    use timeglass_model::NATIVE_FRAME;

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
