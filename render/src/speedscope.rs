//! speedscope's file format (<https://www.speedscope.app/file-format-schema.json>).
//!
//! One request is an evented profile on its own timeline: the request, its
//! stages and its SQL statements and HTTP calls open and close at their real
//! offsets, and under them each sample's frames open at the time it was
//! taken and close when a later sample no longer holds them
//! (`timeline.rs`). Its stacks follow as a sampled profile, its SQL and HTTP
//! waits included. Many requests (an endpoint, a session) are one sampled
//! profile, weighted in milliseconds.

use rustc_hash::FxHashMap;
use serde_json::{json, Value};
use timeglass_model::{Frame, Text};

use crate::json::{decimal, integer, to_json, List};
use crate::recording::Recording;
use crate::spans::spans;
use crate::timeline::{self, Node};
use crate::view::View;

/// The frames table, each distinct frame once.
#[derive(Default)]
struct Frames {
    index: FxHashMap<(Text, Text, u32), usize>,
    list: Vec<Value>,
}

impl Frames {
    fn of(&mut self, name: &Text, file: &Text, line: u32) -> usize {
        let next = self.list.len();
        let at = *self
            .index
            .entry((name.clone(), file.clone(), line))
            .or_insert(next);
        if at == next {
            let mut frame = json!({ "name": &**name });
            if !file.is_empty() {
                frame["file"] = (&**file).into();
                frame["line"] = line.into();
            }
            self.list.push(frame);
        }
        at
    }

    fn frame(&mut self, f: &Frame) -> usize {
        let file = match f.short.is_empty() {
            true => &f.filename,
            false => &f.short,
        };
        self.of(&f.name, file, f.line)
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
/// (`samples` and `weights`), in milliseconds from 0.
struct Profile {
    kind: &'static str,
    name: String,
    end_ms: f64,
    events: Option<Vec<Event>>,
    samples: Option<Vec<Vec<usize>>>,
    weights: Option<Vec<f64>>,
}

impl Profile {
    fn new(kind: &'static str, name: String, end_ms: f64) -> Profile {
        Profile {
            kind,
            name,
            end_ms,
            events: None,
            samples: None,
            weights: None,
        }
    }

    /// Written by hand: a request's timeline can hold hundreds of
    /// thousands of events (`json.rs`). Keys in the format's order.
    fn write(&self, out: &mut String) {
        out.push_str("{\"type\":");
        out.push_str(&to_json(self.kind));
        out.push_str(",\"name\":");
        out.push_str(&to_json(&self.name));
        out.push_str(",\"unit\":\"milliseconds\",\"startValue\":0.0,\"endValue\":");
        out.push_str(&to_json(&self.end_ms));
        if let Some(events) = &self.events {
            out.push_str(",\"events\":");
            let mut list = List::open(out);
            for event in events {
                event.write(list.next());
            }
            list.close();
        }
        if let Some(samples) = &self.samples {
            out.push_str(",\"samples\":");
            out.push_str(&to_json(samples));
        }
        if let Some(weights) = &self.weights {
            out.push_str(",\"weights\":");
            out.push_str(&to_json(weights));
        }
        out.push('}');
    }
}

/// A frame opening (`O`) or closing (`C`) at a time in nanoseconds.
struct Event {
    opens: bool,
    frame: usize,
    at_ns: u64,
}

impl Event {
    fn write(&self, out: &mut String) {
        out.push_str(match self.opens {
            true => "{\"type\":\"O\",\"frame\":",
            false => "{\"type\":\"C\",\"frame\":",
        });
        integer(out, self.frame);
        out.push_str(",\"at\":");
        decimal(out, self.at_ns, 6);
        out.push('}');
    }
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
                opens: false,
                frame,
                at_ns: close,
            });
            open.pop();
        }
        let frame = match run.node {
            Node::Span(i) => frames.of(&spans[i].name.as_str().into(), &"".into(), 0),
            Node::Frame(f) => *by_address
                .entry(f as *const Frame as usize)
                .or_insert_with(|| frames.frame(f)),
        };
        events.push(Event {
            opens: true,
            frame,
            at_ns: run.start_ns,
        });
        open.push((frame, run.end_ns));
    }
    while let Some((frame, close)) = open.pop() {
        events.push(Event {
            opens: false,
            frame,
            at_ns: close,
        });
    }
    let name = format!("{} (timeline, {})", recording.title(), view.weight.name());
    Some(Profile {
        events: Some(events),
        ..Profile::new("evented", name, ms(end))
    })
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
    // The document's keys in the order serde wrote them.
    let mut out = String::from("{\"$schema\":");
    out.push_str(&to_json(
        "https://www.speedscope.app/file-format-schema.json",
    ));
    out.push_str(",\"name\":");
    out.push_str(&to_json(&recording.title()));
    out.push_str(",\"exporter\":");
    out.push_str(&to_json(concat!("timeglass ", env!("CARGO_PKG_VERSION"))));
    out.push_str(",\"activeProfileIndex\":0,\"shared\":{\"frames\":");
    out.push_str(&to_json(&frames.list));
    out.push_str("},\"profiles\":");
    let mut list = List::open(&mut out);
    for profile in &profiles {
        profile.write(list.next());
    }
    list.close();
    out.push('}');
    out
}
