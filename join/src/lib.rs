//! The join: two streams meet here.
//!
//! * the marker's events say when each request started and ended;
//! * the sampler's samples each carry the request their thread was running.
//!
//! The marker also reports each SQL statement and outgoing HTTP call with the
//! request that issued it; their wall time joins the request's flame graph
//! as weighted synthetic frames under the code that waited (`waits.rs`).
//!
//! Samples are aggregated per request and stack as they arrive. A request is
//! handed on once its end event is in and a grace period has passed, so that
//! samples taken just before the end but delivered after it still count.
//! Each sample is also checked against its request's time window: the slot
//! said one thing, the events another, and a sample that falls outside its
//! request's window is not charged to it.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod gc;
mod rss;
mod sql;
mod waits;
mod wall;

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use timeglass_model::{
    Frame, HttpCall, Memory, ProfiledRequest, Quality, Request, RequestContext, Sample, SqlQuery,
    Stack, StackCount, State, Tick, Timeline, BACKGROUND_FRAME,
};
use timeglass_wire::{
    Event, RequestEnd, RequestStart, END_CANCELLED, END_ERROR, END_NO_RESPONSE, PHASE_HANDLER,
    PHASE_REQUEST, PHASE_RESPONSE,
};

pub use sql::{label as sql_label, normalize as normalize_sql};
use waits::Leaf;
pub use waits::CALLER_FRAMES;
use wall::{Charged, Prefixes, Recent, Window};

/// How long after a request's end its late samples are still awaited.
pub const GRACE_NS: u64 = 200_000_000;

/// How the join weighs and judges what requests waited on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinOptions {
    /// The sampling rate while requests run: a wait of one second weighs
    /// this many samples.
    pub rate_hz: u32,
    /// A request running the same normalised statement this many times or
    /// more is flagged as a likely N+1.
    pub n_plus_one: u64,
    /// An `async def` request that holds the event loop's thread this long
    /// without yielding is flagged as blocking the loop.
    pub loop_block_ns: u64,
}

pub mod defaults {
    pub const RATE_HZ: u32 = 1000;
    pub const N_PLUS_ONE: u64 = 5;
    pub const LOOP_BLOCK_MS: u64 = 20;
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            rate_hz: defaults::RATE_HZ,
            n_plus_one: defaults::N_PLUS_ONE,
            loop_block_ns: defaults::LOOP_BLOCK_MS * 1_000_000,
        }
    }
}

/// Counters for the session summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// Samples charged to a request.
    pub request_samples: u64,
    /// Samples taken outside any request.
    pub outside_samples: u64,
    /// Torn samples (charged to nothing).
    pub torn_samples: u64,
    /// Samples whose thread switched requests during the walk (charged to nothing).
    pub unattributable: u64,
    /// Samples whose slot named a request but whose time fell outside it.
    pub out_of_window: u64,
    /// Requests whose end never arrived (the process stopped mid-request).
    pub unfinished: u64,
    /// Events or samples for requests whose start was lost.
    pub orphans: u64,
    /// Request starts read (each a request that is stored, unless the
    /// recording is interrupted before).
    pub requests_started: u64,
}

#[derive(Default)]
struct Pending {
    start: Option<RequestStart>,
    end: Option<RequestEnd>,
    /// Charged samples with their times: whether each belongs to the
    /// response or the background stage is known only once the end arrives.
    samples: Vec<Charged>,
    switched: u64,
    torn: u64,
    /// Switched and torn samples: never charged, but their time counts.
    time_only: Vec<Charged>,
    last_sample_ns: u64,
    queries: Vec<SqlQuery>,
    calls: Vec<HttpCall>,
    context: Option<RequestContext>,
    /// Garbage collections on its threads: `(tid, start, end)`.
    gcs: Vec<(u32, u64, u64)>,
    /// Sampled allocations: `(time, stack, bytes)`.
    allocs: Vec<(u64, Stack, u64)>,
}

