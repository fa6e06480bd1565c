//! Judges recorded traffic: what `timeglass report`, `/api/v1/stats` and
//! the dashboard's Report page show.
//!
//! [`Report::build`] reads one session's requests in a time window from the
//! store (each endpoint's sums and sorted response times, and every
//! request's start and end), and computes `<stats>` per
//! endpoint and overall (`stats.rs`, nearest-rank percentiles from
//! `percentile.rs`), the throughput windows (`throughput.rs`), the
//! processes' figures (`process.rs`) and the score against thresholds read
//! from the app's configuration (`thresholds.rs`, `score.rs`). It renders
//! nothing: the CLI and the server do.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod percentile;
pub mod process;
pub mod score;
pub mod series;
pub mod stats;
pub mod thresholds;
pub mod throughput;
mod time;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use timeglass_store::{
    Endpoint, EndpointTotals, RouteMatch, SessionId, SessionInfo, Store, StoreError, Timing,
    Totals, WindowQuery,
};

pub use process::ProcessFigures;
pub use score::{Score, Status};
pub use stats::{EndpointStats, Stats};
pub use thresholds::Thresholds;
pub use throughput::{Span, Throughput};
pub use time::{now_unix_ns, parse_time};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("no session {0} in the store; `timeglass sessions` lists them")]
    UnknownSession(i64),
    #[error("no session recorded yet; record one with `timeglass run -- uvicorn app:app`")]
    NoSession,
    #[error("`{0}` is not a time: give RFC 3339 (`2026-05-01T12:00:00Z`) or a time ago (`90s`, `10m`, `2h`, `1d`)")]
    BadTime(String),
    #[error("`--since` is not before `--until`")]
    EmptyRange,
    #[error("`{0}` is not a status class; use 2xx, 3xx, 4xx or 5xx")]
    BadStatus(String),
    #[error(
        "`{0}` is not a response time: give a number of milliseconds, 0 or more (`250`, `1.5`)"
    )]
    BadMinMs(String),
    #[error("no endpoint of session {session} matches route `{route}`; `timeglass report --session {session}` lists them")]
    NoRoute { session: i64, route: String },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
}

impl ReportError {
    /// Whether the user asked for something that does not exist or does
    /// not parse (exit 2), rather than the store failing.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ReportError::Store(_))
    }
}

/// What to report on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportQuery {
    /// The latest session when `None`.
    pub session: Option<i64>,
    /// RFC 3339 or a time ago (`10m`).
    pub since: Option<String>,
    pub until: Option<String>,
    pub method: Option<String>,
    pub route: Option<RouteMatch>,
    /// `2xx` ... `5xx` (or the digit alone): only requests answered with a
    /// status of that class, as `timeglass requests --status` selects them.
    pub status: Option<String>,
    /// Only requests whose response time is at least this many
    /// milliseconds (`250`, `1.5`).
    pub min_ms: Option<String>,
}

/// `2xx` → 2 (`1xx` to `5xx`, either case, or the digit alone).
fn status_class(text: &str) -> Result<u8, ReportError> {
    let digit = text
        .strip_suffix("xx")
        .or_else(|| text.strip_suffix("XX"))
        .unwrap_or(text);
    match digit.parse::<u8>() {
        Ok(class @ 1..=5) => Ok(class),
        _ => Err(ReportError::BadStatus(text.to_string())),
    }
}

/// `250` (ms) → 250,000 us.
fn min_duration_us(text: &str) -> Result<u64, ReportError> {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok((ms * 1000.0).round() as u64),
        _ => Err(ReportError::BadMinMs(text.to_string())),
    }
}

/// The span judged, as wall-clock times.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowInfo {
    /// RFC 3339.
    pub start: String,
    pub end: String,
    pub seconds: f64,
}

/// Which OpenAPI operations of the latest probe run received traffic.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Coverage {
    pub probe_run: i64,
    pub operations: u64,
    pub exercised: u64,
    pub never_exercised: Vec<Endpoint>,
}

