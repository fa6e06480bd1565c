//! Samples on a timeline: each opens its stack's frames at the time it was
//! taken and holds them until the next sample of its timeline (the last one
//! for one sampling interval); the frames that consecutive samples share
//! stay open. A request is sampled at every tick while it is in flight, so
//! a gap between two of its samples is a tick that came late (a starved
//! sampler) or samples that a timed wait stands for: the stack before it is
//! the best guess, as the flame graph's nearest-tick weights guess too. One request's samples go
//! inside its spans (`spans.rs`), so that speedscope's evented profile and
//! a Chrome trace track, which both need strict nesting, can take them.

use std::sync::Arc;

use timeglass_model::{Frame, Timeline};

use crate::recording::RequestTrack;
use crate::spans::Span;
use crate::view::View;

/// A sample's time, from `start_ns` to `end_ns` on its timeline.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    pub start_ns: u64,
    pub end_ns: u64,
    pub stack: Arc<[Frame]>,
}

/// What a run of the timeline is: one of the spans, or a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Node<'a> {
    Span(usize),
    Frame(&'a Frame),
}

/// A node open from `start_ns` to `end_ns`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Run<'a> {
    pub node: Node<'a>,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The ticks of `timeline` as the view shows them, in nanoseconds since
/// `origin_ns`, each held until the next tick (the last for `interval_ns`;
/// none past `until_ns`). A tick
/// with the same time as the one before it (a request on two threads at
/// once) is left out: a timeline shows one stack at a time.
pub(crate) fn held(
    timeline: &Timeline,
    view: View,
    origin_ns: u64,
    until_ns: u64,
    interval_ns: u64,
) -> Vec<Held> {
    let shown: Vec<Option<Arc<[Frame]>>> = timeline.stacks.iter().map(|s| view.stack(s)).collect();
    let mut ticks = timeline.ticks.iter().peekable();
    let mut out = Vec::with_capacity(timeline.ticks.len());
    while let Some(tick) = ticks.next() {
        while ticks.peek().is_some_and(|next| next.ts_ns == tick.ts_ns) {
            ticks.next();
        }
        let start_ns = tick.ts_ns.saturating_sub(origin_ns).min(until_ns);
        let end_ns = match ticks.peek() {
            Some(next) => next.ts_ns.saturating_sub(origin_ns),
            None => start_ns + interval_ns,
        };
        let end_ns = end_ns.min(until_ns);
        let Some(Some(stack)) = shown.get(tick.stack as usize) else {
            continue;
        };
        if end_ns > start_ns {
            out.push(Held {
                start_ns,
                end_ns,
                stack: stack.clone(),
            });
        }
    }
    out
}

/// A request's samples as the view shows them, on its own timeline (from
/// its start to its end, as its spans).
pub(crate) fn of_request(track: &RequestTrack, view: View) -> Vec<Held> {
    let r = &track.row;
    let until = r.end_ns.saturating_sub(r.start_ns);
    held(&track.timeline, view, r.start_ns, until, track.interval_ns)
}

/// The nodes open over time, in the order they open (each inside the one
/// before it that is still open): the spans (nested, in start order, as
/// `spans()` gives them) outermost, and under the innermost span open at
/// each instant the frames of the sample held then (in time order, not
/// overlapping, as [`held`] gives them). A span of no length opens and
/// closes at its start.
pub(crate) fn runs<'a>(spans: &[Span], samples: &'a [Held]) -> Vec<Run<'a>> {
    let mut times: Vec<u64> = spans
        .iter()
        .flat_map(|s| [s.start_ns, s.end_ns])
        .chain(samples.iter().flat_map(|s| [s.start_ns, s.end_ns]))
        .collect();
    times.sort_unstable();
    times.dedup();
    let mut out: Vec<Run<'a>> = Vec::new();
    // Open runs, outermost first, as indexes into `out`.
    let mut open: Vec<usize> = Vec::new();
    let mut span_chain: Vec<usize> = Vec::new();
    let (mut next_span, mut next_sample) = (0, 0);
    let mut wanted: Vec<Node<'a>> = Vec::new();
    for &at in &times {
        while span_chain.last().is_some_and(|&i| spans[i].end_ns <= at) {
            span_chain.pop();
        }
        let mut instants = Vec::new();
        while next_span < spans.len() && spans[next_span].start_ns <= at {
            match spans[next_span].end_ns > at {
                true => span_chain.push(next_span),
                false => instants.push(next_span),
            }
            next_span += 1;
        }
        while next_sample < samples.len() && samples[next_sample].end_ns <= at {
            next_sample += 1;
        }
        let sample = samples
            .get(next_sample)
            .filter(|s| s.start_ns <= at)
            .map_or(&[][..], |s| &s.stack[..]);
        wanted.clear();
        wanted.extend(span_chain.iter().map(|&i| Node::Span(i)));
        wanted.extend(sample.iter().map(Node::Frame));
        let kept = open
            .iter()
            .zip(&wanted)
            .take_while(|(&run, node)| same(&out[run].node, node))
            .count();
        for run in open.drain(kept..) {
            out[run].end_ns = at;
        }
        for &node in &wanted[kept..] {
            out.push(Run {
                node,
                start_ns: at,
                end_ns: at,
            });
            open.push(out.len() - 1);
        }
        for i in instants {
            out.push(Run {
                node: Node::Span(i),
                start_ns: at,
                end_ns: at,
            });
        }
    }
    out
}

