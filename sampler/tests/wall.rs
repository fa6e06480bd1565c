//! Wall-clock sampling: every in-flight request gets a sample at every
//! tick, on a thread (with or without the GIL) or suspended at an await.

use std::collections::HashMap;

use timeglass_model::{Frame, Quality, Sample, State, BLOCKED_FRAME, NATIVE_FRAME};
use timeglass_sampler::{
    AwaitChain, Collector, RequestSlots, Sampler, SamplerOptions, SourceError, StackSource,
    ThreadStack,
};
use timeglass_wire::{ScopeSnapshot, SlotSnapshot};

fn frame(name: &str, file: &str) -> Frame {
    Frame {
        name: name.into(),
        filename: file.into(),
        short: file.into(),
        line: 3,
    }
}

fn thread(tid: u32, owns_gil: bool, on_cpu: Option<bool>, leaf: &str) -> ThreadStack {
    ThreadStack {
        tid: Some(tid),
        pthread_id: u64::from(tid) * 1000,
        active: on_cpu.unwrap_or(true),
        owns_gil,
        on_cpu,
        frames: vec![
            frame("_bootstrap", "/usr/lib/python3.12/threading.py"),
            frame(leaf, "app.py"),
        ],
    }
}

/// A process whose threads and coroutines hold still: every walk gives the
/// same stacks, every chain read the same chain.
#[derive(Default)]
struct Still {
    threads: Vec<ThreadStack>,
    chains: HashMap<u64, AwaitChain>,
    asked: Vec<Vec<u32>>,
    chain_reads: usize,
    /// Futures that are done.
    done: Vec<u64>,
    /// The collector's readings, one per tick.
    collector: std::collections::VecDeque<Collector>,
}

impl StackSource for Still {
    fn pid(&self) -> u32 {
        u32::MAX - 11
    }

    fn stacks(&mut self) -> Result<Vec<ThreadStack>, SourceError> {
        Ok(self
            .threads
            .iter()
            .filter(|t| t.owns_gil)
            .cloned()
            .collect())
    }

    fn stacks_with(&mut self, tids: &[u32]) -> Result<Vec<ThreadStack>, SourceError> {
        self.asked.push(tids.to_vec());
        Ok(self
            .threads
            .iter()
            .filter(|t| t.owns_gil || t.tid.is_some_and(|tid| tids.contains(&tid)))
            .cloned()
            .collect())
    }

    fn await_chain(&mut self, address: u64) -> Result<Option<AwaitChain>, SourceError> {
        self.chain_reads += 1;
        Ok(self.chains.get(&address).cloned())
    }

    fn awaited_done(&mut self, address: u64) -> Result<Option<bool>, SourceError> {
        Ok(Some(self.done.contains(&address)))
    }

    fn collector(&mut self) -> Option<Collector> {
        self.collector.pop_front()
    }

    fn alive(&self) -> bool {
        true
    }
}

#[derive(Default)]
struct Slots {
    slots: HashMap<u32, SlotSnapshot>,
    scopes: Vec<ScopeSnapshot>,
}

impl RequestSlots for Slots {
    fn read(&mut self, tid: u32) -> Option<SlotSnapshot> {
        self.slots.get(&tid).copied()
    }

    fn tid_of_pthread(&mut self, pthread_id: u64) -> Option<u32> {
        Some((pthread_id / 1000) as u32)
    }

    fn running(&mut self, out: &mut Vec<(u32, SlotSnapshot)>) {
        out.clear();
        out.extend(
            self.slots
                .iter()
                .filter(|(_, s)| s.request_id != 0)
                .map(|(t, s)| (*t, *s)),
        );
    }

    fn scopes(&mut self, out: &mut Vec<ScopeSnapshot>) {
        out.clear();
        out.extend_from_slice(&self.scopes);
    }
}

fn ticks(n: usize, source: &mut Still, slots: &mut Slots) -> Vec<Sample> {
    let mut sampler = Sampler::new(SamplerOptions::default());
    let mut out = Vec::new();
    for _ in 0..n {
        sampler.tick(source, slots, &mut out).unwrap();
    }
    out
}