/// How the app answered the probe's malformed requests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BadInput {
    pub probe_run: i64,
    pub sent: u64,
    pub answered_4xx: u64,
    pub answered_5xx: u64,
    /// No answer: a timeout or a refused connection.
    pub no_answer: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub session: i64,
    pub window: WindowInfo,
    /// `nearest-rank`: see [`percentile`].
    pub percentile: &'static str,
    /// The file the thresholds came from; `None`: the defaults.
    pub thresholds_file: Option<PathBuf>,
    pub overall: Stats,
    pub endpoints: Vec<EndpointStats>,
    pub throughput: Throughput,
    pub process: ProcessFigures,
    pub bad_input: Option<BadInput>,
    pub coverage: Option<Coverage>,
    pub scores: Vec<Score>,
}

/// A session's requests in a window, resolved from a [`ReportQuery`]:
/// each endpoint's sums, read at once; response times and start times are
/// read when asked for.
pub struct Selection {
    pub session: SessionInfo,
    pub span: Span,
    /// What the store is asked for.
    pub query: WindowQuery,
    pub endpoints: Vec<EndpointTotals>,
}

impl Selection {
    /// Reads the requests `q` selects. `now_unix_ns` anchors relative times
    /// and the end of a session still recording.
    pub fn read(
        store: &Store,
        q: &ReportQuery,
        now_unix_ns: i128,
    ) -> Result<Selection, ReportError> {
        let session = match q.session {
            Some(id) => store
                .session_info(SessionId(id))?
                .ok_or(ReportError::UnknownSession(id))?,
            None => store.latest_session()?.ok_or(ReportError::NoSession)?,
        };
        let clock = session.clock;
        let to_mono = |unix: i128| -> u64 {
            let mono = unix - i128::from(clock.unix_ns) + i128::from(clock.mono_ns);
            mono.clamp(0, i128::from(u64::MAX)) as u64
        };
        let since = q
            .since
            .as_deref()
            .map(|t| parse_time(t, now_unix_ns))
            .transpose()?;
        let until = q
            .until
            .as_deref()
            .map(|t| parse_time(t, now_unix_ns))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(ReportError::EmptyRange);
            }
        }
        let query = WindowQuery {
            session: session.id,
            since_ns: since.map(to_mono),
            until_ns: until.map(to_mono),
            method: q.method.clone(),
            route: q.route.clone(),
            status_class: q.status.as_deref().map(status_class).transpose()?,
            min_duration_us: q.min_ms.as_deref().map(min_duration_us).transpose()?,
        };
        let endpoints = store.endpoint_totals(&query)?;
        if endpoints.is_empty() {
            if let Some(route) = &q.route {
                // Whether the route exists at all: an endpoint with no 5xx
                // or no slow request still matches it.
                let anytime = WindowQuery {
                    since_ns: None,
                    until_ns: None,
                    status_class: None,
                    min_duration_us: None,
                    ..query.clone()
                };
                if store.endpoint_totals(&anytime)?.is_empty() {
                    let (RouteMatch::Exact(text) | RouteMatch::Contains(text)) = route;
                    return Err(ReportError::NoRoute {
                        session: session.id.0,
                        route: text.clone(),
                    });
                }
            }
        }
        let session_end = match &session.ended_at {
            Some(end) => parse_time(end, now_unix_ns)?,
            None => now_unix_ns,
        };
        let last_end = endpoints
            .iter()
            .map(|e| e.totals.last_end_ns)
            .max()
            .unwrap_or(0);
        let start_ns = query.since_ns.unwrap_or(clock.mono_ns);
        let end_ns = query
            .until_ns
            .unwrap_or_else(|| to_mono(session_end).max(last_end))
            .max(start_ns);
        Ok(Selection {
            session,
            span: Span { start_ns, end_ns },
            query,
            endpoints,
        })
    }

    /// `<stats>` overall, and per endpoint most requests first. Each
    /// endpoint's response times come sorted from the store; the overall
    /// ones are those runs merged.
    pub fn stats(&self, store: &Store) -> Result<(Stats, Vec<EndpointStats>), ReportError> {
        let seconds = self.span.seconds();
        let mut overall = Totals::default();
        let mut runs = Vec::with_capacity(self.endpoints.len());
        let mut rows = Vec::with_capacity(self.endpoints.len());
        for e in &self.endpoints {
            let durations = store.durations(&self.query, &e.endpoint)?;
            rows.push(EndpointStats {
                method: e.endpoint.method.clone(),
                route: e.endpoint.route.clone(),
                stats: Stats::of(&e.totals, &durations, seconds),
            });
            overall.add(&e.totals);
            runs.push(durations);
        }
        stats::sort_endpoints(&mut rows);
        let all = stats::merge_sorted(runs);
        Ok((Stats::of(&overall, &all, seconds), rows))
    }

    /// When each selected request ran, in start order.
    pub fn timeline(&self, store: &Store) -> Result<Vec<Timing>, ReportError> {
        Ok(store.timeline(&self.query)?)
    }

    /// RFC 3339 of a monotonic time of the session.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        let unix = self.session.clock.unix_ns_at(mono_ns);
        let ms = i64::try_from(unix.div_euclid(1_000_000)).unwrap_or(0);
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default()
    }
}

