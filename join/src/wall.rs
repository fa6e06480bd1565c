//! Wall-clock accounting: where each request's time went (its samples'
//! states, its timed waits), its CPU time, the prefixes that put a
//! suspended request's await chain under the frames that run it, and the
//! `async def` steps that held the event loop too long.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use timeglass_model::{Frame, LoopBlock, Sample, Stack, State, Text, TimeBreakdown};

/// A sample charged to a request, kept until the request is settled.
#[derive(Clone, Debug)]
pub(crate) struct Charged {
    pub ts_ns: u64,
    /// Where the time it stands for begins (set by [`nearest_tick`]); it
    /// ends `interval_ns` later.
    pub from_ns: u64,
    pub stack: Stack,
    pub state: State,
    pub interval_ns: u64,
    pub tid: u32,
    pub slot_seq: u64,
    pub cpu_ns: u64,
    /// Taken while a garbage collection ran (the sampler read the
    /// collector's flag), and collections charged to it.
    pub in_gc: bool,
    pub gc_collections: u32,
}

impl Charged {
    /// `sample` with `stack`; its time is set again by [`nearest_tick`].
    pub(crate) fn of(sample: &Sample, stack: Stack) -> Charged {
        Charged {
            ts_ns: sample.ts_ns,
            from_ns: sample.ts_ns.saturating_sub(sample.interval_ns),
            stack,
            state: sample.state,
            interval_ns: sample.interval_ns,
            tid: sample.tid,
            slot_seq: sample.slot_seq,
            cpu_ns: sample.cpu_ns,
            in_gc: sample.in_gc,
            gc_collections: sample.gc_collections,
        }
    }

    /// Read from an await chain, not from a thread.
    pub(crate) fn suspended(&self) -> bool {
        self.tid == 0
    }
}

/// The CPU time `samples` (already tiled by [`nearest_tick`]) carry, each
/// thread's at most the wall time the request spent on it, from the start
/// of its first sample's tile to the end of its last's, within
/// `start..end`. A sample's count is the thread's CPU since it was last
/// read, which after an idle spell (the sampler ticks at 10 Hz then) holds
/// other work too: a 0.8 ms request must not be charged 8.8 ms.
pub(crate) fn cpu_within<'a>(
    samples: impl Iterator<Item = &'a Charged>,
    start: u64,
    end: u64,
) -> u64 {
    let mut threads: HashMap<u32, (u64, u64, u64)> = HashMap::new();
    for s in samples {
        let (cpu, from, to) = threads.entry(s.tid).or_insert((0, u64::MAX, 0));
        *cpu += s.cpu_ns;
        *from = (*from).min(s.from_ns.max(start));
        *to = (*to).max(s.from_ns.saturating_add(s.interval_ns).min(end));
    }
    threads
        .into_values()
        .map(|(cpu, from, to)| cpu.min(to.saturating_sub(from)))
        .sum()
}

/// Whether a frame is library code (installed packages, the standard
/// library) rather than the app's own.
pub(crate) fn is_library(frame: &Frame) -> bool {
    let f = &frame.filename;
    frame.is_synthetic()
        || f.is_empty()
        || f.starts_with('<')
        || f.contains("/site-packages/")
        || f.contains("/dist-packages/")
        || f.contains("/lib/python3")
        || f.contains("/lib/pypy")
}

/// Gives each sample the wall time nearest to its tick: from halfway to the
/// request's previous tick to halfway to its next one (from its start for
/// the first, to its end for the last), so a request's ticks tile its whole
/// duration. A tick that came late (the sampler was starved, a walk failed)
/// shares the gap with the tick before it instead of taking it all into the
/// state it found. Samples of one tick (a request on two threads at once)
/// each stand for the tick's whole share.
pub(crate) fn nearest_tick(
    samples: &mut [Charged],
    time_only: &mut [Charged],
    start_ns: u64,
    end_ns: u64,
) {
    let mut ticks: Vec<u64> = samples
        .iter()
        .chain(time_only.iter())
        .map(|s| s.ts_ns)
        .collect();
    ticks.sort_unstable();
    ticks.dedup();
    let share = |ts: u64| -> (u64, u64) {
        let at = ticks.partition_point(|&t| t < ts);
        let before = if at == 0 {
            start_ns
        } else {
            ts - (ts - ticks[at - 1]) / 2
        };
        let after = match ticks.get(at + 1) {
            Some(&next) => ts + (next - ts) / 2,
            None => end_ns.max(ts),
        };
        let from = before.min(ts).max(start_ns);
        (from, after.saturating_sub(from))
    };
    for s in samples.iter_mut().chain(time_only.iter_mut()) {
        (s.from_ns, s.interval_ns) = share(s.ts_ns);
    }
}