/// The join of one recording session (any number of processes).
#[derive(Default)]
pub struct Join {
    options: JoinOptions,
    pending: HashMap<(u32, u64), Pending>,
    outside: FxHashMap<(u32, Stack), u64>,
    /// The same samples at their times, per process.
    outside_timeline: FxHashMap<u32, TimelineBuilder>,
    stacks: waits::Stacks,
    prefixes: Prefixes,
    recent: Recent,
    rss: rss::Readings,
    /// Processes whose marker samples allocations (one sample seen).
    sampling_allocs: std::collections::HashSet<u32>,
    stats: JoinStats,
}

impl Join {
    pub fn new() -> Self {
        Join::default()
    }

    pub fn with_options(options: JoinOptions) -> Self {
        Join {
            options,
            ..Join::default()
        }
    }

    pub fn stats(&self) -> JoinStats {
        self.stats
    }

    /// Takes one marker event from process `pid`.
    pub fn event(&mut self, pid: u32, event: Event) {
        match event {
            Event::RequestStart(start) => {
                self.stats.requests_started += 1;
                let key = (pid, start.request_id);
                self.rss.started(pid, start.ts_ns);
                self.pending.entry(key).or_default().start = Some(start);
            }
            Event::RequestEnd(end) => {
                let key = (pid, end.request_id);
                self.pending.entry(key).or_default().end = Some(end);
            }
            Event::RequestContext(c) => {
                let key = (pid, c.request_id);
                let context = self
                    .pending
                    .entry(key)
                    .or_default()
                    .context
                    .get_or_insert_default();
                add_context(context, c);
            }
            Event::Query(q) => {
                let key = (pid, q.request_id);
                let query = self.stacks.query(pid, q);
                self.pending.entry(key).or_default().queries.push(query);
            }
            Event::Call(c) => {
                let key = (pid, c.request_id);
                let call = self.stacks.call(pid, c);
                self.pending.entry(key).or_default().calls.push(call);
            }
            Event::Gc(g) => {
                let key = (pid, g.request_id);
                let gcs = &mut self.pending.entry(key).or_default().gcs;
                gcs.push((g.tid, g.start_ns, g.end_ns.max(g.start_ns)));
            }
            Event::Alloc(a) => {
                self.sampling_allocs.insert(pid);
                let key = (pid, a.request_id);
                let stack = self.stacks.stack_of(pid, a.stack);
                let allocs = &mut self.pending.entry(key).or_default().allocs;
                allocs.push((a.ts_ns, stack, a.bytes));
            }
            Event::RequestBegin(_) | Event::RequestFinish(_) => {
                for part in event.into_parts() {
                    self.event(pid, part);
                }
            }
            Event::Unknown(_) => {}
        }
    }

    /// Takes one reading of process `pid`'s resident memory (RSS), in
    /// time order per process.
    pub fn rss(&mut self, pid: u32, ts_ns: u64, bytes: u64) {
        self.rss.push(pid, ts_ns, bytes);
    }