impl Report {
    /// Reads and judges what `q` selects. `config_dirs` are searched for
    /// thresholds after the session's own directory (the current one).
    pub fn build(
        store: &Store,
        q: &ReportQuery,
        config_dirs: &[&Path],
        now_unix_ns: i128,
    ) -> Result<Report, ReportError> {
        let sel = Selection::read(store, q, now_unix_ns)?;
        let session_dir = PathBuf::from(&sel.session.cwd);
        let mut dirs: Vec<&Path> = vec![&session_dir];
        dirs.extend(config_dirs.iter().copied().filter(|d| *d != session_dir));
        let thresholds = Thresholds::find(&dirs)?;
        let (overall, endpoints) = sel.stats(store)?;
        let samples = store.process_samples(
            sel.session.id,
            Some(sel.span.start_ns),
            Some(sel.span.end_ns.saturating_add(1)),
        )?;
        let process = ProcessFigures::of(&process::app_samples(&samples));
        let probe = store.probe_summary(sel.session.id)?;
        let bad_input = probe.as_ref().map(|p| BadInput {
            probe_run: p.run_id,
            sent: p.sent,
            answered_4xx: p.rejected_4xx,
            answered_5xx: p.failed_5xx,
            no_answer: p.hung + p.connection_errors,
        });
        let coverage = match &probe {
            Some(p) => Some(coverage(p, &store.exercised_endpoints(sel.session.id)?)),
            None => None,
        };
        let scores = score::scores(&thresholds, |name| {
            measure(
                name,
                &overall,
                &process,
                bad_input.as_ref(),
                coverage.as_ref(),
            )
        });
        Ok(Report {
            session: sel.session.id.0,
            window: WindowInfo {
                start: sel.rfc3339(sel.span.start_ns),
                end: sel.rfc3339(sel.span.end_ns),
                seconds: sel.span.seconds(),
            },
            percentile: "nearest-rank",
            thresholds_file: thresholds.source.clone(),
            endpoints,
            throughput: Throughput::of(&sel.timeline(store)?, sel.span),
            overall,
            process,
            bad_input,
            coverage,
            scores,
        })
    }

    /// Whether any benchmark failed (`timeglass report` exits 1 then).
    pub fn failed(&self) -> bool {
        self.scores.iter().any(|s| s.status == Status::Fail)
    }
}

const NO_PROBE: &str = "not measured: run `timeglass probe` while recording";

