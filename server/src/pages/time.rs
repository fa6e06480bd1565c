//! Where a request's (or an endpoint's) time went: a stacked bar to scale
//! with its legend, and the event-loop block warning.
//!
//! The bar is an SVG whose rectangles are placed by attributes and coloured
//! by class (`style.css`), so no `style=` attribute is needed and the
//! Content-Security-Policy can drop `'unsafe-inline'` for styles.

use timeglass_store::{Breakdown, LoopBlockRow, RequestRow};

use askama::Template;

use crate::html::{ms, render};

/// The stylesheet's class of each category of `Breakdown::categories`.
fn class_of(key: &str) -> &'static str {
    match key {
        "python" => "tb-python",
        "native" => "tb-native",
        "gc" => "tb-gc",
        "gil_wait" => "tb-gil",
        "blocked" => "tb-blocked",
        "sql" => "tb-sql",
        "http" => "tb-http",
        "await" => "tb-await",
        "queued" => "tb-queued",
        _ => REST.0,
    }
}

/// What was not accounted for by any sample, when the bar is drawn to a
/// longer response time than the breakdown sums to.
const REST: (&str, &str) = ("tb-rest", "not sampled");

/// One drawn segment: class, label, milliseconds.
struct Segment {
    class: &'static str,
    label: &'static str,
    ms: f64,
}

/// The non-zero categories, then what is left of `wall_ms` (if more than a
/// rounding error).
fn segments(b: &Breakdown, wall_ms: f64) -> Vec<Segment> {
    let mut out: Vec<Segment> = b
        .categories()
        .into_iter()
        .filter(|&(_, _, ms)| ms > 0.0)
        .map(|(key, label, ms)| Segment {
            class: class_of(key),
            label,
            ms,
        })
        .collect();
    let rest = wall_ms - b.total_ms();
    if rest > wall_ms * 0.005 && rest > 0.01 {
        out.push(Segment {
            class: REST.0,
            label: REST.1,
            ms: rest,
        });
    }
    out
}

/// The bar's width in its SVG's coordinates (`viewBox="0 0 1000 14"` in
/// `parts/breakdown.html`).
const WIDTH: f64 = 1000.0;

/// A segment as drawn: where on the bar, and what its tooltip and legend say.
struct Drawn {
    class: &'static str,
    label: &'static str,
    x: String,
    width: String,
    ms: String,
    /// Its share of `share_of`, in %.
    share: String,
    /// What the legend says it amounts to.
    value: String,
}

/// A bar as wide as `scale_ms`, its segments to scale, each with a tooltip,
/// and its legend; or why there is none.
#[derive(Template)]
#[template(path = "parts/breakdown.html")]
struct BreakdownTemplate<'a> {
    none: Option<&'a str>,
    summary: String,
    segments: Vec<Drawn>,
}

fn drawn(
    segments: &[Segment],
    scale_ms: f64,
    share_of: f64,
    value: impl Fn(&Segment) -> String,
) -> Vec<Drawn> {
    let mut x = 0.0;
    segments
        .iter()
        .map(|s| {
            let w = s.ms / scale_ms * WIDTH;
            let d = Drawn {
                class: s.class,
                label: s.label,
                x: format!("{x:.2}"),
                width: format!("{w:.2}"),
                ms: ms(s.ms),
                share: format!("{:.0}", s.ms / share_of * 100.0),
                value: value(s),
            };
            x += w;
            d
        })
        .collect()
}

fn breakdown(segments: &[Segment], scale_ms: f64, value: impl Fn(&Segment) -> String) -> String {
    let summary: Vec<String> = segments
        .iter()
        .map(|s| format!("{} {}", s.label, ms(s.ms)))
        .collect();
    render(&BreakdownTemplate {
        none: None,
        summary: summary.join(", "),
        segments: drawn(segments, scale_ms, scale_ms, value),
    })
}

/// What stands in for a breakdown there is not.
fn no_breakdown(why: &str) -> String {
    render(&BreakdownTemplate {
        none: Some(why),
        summary: String::new(),
        segments: Vec::new(),
    })
}