#[test]
fn threads_running_a_request_are_sampled_without_the_gil_with_their_state() {
    let mut source = Still {
        threads: vec![
            thread(1, true, Some(true), "burn"),
            thread(2, false, Some(true), "hash_password"),
            thread(3, false, Some(false), "sleepy"),
            // Runs no request and does not hold the GIL: not walked.
            thread(4, false, Some(false), "idle_worker"),
        ],
        ..Still::default()
    };
    let mut slots = Slots::default();
    for (tid, rid) in [(1, 10), (2, 20), (3, 30), (4, 0)] {
        slots.slots.insert(
            tid,
            SlotSnapshot {
                seq: 2,
                request_id: rid,
            },
        );
    }
    let samples = ticks(3, &mut source, &mut slots);
    let of =
        |rid: u64| -> Vec<&Sample> { samples.iter().filter(|s| s.request_id == rid).collect() };
    // Two request threads are walked per tick besides the GIL holder, which
    // is known from the second tick on: then all three are walked.
    assert_eq!(of(10).len(), 3, "the GIL holder is walked at every tick");
    assert!(of(10)
        .iter()
        .all(|s| s.state == State::Python && &*s.stack.last().unwrap().name == "burn"));
    assert!(of(20).len() >= 2);
    assert!(of(20)
        .iter()
        .all(|s| s.state == State::Native && &*s.stack.last().unwrap().name == NATIVE_FRAME));
    assert!(of(30).len() >= 2);
    // On the first tick the holder is not known yet, so one of the three may
    // wait its turn (which one depends on the order the slots were read in).
    assert!((5..=6).contains(&(of(20).len() + of(30).len())));
    assert!(of(30)
        .iter()
        .all(|s| s.state == State::Blocked && &*s.stack.last().unwrap().name == BLOCKED_FRAME));
    assert!(samples.iter().all(|s| s.quality == Quality::Clean));
    assert!(
        samples.iter().all(|s| s.request_id != 0),
        "the idle worker gave no sample"
    );
    assert!(source.asked.iter().all(|t| !t.contains(&4)));
    assert!(samples.iter().all(|s| s.interval_ns > 0));
}

fn coroutine_chain(leaf: &str, file: &str, ready: bool) -> AwaitChain {
    AwaitChain {
        frames: vec![
            frame("app", "starlette/applications.py"),
            frame("handler", "main.py"),
            frame(leaf, file),
        ],
        awaits: Some("_asyncio.Future".into()),
        ready,
        running: false,
        awaited: 0,
    }
}

#[test]
fn a_suspended_request_is_sampled_from_its_await_chain_read_once_per_suspension() {
    let mut source = Still::default();
    source.chains.insert(
        0xA0,
        coroutine_chain("sleep", "/usr/lib/python3.12/asyncio/tasks.py", false),
    );
    source
        .chains
        .insert(0xB0, coroutine_chain("handler2", "main.py", true));
    let mut slots = Slots {
        scopes: vec![
            // Request 5: its parent scope suspended first, the child later.
            ScopeSnapshot {
                request_id: 5,
                coroutine: 0x50,
                step: 2,
                order: 1,
            },
            ScopeSnapshot {
                request_id: 5,
                coroutine: 0xA0,
                step: 4,
                order: 9,
            },
            // Request 6: ready to resume, the loop busy elsewhere.
            ScopeSnapshot {
                request_id: 6,
                coroutine: 0xB0,
                step: 2,
                order: 3,
            },
            // Request 7: running (odd step) but on no walked thread: no sample.
            ScopeSnapshot {
                request_id: 7,
                coroutine: 0xC0,
                step: 3,
                order: 2,
            },
        ],
        ..Slots::default()
    };
    let samples = ticks(4, &mut source, &mut slots);
    let five: Vec<&Sample> = samples.iter().filter(|s| s.request_id == 5).collect();
    // One new chain is read per tick: request 6 waits for the second.
    assert_eq!(five.len(), 4);
    let names: Vec<&str> = five[0].stack.iter().map(|f| f.name.as_ref()).collect();
    assert_eq!(names, ["app", "handler", "sleep", "[await asyncio.sleep]"]);
    assert!(five
        .iter()
        .all(|s| s.state == State::Awaiting && s.quality == Quality::Clean && s.tid == 0));
    let six: Vec<&Sample> = samples.iter().filter(|s| s.request_id == 6).collect();
    assert_eq!(six.len(), 3);
    assert!(six.iter().all(|s| s.state == State::Queued));
    assert!(samples.iter().all(|s| s.request_id != 7));
    assert_eq!(
        source.chain_reads, 2,
        "each suspension's chain is read once"
    );
}