fn measure(
    name: &str,
    overall: &Stats,
    process: &ProcessFigures,
    bad_input: Option<&BadInput>,
    coverage: Option<&Coverage>,
) -> (score::Measured, String) {
    let n = overall.requests;
    let no_requests = || Err("not measured: no requests in the window".to_string());
    let share = |count: u64| {
        if n == 0 {
            no_requests()
        } else {
            Ok(count as f64 / n as f64)
        }
    };
    let latency = overall.latency_ms.as_ref();
    match name {
        "p90_latency" => (
            latency.map(|l| l.p90).ok_or(()).or_else(|_| no_requests()),
            format!("over {n} requests"),
        ),
        "p99_latency" => (
            latency.map(|l| l.p99).ok_or(()).or_else(|_| no_requests()),
            format!("over {n} requests"),
        ),
        "error_rate_5xx" => (
            share((overall.error_rate_5xx * n as f64).round() as u64),
            "answered 5xx or not at all".into(),
        ),
        "db_time_share" => (
            if n == 0 {
                no_requests()
            } else {
                Ok(overall.db_time_share)
            },
            "of the summed response time waited on SQL".into(),
        ),
        "n_plus_one" => (
            share(overall.n_plus_one),
            format!("{} requests flagged as likely N+1s", overall.n_plus_one),
        ),
        "loop_blocks" => (
            share(overall.loop_blocks),
            format!("{} requests blocked the event loop", overall.loop_blocks),
        ),
        "peak_cpu" => (
            process.cpu_percent_peak.ok_or_else(no_samples),
            "of one core, all processes together".into(),
        ),
        "peak_rss" => (
            process.rss_mb_peak.ok_or_else(no_samples),
            "resident memory, all processes together".into(),
        ),
        "bad_input_4xx" => match bad_input {
            Some(b) if b.sent > 0 => (
                Ok(b.answered_4xx as f64 / b.sent as f64),
                format!(
                    "{} of {} malformed requests answered 4xx; {} 5xx, {} no answer",
                    b.answered_4xx, b.sent, b.answered_5xx, b.no_answer
                ),
            ),
            Some(_) => (
                Err("not measured: the probe sent nothing".into()),
                String::new(),
            ),
            None => (Err(NO_PROBE.into()), String::new()),
        },
        "coverage" => match coverage {
            Some(c) if c.operations > 0 => (
                Ok(c.exercised as f64 / c.operations as f64),
                format!(
                    "{} of {} operations received traffic besides the probe's",
                    c.exercised, c.operations
                ),
            ),
            Some(_) => (
                Err("not measured: the probe's schema had no operations".into()),
                String::new(),
            ),
            None => (Err(NO_PROBE.into()), String::new()),
        },
        other => unreachable!("benchmark `{other}` has no measure"),
    }
}

fn no_samples() -> String {
    "not measured: no resource samples in the window".to_string()
}

/// `/items/{item_id:int}` and `/items/{item_id}` name the same operation:
/// Starlette keeps a path converter in the route, OpenAPI does not.
fn template_key(method: &str, route: &str) -> (String, String) {
    let mut out = String::with_capacity(route.len());
    let mut in_param = false;
    let mut skipping = false;
    for c in route.chars() {
        match c {
            '{' => (in_param, skipping) = (true, false),
            '}' => (in_param, skipping) = (false, false),
            ':' if in_param => skipping = true,
            _ if skipping => continue,
            _ => {}
        }
        if !skipping || c == '}' {
            out.push(c);
        }
    }
    (method.to_ascii_uppercase(), out)
}

fn coverage(probe: &timeglass_store::ProbeSummary, exercised: &[Endpoint]) -> Coverage {
    let seen: HashSet<(String, String)> = exercised
        .iter()
        .filter_map(|e| Some(template_key(&e.method, e.route.as_deref()?)))
        .collect();
    let never: Vec<Endpoint> = probe
        .operations
        .iter()
        .filter(|(method, route)| !seen.contains(&template_key(method, route)))
        .map(|(method, route)| Endpoint {
            method: method.clone(),
            route: Some(route.clone()),
        })
        .collect();
    Coverage {
        probe_run: probe.run_id,
        operations: probe.operations.len() as u64,
        exercised: (probe.operations.len() - never.len()) as u64,
        never_exercised: never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_and_response_times_parse_or_are_bad_input() {
        assert_eq!(status_class("5xx").unwrap(), 5);
        assert_eq!(status_class("2XX").unwrap(), 2);
        assert_eq!(status_class("4").unwrap(), 4);
        for bad in ["6xx", "0xx", "teapot", "", "50x", "500"] {
            let e = status_class(bad).unwrap_err();
            assert!(
                e.is_bad_input() && e.to_string().contains("status class"),
                "{bad}"
            );
        }
        assert_eq!(min_duration_us("250").unwrap(), 250_000);
        assert_eq!(min_duration_us("1.5").unwrap(), 1_500);
        assert_eq!(min_duration_us("0").unwrap(), 0);
        for bad in ["-1", "NaN", "inf", "fast", ""] {
            let e = min_duration_us(bad).unwrap_err();
            assert!(
                e.is_bad_input() && e.to_string().contains("milliseconds"),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_converters_do_not_change_the_operation() {
        assert_eq!(
            template_key("get", "/files/{path:path}"),
            ("GET".into(), "/files/{path}".into())
        );
        assert_eq!(
            template_key("GET", "/a/{x}/b"),
            ("GET".into(), "/a/{x}/b".into())
        );
    }
}
