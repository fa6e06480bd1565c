//! The sampling loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use timeglass_model::{Frame, Quality, Sample, Stack, State};
use timeglass_wire::{monotonic_ns, Region, SlotReader, SlotSnapshot};

use crate::timer::Jitter;
use crate::{SourceError, StackSource, ThreadStack, TornDetector};

/// Threads unseen for this many walks are no longer read before each walk.
const FORGET_AFTER_WALKS: u64 = 1000;

/// Which request each thread runs: the marker's slot table, or a test double.
pub trait RequestSlots {
    fn read(&mut self, tid: u32) -> Option<SlotSnapshot>;
    /// Maps py-spy's pthread id to a native tid (needed before Python 3.11).
    fn tid_of_pthread(&mut self, pthread_id: u64) -> Option<u32>;
}

impl RequestSlots for SlotReader<'_> {
    fn read(&mut self, tid: u32) -> Option<SlotSnapshot> {
        SlotReader::read(self, tid)
    }

    fn tid_of_pthread(&mut self, pthread_id: u64) -> Option<u32> {
        SlotReader::tid_of_pthread(self, pthread_id)
    }
}

/// Whether anything is worth sampling at the full rate.
pub trait Activity {
    fn busy(&self) -> bool;
    /// Blocks until `busy()` or `timeout`; returns `busy()`.
    fn wait_busy(&self, timeout: Duration) -> bool {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        self.busy()
    }
}

impl Activity for Region {
    fn busy(&self) -> bool {
        self.inflight() > 0
    }

    fn wait_busy(&self, timeout: Duration) -> bool {
        self.wait_for_request(timeout)
    }
}

/// How long the app must be idle before the sampler sleeps on the futex
/// instead of polling every millisecond. Bounds the marker's wake-up system
/// calls to a few per second under bursty load.
const SETTLE: Duration = Duration::from_millis(50);

/// Where samples go: the join in production, a `Vec` in tests.
pub trait SampleSink {
    fn sample(&mut self, sample: Sample);
}

impl SampleSink for Vec<Sample> {
    fn sample(&mut self, sample: Sample) {
        self.push(sample);
    }
}

/// Sampling rates and what each walk reads.
#[derive(Clone, Copy, Debug)]
pub struct SamplerOptions {
    /// Rate while a request is in flight.
    pub rate_hz: u32,
    /// Rate while none is (start-up, idle app).
    pub idle_hz: u32,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            rate_hz: 1000,
            idle_hz: 10,
        }
    }
}

/// Counters for the session summary and `make bench`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Walks attempted.
    pub walks: u64,
    /// Walks that failed as a whole (non-atomic read raced the interpreter).
    pub failed_walks: u64,
    /// Samples emitted (active threads), of every quality.
    pub samples: u64,
    pub torn: u64,
    pub switched: u64,
}

pub struct Sampler {
    options: SamplerOptions,
    torn: TornDetector,
    jitter: Jitter,
    before: Vec<(u32, SlotSnapshot)>,
    /// Threads seen recently, with the walk that last saw each. With
    /// GIL-holder walks a walk returns one thread, so this must outlive a
    /// walk: a thread that takes the GIL next needs its slot read before it.
    known_tids: HashMap<u32, u64>,
    stats: SamplerStats,
}

impl Sampler {
    pub fn new(options: SamplerOptions) -> Self {
        Sampler {
            options,
            torn: TornDetector::default(),
            jitter: Jitter::new(monotonic_ns()),
            before: Vec::new(),
            known_tids: HashMap::new(),
            stats: SamplerStats::default(),
        }
    }

    pub fn stats(&self) -> SamplerStats {
        self.stats
    }