#[test]
fn a_request_on_a_thread_is_not_also_sampled_as_suspended() {
    let mut source = Still {
        threads: vec![thread(2, false, Some(false), "sync_endpoint")],
        ..Still::default()
    };
    source.chains.insert(
        0xA0,
        coroutine_chain("run_sync", "anyio/to_thread.py", false),
    );
    let mut slots = Slots::default();
    slots.slots.insert(
        2,
        SlotSnapshot {
            seq: 1,
            request_id: 5,
        },
    );
    slots.scopes = vec![ScopeSnapshot {
        request_id: 5,
        coroutine: 0xA0,
        step: 2,
        order: 1,
    }];
    let samples = ticks(2, &mut source, &mut slots);
    assert_eq!(samples.len(), 2);
    assert!(samples
        .iter()
        .all(|s| s.tid == 2 && s.state == State::Blocked));
}

#[test]
fn a_suspended_request_whose_future_is_done_is_queued_until_the_loop_resumes_it() {
    let mut source = Still::default();
    let mut chain = coroutine_chain("sleep", "/usr/lib/python3.13/asyncio/tasks.py", false);
    chain.awaited = 0xF0;
    source.chains.insert(0xA0, chain);
    let mut slots = Slots {
        scopes: vec![ScopeSnapshot {
            request_id: 5,
            coroutine: 0xA0,
            step: 2,
            order: 1,
        }],
        ..Slots::default()
    };
    let mut sampler = Sampler::new(SamplerOptions::default());
    let mut out = Vec::new();
    for _ in 0..2 {
        sampler.tick(&mut source, &mut slots, &mut out).unwrap();
    }
    // The timer fired, but the loop is busy elsewhere.
    source.done.push(0xF0);
    for _ in 0..2 {
        sampler.tick(&mut source, &mut slots, &mut out).unwrap();
    }
    let states: Vec<State> = out.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            State::Awaiting,
            State::Awaiting,
            State::Queued,
            State::Queued
        ]
    );
    let leaf = |s: &Sample| s.stack.last().unwrap().name.clone();
    assert_eq!(leaf(&out[0]), "[await asyncio.sleep]".into());
    assert_eq!(leaf(&out[2]), "[ready, event loop busy]".into());
    assert_eq!(out[2].stack.len(), out[0].stack.len());
    assert_eq!(source.chain_reads, 1, "the chain itself is read once");
}

#[test]
fn with_many_request_threads_a_few_are_walked_per_tick_in_turn() {
    let tids: Vec<u32> = (10..18).collect();
    let mut source = Still {
        threads: tids
            .iter()
            .map(|&tid| thread(tid, false, Some(true), "sync_endpoint"))
            .collect(),
        ..Still::default()
    };
    let mut slots = Slots::default();
    for &tid in &tids {
        slots.slots.insert(
            tid,
            SlotSnapshot {
                seq: 2,
                request_id: u64::from(tid) * 10,
            },
        );
    }
    let samples = ticks(8, &mut source, &mut slots);
    assert!(
        source.asked.iter().all(|asked| asked.len() <= 3),
        "{:?}",
        source.asked
    );
    for &tid in &tids {
        let mine = samples.iter().filter(|s| s.tid == tid).count();
        assert!(
            (2..=4).contains(&mine),
            "thread {tid}: {mine} samples in 8 ticks"
        );
    }
    assert!(
        samples.iter().all(|s| s.tid != 0),
        "a request whose thread waits its turn is not sampled as suspended"
    );
}

#[test]
fn collections_are_charged_to_the_gil_holder_once_each() {
    let readings = [
        (false, 10), // where the count starts
        (false, 13), // three young collections, each between two ticks
        (true, 13),  // a long one, seen running: charged now
        (true, 13),  // the same one
        (true, 14),  // it ended and the next began
        (false, 15), // that one ended: charged already
        (false, 15),
    ];
    let mut source = Still {
        threads: vec![thread(1, true, Some(true), "build_graph")],
        collector: readings
            .iter()
            .map(|&(collecting, collections)| Collector {
                collecting,
                collections,
            })
            .collect(),
        ..Still::default()
    };
    let mut slots = Slots::default();
    slots.slots.insert(
        1,
        SlotSnapshot {
            seq: 2,
            request_id: 10,
        },
    );
    let samples = ticks(readings.len(), &mut source, &mut slots);
    let seen: Vec<(bool, u32)> = samples
        .iter()
        .map(|s| (s.in_gc, s.gc_collections))
        .collect();
    assert_eq!(
        seen,
        [
            (false, 0),
            (false, 3),
            (true, 1),
            (true, 0),
            (true, 1),
            (false, 0),
            (false, 0)
        ]
    );
}
