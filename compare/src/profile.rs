//! Per-request profiles of an endpoint and their difference.
//!
//! An endpoint's stacks, summed over its requests, are weighted in
//! milliseconds per request: samples × (1000 / sampling rate) / requests,
//! so sessions with different request counts or rates compare fairly.
//! Frames are named `function (file)` without the line: a line moves with
//! every edit above it, and a comparison is usually across an edit.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use timeglass_model::{Frame, StackCount};

/// One folded path (`outer;...;leaf`) and its weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathWeight {
    pub path: String,
    pub ms_per_request: f64,
}

/// A frame's name in a comparison profile.
pub fn frame_key(f: &Frame) -> String {
    if f.is_synthetic() {
        return f.name.to_string();
    }
    let file = if f.short.is_empty() {
        &f.filename
    } else {
        &f.short
    };
    format!("{} ({file})", f.name).replace(';', ":")
}

/// The per-request profile of `requests` requests whose stacks are
/// `stacks`, sampled at `rate_hz`; heaviest path first.
pub fn per_request(stacks: &[StackCount], requests: u64, rate_hz: u32) -> Vec<PathWeight> {
    let scale = 1000.0 / f64::from(rate_hz.max(1)) / requests.max(1) as f64;
    let mut paths: BTreeMap<String, u64> = BTreeMap::new();
    for s in stacks.iter().filter(|s| !s.stack.is_empty()) {
        let path: Vec<String> = s.stack.iter().map(frame_key).collect();
        *paths.entry(path.join(";")).or_default() += s.samples;
    }
    let mut out: Vec<PathWeight> = paths
        .into_iter()
        .map(|(path, samples)| PathWeight {
            path,
            ms_per_request: samples as f64 * scale,
        })
        .collect();
    out.sort_by(|a, b| b.ms_per_request.total_cmp(&a.ms_per_request));
    out
}

/// One path of the difference, for a differential flame graph: its weight
/// in A and in B (0 where absent).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathDelta {
    pub path: String,
    pub a_ms: f64,
    pub b_ms: f64,
}

/// A function's time per request in A and B: on its own (`self`, as the
/// leaf) and with what it called (`inclusive`, counted once per stack
/// however often it recurs).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionDelta {
    pub function: String,
    pub self_a_ms: f64,
    pub self_b_ms: f64,
    pub inclusive_a_ms: f64,
    pub inclusive_b_ms: f64,
}

impl FunctionDelta {
    pub fn self_change(&self) -> f64 {
        self.self_b_ms - self.self_a_ms
    }

    pub fn inclusive_change(&self) -> f64 {
        self.inclusive_b_ms - self.inclusive_a_ms
    }
}

/// Every path of A or B with both weights, by path.
pub fn path_deltas(a: &[PathWeight], b: &[PathWeight]) -> Vec<PathDelta> {
    let mut by: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for p in a {
        by.entry(&p.path).or_default().0 += p.ms_per_request;
    }
    for p in b {
        by.entry(&p.path).or_default().1 += p.ms_per_request;
    }
    by.into_iter()
        .map(|(path, (a_ms, b_ms))| PathDelta {
            path: path.to_string(),
            a_ms,
            b_ms,
        })
        .collect()
}

/// Every function of A or B, the largest change of self time first.
pub fn function_deltas(paths: &[PathDelta]) -> Vec<FunctionDelta> {
    let mut by: BTreeMap<&str, FunctionDelta> = BTreeMap::new();
    for p in paths {
        let frames: Vec<&str> = p.path.split(';').collect();
        let mut seen = HashSet::new();
        for &f in &frames {
            if seen.insert(f) {
                let d = by.entry(f).or_insert_with(|| FunctionDelta {
                    function: f.to_string(),
                    self_a_ms: 0.0,
                    self_b_ms: 0.0,
                    inclusive_a_ms: 0.0,
                    inclusive_b_ms: 0.0,
                });
                d.inclusive_a_ms += p.a_ms;
                d.inclusive_b_ms += p.b_ms;
            }
        }
        if let Some(&leaf) = frames.last() {
            let d = by.get_mut(leaf).expect("inserted");
            d.self_a_ms += p.a_ms;
            d.self_b_ms += p.b_ms;
        }
    }
    let mut out: Vec<FunctionDelta> = by.into_values().collect();
    out.sort_by(|x, y| {
        y.self_change()
            .abs()
            .total_cmp(&x.self_change().abs())
            .then_with(|| x.function.cmp(&y.function))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: format!("/app/{name}.py").into(),
            short: format!("{name}.py").into(),
            line: 7,
        }
    }

    fn stack(names: &[&str], samples: u64) -> StackCount {
        StackCount {
            stack: names.iter().map(|n| frame(n)).collect::<Vec<_>>().into(),
            samples,
        }
    }

    #[test]
    fn weights_are_ms_per_request() {
        // 1000 Hz: a sample is 1 ms; 4 requests.
        let p = per_request(
            &[stack(&["main", "work"], 40), stack(&["main"], 8)],
            4,
            1000,
        );
        assert_eq!(p[0].path, "main (main.py);work (work.py)");
        assert_eq!((p[0].ms_per_request, p[1].ms_per_request), (10.0, 2.0));
    }

    #[test]
    fn functions_get_self_and_inclusive_changes_counted_once_per_stack() {
        let a = per_request(
            &[stack(&["main", "work"], 10), stack(&["main"], 5)],
            1,
            1000,
        );
        let b = per_request(
            &[
                stack(&["main", "work", "main", "work"], 30),
                stack(&["main"], 5),
            ],
            1,
            1000,
        );
        let d = function_deltas(&path_deltas(&a, &b));
        assert_eq!(d[0].function, "work (work.py)");
        assert_eq!((d[0].self_a_ms, d[0].self_b_ms), (10.0, 30.0));
        let main = d.iter().find(|f| f.function == "main (main.py)").unwrap();
        assert_eq!((main.inclusive_a_ms, main.inclusive_b_ms), (15.0, 35.0));
        assert_eq!(main.self_change(), 0.0);
    }
}
