//! The sampling loop.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use timeglass_model::{
    Frame, Quality, Sample, Stack, State, BLOCKED_FRAME, GIL_WAIT_FRAME, LOOP_BUSY_FRAME,
    NATIVE_FRAME,
};
use timeglass_wire::{monotonic_ns, Region, ScopeSnapshot, SlotReader, SlotSnapshot};

use crate::cpu::{Reading, ThreadCpu};
use crate::leaf::await_leaf;
use crate::procfs::{futex_word, TaskFiles};
use crate::timer::Jitter;
use crate::{SourceError, StackSource, ThreadStack, TornDetector};

/// Threads unseen for this many walks are no longer read before each walk.
const FORGET_AFTER_WALKS: u64 = 1000;

/// Which request each thread runs: the marker's slot table, or a test double.
pub trait RequestSlots {
    fn read(&mut self, tid: u32) -> Option<SlotSnapshot>;
    /// Maps py-spy's pthread id to a native tid (needed before Python 3.11).
    fn tid_of_pthread(&mut self, pthread_id: u64) -> Option<u32>;
    /// Every thread whose slot holds a request now, into `out` (cleared).
    fn running(&mut self, out: &mut Vec<(u32, SlotSnapshot)>) {
        out.clear();
    }
    /// The coroutines of in-flight requests, into `out` (cleared).
    fn scopes(&mut self, out: &mut Vec<ScopeSnapshot>) {
        out.clear();
    }
}

impl RequestSlots for SlotReader<'_> {
    fn read(&mut self, tid: u32) -> Option<SlotSnapshot> {
        SlotReader::read(self, tid)
    }

    fn tid_of_pthread(&mut self, pthread_id: u64) -> Option<u32> {
        SlotReader::tid_of_pthread(self, pthread_id)
    }

    fn running(&mut self, out: &mut Vec<(u32, SlotSnapshot)>) {
        SlotReader::running(self, out);
    }

    fn scopes(&mut self, out: &mut Vec<ScopeSnapshot>) {
        self.region().read_scopes(out);
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
    /// Called at every turn of the sampling loop (at least every
    /// millisecond while `busy`, at most every 100 ms otherwise), whether
    /// or not a tick is due: for readings that must not follow `--rate`.
    fn turn(&mut self, _busy: bool) {}
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
    /// Sample every in-flight request at every tick, whatever it does: the
    /// threads running a request are walked even without the GIL, and a
    /// suspended request's await chain is read. Off: only the GIL holder.
    pub wall_clock: bool,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            rate_hz: timeglass_model::DEFAULT_RATE_HZ,
            idle_hz: 10,
            wall_clock: true,
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
    /// Samples of suspended requests (read from their await chains).
    pub suspended: u64,
    /// Await chains read (once per suspension).
    pub chains_read: u64,
    /// Walks of request threads saved because the thread had not run since
    /// the last tick (its stack could not have changed).
    pub walks_saved: u64,
    /// Request threads' CPU time between readings, and their time runnable
    /// but waiting for a CPU meanwhile (`schedstat`): how much a busy
    /// machine slowed the app.
    pub threads_cpu_ns: u64,
    pub threads_wait_ns: u64,
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
    /// When the previous tick began (monotonic ns); 0 before the first.
    last_tick_ns: u64,
    running: Vec<(u32, SlotSnapshot)>,
    scopes: Vec<ScopeSnapshot>,
    cpu: ThreadCpu,
    /// Per request thread: the slot, CPU time and stack at its last tick,
    /// for CPU deltas and for threads that have not run since.
    threads: HashMap<u32, ThreadMemo>,
    /// Await chains of suspended coroutines, by (address, step counter):
    /// a coroutine's chain does not change until it resumes.
    chains: HashMap<(u64, u64), Option<Suspension>>,
    /// Per suspended request, the tick of its last sample.
    sampled: HashMap<u64, u64>,
    /// The thread that held the GIL at the last walk.
    last_holder: Option<u32>,
    /// Open `/proc/PID/task/TID/syscall` files of request threads.
    syscalls: TaskFiles,
    /// Where the GIL's mutex and condition variables are, once asked.
    gil_region: Option<Option<Range<u64>>>,
    /// Request threads whose last sample waited for the GIL.
    gil_waiters: HashSet<u32>,
    /// Each request thread's last reading, for [`SamplerStats::threads_wait_ns`].
    last_reading: HashMap<u32, Reading>,
    /// The collector's count of finished collections at the last reading.
    gc_seen: Option<u64>,
    /// Collections not charged to a GIL holder's sample yet.
    gc_pending: u32,
    /// The collection running at the last reading was charged already.
    gc_running_counted: bool,
}

