//! speedscope's file format (<https://www.speedscope.app/file-format-schema.json>).
//!
//! One request is an evented profile on its own timeline: the request, its
//! stages and its SQL statements and HTTP calls open and close at their real
//! offsets. Its sampled stacks follow as a sampled profile: the store keeps
//! how many samples each stack got, not when, so they cannot be placed on
//! the timeline. Many requests (an endpoint, a session) are one sampled
//! profile, weighted in milliseconds.

use std::collections::HashMap;

use serde_json::{json, Value};
use timeglass_model::Frame;

use crate::kind::file;
use crate::recording::Recording;
use crate::spans::spans;
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

fn sampled(name: &str, frames: &mut Frames, recording: &Recording, view: View) -> Value {
    let stacks = weighted(recording, view);
    let mut samples = Vec::with_capacity(stacks.len());
    let mut weights = Vec::with_capacity(stacks.len());
    for (stack, ns) in &stacks {
        samples.push(stack.iter().map(|f| frames.frame(f)).collect::<Vec<_>>());
        weights.push(ms(*ns));
    }
    let total: f64 = weights.iter().sum();
    json!({
        "type": "sampled",
        "name": name,
        "unit": "milliseconds",
        "startValue": 0,
        "endValue": total,
        "samples": samples,
        "weights": weights,
    })
}

fn evented(frames: &mut Frames, recording: &Recording) -> Option<Value> {
    let track = recording.requests.first()?;
    let spans = spans(track);
    let end = spans.first().map_or(0, |s| s.end_ns);
    let mut events = Vec::new();
    // Spans are nested and in start order: close the open ones that end
    // before the next opens.
    let mut open: Vec<(usize, u64)> = Vec::new();
    for span in &spans {
        while let Some(&(frame, close)) = open.last() {
            if close > span.start_ns {
                break;
            }
            events.push(json!({ "type": "C", "frame": frame, "at": ms(close) }));
            open.pop();
        }
        let frame = frames.of(&span.name, "", 0);
        events.push(json!({ "type": "O", "frame": frame, "at": ms(span.start_ns) }));
        open.push((frame, span.end_ns));
    }
    while let Some((frame, close)) = open.pop() {
        events.push(json!({ "type": "C", "frame": frame, "at": ms(close) }));
    }
    Some(json!({
        "type": "evented",
        "name": format!("{} (timeline)", recording.title()),
        "unit": "milliseconds",
        "startValue": 0,
        "endValue": ms(end),
        "events": events,
    }))
}

/// The recording as a speedscope file.
pub fn speedscope(recording: &Recording, view: View) -> String {
    let mut frames = Frames::default();
    let mut profiles = Vec::new();
    if recording.subject.is_one_request() {
        profiles.extend(evented(&mut frames, recording));
    }
    let name = match recording.subject.is_one_request() {
        true => format!(
            "{} (sampled stacks, {})",
            recording.title(),
            view.weight.name()
        ),
        false => format!("{} ({} time)", recording.title(), view.weight.name()),
    };
    profiles.push(sampled(&name, &mut frames, recording, view));
    let doc = json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": recording.title(),
        "exporter": concat!("timeglass ", env!("CARGO_PKG_VERSION")),
        "activeProfileIndex": 0,
        "shared": { "frames": frames.list },
        "profiles": profiles,
    });
    doc.to_string()
}
