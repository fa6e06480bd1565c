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

use rustc_hash::FxHashMap;
use serde_json::{json, Value};
use timeglass_model::{Frame, Timeline};

use crate::folded::folded;
use crate::json::{decimal, integer, to_json, List};
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

/// How many of a request's stacks its args carry.
const STACKS_IN_ARGS: usize = 20;

/// One event of the trace, written at once: a recording's samples make
/// hundreds of thousands of them (`json.rs`). Fields in the order of the
/// format's examples: name, cat, ph, ts, dur, pid, tid, args.
struct Event<'a> {
    /// Already JSON (quoted and escaped).
    name: &'a str,
    cat: Option<&'static str>,
    ph: &'static str,
    /// Start and end in nanoseconds, written in microseconds.
    span_ns: Option<(u64, u64)>,
    pid: u32,
    tid: u64,
    args: Option<&'a Value>,
}

impl Event<'_> {
    fn write(&self, out: &mut String) {
        out.push_str("{\"name\":");
        out.push_str(self.name);
        if let Some(cat) = self.cat {
            out.push_str(",\"cat\":\"");
            out.push_str(cat);
            out.push('"');
        }
        out.push_str(",\"ph\":\"");
        out.push_str(self.ph);
        out.push('"');
        if let Some((start, end)) = self.span_ns {
            out.push_str(",\"ts\":");
            decimal(out, start, 3);
            out.push_str(",\"dur\":");
            decimal(out, end - start, 3);
        }
        out.push_str(",\"pid\":");
        integer(out, self.pid);
        out.push_str(",\"tid\":");
        integer(out, self.tid);
        if let Some(args) = self.args {
            out.push_str(",\"args\":");
            out.push_str(&to_json(args));
        }
        out.push('}');
    }
}

/// A metadata event: a track's or a process's name or place.
fn meta(events: &mut List<'_>, name: &str, pid: u32, tid: u64, args: &Value) {
    Event {
        name: &to_json(name),
        cat: None,
        ph: "M",
        span_ns: None,
        pid,
        tid,
        args: Some(args),
    }
    .write(events.next());
}

/// Slices for the frames among `runs`, at `at_ns` plus their times.
fn slices(events: &mut List<'_>, runs: &[Run<'_>], at_ns: u64, pid: u32, tid: u64) {
    // Each frame's label made and escaped once, by the frame's address
    // (the runs borrow their frames, so none moves meanwhile).
    let mut labels: FxHashMap<usize, String> = FxHashMap::default();
    for run in runs {
        let Node::Frame(frame) = run.node else {
            continue;
        };
        let name = labels
            .entry(frame as *const Frame as usize)
            .or_insert_with(|| to_json(&frame.label()));
        Event {
            name,
            cat: Some("sample"),
            ph: "X",
            span_ns: Some((at_ns + run.start_ns, at_ns + run.end_ns)),
            pid,
            tid,
            args: None,
        }
        .write(events.next());
    }
}

/// Where each request goes: requests that overlap on one thread cannot
/// nest, so a later one goes on the first lane free at its start.
struct Lanes<'a> {
    /// Each request with the thread id of its lane, in start order.
    placed: Vec<(&'a RequestTrack, u64)>,
    /// How many lanes each (pid, tid) took.
    counts: BTreeMap<(u32, u32), usize>,
}

fn lanes(recording: &Recording) -> Lanes<'_> {
    // (pid, tid) → the end of the last request on each lane.
    let mut ends: BTreeMap<(u32, u32), Vec<u64>> = BTreeMap::new();
    let mut tracks: Vec<&RequestTrack> = recording.requests.iter().collect();
    tracks.sort_by_key(|t| (t.row.start_ns, t.row.id));
    let placed = tracks
        .into_iter()
        .map(|track| {
            let r = &track.row;
            let ends = ends.entry((r.pid, r.tid)).or_default();
            let lane = match ends.iter().position(|&end| end <= r.start_ns) {
                Some(lane) => lane,
                None => {
                    ends.push(0);
                    ends.len() - 1
                }
            };
            ends[lane] = r.end_ns.max(r.start_ns);
            (track, lane_tid(r.tid, lane))
        })
        .collect();
    let counts = ends.into_iter().map(|(k, v)| (k, v.len())).collect();
    Lanes { placed, counts }
}

fn lane_tid(tid: u32, lane: usize) -> u64 {
    LANE_TID_BASE * lane as u64 + u64::from(tid)
}

/// A request's samples and spans, on its lane.
fn request_events(events: &mut List<'_>, track: &RequestTrack, tid: u64, origin: u64, view: View) {
    let r = &track.row;
    let at = r.start_ns.saturating_sub(origin);
    let spans = spans(track);
    let samples = timeline::of_request(track, view);
    let runs = timeline::runs(&spans, &samples);
    slices(events, &runs, at, r.pid, tid);
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
        Event {
            name: &to_json(&span.name),
            cat: Some(span.category),
            ph: "X",
            span_ns: Some((at + span.start_ns, at + span.end_ns)),
            pid: r.pid,
            tid,
            args: Some(&Value::Object(args)),
        }
        .write(events.next());
    }
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
    let Lanes { placed, counts } = lanes(recording);
    let outside_tracks: Vec<(u32, u32, Timeline)> = outside
        .timelines
        .iter()
        .flat_map(|(pid, timeline)| {
            per_thread(timeline)
                .into_iter()
                .map(|(tid, samples)| (*pid, tid, samples))
        })
        .collect();
    let mut out = String::from("{\"traceEvents\":");
    let mut events = List::open(&mut out);
    let pids: BTreeSet<u32> = counts
        .keys()
        .map(|k| k.0)
        .chain(outside_tracks.iter().map(|t| t.0))
        .collect();
    for pid in pids {
        let name = json!({ "name": format!("pid {pid}") });
        meta(&mut events, "process_name", pid, 0, &name);
    }
    for (&(pid, tid), &count) in &counts {
        for lane in 0..count {
            let name = match lane {
                0 => format!("thread {tid}"),
                n => format!("thread {tid} (overlapping request {})", n + 1),
            };
            track_names(&mut events, pid, lane_tid(tid, lane), name);
        }
    }
    for &(pid, tid, _) in &outside_tracks {
        let name = match tid {
            0 => "no thread (outside requests)".to_string(),
            tid => format!("thread {tid} (outside requests)"),
        };
        track_names(&mut events, pid, OUTSIDE_TID_BASE + u64::from(tid), name);
    }
    for (track, tid) in placed {
        request_events(&mut events, track, tid, origin, view);
    }
    for (pid, tid, samples) in &outside_tracks {
        let held = timeline::held(samples, view, origin, u64::MAX, outside.interval_ns);
        let runs = timeline::runs(&[], &held);
        slices(
            &mut events,
            &runs,
            0,
            *pid,
            OUTSIDE_TID_BASE + u64::from(*tid),
        );
    }
    events.close();
    let other_data = json!({
        "title": recording.title(),
        "exporter": concat!("timeglass ", env!("CARGO_PKG_VERSION")),
    });
    out.push_str(",\"displayTimeUnit\":\"ms\",\"otherData\":");
    out.push_str(&to_json(&other_data));
    out.push('}');
    out
}

/// A track's name and its place among its process's tracks.
fn track_names(events: &mut List<'_>, pid: u32, tid: u64, name: String) {
    meta(events, "thread_name", pid, tid, &json!({ "name": name }));
    let index = json!({ "sort_index": tid });
    meta(events, "thread_sort_index", pid, tid, &index);
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