    /// Takes one sample.
    pub fn sample(&mut self, sample: Sample) {
        if sample.quality == Quality::Torn {
            self.stats.torn_samples += 1;
            if sample.request_id != 0 {
                let pending = self
                    .pending
                    .entry((sample.pid, sample.request_id))
                    .or_default();
                pending.torn += 1;
                // The stack is damaged, but the time and what the thread was
                // doing (its GIL and run state) are the request's.
                pending.time_only.push(time_only(&sample));
            }
            return;
        }
        if sample.tid != 0 {
            self.prefixes.learn(sample.pid, &sample.stack);
        }
        if sample.request_id == 0 {
            self.charge_outside(sample.pid, Charged::of(&sample, sample.stack.clone()));
            return;
        }
        if sample.quality == Quality::Switched {
            // The thread changed requests while its stack was read: the stack
            // may be either request's, or the loop's. Counted, never charged:
            // samples whose slot did not change are the exact ones.
            // Its time goes to the request it ran when the walk began.
            self.stats.unattributable += 1;
            let pending = self
                .pending
                .entry((sample.pid, sample.request_id))
                .or_default();
            pending.switched += 1;
            pending.time_only.push(time_only(&sample));
            return;
        }
        let pending = self
            .pending
            .entry((sample.pid, sample.request_id))
            .or_default();
        let before_start = pending
            .start
            .as_ref()
            .is_some_and(|s| sample.ts_ns < s.ts_ns);
        let after_end = pending.end.as_ref().is_some_and(|e| sample.ts_ns > e.ts_ns);
        if before_start || after_end {
            self.stats.out_of_window += 1;
            self.charge_outside(sample.pid, Charged::of(&sample, sample.stack.clone()));
            return;
        }
        pending.last_sample_ns = pending.last_sample_ns.max(sample.ts_ns);
        let charged = Charged::of(&sample, sample.stack.clone());
        if charged.suspended() {
            if let Some(root) = charged.stack.first() {
                self.prefixes.want(sample.pid, root);
            }
        }
        pending.samples.push(charged);
        self.stats.request_samples += 1;
    }

    fn charge_outside(&mut self, pid: u32, sample: Charged) {
        self.stats.outside_samples += 1;
        let timeline = self.outside_timeline.entry(pid).or_default();
        timeline.push(sample.ts_ns, sample.tid, sample.state, &sample.stack);
        *self.outside.entry((pid, sample.stack)).or_insert(0) += 1;
    }