fn same(a: &Node<'_>, b: &Node<'_>) -> bool {
    match (a, b) {
        (Node::Span(x), Node::Span(y)) => x == y,
        (Node::Frame(x), Node::Frame(y)) => std::ptr::eq(*x, *y) || x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use timeglass_model::{State, Tick};

    use crate::spans::tests::span;

    use super::*;

    fn frame(name: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: format!("/srv/{name}.py").into(),
            short: format!("{name}.py").into(),
            line: 1,
        }
    }

    fn stack(names: &[&str]) -> Arc<[Frame]> {
        names.iter().map(|n| frame(n)).collect()
    }

    fn tick(ts_ns: u64, stack: u32) -> Tick {
        Tick {
            ts_ns,
            tid: 7,
            state: State::Python,
            stack,
        }
    }

    #[test]
    fn a_sample_lasts_until_the_next_and_the_last_one_interval() {
        let timeline = Timeline {
            stacks: vec![stack(&["main", "a"]), stack(&["main", "b"])],
            ticks: vec![
                tick(1_010, 0),
                tick(1_020, 0),
                tick(1_020, 1),
                tick(1_030, 1),
                tick(1_070, 0),
                tick(1_100, 1),
            ],
        };
        let got: Vec<(u64, u64, String)> = held(&timeline, View::default(), 1_000, 95, 10)
            .into_iter()
            .map(|h| (h.start_ns, h.end_ns, h.stack[1].name.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (10, 20, "a".into()),
                // The second sample of the same tick is left out.
                (20, 30, "a".into()),
                // A tick that came late: the one before holds until it.
                (30, 70, "b".into()),
                (70, 95, "a".into()),
            ],
            "cut at the end; the last one starts after it"
        );
    }

    #[test]
    fn samples_nest_inside_spans_and_consecutive_frames_merge() {
        let spans = vec![
            span("request", 0, 100),
            span("handler", 0, 60),
            span("sql", 40, 50),
        ];
        let samples = vec![
            Held {
                start_ns: 10,
                end_ns: 20,
                stack: stack(&["main", "a"]),
            },
            Held {
                start_ns: 20,
                end_ns: 45,
                stack: stack(&["main", "b"]),
            },
            Held {
                start_ns: 55,
                end_ns: 70,
                stack: stack(&["main", "b"]),
            },
        ];
        let runs = runs(&spans, &samples);
        let got: Vec<(String, u64, u64)> = runs
            .iter()
            .map(|r| {
                let name = match r.node {
                    Node::Span(i) => spans[i].name.clone(),
                    Node::Frame(f) => f.name.to_string(),
                };
                (name, r.start_ns, r.end_ns)
            })
            .collect();
        let want = [
            ("request", 0, 100),
            ("handler", 0, 60),
            ("main", 10, 40),
            ("a", 10, 20),
            ("b", 20, 40),
            // The statement opens under the handler: what the sample held is cut there.
            ("sql", 40, 50),
            ("main", 40, 45),
            ("b", 40, 45),
            ("main", 55, 60),
            ("b", 55, 60),
            ("main", 60, 70),
            ("b", 60, 70),
        ];
        let want: Vec<(String, u64, u64)> = want
            .iter()
            .map(|&(n, s, e)| (n.to_string(), s, e))
            .collect();
        assert_eq!(got, want);
    }
}
