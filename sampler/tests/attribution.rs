use std::cell::Cell;
use std::collections::HashMap;

use timeglass_model::{Frame, Quality};
use timeglass_sampler::{ReplaySource, RequestSlots, Sample, Sampler, SamplerOptions, ThreadStack};
use timeglass_wire::SlotSnapshot;

fn frame(name: &str, file: &str) -> Frame {
    Frame {
        name: name.into(),
        filename: file.into(),
        short: file.into(),
        line: 1,
    }
}

fn stack(tid: u32, active: bool, leaf: &str) -> ThreadStack {
    let root = if tid == 1 {
        frame("<module>", "main.py")
    } else {
        frame("_bootstrap", "/usr/lib/threading.py")
    };
    ThreadStack {
        tid: Some(tid),
        pthread_id: u64::from(tid) * 1000,
        active,
        owns_gil: active,
        on_cpu: None,
        frames: vec![root, frame(leaf, "app.py")],
    }
}

/// Slots scripted per read: each read of a tid pops the next snapshot.
#[derive(Default)]
struct Script {
    reads: HashMap<u32, Vec<SlotSnapshot>>,
    calls: Cell<usize>,
}

impl Script {
    fn set(&mut self, tid: u32, seq_rid: &[(u64, u64)]) {
        let mut v: Vec<SlotSnapshot> = seq_rid
            .iter()
            .map(|&(seq, request_id)| SlotSnapshot { seq, request_id })
            .collect();
        v.reverse();
        self.reads.insert(tid, v);
    }
}

impl RequestSlots for Script {
    fn read(&mut self, tid: u32) -> Option<SlotSnapshot> {
        self.calls.set(self.calls.get() + 1);
        let v = self.reads.get_mut(&tid)?;
        if v.len() > 1 {
            v.pop()
        } else {
            v.last().copied()
        }
    }

    fn tid_of_pthread(&mut self, pthread_id: u64) -> Option<u32> {
        Some((pthread_id / 1000) as u32)
    }
}

fn run(walks: Vec<Vec<ThreadStack>>, slots: &mut Script) -> Vec<Sample> {
    let mut source = ReplaySource::new(42, walks.clone());
    let mut sampler = Sampler::new(SamplerOptions::default());
    let mut out = Vec::new();
    for _ in 0..walks.len() {
        sampler.tick(&mut source, slots, &mut out).unwrap();
    }
    out
}

#[test]
fn a_thread_whose_slot_did_not_change_is_charged_cleanly() {
    let mut slots = Script::default();
    slots.set(1, &[(4, 7)]);
    let walks = vec![
        vec![stack(1, true, "handler")],
        vec![stack(1, true, "handler")],
    ];
    let samples = run(walks, &mut slots);
    assert_eq!(samples.len(), 2);
    // The first walk meets the thread for the first time (no reading before it).
    assert_eq!(
        (samples[0].request_id, samples[0].quality),
        (7, Quality::Switched)
    );
    assert_eq!(
        (samples[1].request_id, samples[1].quality),
        (7, Quality::Clean)
    );
    assert_eq!(samples[1].pid, 42);
    assert_eq!(&*samples[1].stack.last().unwrap().name, "handler");
}

#[test]
fn a_switch_during_the_walk_keeps_the_request_read_before_and_is_flagged() {
    let mut slots = Script::default();
    // walk 1: after=(1,5). walk 2: before=(1,5), after=(2,9).
    slots.set(1, &[(1, 5), (1, 5), (2, 9)]);
    let walks = vec![vec![stack(1, true, "a")], vec![stack(1, true, "b")]];
    let samples = run(walks, &mut slots);
    assert_eq!(
        (samples[1].request_id, samples[1].quality),
        (5, Quality::Switched)
    );
}

#[test]
fn a_request_that_suspended_and_resumed_during_the_walk_keeps_its_sample() {
    // Each walk is read (seq, request) before and after: 5 left and came
    // back (two changes); then 5 gave way to 6 and came back (four); then 5
    // gave way to 0 for good (one, but never back).
    let mut slots = Script::default();
    slots.set(1, &[(1, 5), (1, 5), (3, 5), (3, 5), (7, 5), (7, 5), (8, 0)]);
    let walks = vec![
        vec![stack(1, true, "a")],
        vec![stack(1, true, "b")],
        vec![stack(1, true, "c")],
        vec![stack(1, true, "d")],
    ];
    let samples = run(walks, &mut slots);
    let got: Vec<(u64, Quality)> = samples.iter().map(|s| (s.request_id, s.quality)).collect();
    assert_eq!(
        got[1..],
        [
            (5, Quality::Clean),
            (5, Quality::Switched),
            (5, Quality::Switched)
        ]
    );
}

#[test]
fn idle_threads_are_not_samples_and_threads_without_slots_are_outside_requests() {
    let mut slots = Script::default();
    slots.set(2, &[(0, 3)]);
    let walks = vec![vec![
        stack(1, true, "loop"),
        stack(2, false, "wait"),
        stack(3, true, "bg"),
    ]];
    let samples = run(walks, &mut slots);
    let got: Vec<(u32, u64)> = samples.iter().map(|s| (s.tid, s.request_id)).collect();
    assert_eq!(got, vec![(1, 0), (3, 0)]);
}

#[test]
fn torn_stacks_are_flagged() {
    let mut slots = Script::default();
    slots.set(1, &[(0, 1)]);
    let mut cut = stack(1, true, "handler");
    cut.frames.remove(0);
    let samples = run(vec![vec![stack(1, true, "x")], vec![cut]], &mut slots);
    assert_eq!(samples[1].quality, Quality::Torn);
}

#[test]
fn pthread_ids_map_to_native_tids_when_the_source_lacks_them() {
    let mut slots = Script::default();
    slots.set(2, &[(0, 11)]);
    let mut s = stack(2, true, "sync_handler");
    s.tid = None;
    let samples = run(vec![vec![s.clone()], vec![s]], &mut slots);
    assert_eq!(
        (samples[1].tid, samples[1].request_id, samples[1].quality),
        (2, 11, Quality::Clean)
    );
}

#[test]
fn replay_fixture_loads_from_jsonl() {
    let dir = std::env::temp_dir().join(format!("tg-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("walks.jsonl");
    let walk = serde_json::to_string(&vec![stack(1, true, "h")]).unwrap();
    std::fs::write(&path, format!("{walk}\n{walk}\n")).unwrap();
    let mut source = ReplaySource::from_jsonl(1, &path).unwrap();
    use timeglass_sampler::StackSource;
    assert_eq!(source.stacks().unwrap().len(), 1);
    assert!(source.alive());
    source.stacks().unwrap();
    assert!(!source.alive());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_thread_keeps_its_before_reading_when_the_gil_moved_away_in_between() {
    // GIL-holder walks: thread 1, then thread 2, then thread 1 again. Thread
    // 1's slot never changed, so its second sample is clean.
    let mut slots = Script::default();
    slots.set(1, &[(3, 7)]);
    slots.set(2, &[(5, 0)]);
    let walks = vec![
        vec![stack(1, true, "handler")],
        vec![stack(2, true, "worker")],
        vec![stack(1, true, "handler")],
    ];
    let samples = run(walks, &mut slots);
    assert_eq!(
        (samples[2].request_id, samples[2].quality),
        (7, Quality::Clean)
    );
}
