//! `timeglass probe`: bad input for an app, built from its OpenAPI schema.
//!
//! One job in four steps: read the schema ([`schema`]), build a bounded,
//! ordered set of malformed requests per operation ([`cases`]), send them
//! ([`send`]), and say how the app answered each ([`Outcome`]). Finding the
//! recorded request that served each one is [`matching`]; storing and
//! printing are the CLI's.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod cases;
pub mod matching;
pub mod schema;
pub mod send;

use std::net::IpAddr;
use std::time::Duration;

use url::{Host, Url};

pub use cases::{Case, Kind};
pub use matching::{match_requests, Recorded, Sent};
pub use schema::Operation;
pub use send::{Answer, Client, Outcome, TAG_HEADER};

/// The defaults of `timeglass probe`'s options.
pub mod defaults {
    use std::time::Duration;

    /// Where FastAPI serves its schema.
    pub const OPENAPI: &str = "/openapi.json";
    pub const MAX_REQUESTS: usize = 500;
    pub const TIMEOUT: Duration = Duration::from_secs(5);
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` is not an http:// URL (e.g. `http://127.0.0.1:8000`)")]
    BadUrl(String),

    #[error(
        "`{url}` uses https, which the probe does not speak; probe the app over plain http, \
         on loopback"
    )]
    Https { url: String },

    #[error(
        "`{host}` is not a loopback address; the probe sends malformed requests, so it only \
         sends them to this machine (127.0.0.1, ::1, localhost) unless `--allow-remote` is given"
    )]
    NotLoopback { host: String },

    #[error("could not reach `{url}` ({reason}); is the app running? start it with `timeglass run -- uvicorn app:app`")]
    Unreachable { url: String, reason: String },

    #[error("`{url}` answered {status} instead of the schema; pass its path with `--openapi`")]
    SchemaStatus { url: String, status: u16 },

    #[error("the schema is not an OpenAPI 3.x document: {0}")]
    NotOpenApi(String),
}

/// Where to probe: the app's base URL and its schema's URL, both checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub base: Url,
    pub schema: Url,
}

/// Parses `url` and the schema's location (a path under it, or a URL of
/// its own) and refuses anything but plain HTTP to loopback unless
/// `allow_remote`.
pub fn target(url: &str, openapi: &str, allow_remote: bool) -> Result<Target, ProbeError> {
    let base = http_url(url, allow_remote)?;
    let schema = if openapi.starts_with('/') {
        let mut u = base.clone();
        let prefix = base.path().trim_end_matches('/');
        u.set_path(&format!("{prefix}{openapi}"));
        u
    } else {
        http_url(openapi, allow_remote)?
    };
    Ok(Target { base, schema })
}

fn http_url(text: &str, allow_remote: bool) -> Result<Url, ProbeError> {
    let url = Url::parse(text).map_err(|_| ProbeError::BadUrl(text.to_owned()))?;
    match url.scheme() {
        "http" => {}
        "https" => return Err(ProbeError::Https { url: text.into() }),
        _ => return Err(ProbeError::BadUrl(text.to_owned())),
    }
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(ProbeError::BadUrl(text.to_owned())),
    };
    if !loopback && !allow_remote {
        let host = url.host_str().unwrap_or_default().to_owned();
        return Err(ProbeError::NotLoopback { host });
    }
    Ok(url)
}

/// Why an operation of the schema got no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// POST, PUT, PATCH or DELETE without `--include-unsafe`.
    UnsafeMethod,
    /// `--max-requests` was reached before it.
    MaxRequests,
    /// Nothing in its schema can be malformed (no parameters, no body).
    NothingToBreak,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::UnsafeMethod => "unsafe method",
            Skip::MaxRequests => "max requests reached",
            Skip::NothingToBreak => "nothing to break",
        }
    }
}

/// Methods that may change the app's data.
pub fn is_unsafe(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// One operation and the cases it gets.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub method: String,
    pub route: String,
    /// In sending order; possibly cut short by `--max-requests`.
    pub cases: Vec<Case>,
    pub skipped: Option<Skip>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub operations: Vec<Planned>,
    /// `--max-requests` cut some cases off.
    pub truncated: bool,
}

