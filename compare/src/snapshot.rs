//! A snapshot: one session's per-endpoint figures, samples, profiles and
//! statements, with the settings it was recorded under. A baseline is a
//! snapshot kept under a name; `baseline export` writes it as JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};
use timeglass_report::stats::Stats;
use timeglass_report::{ReportQuery, Selection};
use timeglass_store::{Endpoint, SessionId, SessionInfo, Store};

use crate::machine;
use crate::profile::{self, PathWeight};
use crate::stats::spread_sample;
use crate::CompareError;

/// What `format` says in every baseline document.
pub const FORMAT: &str = "timeglass-baseline";
/// The version of the document's layout; a reader refuses any other.
pub const FORMAT_VERSION: u32 = 1;
/// Requests per endpoint whose times a snapshot keeps for the statistical
/// test, spread evenly over the session.
pub const MAX_SAMPLES: usize = 2000;

/// What a session was recorded under; a comparison warns when these
/// differ and refuses when the sampling mode does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Of the `timeglass` that took the snapshot.
    pub timeglass_version: String,
    pub rate_hz: u32,
    /// `wall` or `gil-only`; `None` for sessions recorded before TimeGlass
    /// stored it.
    pub sample_mode: Option<String>,
    pub python_version: Option<String>,
    /// `git rev-parse HEAD` of the session's working directory, when it
    /// is in a repository.
    pub git_commit: Option<String>,
    pub cpu_model: Option<String>,
    /// Share of the session's wall time in which a task ready to run
    /// waited for a CPU; `None` where unknown (and in older snapshots).
    #[serde(default)]
    pub cpu_wait: Option<f64>,
    /// Share of the CPUs' time the hypervisor gave to other guests.
    #[serde(default)]
    pub steal: Option<f64>,
    /// Seconds the app's request threads waited for a CPU per second they ran.
    #[serde(default)]
    pub app_wait: Option<f64>,
}

/// How often one statement ran per request, and its time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatementRate {
    pub normalized: String,
    pub per_request: f64,
    pub ms_per_request: f64,
}

/// One endpoint of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointSnapshot {
    pub method: String,
    /// `None` for requests no route matched.
    pub route: Option<String>,
    pub stats: Stats,
    /// Response times of up to [`MAX_SAMPLES`] requests, in µs.
    pub durations_us: Vec<u64>,
    /// CPU times of the same requests where measured, in µs.
    pub cpu_us: Vec<u64>,
    pub profile: Vec<PathWeight>,
    pub statements: Vec<StatementRate>,
}

impl EndpointSnapshot {
    pub fn name(&self) -> String {
        format!(
            "{} {}",
            self.method,
            self.route.as_deref().unwrap_or("(no route)")
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: String,
    pub format_version: u32,
    /// The baseline's name, once saved as one.
    #[serde(default)]
    pub name: Option<String>,
    /// The session it was taken of, and when that session started.
    pub session: i64,
    pub session_started_at: String,
    pub settings: Settings,
    pub endpoints: Vec<EndpointSnapshot>,
}

impl Snapshot {
    /// Takes a snapshot of `session` (the latest when `None`).
    pub fn capture(store: &Store, session: Option<i64>) -> Result<Snapshot, CompareError> {
        let q = ReportQuery {
            session,
            ..ReportQuery::default()
        };
        let sel = Selection::read(store, &q, timeglass_report::now_unix_ns())?;
        let (_, rows) = sel.stats(store)?;
        let info = &sel.session;
        let mut endpoints = Vec::with_capacity(rows.len());
        for row in rows {
            let endpoint = Endpoint {
                method: row.method.clone(),
                route: row.route.clone(),
            };
            endpoints.push(capture_endpoint(store, info, endpoint, row.stats)?);
        }
        Ok(Snapshot {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            name: None,
            session: info.id.0,
            session_started_at: info.started_at.clone(),
            settings: settings(store, info)?,
            endpoints,
        })
    }

    /// Reads a baseline document, refusing anything else.
    pub fn from_json(text: &str, what: &str) -> Result<Snapshot, CompareError> {
        let not = |why: String| CompareError::NotABaseline {
            what: what.to_string(),
            why,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| not(format!("not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(not(format!("no `\"format\": \"{FORMAT}\"`")));
        }
        let found = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(FORMAT_VERSION)) {
            return Err(CompareError::IncompatibleVersion {
                what: what.to_string(),
                found: found.map_or("none".into(), |v| v.to_string()),
            });
        }
        serde_json::from_value(value).map_err(|e| not(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a snapshot serializes")
    }

    pub fn endpoint(&self, method: &str, route: Option<&str>) -> Option<&EndpointSnapshot> {
        self.endpoints
            .iter()
            .find(|e| e.method == method && e.route.as_deref() == route)
    }
}

fn capture_endpoint(
    store: &Store,
    info: &SessionInfo,
    endpoint: Endpoint,
    stats: Stats,
) -> Result<EndpointSnapshot, CompareError> {
    let requests = store.endpoint_requests(info.id, &endpoint)?;
    let kept = spread_sample(&requests, MAX_SAMPLES);
    let n = stats.requests.max(1) as f64;
    let statements = store
        .endpoint_statements(info.id, &endpoint)?
        .into_iter()
        .map(|s| StatementRate {
            normalized: s.normalized,
            per_request: s.count as f64 / n,
            ms_per_request: s.duration_ns as f64 / 1e6 / n,
        })
        .collect();
    let stacks = store.endpoint_stacks(info.id, &endpoint)?;
    Ok(EndpointSnapshot {
        profile: profile::per_request(&stacks, stats.requests, info.rate_hz),
        durations_us: kept.iter().map(|r| r.duration_us).collect(),
        cpu_us: kept.iter().filter_map(|r| r.cpu_us).collect(),
        method: endpoint.method,
        route: endpoint.route,
        stats,
        statements,
    })
}

fn settings(store: &Store, info: &SessionInfo) -> Result<Settings, CompareError> {
    let python_version = store
        .processes(SessionId(info.id.0))?
        .into_iter()
        .find_map(|p| p.python_version);
    Ok(Settings {
        timeglass_version: env!("CARGO_PKG_VERSION").to_string(),
        rate_hz: info.rate_hz,
        sample_mode: info.sample_mode.clone(),
        python_version,
        git_commit: machine::git_commit(Path::new(&info.cwd)),
        cpu_model: machine::cpu_model(),
        cpu_wait: info.load.cpu_wait,
        steal: info.load.steal,
        app_wait: info.load.app_wait,
    })
}