/// The part of a sample's time before `until` (the response's end: what
/// comes after is the background stage).
pub(crate) fn before(sample: &Charged, until: u64) -> u64 {
    (sample.from_ns + sample.interval_ns)
        .min(until)
        .saturating_sub(sample.from_ns)
}

/// Merged time windows `[start, end)`, clipped to `[from, to)`.
pub(crate) fn union_ns(windows: impl Iterator<Item = (u64, u64)>, from: u64, to: u64) -> u64 {
    let mut spans: Vec<(u64, u64)> = windows
        .map(|(s, e)| (s.max(from), e.min(to)))
        .filter(|(s, e)| e > s)
        .collect();
    spans.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (s, e) in spans {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    total + current.map_or(0, |(s, e)| e - s)
}

/// The wall time of a request's samples and waits, by category. Samples
/// off the CPU inside a timed query or call are that wait's time (the
/// caller drops them from the flame graph for the same reason).
pub(crate) fn breakdown(
    samples: &[Charged],
    sql: &[(u64, u64)],
    http: &[(u64, u64)],
    start_ns: u64,
    end_ns: u64,
) -> TimeBreakdown {
    let mut b = TimeBreakdown::default();
    for s in samples {
        b.add(s.state, before(s, end_ns));
    }
    b.sql_ns = union_ns(sql.iter().copied(), start_ns, end_ns);
    b.http_ns = union_ns(http.iter().copied(), start_ns, end_ns);
    b
}

/// Whether a sample falls inside one of `windows` and was spent off the
/// CPU: the timed wait accounts for it already.
pub(crate) fn inside_wait(sample: &Charged, windows: &[(u64, u64)]) -> bool {
    !sample.state.on_cpu()
        && windows
            .iter()
            .any(|&(s, e)| s <= sample.ts_ns && sample.ts_ns <= e)
}

/// Frames that run a suspended request's outermost coroutine, learned from
/// thread samples of the same process: `<module>` down to the frame that
/// stepped it (uvicorn's `run_asgi`, the loop's `Handle._run`).
#[derive(Default)]
pub(crate) struct Prefixes {
    /// Per process, per root frame (name, file): the frames above it.
    learned: HashMap<(u32, Text, Text), Stack>,
    /// Roots seen in suspended samples whose prefix is not known yet.
    wanted: HashMap<u32, Vec<(Text, Text)>>,
    /// Per process, the last few thread stacks: a root first wanted after
    /// the samples that show it is looked for there.
    recent: HashMap<u32, VecDeque<Stack>>,
}

/// Roots wanted per process beyond this are not looked for.
const MAX_WANTED: usize = 64;
/// Thread stacks kept per process for roots wanted later.
const RECENT_STACKS: usize = 32;

impl Prefixes {
    /// Notes the root of a suspended sample.
    pub(crate) fn want(&mut self, pid: u32, root: &Frame) {
        let key = (pid, root.name.clone(), root.filename.clone());
        if self.learned.contains_key(&key) {
            return;
        }
        let wanted = self.wanted.entry(pid).or_default();
        let root = (root.name.clone(), root.filename.clone());
        if !wanted.contains(&root) && wanted.len() < MAX_WANTED {
            wanted.push(root);
            let recent: Vec<Stack> = self
                .recent
                .get(&pid)
                .map(|r| r.iter().rev().cloned().collect())
                .unwrap_or_default();
            for stack in recent {
                self.find(pid, &stack);
            }
        }
    }

    /// Looks for wanted roots in a thread sample's stack, and keeps it for
    /// roots wanted later.
    pub(crate) fn learn(&mut self, pid: u32, stack: &Stack) {
        let recent = self.recent.entry(pid).or_default();
        if !recent.back().is_some_and(|last| Arc::ptr_eq(last, stack)) {
            if recent.len() >= RECENT_STACKS {
                recent.pop_front();
            }
            recent.push_back(stack.clone());
        }
        self.find(pid, stack);
    }

    fn find(&mut self, pid: u32, stack: &Stack) {
        let Some(wanted) = self.wanted.get_mut(&pid) else {
            return;
        };
        if wanted.is_empty() {
            return;
        }
        wanted.retain(|(name, file)| {
            // A stack that starts at the root itself (cut short, or a
            // thread that runs only that coroutine) teaches nothing: keep
            // looking rather than learn an empty prefix for good.
            let Some(at) = stack
                .iter()
                .position(|f| *f.name == **name && *f.filename == **file)
                .filter(|&at| at > 0)
            else {
                return true;
            };
            let prefix: Stack = stack[..at].to_vec().into();
            let key = (pid, name.clone(), file.clone());
            self.learned.insert(key, prefix);
            false
        });
    }

    /// `stack` under the frames that run its root, when they are known.
    pub(crate) fn apply(&self, pid: u32, stack: &Stack) -> Stack {
        let Some(root) = stack.first() else {
            return stack.clone();
        };
        match self
            .learned
            .get(&(pid, root.name.clone(), root.filename.clone()))
        {
            Some(prefix) if !prefix.is_empty() => prefix
                .iter()
                .chain(stack.iter())
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            _ => stack.clone(),
        }
    }

    pub(crate) fn forget(&mut self, pid: u32) {
        self.learned.retain(|(p, _, _), _| *p != pid);
        self.wanted.remove(&pid);
        self.recent.remove(&pid);
    }
}

/// A settled or pending request's window, for naming the requests a loop
/// block delayed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub pid: u32,
    pub tid: u32,
    pub marker_id: u64,
    pub start_ns: u64,
    /// `u64::MAX` while it has not ended.
    pub end_ns: u64,
}