/// A suspended coroutine's chain, as read once for its suspension.
#[derive(Clone)]
struct Suspension {
    /// The chain's frames with the leaf that says what it waits on.
    stack: Stack,
    state: State,
    /// The future it waits on, asked again at each tick while it waits.
    awaited: u64,
}

/// What one request thread looked like at its last tick.
struct ThreadMemo {
    slot: SlotSnapshot,
    cpu: Option<Reading>,
    /// The stack walked then, without its state leaf; `None` if not walked.
    stack: Option<(Stack, bool)>,
    tick: u64,
}

/// New await chains read per tick at most.
const MAX_CHAIN_READS: usize = 1;
/// A suspended request's future is asked whether it is done every this many ticks.
const READY_EVERY: u64 = 4;

/// Request threads walked per tick at most, besides the GIL holder.
const MAX_REQUEST_WALKS: usize = 2;

/// A tick's interval is capped at this many periods: a sample stands for
/// the time since the previous one (the join cuts the first sample of a
/// request at its start), but not for a long idle spell before it.
const MAX_INTERVAL_PERIODS: u64 = 10;

/// More collections between two ticks than could run in ten periods (a
/// young collection takes a few microseconds at the least) is a torn read.
const MAX_COLLECTIONS_PER_TICK: u32 = 100_000;

impl Sampler {
    pub fn new(options: SamplerOptions) -> Self {
        Sampler {
            options,
            torn: TornDetector::default(),
            jitter: Jitter::new(monotonic_ns()),
            before: Vec::new(),
            known_tids: HashMap::new(),
            stats: SamplerStats::default(),
            last_tick_ns: 0,
            running: Vec::new(),
            scopes: Vec::new(),
            cpu: ThreadCpu::default(),
            threads: HashMap::new(),
            chains: HashMap::new(),
            sampled: HashMap::new(),
            last_holder: None,
            syscalls: TaskFiles::new("syscall"),
            gil_region: None,
            gil_waiters: HashSet::new(),
            last_reading: HashMap::new(),
            gc_seen: None,
            gc_pending: 0,
            gc_running_counted: false,
        }
    }

    pub fn stats(&self) -> SamplerStats {
        self.stats
    }