/// The request's breakdown, to scale of its response time (what the join
/// breaks down: background work after the response is not in it), with
/// each category's milliseconds and share.
pub(crate) fn request_breakdown(r: &RequestRow) -> String {
    let wall_ms = r.duration_ms;
    let Some(b) = r.breakdown.as_ref().filter(|b| b.total_ms() > 0.0) else {
        let why = match (r.breakdown, r.samples) {
            (None, _) => "recorded before TimeGlass kept a time breakdown",
            (Some(_), 0) => "no samples were taken while it ran",
            (Some(_), _) => "its recorder did not sample what the request was doing",
        };
        return no_breakdown(&format!("No time breakdown: {why}."));
    };
    let scale = wall_ms.max(b.total_ms()).max(1e-6);
    breakdown(&segments(b, wall_ms), scale, |s| ms(s.ms))
}

/// An endpoint's average breakdown per request, as shares of its response
/// time; `None` when none was recorded.
pub(crate) fn route_breakdown(avg: Option<&Breakdown>) -> String {
    let Some(avg) = avg.filter(|avg| avg.total_ms() > 0.0) else {
        return no_breakdown("No time breakdown recorded for this endpoint.");
    };
    let total = avg.total_ms();
    breakdown(&segments(avg, total), total, |s| {
        format!("{} / request", ms(s.ms))
    })
}

#[derive(Template)]
#[template(path = "parts/loop_warning.html")]
struct LoopWarning<'a> {
    block: &'a LoopBlockRow,
    blocked: String,
    start: String,
    /// How many requests it delayed, stored or not.
    delayed: usize,
    unstored: usize,
}

/// "Blocked the event loop for 84.0 ms at app.py:31 in handler; delayed 3
/// requests", as a warning with links to the delayed requests stored.
pub(crate) fn loop_warning(block: &LoopBlockRow) -> String {
    let delayed = block.delayed_marker_ids.len();
    render(&LoopWarning {
        block,
        blocked: ms(block.blocked_ms),
        start: ms(block.start_ms.max(0.0)),
        delayed,
        unstored: delayed.saturating_sub(block.delayed.len()),
    })
}

/// The hover text of a list row's loop badge: the line and the time.
pub(crate) fn loop_title(block: &LoopBlockRow) -> String {
    let at = block
        .line
        .as_deref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default();
    let delayed = match block.delayed_marker_ids.len() {
        0 => String::new(),
        1 => "; delayed 1 request".to_string(),
        n => format!("; delayed {n} requests"),
    };
    format!(
        "blocked the event loop for {}{at}{delayed}",
        ms(block.blocked_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(delayed_marker_ids: Vec<u64>, delayed: Vec<i64>) -> LoopBlockRow {
        LoopBlockRow {
            blocked_ms: 84.0,
            start_ms: 3.0,
            line: Some("app.py:31 in handler".into()),
            delayed_marker_ids,
            delayed,
        }
    }

    #[test]
    fn the_warning_names_the_line_the_time_and_the_delayed_requests() {
        let html = loop_warning(&block(vec![5, 6, 7], vec![12, 13]));
        assert!(
            html.contains("Blocked the event loop for 84.0 ms</strong> at <code>app.py:31 in handler</code>; delayed 3 requests: <a href=\"/requests/12\">#12</a>, <a href=\"/requests/13\">#13</a>"),
            "{html}"
        );
        assert!(html.contains("(1 not recorded)"));
        let alone = loop_warning(&block(vec![], vec![]));
        assert!(!alone.contains("delayed"), "{alone}");
        assert_eq!(
            loop_title(&block(vec![1], vec![])),
            "blocked the event loop for 84.0 ms at app.py:31 in handler; delayed 1 request"
        );
    }

    #[test]
    fn segments_are_to_scale_and_say_what_was_not_sampled() {
        let b = Breakdown {
            python_ms: 25.0,
            sql_ms: 50.0,
            ..Breakdown::default()
        };
        let s = segments(&b, 100.0);
        let drawn: Vec<(&str, f64)> = s.iter().map(|s| (s.class, s.ms)).collect();
        assert_eq!(
            drawn,
            [("tb-python", 25.0), ("tb-sql", 50.0), ("tb-rest", 25.0)]
        );
        let svg = breakdown(&s, 100.0, |s| ms(s.ms));
        assert!(svg.contains("class=\"tb-sql\" x=\"250.00\" y=\"0\" width=\"500.00\""));
        assert!(!svg.contains("style="));
        assert_eq!(segments(&b, 75.0).len(), 2, "nothing left over");
    }
}