impl Plan {
    pub fn requests(&self) -> usize {
        self.operations.iter().map(|o| o.cases.len()).sum()
    }
}

/// Every operation with its cases, in order, at most `max_requests` cases
/// in all; unsafe methods get none unless `include_unsafe`.
pub fn plan(ops: &[Operation], include_unsafe: bool, max_requests: usize) -> Plan {
    let mut left = max_requests;
    let mut truncated = false;
    let operations = ops
        .iter()
        .map(|op| {
            let (mut cases, mut skipped) = (Vec::new(), None);
            if is_unsafe(&op.method) && !include_unsafe {
                skipped = Some(Skip::UnsafeMethod);
            } else {
                cases = cases::cases(op);
                if cases.is_empty() {
                    skipped = Some(Skip::NothingToBreak);
                } else if cases.len() > left {
                    truncated = true;
                    cases.truncate(left);
                    if cases.is_empty() {
                        skipped = Some(Skip::MaxRequests);
                    }
                }
                left -= cases.len();
            }
            Planned {
                method: op.method.clone(),
                route: op.route.clone(),
                cases,
                skipped,
            }
        })
        .collect();
    Plan {
        operations,
        truncated,
    }
}

/// After this many requests in a row without an answer (hung or refused)
/// the app is taken to be down or wedged, and the rest is not sent: an app
/// that answers nothing gets a report in seconds, not in `--max-requests`
/// timeouts.
pub const MAX_SILENT_IN_A_ROW: usize = 5;

/// What sending a plan gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Sending {
    /// Per planned operation, the answers to its cases, in order.
    pub answers: Vec<Vec<Answer>>,
    /// [`MAX_SILENT_IN_A_ROW`] requests in a row got no answer, so the rest
    /// was not sent.
    pub gave_up: bool,
}

impl Sending {
    pub fn sent(&self) -> usize {
        self.answers.iter().map(Vec::len).sum()
    }
}

/// Sends every case of the plan, in order, one at a time; request `n` of
/// the run carries the tag `<run_tag>-<n>`.
pub fn send_all(plan: &Plan, client: &Client, run_tag: &str) -> Sending {
    let mut answers = Vec::with_capacity(plan.operations.len());
    let (mut seq, mut silent) = (0usize, 0usize);
    for op in &plan.operations {
        let mut mine = Vec::with_capacity(op.cases.len());
        for case in &op.cases {
            if silent >= MAX_SILENT_IN_A_ROW {
                break;
            }
            let answer = client.send(case, format!("{run_tag}-{seq}"));
            seq += 1;
            silent = if answer.status.is_none() {
                silent + 1
            } else {
                0
            };
            mine.push(answer);
        }
        answers.push(mine);
    }
    Sending {
        answers,
        gave_up: silent >= MAX_SILENT_IN_A_ROW && seq < plan.requests(),
    }
}

/// `5 s`, `1.5 s`.
pub fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        let t = target("http://127.0.0.1:8000", "/openapi.json", false).unwrap();
        assert_eq!(t.schema.as_str(), "http://127.0.0.1:8000/openapi.json");
        let t = target("http://localhost:9/api/", "/openapi.json", false).unwrap();
        assert_eq!(t.schema.as_str(), "http://localhost:9/api/openapi.json");
        assert!(target("http://[::1]:8000", "/o.json", false).is_ok());
        assert!(target("http://127.8.0.1", "/o.json", false).is_ok());
        let err = target("http://10.1.2.3:8000", "/openapi.json", false).unwrap_err();
        assert!(matches!(err, ProbeError::NotLoopback { host } if host == "10.1.2.3"));
        assert!(target("http://10.1.2.3:8000", "/openapi.json", true).is_ok());
        let err = target("http://127.0.0.1", "http://example.com/o.json", false).unwrap_err();
        assert!(matches!(err, ProbeError::NotLoopback { .. }));
        assert!(matches!(
            target("https://127.0.0.1", "/o", false),
            Err(ProbeError::Https { .. })
        ));
        assert!(matches!(
            target("127.0.0.1:8000", "/o", false),
            Err(ProbeError::BadUrl(_))
        ));
    }
}