    /// Requests that ended more than [`GRACE_NS`] before `now_ns`.
    pub fn finished(&mut self, now_ns: u64) -> Vec<ProfiledRequest> {
        let done: Vec<(u32, u64)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.end.as_ref().is_some_and(|e| e.ts_ns + GRACE_NS <= now_ns))
            .map(|(k, _)| *k)
            .collect();
        let out = self.settle(done);
        self.trim_rss(now_ns);
        out
    }

    /// Drops the RSS readings no pending request can need any more.
    fn trim_rss(&mut self, now_ns: u64) {
        for pid in self.rss.pids() {
            let oldest = self
                .pending
                .iter()
                .filter(|(k, _)| k.0 == pid)
                .filter_map(|(_, p)| p.start.as_ref().map(|s| s.ts_ns))
                .min()
                .unwrap_or(now_ns);
            self.rss.trim(pid, oldest.min(now_ns));
        }
    }

    /// Everything still pending, at the end of a session or when process
    /// `pid` (or every process, with `None`) has exited.
    pub fn flush(&mut self, pid: Option<u32>) -> Vec<ProfiledRequest> {
        let keys: Vec<(u32, u64)> = self
            .pending
            .keys()
            .filter(|k| pid.is_none_or(|p| k.0 == p))
            .copied()
            .collect();
        if let Some(pid) = pid {
            self.stacks.forget(pid);
            self.prefixes.forget(pid);
        }
        let out = self.settle(keys);
        if let Some(pid) = pid {
            self.rss.forget(pid);
            self.sampling_allocs.remove(&pid);
        }
        out
    }

    fn settle(&mut self, keys: Vec<(u32, u64)>) -> Vec<ProfiledRequest> {
        let mut out = Vec::new();
        for key in keys {
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            if p.start.is_none() {
                // The start was lost from the ring (overwritten before it was
                // read): keep the samples, outside any request.
                self.stats.orphans += 1;
                for charged in p.samples {
                    self.charge_outside(key.0, charged);
                    self.stats.request_samples -= 1;
                }
                continue;
            }
            out.push(self.finish(key.0, p));
        }
        out.sort_by_key(|r| r.request.start_ns);
        out
    }

    /// Samples outside any request since the last call, at their times,
    /// per process (the samples [`Self::take_outside`] counts).
    pub fn take_outside_timeline(&mut self) -> Vec<(u32, Timeline)> {
        let mut out: Vec<(u32, Timeline)> = self
            .outside_timeline
            .drain()
            .map(|(pid, builder)| (pid, builder.finish()))
            .collect();
        out.sort_by_key(|(pid, _)| *pid);
        out
    }

    /// Samples outside any request since the last call, per process.
    pub fn take_outside(&mut self) -> Vec<(u32, StackCount)> {
        self.outside
            .drain()
            .map(|((pid, stack), samples)| (pid, StackCount { stack, samples }))
            .collect()
    }

    fn finish(&mut self, pid: u32, p: Pending) -> ProfiledRequest {
        let start = p.start.expect("only requests with a start are finished");
        let incomplete = p.end.is_none();
        let (end_ns, response_ns, status, flags, route) = match p.end {
            Some(e) => (e.ts_ns, e.response_ns, e.status, e.flags, e.route),
            None => {
                self.stats.unfinished += 1;
                (
                    p.last_sample_ns.max(start.ts_ns),
                    0,
                    0,
                    END_CANCELLED | END_NO_RESPONSE,
                    String::new(),
                )
            }
        };
        let response_end_ns = Some(response_ns).filter(|&t| t != 0);
        let alloc_bytes: u64 = p.allocs.iter().map(|a| a.2).sum();
        let mut samples = p.samples;
        samples.sort_by_key(|s| s.ts_ns);
        let mut time_only = p.time_only;
        time_only.retain(|s| s.ts_ns >= start.ts_ns && s.ts_ns <= end_ns);
        wall::nearest_tick(&mut samples, &mut time_only, start.ts_ns, end_ns);
        let sql_windows: Vec<(u64, u64)> =
            p.queries.iter().map(|q| (q.start_ns, q.end_ns)).collect();
        let http_windows: Vec<(u64, u64)> =
            p.calls.iter().map(|c| (c.start_ns, c.end_ns)).collect();
        let waits_at: Vec<(u64, u64)> = sql_windows.iter().chain(&http_windows).copied().collect();
        let response_until = response_end_ns.unwrap_or(end_ns);
        let cpu_ns = wall::cpu_within(samples.iter().chain(&time_only), start.ts_ns, end_ns);
        let loop_block = wall::loop_block(&samples, start.tid, self.options.loop_block_ns).map(
            |(mut block, block_end)| {
                block.delayed =
                    self.delayed_by(pid, start.tid, start.request_id, block.start_ns, block_end);
                block
            },
        );
        // Off-CPU samples inside a timed query or call are that wait: its
        // weighted `[sql]`/`[http]` stack stands for them.
        samples.retain(|s| !wall::inside_wait(s, &waits_at));
        time_only.retain(|s| !wall::inside_wait(s, &waits_at));
        // Samples of a thread while it collected garbage: the collection's
        // time (in the breakdown), shown under a `[gc]` leaf.
        for s in samples.iter_mut().filter(|s| gc::inside(s, &p.gcs)) {
            s.stack = gc::with_leaf(&s.stack);
        }
        let in_response: Vec<Charged> = samples
            .iter()
            .chain(&time_only)
            .filter(|s| s.from_ns < response_until && !gc::inside(s, &p.gcs))
            .cloned()
            .collect();
        let mut breakdown = wall::breakdown(
            &in_response,
            &sql_windows,
            &http_windows,
            start.ts_ns,
            response_until,
        );
        let every = || samples.iter().chain(&time_only);
        let (gc_collections, gc_pause_ns) = gc::of_request(&p.gcs, every(), start.ts_ns, end_ns);
        breakdown.gc_ns = gc::of_request(&p.gcs, every(), start.ts_ns, response_until).1;
        // A chain whose root was first seen after the thread samples that
        // show what runs it learns from this request's own thread samples.
        if samples.iter().any(Charged::suspended) {
            for s in samples.iter().filter(|s| !s.suspended()) {
                self.prefixes.learn(pid, &s.stack);
            }
        }
        // A stack weighs the wall time its samples stood for, in sampling
        // periods (the unit waits are weighed in): a tick that came late
        // stands for more than one period.
        let period_ns = 1_000_000_000 / u64::from(self.options.rate_hz.max(1));
        let mut timeline = TimelineBuilder::default();
        let mut weights: FxHashMap<Stack, u64> = FxHashMap::default();
        for charged in samples {
            let stack = if charged.suspended() {
                self.prefixes.apply(pid, &charged.stack)
            } else {
                charged.stack
            };
            let stack = match response_end_ns {
                Some(sent) if charged.ts_ns > sent => under_background(&stack),
                _ => stack,
            };
            timeline.push(charged.ts_ns, charged.tid, charged.state, &stack);
            *weights.entry(stack).or_insert(0) += charged.interval_ns;
        }
        let counts: FxHashMap<Stack, u64> = weights
            .into_iter()
            .map(|(stack, ns)| (stack, ((ns + period_ns / 2) / period_ns).max(1)))
            .collect();
        self.recent.push(Window {
            pid,
            tid: start.tid,
            marker_id: start.request_id,
            start_ns: start.ts_ns,
            end_ns,
        });
        let mut stacks: Vec<StackCount> = counts
            .into_iter()
            .map(|(stack, samples)| StackCount { stack, samples })
            .collect();
        stacks.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then_with(|| a.stack.cmp(&b.stack))
        });
        let timeline = timeline.in_order_of(&stacks);
        let mut queries = p.queries;
        let mut calls = p.calls;
        queries.sort_by_key(|q| q.start_ns);
        calls.sort_by_key(|c| c.start_ns);
        let timed = queries
            .iter()
            .map(|q| (&q.stack, Leaf::Sql(&q.normalized), q.start_ns, q.end_ns))
            .chain(calls.iter().map(|c| {
                let leaf = Leaf::Http(&c.method, &c.url);
                (&c.stack, leaf, c.start_ns, c.end_ns)
            }));
        let waits = self
            .stacks
            .weigh(timed, response_end_ns, self.options.rate_hz);
        let n_plus_one = waits::n_plus_one(&queries, self.options.n_plus_one);
        ProfiledRequest {
            request: Request {
                marker_id: start.request_id,
                pid,
                tid: start.tid,
                method: start.method,
                path: start.path,
                route: Some(route).filter(|r| !r.is_empty()),
                status: Some(status).filter(|s| *s != 0),
                errored: flags & END_ERROR != 0,
                cancelled: flags & END_CANCELLED != 0,
                start_ns: start.ts_ns,
                end_ns,
                response_end_ns,
            },
            stacks,
            switched_samples: p.switched,
            torn_samples: p.torn,
            queries,
            calls,
            waits,
            n_plus_one,
            context: p.context,
            breakdown,
            cpu_ns,
            loop_block,
            incomplete,
            alloc_stacks: allocations(p.allocs, response_end_ns),
            timeline,
            memory: Memory {
                alloc_bytes: self.sampling_allocs.contains(&pid).then_some(alloc_bytes),
                gc_collections,
                gc_pause_ns,
                ..self.rss.of(pid, start.ts_ns, end_ns)
            },
        }
    }

    /// Requests of process `pid` received on loop thread `tid` (other than
    /// `rid`) that were in flight during `[from, to)`: a loop block delayed
    /// them.
    fn delayed_by(&self, pid: u32, tid: u32, rid: u64, from: u64, to: u64) -> Vec<u64> {
        let pending = self.pending.iter().filter_map(|(&(p, _), pending)| {
            let start = pending.start.as_ref()?;
            Some(Window {
                pid: p,
                tid: start.tid,
                marker_id: start.request_id,
                start_ns: start.ts_ns,
                end_ns: pending.end.as_ref().map_or(u64::MAX, |e| e.ts_ns),
            })
        });
        let mut ids: Vec<u64> = self
            .recent
            .iter()
            .copied()
            .chain(pending)
            .filter(|w| w.pid == pid && w.tid == tid && w.marker_id != rid)
            .filter(|w| w.start_ns < to && w.end_ns > from)
            .map(|w| w.marker_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// A [`Timeline`] being built, each distinct stack once.
#[derive(Default)]
struct TimelineBuilder {
    index: FxHashMap<Stack, u32>,
    timeline: Timeline,
}

impl TimelineBuilder {
    fn push(&mut self, ts_ns: u64, tid: u32, state: State, stack: &Stack) {
        let stacks = &mut self.timeline.stacks;
        let at = *self.index.entry(stack.clone()).or_insert_with(|| {
            stacks.push(stack.clone());
            stacks.len() as u32 - 1
        });
        let tick = Tick {
            ts_ns,
            tid,
            state,
            stack: at,
        };
        self.timeline.ticks.push(tick);
    }

    /// In time order (orphans' samples arrive late).
    fn finish(mut self) -> Timeline {
        self.timeline.ticks.sort_by_key(|t| t.ts_ns);
        self.timeline
    }

    /// With its stacks in the order of `stacks` (the same set, as counted),
    /// sharing their `Arc`s.
    fn in_order_of(self, stacks: &[StackCount]) -> Timeline {
        let at: FxHashMap<&Stack, u32> = stacks
            .iter()
            .enumerate()
            .map(|(i, s)| (&s.stack, i as u32))
            .collect();
        let moved: Vec<u32> = self.timeline.stacks.iter().map(|s| at[s]).collect();
        let mut ticks = self.timeline.ticks;
        for tick in &mut ticks {
            tick.stack = moved[tick.stack as usize];
        }
        ticks.sort_by_key(|t| t.ts_ns);
        Timeline {
            stacks: stacks.iter().map(|s| s.stack.clone()).collect(),
            ticks,
        }
    }
}

/// Adds one phase of a request's context to what arrived before.
fn add_context(context: &mut RequestContext, event: timeglass_wire::RequestContext) {
    match event.phase {
        PHASE_REQUEST => {
            context.request_headers = event.headers;
            context.query = event.query;
        }
        PHASE_RESPONSE => {
            context.response_headers = event.headers;
            context.body = String::from_utf8_lossy(&event.body).into_owned();
            context.body_bytes = event.body_bytes;
            context.response_start_ns = Some(event.ts_ns);
        }
        // The first call only: an app that calls into FastAPI twice for one
        // request still entered its handler once, first.
        PHASE_HANDLER => {
            context.handler_start_ns.get_or_insert(event.ts_ns);
        }
        _ => {}
    }
}

/// Sampled allocations summed per stack (bytes), most first; those made
/// after the response was sent under `[background]`.
fn allocations(allocs: Vec<(u64, Stack, u64)>, response_end_ns: Option<u64>) -> Vec<StackCount> {
    let mut bytes: FxHashMap<Stack, u64> = FxHashMap::default();
    for (ts_ns, stack, n) in allocs {
        let stack = match response_end_ns {
            Some(sent) if ts_ns > sent => under_background(&stack),
            _ => stack,
        };
        *bytes.entry(stack).or_insert(0) += n;
    }
    let mut out: Vec<StackCount> = bytes
        .into_iter()
        .map(|(stack, samples)| StackCount { stack, samples })
        .collect();
    out.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.stack.cmp(&b.stack))
    });
    out
}

/// `stack` under a `[background]` root: the request's background stage.
fn under_background(stack: &Stack) -> Stack {
    std::iter::once(Frame::synthetic(BACKGROUND_FRAME))
        .chain(stack.iter().cloned())
        .collect::<Vec<Frame>>()
        .into()
}

/// A switched or torn sample, kept for its time and state only.
fn time_only(sample: &Sample) -> Charged {
    Charged::of(sample, std::sync::Arc::new([]))
}
