//! Views of a set of stacks, before any renderer sees them: which weight
//! (wall time, CPU time), folding library frames into the app code that
//! called them ("my code only"), hiding the synthetic frames TimeGlass adds
//! (`[background]`, `[sql] ...`, the state leaves such as `[blocked]`), and
//! merging the stacks of many requests into one profile.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use timeglass_model::{sort_stacks, Frame, StackCount};

use crate::kind::{kind, Kind, LIBRARY_ONLY};

/// What a stack's count measures. A weight picks the stacks that count
/// towards it and names its unit; a renderer asks the weight, never a flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Weight {
    /// Every sample: time on the wall clock, waits included (the default).
    #[default]
    Wall,
    /// CPU time only: the stacks that end off the CPU (waits, blocked calls,
    /// awaits, queueing) are left out.
    Cpu,
}

impl Weight {
    /// Every weight, in the order the formats that carry several list them.
    pub const ALL: [Weight; 2] = [Weight::Wall, Weight::Cpu];

    /// Its name in URLs and files (`wall`, `cpu`).
    pub fn name(self) -> &'static str {
        match self {
            Weight::Wall => "wall",
            Weight::Cpu => "cpu",
        }
    }

    /// Whether a stack counts towards this weight.
    pub fn counts(self, stack: &[Frame]) -> bool {
        match self {
            Weight::Wall => true,
            Weight::Cpu => !stack.last().is_some_and(Frame::is_off_cpu),
        }
    }

    /// Whether a stack's count is time, one sampling interval per sample
    /// (both weights so far; a weight in bytes would not be).
    pub fn is_time(self) -> bool {
        matches!(self, Weight::Wall | Weight::Cpu)
    }
}

/// The view the user chose; the default shows every frame, wall time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub weight: Weight,
    /// Fold library frames into their caller.
    pub mine: bool,
    /// Hide the synthetic frames.
    pub hide_synthetic: bool,
    /// Leave out the time spent waiting on SQL statements and HTTP calls
    /// (the stacks ending in `[sql] ...`/`[http] ...`, which the join adds
    /// from the marker's timings): only what was sampled.
    pub sampled_only: bool,
}

impl View {
    pub fn is_identity(self) -> bool {
        !self.mine && !self.hide_synthetic && !self.sampled_only && self.weight == Weight::Wall
    }

    /// Whether the stack is left out whole. Hidden synthetic frames take
    /// their off-CPU time with them too: it was spent waiting, and must not
    /// become self time of the frame that waited. `[native, on CPU]` is
    /// CPU time of its caller and stays.
    fn drops(self, stack: &[Frame]) -> bool {
        let leaf = stack.last();
        let off_cpu = leaf.is_some_and(Frame::is_off_cpu);
        let wait = leaf.is_some_and(Frame::is_wait);
        !self.weight.counts(stack)
            || (off_cpu && self.hide_synthetic)
            || (wait && self.sampled_only)
    }

    /// One stack as this view shows it, `None` when the view leaves it out.
    pub fn stack(self, stack: &[Frame]) -> Option<Arc<[Frame]>> {
        if self.drops(stack) {
            return None;
        }
        if self.is_identity() {
            return Some(stack.into());
        }
        let kept: Vec<Frame> = stack
            .iter()
            .filter(|f| match kind(f) {
                Kind::App => true,
                Kind::Library => !self.mine,
                Kind::Synthetic => !self.hide_synthetic,
            })
            .cloned()
            .collect();
        let only_library = self.mine && !kept.iter().any(|f| kind(f) == Kind::App);
        if !only_library {
            return Some(kept.into());
        }
        // Synthetic roots ([background]) stay; the library code under them
        // folds into one frame.
        let library_only = Frame {
            name: LIBRARY_ONLY.into(),
            filename: "".into(),
            short: "".into(),
            line: 0,
        };
        Some(kept.into_iter().chain([library_only]).collect())
    }

    /// The stacks as this view shows them; stacks that become equal are
    /// merged, in the one order of [`sort_stacks`].
    pub fn apply(self, stacks: &[StackCount]) -> Vec<StackCount> {
        if self.is_identity() {
            return stacks.to_vec();
        }
        merge(
            stacks
                .iter()
                .filter_map(|sc| self.stack(&sc.stack).map(|stack| (stack, sc.samples))),
        )
    }
}