/// Windows of recently settled requests, kept this long.
const RECENT_NS: u64 = 30_000_000_000;
/// At most this many recent windows.
const MAX_RECENT: usize = 100_000;

#[derive(Default)]
pub(crate) struct Recent {
    windows: VecDeque<Window>,
    /// The latest end pushed so far.
    newest: u64,
}

impl Recent {
    pub(crate) fn push(&mut self, w: Window) {
        self.newest = self.newest.max(w.end_ns);
        self.windows.push_back(w);
        while self.windows.len() > MAX_RECENT
            || self
                .windows
                .front()
                .is_some_and(|f| f.end_ns.saturating_add(RECENT_NS) < self.newest)
        {
            self.windows.pop_front();
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Window> {
        self.windows.iter()
    }
}

/// The longest stretch a request held its event loop's thread (`loop_tid`,
/// the thread that received it) without yielding, when it is longer than
/// `threshold_ns`: consecutive thread samples with the same slot counter.
pub(crate) fn loop_block(
    samples: &[Charged],
    loop_tid: u32,
    threshold_ns: u64,
) -> Option<(LoopBlock, u64)> {
    let mut best: Option<(u64, u64, usize, usize)> = None; // (span, start, from, to)
    let on_loop: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].tid == loop_tid && loop_tid != 0)
        .collect();
    let mut i = 0;
    while i < on_loop.len() {
        let first = &samples[on_loop[i]];
        let mut j = i;
        while j + 1 < on_loop.len() && samples[on_loop[j + 1]].slot_seq == first.slot_seq {
            j += 1;
        }
        // The step's samples tile its time (see `nearest_tick`).
        let span: u64 = on_loop[i..=j].iter().map(|&k| samples[k].interval_ns).sum();
        let start = first.from_ns;
        if span > threshold_ns && best.is_none_or(|b| span > b.0) {
            best = Some((span, start, i, j));
        }
        i = j + 1;
    }
    let (span, start, from, to) = best?;
    let mut lines: HashMap<String, u64> = HashMap::new();
    for &k in &on_loop[from..=to] {
        let own = samples[k].stack.iter().rev().find(|f| !is_library(f));
        if let Some(frame) = own {
            *lines.entry(frame.location()).or_insert(0) += 1;
        }
    }
    let line = lines
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(l, _)| l);
    Some((
        LoopBlock {
            blocked_ns: span,
            start_ns: start,
            line,
            delayed: Vec::new(),
        },
        start + span,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, file: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: file.into(),
            short: file.rsplit('/').next().unwrap().into(),
            line: 7,
        }
    }

    fn charged(ts: u64, tid: u32, seq: u64, state: State, leaf: &str) -> Charged {
        Charged {
            ts_ns: ts,
            from_ns: ts - 1_000_000,
            stack: vec![
                frame("run", "/usr/lib/python3.12/asyncio/runners.py"),
                frame(leaf, "/app/main.py"),
            ]
            .into(),
            state,
            interval_ns: 1_000_000,
            tid,
            slot_seq: seq,
            cpu_ns: 0,
            in_gc: false,
            gc_collections: 0,
        }
    }

    #[test]
    fn ticks_tile_the_request_each_taking_the_time_nearest_to_it() {
        let ms = 1_000_000;
        let at = |ts: u64, state: State| charged(ts * ms, 9, 1, state, "h");
        // Ticks at 1, 2, 3 ms, then a late one at 9 ms; the request ran 0-10 ms.
        let mut samples = vec![
            at(1, State::Python),
            at(2, State::Python),
            at(3, State::Python),
            at(9, State::Awaiting),
        ];
        let mut torn = vec![at(2, State::Python)];
        nearest_tick(&mut samples, &mut torn, 0, 10 * ms);
        let got: Vec<u64> = samples.iter().map(|s| s.interval_ns / 100_000).collect();
        // 0-1.5, 1.5-2.5, 2.5-6, 6-10 (in tenths of a millisecond).
        assert_eq!(got, [15, 10, 35, 40]);
        assert_eq!(
            torn[0].interval_ns, ms,
            "a sample of the same tick shares its time"
        );
        let total: u64 = samples.iter().map(|s| s.interval_ns).sum();
        assert_eq!(total, 10 * ms);
    }

    #[test]
    fn windows_are_merged_and_clipped() {
        let w = [(10, 20), (15, 30), (40, 50), (45, 46), (90, 200)];
        assert_eq!(union_ns(w.iter().copied(), 0, 100), 20 + 10 + 10);
        assert_eq!(union_ns(std::iter::empty(), 0, 100), 0);
    }

    #[test]
    fn the_longest_step_on_the_loop_thread_is_the_block() {
        let ms = 1_000_000;
        let mut samples = vec![charged(ms, 9, 2, State::Python, "quick")];
        for t in 3..=40 {
            samples.push(charged(t * ms, 9, 4, State::Blocked, "sleepy"));
        }
        // A worker thread's long step is no loop block.
        for t in 3..=90 {
            samples.push(charged(t * ms, 11, 8, State::Blocked, "sync"));
        }
        samples.sort_by_key(|s| s.ts_ns);
        let (block, end) = loop_block(&samples, 9, 20 * ms).unwrap();
        // 38 samples of 1 ms each, from where the first one's time begins.
        assert_eq!(block.blocked_ns, 38 * ms);
        assert_eq!(block.start_ns, 2 * ms);
        assert_eq!(end, 40 * ms);
        assert_eq!(block.line.as_deref(), Some("main.py:7 in sleepy"));
        assert!(loop_block(&samples, 9, 50 * ms).is_none());
    }

    #[test]
    fn prefixes_put_a_chain_under_the_frames_that_step_it() {
        let mut p = Prefixes::default();
        let chain: Stack = vec![
            frame("app", "/s/starlette/applications.py"),
            frame("h", "/app/main.py"),
        ]
        .into();
        p.want(1, &chain[0]);
        let thread: Stack = vec![
            frame("<module>", "/venv/bin/uvicorn"),
            frame("run_asgi", "/s/uvicorn/h11_impl.py"),
            frame("app", "/s/starlette/applications.py"),
            frame("other", "/app/main.py"),
        ]
        .into();
        p.learn(2, &thread);
        assert_eq!(
            p.apply(1, &chain).len(),
            2,
            "another process's stack teaches nothing"
        );
        p.learn(1, &thread);
        let names: Vec<String> = p
            .apply(1, &chain)
            .iter()
            .map(|f| f.name.to_string())
            .collect();
        assert_eq!(names, ["<module>", "run_asgi", "app", "h"]);
        // A stack cut at the root teaches nothing; a whole one after it does.
        let mut cut = Prefixes::default();
        cut.want(1, &chain[0]);
        cut.learn(1, &thread[2..].to_vec().into());
        assert_eq!(cut.apply(1, &chain).len(), 2);
        cut.learn(1, &thread);
        assert_eq!(cut.apply(1, &chain).len(), 4);
        // A root wanted only after the thread sample that shows it went by.
        let mut late = Prefixes::default();
        late.learn(1, &thread);
        late.want(1, &chain[0]);
        assert_eq!(late.apply(1, &chain).len(), 4);
    }

    #[test]
    fn a_request_is_charged_no_more_cpu_than_its_time_on_each_thread() {
        let ms = 1_000_000;
        let mut first = charged(10 * ms, 9, 4, State::Python, "h");
        // Its thread's count since the idle sampler last read it: 8.8 ms.
        first.cpu_ns = 8_800_000;
        first.from_ns = 10 * ms - ms / 5;
        first.interval_ns = ms;
        let inside = cpu_within([&first].into_iter(), 10 * ms, 10 * ms + 800_000);
        assert_eq!(inside, 800_000, "0.8 ms of wall time on one thread");
        let mut other = charged(10 * ms, 11, 8, State::Python, "w");
        other.cpu_ns = 300_000;
        other.from_ns = 10 * ms;
        other.interval_ns = ms;
        let both = cpu_within([&first, &other].into_iter(), 10 * ms, 12 * ms);
        assert_eq!(both, 800_000 + 300_000, "each thread capped on its own");
    }
}
