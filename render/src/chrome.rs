//! The Trace Event Format that Perfetto and Chrome's trace viewer open
//! (<https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU>):
//! a timeline with one track per process and thread. Each request is a
//! complete event on the thread that ran it, with its stages, SQL
//! statements and HTTP calls as nested events carrying their text in args.
//!
//! Requests that overlap on one thread (an event loop serving several at
//! once) cannot nest, so the second goes on a lane of its own, named after
//! the thread. A request's samples are at their times inside its span (and
//! stages, statements and calls), each a stack of nested slices that last
//! until the next sample no longer holds them (`timeline.rs`), a sampled
//! stack track Perfetto draws as a flame chart; its heaviest stacks are
//! also in its args (folded). Samples taken outside any request go on a
//! track of their own per thread. (Perfetto reads neither the format's
//! `stackFrames` nor `samples`, so slices it is.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{json, Value};
use timeglass_model::{Frame, Timeline};

use crate::folded::folded;
use crate::recording::{Recording, RequestTrack};
use crate::spans::spans;
use crate::timeline::{self, Node, Run};
use crate::view::View;

/// Lanes beyond a thread's first get thread ids above any real one
/// (Linux's `pid_max` is at most 2^22).
const LANE_TID_BASE: u64 = 1 << 22;

/// A thread's samples outside any request are on a track of this id plus
/// its own, above any lane's.
const OUTSIDE_TID_BASE: u64 = 1 << 31;

/// One event of the trace; typed, since a recording's samples make
/// hundreds of thousands of them.
#[derive(Serialize)]
struct TraceEvent {
    name: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'static str>,
    ph: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u32,
    tid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<Value>,
}

impl TraceEvent {
    fn meta(name: &str, pid: u32, tid: u64, args: Value) -> TraceEvent {
        TraceEvent {
            name: name.into(),
            cat: None,
            ph: "M",
            ts: None,
            dur: None,
            pid,
            tid,
            args: Some(args),
        }
    }
}