/// Sums the counts of equal stacks (the stacks of every request of an
/// endpoint, say) into one profile, in the one order of [`sort_stacks`].
pub fn merge(stacks: impl IntoIterator<Item = (Arc<[Frame]>, u64)>) -> Vec<StackCount> {
    // Stacks are dozens of frames of text: SipHash over all of it was the
    // largest part of merging 10,000 samples (callgrind).
    let mut merged: FxHashMap<Arc<[Frame]>, u64> = FxHashMap::default();
    for (stack, samples) in stacks {
        *merged.entry(stack).or_default() += samples;
    }
    let mut out: Vec<StackCount> = merged
        .into_iter()
        .map(|(stack, samples)| StackCount { stack, samples })
        .collect();
    sort_stacks(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, filename: &str, short: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: filename.into(),
            short: short.into(),
            line: 1,
        }
    }

    fn names(sc: &StackCount) -> Vec<&str> {
        sc.stack.iter().map(|f| f.name.as_ref()).collect()
    }

    #[test]
    fn my_code_only_folds_library_frames_into_their_caller() {
        let lib = |n: &str| {
            f(
                n,
                "/v/lib/python3.12/site-packages/starlette/x.py",
                "starlette/x.py",
            )
        };
        let app = |n: &str| f(n, "/srv/app.py", "app.py");
        let stacks = vec![
            StackCount {
                stack: vec![lib("serve"), app("handler"), lib("dumps")].into(),
                samples: 3,
            },
            StackCount {
                stack: vec![lib("serve"), app("handler")].into(),
                samples: 2,
            },
            StackCount {
                stack: vec![lib("serve"), lib("idle")].into(),
                samples: 4,
            },
            StackCount {
                stack: vec![Frame::synthetic("[background]"), lib("send")].into(),
                samples: 1,
            },
        ];
        let mine = View {
            mine: true,
            ..View::default()
        }
        .apply(&stacks);
        assert_eq!(names(&mine[0]), ["handler"]);
        assert_eq!(mine[0].samples, 5);
        assert_eq!(names(&mine[1]), [LIBRARY_ONLY]);
        assert_eq!(mine[1].samples, 4);
        assert_eq!(names(&mine[2]), ["[background]", LIBRARY_ONLY]);

        let plain = View {
            hide_synthetic: true,
            ..View::default()
        }
        .apply(&stacks);
        assert!(plain
            .iter()
            .all(|s| !s.stack.iter().any(Frame::is_synthetic)));
        assert_eq!(plain.iter().map(|s| s.samples).sum::<u64>(), 10);
    }

    #[test]
    fn the_cpu_view_keeps_python_and_native_and_drops_time_off_the_cpu() {
        use timeglass_model::{BLOCKED_FRAME, NATIVE_FRAME, SQL_FRAME_PREFIX};
        let app = |n: &str| f(n, "/srv/app.py", "app.py");
        let with = |leaf: Frame, samples| StackCount {
            stack: vec![app("handler"), leaf].into(),
            samples,
        };
        let stacks = vec![
            with(app("compute"), 5),
            with(Frame::synthetic(NATIVE_FRAME), 3),
            with(Frame::synthetic(BLOCKED_FRAME), 7),
            with(Frame::synthetic("[await asyncio.sleep]"), 11),
            with(Frame::synthetic(&format!("{SQL_FRAME_PREFIX}SELECT 1")), 13),
        ];
        let total = |v: View| v.apply(&stacks).iter().map(|s| s.samples).sum::<u64>();
        assert_eq!(total(View::default()), 39, "wall: everything");
        let cpu = View {
            weight: Weight::Cpu,
            ..View::default()
        };
        assert_eq!(total(cpu), 8);
        let kept = cpu.apply(&stacks);
        let leaves: Vec<&str> = kept
            .iter()
            .map(|s| s.stack.last().unwrap().name.as_ref())
            .collect();
        assert_eq!(leaves, ["compute", NATIVE_FRAME]);
        // Without synthetic frames native time is its caller's self time.
        let plain = View {
            hide_synthetic: true,
            ..View::default()
        }
        .apply(&stacks);
        assert_eq!(names(&plain[0]), ["handler", "compute"]);
        assert_eq!((names(&plain[1]), plain[1].samples), (vec!["handler"], 3));
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn merging_sums_equal_stacks() {
        let app = |n: &str| f(n, "/srv/app.py", "app.py");
        let a: Arc<[Frame]> = vec![app("handler")].into();
        let b: Arc<[Frame]> = vec![app("handler"), app("work")].into();
        let merged = merge([(a.clone(), 2), (b.clone(), 3), (a.clone(), 4)]);
        assert_eq!(
            merged,
            [
                StackCount {
                    stack: a,
                    samples: 6
                },
                StackCount {
                    stack: b,
                    samples: 3
                }
            ]
        );
    }
}
