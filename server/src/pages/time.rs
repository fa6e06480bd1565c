//! Where a request's (or an endpoint's) time went: a stacked bar to scale
//! with its legend, and the event-loop block warning.
//!
//! The bar is an SVG whose rectangles are placed by attributes and coloured
//! by class (`style.css`), so no `style=` attribute is needed and the
//! Content-Security-Policy can drop `'unsafe-inline'` for styles.

use timeglass_store::{Breakdown, LoopBlockRow, RequestRow};

use crate::html::{escape, ms};

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

/// A bar as wide as `scale_ms`, its segments to scale, each with a tooltip.
fn bar(segments: &[Segment], scale_ms: f64, share_of: f64) -> String {
    const WIDTH: f64 = 1000.0;
    let mut x = 0.0;
    let rects: String = segments
        .iter()
        .map(|s| {
            let w = s.ms / scale_ms * WIDTH;
            let rect = format!(
                "<rect class=\"{}\" x=\"{x:.2}\" y=\"0\" width=\"{w:.2}\" height=\"14\"><title>{}: {} ({:.0}%)</title></rect>",
                s.class,
                s.label,
                ms(s.ms),
                s.ms / share_of * 100.0
            );
            x += w;
            rect
        })
        .collect();
    let summary: Vec<String> = segments
        .iter()
        .map(|s| format!("{} {}", s.label, ms(s.ms)))
        .collect();
    format!(
        "<svg class=\"tb-bar\" viewBox=\"0 0 {WIDTH} 14\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">{rects}</svg>",
        escape(&summary.join(", "))
    )
}

fn legend(segments: &[Segment], share_of: f64, value: impl Fn(&Segment) -> String) -> String {
    let items: String = segments
        .iter()
        .map(|s| {
            format!(
                "<li><span class=\"sw {}\"></span>{} <b>{}</b> <span class=\"muted\">{:.0}%</span></li>",
                s.class,
                s.label,
                value(s),
                s.ms / share_of * 100.0
            )
        })
        .collect();
    format!("<ul class=\"tb-legend\">{items}</ul>")
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
        return format!("<p class=\"muted tb-none\">No time breakdown: {why}.</p>");
    };
    let scale = wall_ms.max(b.total_ms()).max(1e-6);
    let segments = segments(b, wall_ms);
    format!(
        "{}{}",
        bar(&segments, scale, scale),
        legend(&segments, scale, |s| ms(s.ms))
    )
}

/// An endpoint's average breakdown per request, as shares of its response time.
pub(crate) fn route_breakdown(avg: &Breakdown) -> String {
    let total = avg.total_ms();
    if total <= 0.0 {
        return "<p class=\"muted tb-none\">No time breakdown recorded for this endpoint.</p>"
            .to_string();
    }
    let segments = segments(avg, total);
    format!(
        "{}{}",
        bar(&segments, total, total),
        legend(&segments, total, |s| format!("{} / request", ms(s.ms)))
    )
}

/// "Blocked the event loop for 84.0 ms at app.py:31 in handler; delayed 3
/// requests", as a warning with links to the delayed requests stored.
pub(crate) fn loop_warning(block: &LoopBlockRow) -> String {
    let at = block
        .line
        .as_deref()
        .map(|l| format!(" at <code>{}</code>", escape(l)))
        .unwrap_or_default();
    let delayed = match block.delayed_marker_ids.len() {
        0 => String::new(),
        n => {
            let links: Vec<String> = block
                .delayed
                .iter()
                .map(|id| format!("<a href=\"/requests/{id}\">#{id}</a>"))
                .collect();
            let missing = n.saturating_sub(block.delayed.len());
            let unstored = match missing {
                0 => String::new(),
                m => format!(" <span class=\"muted\">({m} not recorded)</span>"),
            };
            let list = match links.is_empty() {
                true => String::new(),
                false => format!(": {}", links.join(", ")),
            };
            format!(
                "; delayed {n} request{}{list}{unstored}",
                if n == 1 { "" } else { "s" }
            )
        }
    };
    format!(
        "<div class=\"loop-warning\" role=\"alert\"><strong>Blocked the event loop for {}</strong>{at}{delayed}\
         <span class=\"why muted\">From +{} into the request it ran without yielding: every other request on this worker's event loop waited meanwhile.</span></div>",
        ms(block.blocked_ms),
        ms(block.start_ms.max(0.0)),
    )
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
        let svg = bar(&s, 100.0, 100.0);
        assert!(svg.contains("class=\"tb-sql\" x=\"250.00\" y=\"0\" width=\"500.00\""));
        assert!(!svg.contains("style="));
        assert_eq!(segments(&b, 75.0).len(), 2, "nothing left over");
    }
}