/// Slices for the frames among `runs`, at `at_ns` plus their times.
fn slices(runs: &[Run<'_>], at_ns: u64, pid: u32, tid: u64) -> Vec<TraceEvent> {
    // Each frame's label made once, by the frame's address (the runs
    // borrow their frames, so none moves meanwhile).
    let mut labels: FxHashMap<usize, Arc<str>> = FxHashMap::default();
    let mut out = Vec::new();
    for run in runs {
        let Node::Frame(frame) = run.node else {
            continue;
        };
        let name = labels
            .entry(frame as *const Frame as usize)
            .or_insert_with(|| frame.label().into())
            .clone();
        out.push(TraceEvent {
            name,
            cat: Some("sample"),
            ph: "X",
            ts: Some(us(at_ns + run.start_ns)),
            dur: Some(us(run.end_ns - run.start_ns)),
            pid,
            tid,
            args: None,
        });
    }
    out
}

/// How many of a request's stacks its args carry.
const STACKS_IN_ARGS: usize = 20;

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// The recording as a Chrome trace (JSON object format).
pub fn chrome(recording: &Recording, view: View) -> String {
    let outside = &recording.outside;
    let origin = recording
        .requests
        .iter()
        .map(|t| t.row.start_ns)
        .chain(
            outside
                .timelines
                .iter()
                .filter_map(|(_, t)| Some(t.ticks.first()?.ts_ns)),
        )
        .min()
        .unwrap_or(0);
    let mut events: Vec<TraceEvent> = Vec::new();
    // (pid, tid) → the end of the last request on each lane.
    let mut lanes: BTreeMap<(u32, u32), Vec<u64>> = BTreeMap::new();
    let mut tracks: Vec<&RequestTrack> = recording.requests.iter().collect();
    tracks.sort_by_key(|t| (t.row.start_ns, t.row.id));
    for track in tracks {
        let r = &track.row;
        let ends = lanes.entry((r.pid, r.tid)).or_default();
        let lane = match ends.iter().position(|&end| end <= r.start_ns) {
            Some(lane) => lane,
            None => {
                ends.push(0);
                ends.len() - 1
            }
        };
        ends[lane] = r.end_ns.max(r.start_ns);
        let tid = match lane {
            0 => u64::from(r.tid),
            n => LANE_TID_BASE * n as u64 + u64::from(r.tid),
        };
        let at = r.start_ns.saturating_sub(origin);
        let spans = spans(track);
        let samples = timeline::of_request(track, view);
        let runs = timeline::runs(&spans, &samples);
        events.extend(slices(&runs, at, r.pid, tid));
        for (i, span) in spans.into_iter().enumerate() {
            let mut args: serde_json::Map<String, Value> = span
                .args
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if i == 0 {
                let stacks = view.apply(&track.stacks);
                let text = folded(&stacks[..stacks.len().min(STACKS_IN_ARGS)]);
                args.insert(
                    "samples".into(),
                    stacks.iter().map(|s| s.samples).sum::<u64>().into(),
                );
                args.insert("stacks".into(), text.into());
            }
            events.push(TraceEvent {
                name: span.name.into(),
                cat: Some(span.category),
                ph: "X",
                ts: Some(us(at + span.start_ns)),
                dur: Some(us(span.end_ns - span.start_ns)),
                pid: r.pid,
                tid,
                args: Some(Value::Object(args)),
            });
        }
    }
    let mut outside_tracks: Vec<(u32, u32)> = Vec::new();
    for (pid, timeline) in &outside.timelines {
        for (tid, samples) in per_thread(timeline) {
            let held = timeline::held(&samples, view, origin, u64::MAX, outside.interval_ns);
            let runs = timeline::runs(&[], &held);
            let track = OUTSIDE_TID_BASE + u64::from(tid);
            events.extend(slices(&runs, 0, *pid, track));
            outside_tracks.push((*pid, tid));
        }
    }
    let mut meta = Vec::new();
    let pids: BTreeSet<u32> = lanes
        .keys()
        .map(|k| k.0)
        .chain(outside_tracks.iter().map(|t| t.0))
        .collect();
    for pid in pids {
        let name = json!({ "name": format!("pid {pid}") });
        meta.push(TraceEvent::meta("process_name", pid, 0, name));
    }
    for ((pid, tid), ends) in &lanes {
        for lane in 0..ends.len() {
            let (id, name) = match lane {
                0 => (u64::from(*tid), format!("thread {tid}")),
                n => (
                    LANE_TID_BASE * n as u64 + u64::from(*tid),
                    format!("thread {tid} (overlapping request {})", n + 1),
                ),
            };
            track_names(&mut meta, *pid, id, name);
        }
    }
    for (pid, tid) in outside_tracks {
        let name = match tid {
            0 => "no thread (outside requests)".to_string(),
            tid => format!("thread {tid} (outside requests)"),
        };
        track_names(&mut meta, pid, OUTSIDE_TID_BASE + u64::from(tid), name);
    }
    meta.extend(events);
    let doc = Trace {
        trace_events: meta,
        display_time_unit: "ms",
        other_data: json!({
            "title": recording.title(),
            "exporter": concat!("timeglass ", env!("CARGO_PKG_VERSION")),
        }),
    };
    serde_json::to_string(&doc).expect("a trace serializes")
}

#[derive(Serialize)]
struct Trace {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<TraceEvent>,
    #[serde(rename = "displayTimeUnit")]
    display_time_unit: &'static str,
    #[serde(rename = "otherData")]
    other_data: Value,
}

/// A track's name and its place among its process's tracks.
fn track_names(meta: &mut Vec<TraceEvent>, pid: u32, tid: u64, name: String) {
    meta.push(TraceEvent::meta(
        "thread_name",
        pid,
        tid,
        json!({ "name": name }),
    ));
    let index = json!({ "sort_index": tid });
    meta.push(TraceEvent::meta("thread_sort_index", pid, tid, index));
}

/// A process's samples split by thread, each over the same stacks.
fn per_thread(timeline: &Timeline) -> BTreeMap<u32, Timeline> {
    let mut out: BTreeMap<u32, Timeline> = BTreeMap::new();
    for tick in &timeline.ticks {
        let one = out.entry(tick.tid).or_insert_with(|| Timeline {
            stacks: timeline.stacks.clone(),
            ticks: Vec::new(),
        });
        one.ticks.push(*tick);
    }
    out
}
