//! The Trace Event Format that Perfetto and Chrome's trace viewer open
//! (<https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU>):
//! a timeline with one track per process and thread. Each request is a
//! complete event on the thread that ran it, with its stages, SQL
//! statements and HTTP calls as nested events carrying their text in args.
//!
//! Requests that overlap on one thread (an event loop serving several at
//! once) cannot nest, so the second goes on a lane of its own, named after
//! the thread. The store keeps how many samples each stack got, not when,
//! so a request's sampled stacks are in its args (folded, heaviest first)
//! rather than on the timeline.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::folded::folded;
use crate::recording::{Recording, RequestTrack};
use crate::spans::spans;
use crate::view::View;

/// Lanes beyond a thread's first get thread ids above any real one
/// (Linux's `pid_max` is at most 2^22).
const LANE_TID_BASE: u64 = 1 << 22;

/// How many of a request's stacks its args carry.
const STACKS_IN_ARGS: usize = 20;

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// The recording as a Chrome trace (JSON object format).
pub fn chrome(recording: &Recording, view: View) -> String {
    let origin = recording
        .requests
        .iter()
        .map(|t| t.row.start_ns)
        .min()
        .unwrap_or(0);
    let mut events: Vec<Value> = Vec::new();
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
        for (i, span) in spans(track).into_iter().enumerate() {
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
            events.push(json!({
                "name": span.name,
                "cat": span.category,
                "ph": "X",
                "ts": us(at + span.start_ns),
                "dur": us(span.end_ns - span.start_ns),
                "pid": r.pid,
                "tid": tid,
                "args": args,
            }));
        }
    }
    let mut meta = Vec::new();
    let mut pids: Vec<u32> = lanes.keys().map(|k| k.0).collect();
    pids.dedup();
    for pid in pids {
        meta.push(json!({
            "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "args": { "name": format!("pid {pid}") },
        }));
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
            meta.push(json!({
                "name": "thread_name", "ph": "M", "pid": pid, "tid": id,
                "args": { "name": name },
            }));
            meta.push(json!({
                "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": id,
                "args": { "sort_index": id },
            }));
        }
    }
    meta.extend(events);
    json!({
        "traceEvents": meta,
        "displayTimeUnit": "ms",
        "otherData": { "title": recording.title(), "exporter": concat!("timeglass ", env!("CARGO_PKG_VERSION")) },
    })
    .to_string()
}
