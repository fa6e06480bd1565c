//! speedscope's file format (<https://www.speedscope.app/file-format-schema.json>).
//!
//! One request is an evented profile on its own timeline: the request, its
//! stages and its SQL statements and HTTP calls open and close at their real
//! offsets, and under them each sample's frames open at the time it was
//! taken and close when a later sample no longer holds them
//! (`timeline.rs`). Its stacks follow as a sampled profile, its SQL and HTTP
//! waits included. Many requests (an endpoint, a session) are one sampled
//! profile, weighted in milliseconds.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{json, Value};
use timeglass_model::Frame;

use crate::kind::file;
use crate::recording::Recording;
use crate::spans::spans;
use crate::timeline::{self, Node};
use crate::view::View;

/// The frames table, each distinct frame once.
#[derive(Default)]
struct Frames {
    index: HashMap<(String, String, u32), usize>,
    list: Vec<Value>,
}

impl Frames {
    fn of(&mut self, name: &str, file: &str, line: u32) -> usize {
        let key = (name.to_string(), file.to_string(), line);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let mut frame = json!({ "name": name });
        if !file.is_empty() {
            frame["file"] = file.into();
            frame["line"] = line.into();
        }
        self.list.push(frame);
        self.index.insert(key, self.list.len() - 1);
        self.list.len() - 1
    }

    fn frame(&mut self, f: &Frame) -> usize {
        self.of(&f.name, file(f), f.line)
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The stacks of the recording as the view shows them, each with its
/// weight in nanoseconds (samples times its session's interval).
pub(crate) fn weighted(recording: &Recording, view: View) -> Vec<(std::sync::Arc<[Frame]>, u64)> {
    let tracks = recording
        .requests
        .iter()
        .map(|t| (&t.stacks, t.interval_ns))
        .chain([(&recording.outside.stacks, recording.outside.interval_ns)]);
    let mut out = Vec::new();
    for (stacks, interval) in tracks {
        for sc in view.apply(stacks) {
            out.push((sc.stack, sc.samples * interval));
        }
    }
    crate::view::merge(out)
        .into_iter()
        .map(|sc| (sc.stack, sc.samples))
        .collect()
}

/// A profile as the file format has it, evented (`events`) or sampled
/// (`samples` and `weights`), in milliseconds from 0; typed, since a
/// request's timeline can hold hundreds of thousands of events.
#[derive(Serialize)]
struct Profile {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: f64,
    #[serde(rename = "endValue")]
    end_value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<Event>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    samples: Option<Vec<Vec<usize>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weights: Option<Vec<f64>>,
}

impl Profile {
    fn new(kind: &'static str, name: String, end_ms: f64) -> Profile {
        Profile {
            kind,
            name,
            unit: "milliseconds",
            start_value: 0.0,
            end_value: end_ms,
            events: None,
            samples: None,
            weights: None,
        }
    }
}

#[derive(Serialize)]
struct Event {
    #[serde(rename = "type")]
    kind: &'static str,
    frame: usize,
    at: f64,
}

fn sampled(name: String, frames: &mut Frames, recording: &Recording, view: View) -> Profile {
    let stacks = weighted(recording, view);
    let mut samples = Vec::with_capacity(stacks.len());
    let mut weights = Vec::with_capacity(stacks.len());
    for (stack, ns) in &stacks {
        samples.push(stack.iter().map(|f| frames.frame(f)).collect::<Vec<_>>());
        weights.push(ms(*ns));
    }
    let total: f64 = weights.iter().sum();
    Profile {
        samples: Some(samples),
        weights: Some(weights),
        ..Profile::new("sampled", name, total)
    }
}

fn evented(frames: &mut Frames, recording: &Recording, view: View) -> Option<Profile> {
    let track = recording.requests.first()?;
    let spans = spans(track);
    let end = spans.first().map_or(0, |s| s.end_ns);
    let samples = timeline::of_request(track, view);
    let runs = timeline::runs(&spans, &samples);
    // A frame's index, by its address in `samples`: looking it up by text
    // for each of the runs was most of the export (callgrind).
    let mut by_address: FxHashMap<usize, usize> = FxHashMap::default();
    let mut events = Vec::with_capacity(runs.len() * 2);
    // Runs are nested and in start order: close the open ones that end
    // before the next opens.
    let mut open: Vec<(usize, u64)> = Vec::new();
    for run in &runs {
        while let Some(&(frame, close)) = open.last() {
            if close > run.start_ns {
                break;
            }
            events.push(Event {
                kind: "C",
                frame,
                at: ms(close),
            });
            open.pop();
        }
        let frame = match run.node {
            Node::Span(i) => frames.of(&spans[i].name, "", 0),
            Node::Frame(f) => *by_address
                .entry(f as *const Frame as usize)
                .or_insert_with(|| frames.frame(f)),
        };
        events.push(Event {
            kind: "O",
            frame,
            at: ms(run.start_ns),
        });
        open.push((frame, run.end_ns));
    }
    while let Some((frame, close)) = open.pop() {
        events.push(Event {
            kind: "C",
            frame,
            at: ms(close),
        });
    }
    let name = format!("{} (timeline, {})", recording.title(), view.weight.name());
    Some(Profile {
        events: Some(events),
        ..Profile::new("evented", name, ms(end))
    })
}

#[derive(Serialize)]
struct Document {
    #[serde(rename = "$schema")]
    schema: &'static str,
    name: String,
    exporter: &'static str,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    shared: Shared,
    profiles: Vec<Profile>,
}

#[derive(Serialize)]
struct Shared {
    frames: Vec<Value>,
}

/// The recording as a speedscope file.
pub fn speedscope(recording: &Recording, view: View) -> String {
    let mut frames = Frames::default();
    let mut profiles = Vec::new();
    if recording.subject.is_one_request() {
        profiles.extend(evented(&mut frames, recording, view));
    }
    let name = match recording.subject.is_one_request() {
        true => format!(
            "{} (sampled stacks, {})",
            recording.title(),
            view.weight.name()
        ),
        false => format!("{} ({} time)", recording.title(), view.weight.name()),
    };
    profiles.push(sampled(name, &mut frames, recording, view));
    let doc = Document {
        schema: "https://www.speedscope.app/file-format-schema.json",
        name: recording.title(),
        exporter: concat!("timeglass ", env!("CARGO_PKG_VERSION")),
        active_profile_index: 0,
        shared: Shared {
            frames: frames.list,
        },
        profiles,
    };
    serde_json::to_string(&doc).expect("a profile serializes")
}
