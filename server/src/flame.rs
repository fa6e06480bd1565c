//! Renderers of one request's stacks: the interactive flame graph (inferno)
//! and the top functions by self and total samples.

use std::collections::{HashMap, HashSet};

use inferno::flamegraph::color::{MultiPalette, Palette};
use inferno::flamegraph::{self, Options};
use timeglass_model::{Frame, StackCount};

use crate::error::AppError;

/// The flame graph as an `<svg>` element to put inline in a page, with
/// inferno's script (click to zoom, Ctrl-F to search); `None` without samples.
pub fn svg(title: &str, stacks: &[StackCount]) -> Result<Option<String>, AppError> {
    let folded = timeglass_model::folded(stacks);
    if folded.is_empty() {
        return Ok(None);
    }
    let mut options = Options::default();
    options.title = title.to_string();
    options.count_name = "samples".to_string();
    options.colors = Palette::Multi(MultiPalette::Python);
    // The same function gets the same colour on every page.
    options.hash = true;
    let mut out = Vec::new();
    flamegraph::from_lines(&mut options, folded.lines(), &mut out).map_err(AppError::Flame)?;
    let text = String::from_utf8_lossy(&out);
    // Inline SVG in HTML takes neither the XML declaration nor the doctype.
    let start = text.find("<svg").unwrap_or(0);
    Ok(Some(text[start..].to_string()))
}

/// Samples of one function (all its lines together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSamples {
    /// `name (file)`, or the bare name of a synthetic frame (`[background]`).
    pub function: String,
    /// Samples whose innermost frame is this function.
    pub self_samples: u64,
    /// Samples with this function anywhere on the stack, counted once per
    /// sample even when it recurses.
    pub total_samples: u64,
}

/// Every function on the stacks, most self samples first.
pub fn functions(stacks: &[StackCount]) -> Vec<FunctionSamples> {
    let mut by_name: HashMap<String, (u64, u64)> = HashMap::new();
    for sc in stacks {
        let mut seen = HashSet::new();
        for frame in sc.stack.iter() {
            let name = function_name(frame);
            if seen.insert(name.clone()) {
                by_name.entry(name).or_default().1 += sc.samples;
            }
        }
        if let Some(leaf) = sc.stack.last() {
            by_name.entry(function_name(leaf)).or_default().0 += sc.samples;
        }
    }
    let mut all: Vec<FunctionSamples> = by_name
        .into_iter()
        .map(
            |(function, (self_samples, total_samples))| FunctionSamples {
                function,
                self_samples,
                total_samples,
            },
        )
        .collect();
    all.sort_by(|a, b| {
        (b.self_samples, b.total_samples, &a.function).cmp(&(
            a.self_samples,
            a.total_samples,
            &b.function,
        ))
    });
    all
}

fn function_name(frame: &Frame) -> String {
    if frame.is_synthetic() {
        return frame.name.clone();
    }
    let file = if frame.short.is_empty() {
        &frame.filename
    } else {
        &frame.short
    };
    format!("{} ({file})", frame.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, line: u32) -> Frame {
        Frame {
            name: name.into(),
            filename: "/abs/app.py".into(),
            short: "app.py".into(),
            line,
        }
    }

    #[test]
    fn self_and_total_count_each_sample_once() {
        let recursive = StackCount {
            stack: vec![frame("main", 1), frame("fib", 2), frame("fib", 3)].into(),
            samples: 4,
        };
        let other = StackCount {
            stack: vec![frame("main", 1), frame("io", 9)].into(),
            samples: 1,
        };
        let f = functions(&[recursive, other]);
        let get = |n: &str| f.iter().find(|x| x.function == n).cloned().unwrap();
        assert_eq!(get("fib (app.py)").self_samples, 4);
        assert_eq!(get("fib (app.py)").total_samples, 4);
        assert_eq!(get("main (app.py)").total_samples, 5);
        assert_eq!(get("main (app.py)").self_samples, 0);
        assert_eq!(f[0].function, "fib (app.py)");
    }

    #[test]
    fn no_samples_no_svg() {
        assert!(svg("t", &[]).unwrap().is_none());
        let one = StackCount {
            stack: vec![frame("main", 1)].into(),
            samples: 1,
        };
        let svg = svg("t", &[one]).unwrap().unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("main (app.py:1)"));
    }
}
