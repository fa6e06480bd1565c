//! pprof's `profile.proto` (github.com/google/pprof, `proto/profile.proto`),
//! gzipped, as `go tool pprof`, Grafana Pyroscope and many other tools read
//! it. The messages below are that schema's, field for field where
//! TimeGlass writes them (mappings, addresses, columns and comments are
//! left out); prost derives their encoding, so no `protoc` runs at build
//! time.
//!
//! Sample types are sample counts, wall time and CPU time (CPU time is wall
//! time for the stacks that were on the CPU, 0 for waits), so one file
//! opens as either view. Each sample is labelled with its request id,
//! route and pid.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use prost::Message;
use timeglass_model::Frame;

use crate::kind::file;
use crate::recording::Recording;
use crate::view::{View, Weight};

#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// Interns strings, functions and locations as the format wants them
/// (string 0 is "", ids start at 1).
struct Builder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64), u64>,
    locations: HashMap<(u64, u32), u64>,
}

impl Builder {
    fn new() -> Builder {
        let mut b = Builder {
            profile: Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
        };
        b.string("");
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.string(kind),
            unit: self.string(unit),
        }
    }

    fn location(&mut self, frame: &Frame) -> u64 {
        let name = self.string(&frame.name);
        let filename = self.string(file(frame));
        let next = self.functions.len() as u64 + 1;
        let function = *self.functions.entry((name, filename)).or_insert(next);
        if function == next {
            self.profile.function.push(Function {
                id: function,
                name,
                system_name: name,
                filename,
            });
        }
        let next = self.locations.len() as u64 + 1;
        let location = *self.locations.entry((function, frame.line)).or_insert(next);
        if location == next {
            self.profile.location.push(Location {
                id: location,
                line: vec![Line {
                    function_id: function,
                    line: i64::from(frame.line),
                }],
            });
        }
        location
    }

    fn sample(&mut self, stack: &[Frame], samples: u64, interval_ns: u64, labels: Vec<Label>) {
        let location_id = stack.iter().rev().map(|f| self.location(f)).collect();
        let wall = (samples * interval_ns) as i64;
        let cpu = if Weight::Cpu.counts(stack) { wall } else { 0 };
        self.profile.sample.push(Sample {
            location_id,
            value: vec![samples as i64, wall, cpu],
            label: labels,
        });
    }
}

/// The recording as a gzipped `profile.proto`. The view's weight does not
/// matter here: both weights are sample types of the file.
pub fn pprof(recording: &Recording, view: View) -> Vec<u8> {
    let view = View {
        weight: Weight::Wall,
        ..view
    };
    let mut b = Builder::new();
    let types = vec![
        b.value_type("samples", "count"),
        b.value_type("wall", "nanoseconds"),
        b.value_type("cpu", "nanoseconds"),
    ];
    b.profile.sample_type = types;
    b.profile.default_sample_type = b.string("wall");
    b.profile.period_type = Some(b.value_type("wall", "nanoseconds"));
    let (request_id, route, pid) = (b.string("request_id"), b.string("route"), b.string("pid"));
    let mut first = u64::MAX;
    let mut last = 0;
    for track in &recording.requests {
        let r = &track.row;
        first = first.min(r.start_ns);
        last = last.max(r.end_ns);
        b.profile.period = track.interval_ns as i64;
        let route_name = format!("{} {}", r.method, r.route.as_deref().unwrap_or(&r.path));
        let route_str = b.string(&route_name);
        for sc in view.apply(&track.stacks) {
            let labels = vec![
                Label {
                    key: request_id,
                    num: r.id,
                    ..Label::default()
                },
                Label {
                    key: route,
                    str: route_str,
                    ..Label::default()
                },
                Label {
                    key: pid,
                    num: i64::from(r.pid),
                    ..Label::default()
                },
            ];
            b.sample(&sc.stack, sc.samples, track.interval_ns, labels);
        }
    }
    let outside = &recording.outside;
    for sc in view.apply(&outside.stacks) {
        b.sample(&sc.stack, sc.samples, outside.interval_ns, Vec::new());
    }
    if b.profile.period == 0 {
        b.profile.period = outside.interval_ns as i64;
    }
    b.profile.duration_nanos = last.saturating_sub(first.min(last)) as i64;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&b.profile.encode_to_vec())
        .expect("writing to memory cannot fail");
    gz.finish().expect("writing to memory cannot fail")
}
