//! A request's wall time as stages: middleware, handler, sending the
//! response, background work. The request page's timeline and the Chrome
//! trace draw them.

use serde::Serialize;
use timeglass_model::RequestContext;
use timeglass_store::RequestRow;

/// A span of the request's wall time, from its start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage {
    pub name: &'static str,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// The request's wall time split at the response start (when the context
/// says when it was), the last body chunk, and the end of the app's call.
pub fn stages(r: &RequestRow, context: Option<&RequestContext>) -> Vec<Stage> {
    let at = |ns: u64| ns.saturating_sub(r.start_ns) as f64 / 1e6;
    let end = at(r.end_ns);
    let sent = r.response_end_ns.map(at).map(|t| t.min(end));
    let started = context
        .and_then(|c| c.response_start_ns)
        .map(at)
        .filter(|&t| t <= sent.unwrap_or(end));
    let mut out = Vec::new();
    let handler_end = started.or(sent).unwrap_or(end);
    let handler = match started.or(sent) {
        Some(_) if started.is_none() => "handler and response",
        _ => "handler",
    };
    let handler_start = context
        .and_then(|c| c.handler_start_ns)
        .map(at)
        .filter(|&t| t <= handler_end)
        .unwrap_or(0.0);
    if handler_start > 0.0 {
        out.push(Stage {
            name: "middleware & dependencies",
            start_ms: 0.0,
            end_ms: handler_start,
        });
    }
    out.push(Stage {
        name: handler,
        start_ms: handler_start,
        end_ms: handler_end,
    });
    if let (Some(started), Some(sent)) = (started, sent) {
        out.push(Stage {
            name: "sending response",
            start_ms: started,
            end_ms: sent,
        });
    }
    if let Some(sent) = sent.filter(|&s| end > s) {
        out.push(Stage {
            name: "background",
            start_ms: sent,
            end_ms: end,
        });
    }
    out
}