    /// One tick: read the slots, read the stacks, read the slots again.
    /// With wall-clock sampling, also the threads running a request
    /// (GIL or not) and the await chains of suspended requests, so every
    /// in-flight request gets a sample.
    pub fn tick(
        &mut self,
        source: &mut dyn StackSource,
        slots: &mut dyn RequestSlots,
        sink: &mut dyn SampleSink,
    ) -> Result<(), SourceError> {
        let wall = self.options.wall_clock;
        // The slot must be read immediately before the walk: read after, it
        // was right only 55-71% of the time in the first measurements (of the
        // first commit, 044130e; their notes were never committed).
        self.before.clear();
        for &tid in self.known_tids.keys() {
            if let Some(snap) = slots.read(tid) {
                self.before.push((tid, snap));
            }
        }
        if wall {
            slots.running(&mut self.running);
            for &(tid, snap) in &self.running {
                if !self.known_tids.contains_key(&tid) {
                    self.before.push((tid, snap));
                }
            }
            slots.scopes(&mut self.scopes);
        }
        let pid = source.pid();
        let ts_ns = monotonic_ns();
        let period_ns = 1_000_000_000 / u64::from(self.options.rate_hz.max(1));
        let interval_ns = if self.last_tick_ns == 0 {
            period_ns
        } else {
            (ts_ns - self.last_tick_ns).min(period_ns * MAX_INTERVAL_PERIODS)
        };
        self.stats.walks += 1;
        let walk = self.stats.walks;
        // Request threads that must be walked. One that is off the CPU and
        // has not run since the last tick, still in the same step of the
        // same request, has the stack it had then.
        let mut walk_tids = Vec::new();
        let mut reused: Vec<(u32, Stack, bool)> = Vec::new();
        let mut cpu_now: HashMap<u32, Option<Reading>> = HashMap::new();
        let mut skipped: Vec<u64> = Vec::new();
        if wall {
            for &(tid, snap) in &self.before {
                if snap.request_id == 0 {
                    continue;
                }
                let now = self.cpu.read(pid, tid);
                cpu_now.insert(tid, now);
                if let Some(now) = now {
                    if let Some(then) = self.last_reading.insert(tid, now) {
                        self.stats.threads_cpu_ns += now.cpu_ns.saturating_sub(then.cpu_ns);
                        self.stats.threads_wait_ns += now.wait_ns.saturating_sub(then.wait_ns);
                    }
                }
                let still = self.threads.get(&tid).and_then(|m| {
                    let (then, now) = (m.cpu?, now?);
                    let same = m.slot == snap;
                    // A torn stack is walked again, not kept for the whole wait.
                    (same && !now.running && !then.running && now.cpu_ns == then.cpu_ns)
                        .then(|| m.stack.clone())
                        .flatten()
                        .filter(|(_, torn)| !torn)
                });
                match still {
                    Some((stack, torn)) => reused.push((tid, stack, torn)),
                    None => walk_tids.push(tid),
                }
            }
            // At most a few walks of request threads per tick, those walked
            // longest ago first: with many sync requests in flight each is
            // walked every few ticks (the join gives each of its samples the
            // time since the one before), and the sampler's cost stays flat.
            // The GIL holder is walked anyway: the last one seen does not
            // take a turn.
            let holder = self.last_holder;
            let over =
                MAX_REQUEST_WALKS + usize::from(holder.is_some_and(|h| walk_tids.contains(&h)));
            if walk_tids.len() > over {
                walk_tids.sort_by_key(|tid| {
                    (
                        Some(*tid) != holder,
                        self.threads.get(tid).map_or(0, |m| m.tick),
                    )
                });
                for tid in walk_tids.split_off(over) {
                    if let Some(b) = self.slot_before(tid) {
                        skipped.push(b.request_id);
                    }
                }
            }
        }
        let walked =
            if wall && (!walk_tids.is_empty() || !reused.is_empty() || !self.scopes.is_empty()) {
                source.stacks_with(&walk_tids)
            } else {
                source.stacks()
            };
        let stacks = match walked {
            Ok(stacks) => stacks,
            Err(SourceError::Read { .. }) if source.alive() => {
                self.stats.failed_walks += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // A failed walk leaves its time to the next tick's samples.
        self.last_tick_ns = ts_ns;
        // Right after the walk, which read the GIL holder's stack: a
        // collection runs on the thread holding the GIL.
        let collecting = self.collector(source);
        if walk.is_multiple_of(FORGET_AFTER_WALKS) {
            self.known_tids
                .retain(|_, seen| walk - *seen < FORGET_AFTER_WALKS);
            let known = &self.known_tids;
            self.threads
                .retain(|tid, m| walk - m.tick < FORGET_AFTER_WALKS && known.contains_key(tid));
            self.cpu.retain(|tid| known.contains_key(&tid));
            self.syscalls.retain(|tid| known.contains_key(&tid));
            self.gil_waiters.retain(|tid| known.contains_key(tid));
            self.last_reading.retain(|tid, _| known.contains_key(tid));
        }
        // Requests seen on a thread this tick (or on a thread left for a
        // later tick): they are not suspended.
        let mut on_thread: Vec<u64> = skipped;
        let mut walked_tids: Vec<u32> = Vec::new();
        for stack in stacks {
            let tid = stack.tid.or_else(|| slots.tid_of_pthread(stack.pthread_id));
            if let Some(tid) = tid {
                self.known_tids.insert(tid, walk);
                walked_tids.push(tid);
            }
            let before = tid.and_then(|t| self.slot_before(t));
            let runs_request = wall && before.is_some_and(|b| b.request_id != 0);
            if !stack.active && !runs_request {
                continue;
            }
            let (in_gc, gc_collections) = if stack.owns_gil {
                self.last_holder = tid;
                (collecting, std::mem::take(&mut self.gc_pending))
            } else {
                (false, 0)
            };
            let (request_id, mut quality) = self.attribute(tid, slots);
            let torn = self.torn.is_torn(stack.pthread_id, &stack.frames);
            if torn {
                quality = Quality::Torn;
            }
            let reading = tid.and_then(|t| cpu_now.get(&t).copied().flatten());
            let state = if runs_request {
                // Before 3.11 a walker may not know the native tid to ask
                // `/proc`; the sampler has asked it for every request thread.
                let on_cpu = stack.on_cpu.or(reading.map(|r| r.running));
                let state = match thread_state(stack.owns_gil, on_cpu, stack.active) {
                    State::Blocked if !stack.owns_gil && self.waits_for_gil(source, tid) => {
                        State::GilWait
                    }
                    // Runnable without the GIL right after waiting for it:
                    // woken (by the holder, or by its own timeout to ask for
                    // the GIL) and still on the way to taking it.
                    State::Native if tid.is_some_and(|t| self.gil_waiters.contains(&t)) => {
                        State::GilWait
                    }
                    state => state,
                };
                if let Some(tid) = tid {
                    if state == State::GilWait {
                        self.gil_waiters.insert(tid);
                    } else {
                        self.gil_waiters.remove(&tid);
                    }
                }
                state
            } else {
                State::Python
            };
            let ThreadStack { frames, .. } = stack;
            let stack: Stack = frames.into();
            let cpu_ns = self.cpu_of(tid, before, reading, state, interval_ns);
            if let (true, Some(tid), Some(b)) = (runs_request, tid, before) {
                self.remember(
                    tid,
                    b,
                    cpu_now.get(&tid).copied().flatten(),
                    Some((stack.clone(), torn)),
                    walk,
                );
            }
            if request_id != 0 {
                on_thread.push(request_id);
            }
            self.emit(
                sink,
                Sample {
                    pid,
                    tid: tid.unwrap_or(0),
                    ts_ns,
                    request_id,
                    quality,
                    state,
                    interval_ns,
                    slot_seq: before.map_or(0, |b| b.seq),
                    cpu_ns,
                    in_gc,
                    gc_collections,
                    stack: if runs_request {
                        with_state_leaf(&stack, state)
                    } else {
                        stack
                    },
                },
            );
        }
        // Threads that had not run since the last tick: blocked all along,
        // with the stack they had (unless the walk read them anyway).
        for (tid, stack, torn) in reused {
            if walked_tids.contains(&tid) {
                continue;
            }
            self.known_tids.insert(tid, walk);
            let Some(b) = self.slot_before(tid) else {
                continue;
            };
            self.stats.walks_saved += 1;
            let (request_id, mut quality) = self.attribute(Some(tid), slots);
            if torn {
                quality = Quality::Torn;
            }
            self.remember(
                tid,
                b,
                cpu_now.get(&tid).copied().flatten(),
                Some((stack.clone(), torn)),
                walk,
            );
            on_thread.push(request_id);
            let state = if self.waits_for_gil(source, Some(tid)) {
                self.gil_waiters.insert(tid);
                State::GilWait
            } else {
                self.gil_waiters.remove(&tid);
                State::Blocked
            };
            self.emit(
                sink,
                Sample {
                    pid,
                    tid,
                    ts_ns,
                    request_id,
                    quality,
                    state,
                    interval_ns,
                    slot_seq: b.seq,
                    cpu_ns: 0,
                    in_gc: false,
                    gc_collections: 0,
                    stack: with_state_leaf(&stack, state),
                },
            );
        }
        if wall && !self.scopes.is_empty() {
            self.suspended(source, slots, sink, &on_thread, pid, ts_ns, interval_ns)?;
        }
        Ok(())
    }

    /// Whether request thread `tid`, asleep, sleeps in a futex of the
    /// GIL's state: waiting to take the GIL (or, having dropped it on
    /// request, for another thread to take it), not blocked in its own call.
    fn waits_for_gil(&mut self, source: &dyn StackSource, tid: Option<u32>) -> bool {
        let region = self.gil_region.get_or_insert_with(|| source.gil_region());
        let (Some(region), Some(tid)) = (region.as_ref(), tid) else {
            return false;
        };
        let mut syscall = [0u8; 256];
        self.syscalls
            .read(source.pid(), tid, &mut syscall)
            .and_then(|n| futex_word(&syscall[..n]))
            .is_some_and(|word| region.contains(&word))
    }

    /// Whether a collection is running now. The collections to charge
    /// join those waiting for a GIL holder's sample: one seen running is
    /// charged at once (to the thread running it, which may end its
    /// request right after), one that began and ended between two ticks
    /// when the count says it finished.
    fn collector(&mut self, source: &mut dyn StackSource) -> bool {
        // With no request in flight nothing is charged: no read (~2 µs),
        // and the count starts again at the next request.
        let idle = self.options.wall_clock
            && self.scopes.is_empty()
            && self.before.iter().all(|(_, s)| s.request_id == 0);
        let now = if idle { None } else { source.collector() };
        let Some(now) = now else {
            self.gc_seen = None;
            self.gc_pending = 0;
            self.gc_running_counted = false;
            return false;
        };
        if let Some(seen) = self.gc_seen {
            // A count that went back, or leapt, is torn or garbage memory.
            let finished = now.collections.saturating_sub(seen);
            let mut finished = u32::try_from(finished)
                .unwrap_or(0)
                .min(MAX_COLLECTIONS_PER_TICK);
            if self.gc_running_counted && finished > 0 {
                // The one charged when it was seen running.
                finished -= 1;
                self.gc_running_counted = false;
            }
            if now.collecting && !self.gc_running_counted {
                finished += 1;
                self.gc_running_counted = true;
            }
            self.gc_pending = self.gc_pending.saturating_add(finished);
        }
        self.gc_seen = Some(now.collections);
        now.collecting
    }

    fn slot_before(&self, tid: u32) -> Option<SlotSnapshot> {
        self.before.iter().find(|(t, _)| *t == tid).map(|(_, s)| *s)
    }

    fn remember(
        &mut self,
        tid: u32,
        slot: SlotSnapshot,
        cpu: Option<Reading>,
        stack: Option<(Stack, bool)>,
        tick: u64,
    ) {
        self.threads.insert(
            tid,
            ThreadMemo {
                slot,
                cpu,
                stack,
                tick,
            },
        );
    }

    /// The CPU time a request thread's sample stands for, from the
    /// kernel's count for the thread since it was last read. When the
    /// thread ran only this request meanwhile (its slot did not change) the
    /// whole difference is the request's: a running thread's count lags by
    /// up to a scheduler tick, and what lags is counted at a later tick of
    /// the same step. Otherwise the interval was shared with other work, and
    /// a sample on a CPU takes at most its interval. With no reading at the
    /// previous tick, a sample on a CPU stands for its interval.
    fn cpu_of(
        &self,
        tid: Option<u32>,
        before: Option<SlotSnapshot>,
        now: Option<Reading>,
        state: State,
        interval_ns: u64,
    ) -> u64 {
        let memo = tid.and_then(|t| self.threads.get(&t));
        match (memo.and_then(|m| m.cpu.map(|c| (m.slot, c))), now, before) {
            (Some((slot, then)), Some(now), Some(b)) => {
                let ran = now.cpu_ns.saturating_sub(then.cpu_ns);
                if slot == b {
                    ran
                } else if state.on_cpu() {
                    ran.min(interval_ns)
                } else {
                    0
                }
            }
            _ if state.on_cpu() => interval_ns,
            _ => 0,
        }
    }

    fn emit(&mut self, sink: &mut dyn SampleSink, sample: Sample) {
        self.count(sample.quality);
        sink.sample(sample);
    }

    /// One sample per in-flight request seen on no thread: its most
    /// recently suspended coroutine's await chain, read once per suspension.
    #[allow(clippy::too_many_arguments)]
    fn suspended(
        &mut self,
        source: &mut dyn StackSource,
        slots: &mut dyn RequestSlots,
        sink: &mut dyn SampleSink,
        on_thread: &[u64],
        pid: u32,
        ts_ns: u64,
        interval_ns: u64,
    ) -> Result<(), SourceError> {
        let mut latest: HashMap<u64, ScopeSnapshot> = HashMap::new();
        for scope in self.scopes.iter().filter(|s| s.suspended()) {
            if on_thread.contains(&scope.request_id) {
                continue;
            }
            let best = latest.entry(scope.request_id).or_insert(*scope);
            if scope.order > best.order {
                *best = *scope;
            }
        }
        let mut read_any = false;
        let mut found = Vec::with_capacity(latest.len());
        // Requests waiting longest for a sample first: with many requests
        // suspending and resuming every millisecond, only a few new chains
        // are read per tick and the rest wait their turn (the join gives
        // each sample the time since the request's previous one).
        let mut order: Vec<ScopeSnapshot> = latest.into_values().collect();
        order.sort_by_key(|s| {
            (
                self.sampled.get(&s.request_id).copied().unwrap_or(0),
                s.request_id,
            )
        });
        let mut reads_left = MAX_CHAIN_READS;
        let walk = self.stats.walks;
        for scope in order {
            let key = (scope.coroutine, scope.step);
            let known = self.chains.get(&key).cloned();
            if known.is_none() && reads_left == 0 {
                continue;
            }
            let chain = match known {
                // Still waiting on its future, or is the future done and the
                // loop not back to it yet? Three small reads, every few ticks.
                Some(Some(mut held))
                    if held.state == State::Awaiting
                        && held.awaited != 0
                        && (walk + scope.request_id).is_multiple_of(READY_EVERY) =>
                {
                    if source.awaited_done(held.awaited)? == Some(true) {
                        held.state = State::Queued;
                        held.stack = with_leaf(&held.stack, LOOP_BUSY_FRAME);
                        self.chains.insert(key, Some(held.clone()));
                    }
                    Some(held)
                }
                Some(chain) => chain,
                None => {
                    read_any = true;
                    reads_left -= 1;
                    self.stats.chains_read += 1;
                    let read = match source.await_chain(scope.coroutine) {
                        Ok(Some(chain)) if !chain.running && !chain.frames.is_empty() => {
                            let (leaf, state) = await_leaf(&chain);
                            let awaited = chain.awaited;
                            let mut frames = chain.frames;
                            frames.push(leaf);
                            Some(Suspension {
                                stack: Stack::from(frames),
                                state,
                                awaited,
                            })
                        }
                        Ok(None) => return Ok(()),
                        // Read while it resumed, or torn: read it again next tick.
                        Ok(Some(_)) | Err(SourceError::Read { .. }) => None,
                        Err(e) => return Err(e),
                    };
                    if read.is_some() {
                        self.chains.insert(key, read.clone());
                    }
                    read
                }
            };
            match chain {
                Some(held) => found.push((scope, held.stack, held.state, true)),
                // Unreadable this time (read while it moved, or torn): its
                // time still counts, its stack is charged to nothing.
                None => found.push((scope, Stack::from(Vec::new()), State::Awaiting, false)),
            }
        }
        // A coroutine that resumed while its chain was read may have moved:
        // such a sample is counted, never charged (as a switched walk).
        if read_any {
            slots.scopes(&mut self.scopes);
        }
        let live: Vec<(u64, u64)> = self.scopes.iter().map(|s| (s.coroutine, s.step)).collect();
        let live_requests: Vec<u64> = self.scopes.iter().map(|s| s.request_id).collect();
        self.chains.retain(|key, _| live.contains(key));
        self.sampled.retain(|rid, _| live_requests.contains(rid));
        for (scope, stack, state, read) in found {
            let still = live.contains(&(scope.coroutine, scope.step));
            self.stats.suspended += 1;
            self.sampled.insert(scope.request_id, walk);
            let quality = match (read, still) {
                (false, _) => Quality::Torn,
                (true, true) => Quality::Clean,
                (true, false) => Quality::Switched,
            };
            self.emit(
                sink,
                Sample {
                    pid,
                    tid: 0,
                    ts_ns,
                    request_id: scope.request_id,
                    quality,
                    state,
                    interval_ns,
                    slot_seq: 0,
                    cpu_ns: 0,
                    in_gc: false,
                    gc_collections: 0,
                    stack,
                },
            );
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
            sink.turn(busy);
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

/// What a thread running a request is doing, from its GIL ownership and
/// what the OS says (`active`, py-spy's guess from the leaf frame, only
/// when the OS was not asked).
fn thread_state(owns_gil: bool, on_cpu: Option<bool>, active: bool) -> State {
    match (owns_gil, on_cpu) {
        (true, Some(false)) => State::Blocked,
        (true, _) => State::Python,
        (false, Some(true)) => State::Native,
        (false, Some(false)) => State::Blocked,
        (false, None) if active => State::Native,
        (false, None) => State::Blocked,
    }
}

/// `stack` with its leaf frame replaced by the synthetic `leaf`.
fn with_leaf(stack: &Stack, leaf: &str) -> Stack {
    let keep = stack.len().saturating_sub(1);
    stack[..keep]
        .iter()
        .cloned()
        .chain(std::iter::once(Frame::synthetic(leaf)))
        .collect::<Vec<Frame>>()
        .into()
}

/// `stack` with the leaf frame that names `state` (none for Python).
fn with_state_leaf(stack: &Stack, state: State) -> Stack {
    let leaf = match state {
        State::Native => NATIVE_FRAME,
        State::Blocked => BLOCKED_FRAME,
        State::GilWait => GIL_WAIT_FRAME,
        _ => return stack.clone(),
    };
    stack
        .iter()
        .cloned()
        .chain(std::iter::once(Frame::synthetic(leaf)))
        .collect::<Vec<Frame>>()
        .into()
}