    /// One walk: read the slots, read the stacks, read the slots again.
    pub fn tick(
        &mut self,
        source: &mut dyn StackSource,
        slots: &mut dyn RequestSlots,
        sink: &mut dyn SampleSink,
    ) -> Result<(), SourceError> {
        // The slot must be read immediately before the walk: read after, it
        // was right only 55-71% of the time (SAMPLER-NOTES.md).
        self.before.clear();
        for &tid in self.known_tids.keys() {
            if let Some(snap) = slots.read(tid) {
                self.before.push((tid, snap));
            }
        }
        let ts_ns = monotonic_ns();
        self.stats.walks += 1;
        let stacks = match source.stacks() {
            Ok(stacks) => stacks,
            Err(SourceError::Read { .. }) if source.alive() => {
                self.stats.failed_walks += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let walk = self.stats.walks;
        if walk.is_multiple_of(FORGET_AFTER_WALKS) {
            self.known_tids
                .retain(|_, seen| walk - *seen < FORGET_AFTER_WALKS);
        }
        let pid = source.pid();
        for stack in stacks {
            let tid = stack.tid.or_else(|| slots.tid_of_pthread(stack.pthread_id));
            if let Some(tid) = tid {
                self.known_tids.insert(tid, walk);
            }
            if !stack.active {
                continue;
            }
            let (request_id, mut quality) = self.attribute(tid, slots);
            if self.torn.is_torn(stack.pthread_id, &stack.frames) {
                quality = Quality::Torn;
            }
            self.count(quality);
            let ThreadStack { frames, .. } = stack;
            let stack: Stack = frames.into_iter().collect::<Vec<Frame>>().into();
            sink.sample(Sample {
                pid,
                tid: tid.unwrap_or(0),
                ts_ns,
                request_id,
                quality,
                state: State::Python,
                interval_ns: 0,
                slot_seq: 0,
                stack,
            });
        }
        Ok(())
    }

    fn attribute(&self, tid: Option<u32>, slots: &mut dyn RequestSlots) -> (u64, Quality) {
        let Some(tid) = tid else {
            return (0, Quality::Clean);
        };
        let after = slots.read(tid);
        let before = self.before.iter().find(|(t, _)| *t == tid).map(|(_, s)| *s);
        match (before, after) {
            (Some(b), Some(a)) if a.seq == b.seq => (b.request_id, Quality::Clean),
            // Two changes that come back to the same request: it suspended
            // and resumed during the walk, with no request in between (the
            // marker always goes through 0 between two requests, which takes
            // four changes). The stack is that request's or the event loop's
            // between its steps, never another request's.
            (Some(b), Some(a))
                if b.request_id != 0
                    && a.request_id == b.request_id
                    && a.seq == b.seq.wrapping_add(2) =>
            {
                (b.request_id, Quality::Clean)
            }
            (Some(b), _) => (b.request_id, Quality::Switched),
            // A thread seen for the first time: only the reading after the walk exists.
            (None, Some(a)) if a.request_id != 0 => (a.request_id, Quality::Switched),
            (None, _) => (0, Quality::Clean),
        }
    }

    fn count(&mut self, quality: Quality) {
        self.stats.samples += 1;
        match quality {
            Quality::Clean => {}
            Quality::Switched => self.stats.switched += 1,
            Quality::Torn => self.stats.torn += 1,
        }
    }

    /// Samples until `stop` is set or the process goes away: at
    /// `rate_hz` while `activity` is busy, at `idle_hz` otherwise. Just after
    /// the last request it polls every millisecond; once the app has been idle
    /// for [`SETTLE`] it sleeps until a request starts (a futex the marker
    /// wakes), so an idle app costs the sampler nothing but its idle samples.
    pub fn run(
        &mut self,
        source: &mut dyn StackSource,
        slots: &mut dyn RequestSlots,
        activity: &dyn Activity,
        sink: &mut dyn SampleSink,
        stop: &AtomicBool,
    ) -> Result<(), SourceError> {
        let busy_period = Duration::from_secs_f64(1.0 / f64::from(self.options.rate_hz.max(1)));
        let idle_period = Duration::from_secs_f64(1.0 / f64::from(self.options.idle_hz.max(1)));
        let poll = Duration::from_millis(1);
        let mut next = Instant::now();
        let mut was_busy = false;
        let mut last_busy = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let busy = activity.busy();
            let now = Instant::now();
            if busy {
                last_busy = now;
            }
            if busy && !was_busy {
                // A request just started: don't wait out the idle period.
                next = now;
            }
            was_busy = busy;
            if now >= next {
                if let Err(e) = self.tick(source, slots, sink) {
                    if !source.alive() {
                        return Ok(());
                    }
                    return Err(e);
                }
                let period = if busy { busy_period } else { idle_period };
                // Fixed-rate: the next tick is due one period after this one
                // was due, so sleep overshoot does not lower the rate. A walk
                // slower than the period still leaves a quarter period of
                // rest, so the sampler never takes a whole core; with half a
                // period, walks of 0.6 ms (a VM with slow syscalls) held
                // 1 kHz down to ~880 Hz.
                next = (next + self.jitter.around(period)).max(Instant::now() + period / 4);
                if !source.alive() {
                    return Ok(());
                }
                continue;
            }
            let wait = next - now;
            if busy || now - last_busy < SETTLE {
                std::thread::sleep(wait.min(poll));
            } else {
                // Wake at least every 100 ms to notice `stop`.
                activity.wait_busy(wait.min(Duration::from_millis(100)));
            }
        }
        Ok(())
    }
}
