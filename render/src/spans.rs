//! A request's spans on its own timeline (the request, its stages, its SQL
//! statements and HTTP calls), nested so that formats which need strict
//! nesting (speedscope's evented profiles, one Chrome trace track) can take
//! them: each span lies within its parent.

use crate::recording::RequestTrack;

/// One span, in nanoseconds since the request started.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub name: String,
    /// `request`, `stage`, `sql` or `http`.
    pub category: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
    /// What a viewer shows beside it: the statement's text, the URL, rows.
    pub args: Vec<(&'static str, serde_json::Value)>,
}

/// How long a span's name may be; the whole text is in its args.
const NAME_CHARS: usize = 120;

fn short(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(NAME_CHARS) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

fn ns(ms: f64) -> u64 {
    (ms * 1e6).round().max(0.0) as u64
}

/// The request's spans outermost first: the request, then its stages, then
/// statements and calls, each within the one before it that contains its
/// start (a statement running past its stage's end is cut there; its own
/// duration stays in its args).
pub fn spans(track: &RequestTrack) -> Vec<Span> {
    let r = &track.row;
    let total = r.end_ns.saturating_sub(r.start_ns);
    let route = r.route.as_deref().unwrap_or(&r.path);
    let mut out = vec![Span {
        name: format!("{} {route}", r.method),
        category: "request",
        start_ns: 0,
        end_ns: total,
        args: vec![
            ("request_id", r.id.into()),
            ("path", r.path.clone().into()),
            (
                "status",
                r.status.map_or(serde_json::Value::Null, Into::into),
            ),
            ("duration_ms", r.duration_ms.into()),
        ],
    }];
    for stage in &track.stages {
        out.push(Span {
            name: stage.name.to_string(),
            category: "stage",
            start_ns: ns(stage.start_ms),
            end_ns: ns(stage.end_ms),
            args: Vec::new(),
        });
    }
    let mut io: Vec<Span> = Vec::new();
    for q in &track.queries {
        io.push(Span {
            name: format!("[sql] {}", short(&q.sql)),
            category: "sql",
            start_ns: ns(q.start_ms),
            end_ns: ns(q.start_ms + q.duration_ms),
            args: vec![
                ("sql", q.sql.clone().into()),
                (
                    "params",
                    q.params.clone().map_or(serde_json::Value::Null, Into::into),
                ),
                ("rows", q.rows.map_or(serde_json::Value::Null, Into::into)),
                ("driver", q.driver.clone().into()),
                ("duration_ms", q.duration_ms.into()),
                (
                    "error",
                    q.error.clone().map_or(serde_json::Value::Null, Into::into),
                ),
            ],
        });
    }
    for c in &track.calls {
        io.push(Span {
            name: format!("[http] {} {}", c.method, short(&c.url)),
            category: "http",
            start_ns: ns(c.start_ms),
            end_ns: ns(c.start_ms + c.duration_ms),
            args: vec![
                ("url", c.url.clone().into()),
                (
                    "status",
                    c.status.map_or(serde_json::Value::Null, Into::into),
                ),
                ("library", c.library.clone().into()),
                ("duration_ms", c.duration_ms.into()),
                (
                    "error",
                    c.error.clone().map_or(serde_json::Value::Null, Into::into),
                ),
            ],
        });
    }
    out.extend(io);
    let rank = |c: &str| {
        ["request", "stage", "sql", "http"]
            .iter()
            .position(|&x| x == c)
    };
    out.sort_by_key(|s| (s.start_ns, std::cmp::Reverse(s.end_ns), rank(s.category)));
    nest(out)
}

/// Clamps each span (sorted by start, longest first) into the innermost
/// earlier span that contains its start, so that they form a tree.
fn nest(spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    let mut open: Vec<usize> = Vec::new();
    for mut span in spans {
        while let Some(&top) = open.last() {
            let parent = &out[top];
            if span.start_ns >= parent.start_ns && span.start_ns < parent.end_ns {
                break;
            }
            open.pop();
        }
        if let Some(&top) = open.last() {
            span.end_ns = span.end_ns.min(out[top].end_ns);
        } else if let Some(root) = out.first() {
            // Outside the request span (a clock edge): keep it inside.
            span.start_ns = span.start_ns.min(root.end_ns);
            span.end_ns = span.end_ns.clamp(span.start_ns, root.end_ns);
        }
        span.end_ns = span.end_ns.max(span.start_ns);
        out.push(span);
        open.push(out.len() - 1);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn span(name: &str, start_ns: u64, end_ns: u64) -> Span {
        Span {
            name: name.into(),
            category: "stage",
            start_ns,
            end_ns,
            args: Vec::new(),
        }
    }

    #[test]
    fn spans_are_cut_to_the_span_that_holds_their_start() {
        let nested = nest(vec![
            span("request", 0, 100),
            span("handler", 0, 80),
            span("q1", 10, 20),
            span("q2", 15, 90),
            span("send", 80, 100),
        ]);
        let got: Vec<(&str, u64, u64)> = nested
            .iter()
            .map(|s| (s.name.as_str(), s.start_ns, s.end_ns))
            .collect();
        // q2 starts inside q1 (run concurrently) and is cut to it.
        assert_eq!(
            got,
            [
                ("request", 0, 100),
                ("handler", 0, 80),
                ("q1", 10, 20),
                ("q2", 15, 20),
                ("send", 80, 100),
            ]
        );
    }
}
