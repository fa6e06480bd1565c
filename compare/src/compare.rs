//! Two snapshots side by side: per endpoint the figures of A and B, the
//! tests of latency and CPU time, the exact changes of statements per
//! request and N+1s, a verdict, and what explains it.

use serde::Serialize;

use crate::profile::{self, FunctionDelta, PathDelta};
use crate::snapshot::{EndpointSnapshot, Settings, Snapshot};
use crate::stats::{self, Change, Statistic, TestOptions, Tested};
use crate::CompareError;

/// A change in statements per request smaller than this is rounding.
const EXACT: f64 = 1e-9;
/// At most this many functions explain one endpoint's change.
const MAX_FUNCTIONS: usize = 5;
/// Sessions whose loads could account for more than this share of a
/// change (in either direction) are not judged on latency alone.
pub const LOAD_GAP: f64 = 0.10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Faster,
    Slower,
    Same,
    /// Latency changed, but by no more than the difference in the
    /// machine's load between the sessions explains, and nothing exact
    /// (statements, N+1s) got worse.
    Unsure,
    /// Only in B.
    New,
    /// Only in A.
    Gone,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::Same => "same",
            Verdict::Unsure => "unsure",
            Verdict::New => "new",
            Verdict::Gone => "gone",
        }
    }
}

/// One endpoint's figures on one side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Side {
    pub requests: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub cpu_ms_per_request: Option<f64>,
    pub queries_per_request: f64,
    pub db_ms_per_request: f64,
    /// Requests flagged as likely N+1s.
    pub n_plus_one: u64,
    pub error_rate_5xx: f64,
}

impl Side {
    fn of(e: &EndpointSnapshot) -> Side {
        let l = e.stats.latency_ms.as_ref();
        Side {
            requests: e.stats.requests,
            p50_ms: l.map(|l| l.p50),
            p95_ms: l.map(|l| l.p95),
            p99_ms: l.map(|l| l.p99),
            cpu_ms_per_request: e.stats.cpu_ms_avg,
            queries_per_request: e.stats.queries_avg,
            db_ms_per_request: e.stats.db_ms_avg,
            n_plus_one: e.stats.n_plus_one,
            error_rate_5xx: e.stats.error_rate_5xx,
        }
    }

    pub fn n_plus_one_rate(&self) -> f64 {
        self.n_plus_one as f64 / self.requests.max(1) as f64
    }
}

/// A statement whose count per request changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatementChange {
    pub normalized: String,
    pub a_per_request: f64,
    pub b_per_request: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointComparison {
    pub method: String,
    pub route: Option<String>,
    pub verdict: Verdict,
    pub a: Option<Side>,
    pub b: Option<Side>,
    /// Latency p50 and p95, then CPU time per request (mean).
    pub tests: Vec<Tested>,
    /// Queries per request, B − A.
    pub queries_added: f64,
    /// B flags a larger share of requests as N+1s than A.
    pub n_plus_one_added: bool,
    /// Why the verdict is what it is, one sentence each.
    pub reasons: Vec<String>,
    /// The functions whose time per request changed most (on a change).
    pub functions: Vec<FunctionDelta>,
    pub statements: Vec<StatementChange>,
}

impl EndpointComparison {
    pub fn name(&self) -> String {
        format!(
            "{} {}",
            self.method,
            self.route.as_deref().unwrap_or("(no route)")
        )
    }

    /// Whether a latency test found B slower, by more than the machine's
    /// load explains.
    pub fn timing_slower(&self) -> bool {
        self.latency_tests()
            .any(|t| t.change == Change::Slower && !t.explained_by_load)
    }

    /// The reasons that are latency tests' findings.
    pub fn latency_reasons(&self) -> impl Iterator<Item = &String> {
        self.reasons.iter().filter(|r| r.contains(" latency "))
    }

    /// The tests that decide the verdict: latency. CPU time per request is
    /// tested and shown, but it decides nothing: it comes from samples, and
    /// for code that waits on a clock it follows preemption (measured here:
    /// the same handler at 3.7 and 2.8 ms of CPU in two sessions whose
    /// latency matched), so it would cry wolf.
    pub fn latency_tests(&self) -> impl Iterator<Item = &Tested> {
        self.tests.iter().filter(|t| t.statistic != Statistic::Mean)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub a_session: i64,
    pub b_session: i64,
    pub a_settings: Settings,
    pub b_settings: Settings,
    /// Settings that differ; the figures may not compare.
    pub warnings: Vec<String>,
    /// The machine was far busier in one session than in the other.
    pub load: Option<LoadShift>,
    /// How the verdicts were reached (for the JSON output and the docs).
    pub method: Method,
    pub endpoints: Vec<EndpointComparison>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Method {
    pub test: &'static str,
    pub resamples: usize,
    pub confidence: f64,
    pub min_ratio: f64,
    pub min_abs_ms: f64,
    pub min_samples: usize,
    pub seed: u64,
}

/// How much a busier machine alone could slow B against A. Each side's
/// slowdown is `(1 + wait) / (1 - steal)`: the app's request threads
/// waited `wait` seconds for a CPU per second they ran (their
/// `schedstat`), and the hypervisor took `steal` of the CPUs' time, which
/// the guest's counts do not see. `factor` is B's over A's: below 1 when A
/// was the busier. A machine busy with other work but with CPUs to spare
/// for the app slows nothing, and shifts nothing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LoadShift {
    pub a_slowdown: f64,
    pub b_slowdown: f64,
    pub factor: f64,
}

impl LoadShift {
    /// `None` when either side's wait is unknown, or the factor is within
    /// [`LOAD_GAP`] of 1.
    pub fn between(a: &Settings, b: &Settings) -> Option<LoadShift> {
        let (a_slowdown, b_slowdown) = (slowdown(a)?, slowdown(b)?);
        let factor = b_slowdown / a_slowdown;
        if factor.max(1.0 / factor) <= 1.0 + LOAD_GAP {
            return None;
        }
        Some(LoadShift {
            a_slowdown,
            b_slowdown,
            factor,
        })
    }

    /// Whether `t`'s change is one the load alone could make: in the
    /// direction of the busier side, with the near end of its interval
    /// (the least change the data allow) within `factor`.
    fn explains(&self, t: &Tested) -> bool {
        match t.change {
            Change::Slower => {
                self.factor > 1.0 && t.low.or(t.ratio).is_some_and(|l| l <= self.factor)
            }
            Change::Faster => {
                self.factor < 1.0 && t.high.or(t.ratio).is_some_and(|h| h >= self.factor)
            }
            Change::Same => false,
        }
    }
}

/// How much longer than on an idle machine a session's CPU work took, when
/// its app's wait is known; steal is capped so that the factor stays finite.
fn slowdown(s: &Settings) -> Option<f64> {
    let wait = s.app_wait?;
    Some((1.0 + wait) / (1.0 - s.steal.unwrap_or(0.0).min(0.9)))
}

/// `the app waited 0.45 s for a CPU per second it ran, steal 2%, CPU pressure 97%`.
fn load_text(s: &Settings) -> String {
    let pct =
        |v: Option<f64>| v.map_or_else(|| "unknown".to_string(), |v| format!("{:.0}%", v * 100.0));
    let wait = s.app_wait.map_or_else(
        || "unknown".to_string(),
        |w| format!("{w:.2} s per second it ran"),
    );
    format!(
        "the app waited for a CPU {wait}, steal {}, CPU pressure {}",
        pct(s.steal),
        pct(s.cpu_wait)
    )
}

/// Compares B against A. Refuses snapshots sampled in different modes and
/// snapshots without an endpoint in common.
pub fn compare(a: &Snapshot, b: &Snapshot, o: &TestOptions) -> Result<Comparison, CompareError> {
    let (ma, mb) = (&a.settings.sample_mode, &b.settings.sample_mode);
    if let (Some(x), Some(y)) = (ma, mb) {
        if x != y {
            return Err(CompareError::ModeMismatch {
                a: x.clone(),
                b: y.clone(),
            });
        }
    }
    let common = a
        .endpoints
        .iter()
        .filter(|e| b.endpoint(&e.method, e.route.as_deref()).is_some())
        .count();
    if common == 0 {
        return Err(CompareError::NoCommonEndpoint {
            a: a.session,
            b: b.session,
        });
    }
    let load = LoadShift::between(&a.settings, &b.settings);
    let mut endpoints: Vec<EndpointComparison> = a
        .endpoints
        .iter()
        .map(|ea| {
            endpoint(
                Some(ea),
                b.endpoint(&ea.method, ea.route.as_deref()),
                load,
                o,
            )
        })
        .collect();
    endpoints.extend(
        b.endpoints
            .iter()
            .filter(|eb| a.endpoint(&eb.method, eb.route.as_deref()).is_none())
            .map(|eb| endpoint(None, Some(eb), load, o)),
    );
    let mut warnings = warnings(&a.settings, &b.settings);
    if let Some(l) = load {
        let (busier, calmer) = if l.factor > 1.0 {
            (("B", &b.settings), ("A", &a.settings))
        } else {
            (("A", &a.settings), ("B", &b.settings))
        };
        warnings.push(format!(
            "the machine was busier in {}: {} ({}: {}); latency changes within ×{:.2} are put down to it",
            busier.0,
            load_text(busier.1),
            calmer.0,
            load_text(calmer.1),
            l.factor.max(1.0 / l.factor),
        ));
    }
    Ok(Comparison {
        a_session: a.session,
        b_session: b.session,
        warnings,
        load,
        a_settings: a.settings.clone(),
        b_settings: b.settings.clone(),
        method: Method {
            test: "percentile bootstrap of the B/A ratio of p50, p95 and mean CPU time",
            resamples: o.resamples,
            confidence: o.confidence,
            min_ratio: o.min_ratio,
            min_abs_ms: o.min_abs_us / 1000.0,
            min_samples: o.min_samples,
            seed: o.seed,
        },
        endpoints,
    })
}

fn warnings(a: &Settings, b: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |what: &str, x: Option<String>, y: Option<String>| {
        if x != y {
            let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
            out.push(format!(
                "{what} differs: {} in A, {} in B",
                show(x),
                show(y)
            ));
        }
    };
    differ(
        "the sampling rate",
        Some(format!("{} Hz", a.rate_hz)),
        Some(format!("{} Hz", b.rate_hz)),
    );
    differ(
        "the sampling mode",
        a.sample_mode.clone(),
        b.sample_mode.clone(),
    );
    differ(
        "the Python version",
        a.python_version.clone(),
        b.python_version.clone(),
    );
    differ("the CPU model", a.cpu_model.clone(), b.cpu_model.clone());
    differ(
        "the TimeGlass version",
        Some(a.timeglass_version.clone()),
        Some(b.timeglass_version.clone()),
    );
    out
}

fn endpoint(
    a: Option<&EndpointSnapshot>,
    b: Option<&EndpointSnapshot>,
    load: Option<LoadShift>,
    o: &TestOptions,
) -> EndpointComparison {
    let any = a.or(b).expect("one side at least");
    let mut out = EndpointComparison {
        method: any.method.clone(),
        route: any.route.clone(),
        verdict: if a.is_none() {
            Verdict::New
        } else {
            Verdict::Gone
        },
        a: a.map(Side::of),
        b: b.map(Side::of),
        tests: Vec::new(),
        queries_added: 0.0,
        n_plus_one_added: false,
        reasons: Vec::new(),
        functions: Vec::new(),
        statements: Vec::new(),
    };
    let (Some(a), Some(b)) = (a, b) else {
        return out;
    };
    out.tests = vec![
        stats::test(&a.durations_us, &b.durations_us, Statistic::P50, o),
        stats::test(&a.durations_us, &b.durations_us, Statistic::P95, o),
        stats::test(&a.cpu_us, &b.cpu_us, Statistic::Mean, o),
    ];
    if let Some(load) = load {
        for t in out
            .tests
            .iter_mut()
            .filter(|t| t.statistic != Statistic::Mean)
        {
            t.explained_by_load = load.explains(t);
        }
    }
    let (sa, sb) = (Side::of(a), Side::of(b));
    out.queries_added = sb.queries_per_request - sa.queries_per_request;
    out.n_plus_one_added = sb.n_plus_one_rate() > sa.n_plus_one_rate() + EXACT;
    out.statements = statement_changes(a, b);
    out.verdict = verdict(&out);
    out.reasons = reasons(&out);
    if out.verdict != Verdict::Same {
        out.functions = explaining_functions(a, b, o.min_abs_us / 1000.0);
    }
    out
}

/// Slower when a latency test says so, or B runs more statements per
/// request or flags more N+1s (more work per request, even where the
/// timing cannot tell yet); faster when a latency test says so, or B runs
/// fewer statements, and nothing got worse. CPU time decides neither way.
/// A latency change that the machine's load explains makes the verdict
/// unsure, unless something else made it slower.
fn verdict(c: &EndpointComparison) -> Verdict {
    let worse = c.timing_slower() || c.queries_added > EXACT || c.n_plus_one_added;
    let better = c
        .latency_tests()
        .any(|t| t.change == Change::Faster && !t.explained_by_load)
        || c.queries_added < -EXACT;
    let unsure = c.latency_tests().any(|t| t.explained_by_load);
    match (worse, unsure, better) {
        (true, _, _) => Verdict::Slower,
        (false, true, _) => Verdict::Unsure,
        (false, false, true) => Verdict::Faster,
        (false, false, false) => Verdict::Same,
    }
}

fn reasons(c: &EndpointComparison) -> Vec<String> {
    let mut out = Vec::new();
    for t in c.tests.iter().filter(|t| t.change != Change::Same) {
        let what = match t.statistic {
            Statistic::Mean => "CPU time per request (not deciding)".to_string(),
            s => format!("{} latency", s.name()),
        };
        let pct = |r: f64| format!("{:+.0}%", (r - 1.0) * 100.0);
        out.push(format!(
            "{what} {:.1} → {:.1} ms ({}, {:.0}% interval {} to {}){}",
            t.a.unwrap_or(0.0) / 1000.0,
            t.b.unwrap_or(0.0) / 1000.0,
            pct(t.ratio.unwrap_or(1.0)),
            crate::stats::defaults::CONFIDENCE * 100.0,
            pct(t.low.unwrap_or(1.0)),
            pct(t.high.unwrap_or(1.0)),
            if t.explained_by_load {
                ", within what the busier machine explains"
            } else {
                ""
            },
        ));
    }
    if c.queries_added.abs() > EXACT {
        let (a, b) = (
            c.a.as_ref().map_or(0.0, |s| s.queries_per_request),
            c.b.as_ref().map_or(0.0, |s| s.queries_per_request),
        );
        out.push(format!("queries per request {a:.1} → {b:.1}"));
    }
    if c.n_plus_one_added {
        out.push("more requests flagged as likely N+1s".into());
    }
    out
}

fn statement_changes(a: &EndpointSnapshot, b: &EndpointSnapshot) -> Vec<StatementChange> {
    let mut out: Vec<StatementChange> = Vec::new();
    for s in &a.statements {
        let other = b.statements.iter().find(|t| t.normalized == s.normalized);
        out.push(StatementChange {
            normalized: s.normalized.clone(),
            a_per_request: s.per_request,
            b_per_request: other.map_or(0.0, |t| t.per_request),
        });
    }
    for s in &b.statements {
        if !a.statements.iter().any(|t| t.normalized == s.normalized) {
            out.push(StatementChange {
                normalized: s.normalized.clone(),
                a_per_request: 0.0,
                b_per_request: s.per_request,
            });
        }
    }
    out.retain(|s| (s.b_per_request - s.a_per_request).abs() > EXACT);
    out.sort_by(|x, y| {
        let d = |s: &StatementChange| (s.b_per_request - s.a_per_request).abs();
        d(y).total_cmp(&d(x))
    });
    out
}

/// The functions whose own time per request changed by at least `min_ms`,
/// largest change first.
fn explaining_functions(
    a: &EndpointSnapshot,
    b: &EndpointSnapshot,
    min_ms: f64,
) -> Vec<FunctionDelta> {
    let paths = path_diff(a, b);
    profile::function_deltas(&paths)
        .into_iter()
        .filter(|f| f.self_change().abs() >= min_ms)
        .take(MAX_FUNCTIONS)
        .collect()
}

/// The per-request profile difference of one endpoint: every frame path
/// with its ms per request in A and in B, for a differential flame graph.
pub fn path_diff(a: &EndpointSnapshot, b: &EndpointSnapshot) -> Vec<PathDelta> {
    profile::path_deltas(&a.profile, &b.profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(durations_ms: &[u64], cpu_ms: &[u64]) -> EndpointSnapshot {
        EndpointSnapshot {
            method: "GET".into(),
            route: Some("/compute".into()),
            stats: Default::default(),
            durations_us: durations_ms.iter().map(|ms| ms * 1000).collect(),
            cpu_us: cpu_ms.iter().map(|ms| ms * 1000).collect(),
            profile: Vec::new(),
            statements: Vec::new(),
        }
    }

    /// Latency the same, CPU time halved or doubled: CPU time is tested and
    /// shown, but the verdict stays "same" both ways.
    #[test]
    fn cpu_time_alone_decides_no_verdict() {
        let durations: Vec<u64> = (0..40).map(|i| 5 + i % 3).collect();
        let (low, high) = (vec![2; 40], vec![4; 40]);
        let o = TestOptions::default();
        for (a, b, cpu) in [(&high, &low, Change::Faster), (&low, &high, Change::Slower)] {
            let c = endpoint(
                Some(&side(&durations, a)),
                Some(&side(&durations, b)),
                None,
                &o,
            );
            let mean = c
                .tests
                .iter()
                .find(|t| t.statistic == Statistic::Mean)
                .unwrap();
            assert_eq!(mean.change, cpu);
            assert_eq!(c.verdict, Verdict::Same, "{:?}", c.reasons);
        }
        let faster: Vec<u64> = durations.iter().map(|d| d + 5).collect();
        let c = endpoint(
            Some(&side(&faster, &high)),
            Some(&side(&durations, &high)),
            None,
            &o,
        );
        assert_eq!(c.verdict, Verdict::Faster, "{:?}", c.reasons);
    }

    fn loaded(app_wait: Option<f64>, steal: Option<f64>) -> Settings {
        Settings {
            timeglass_version: "0".into(),
            rate_hz: 1000,
            sample_mode: Some("wall".into()),
            python_version: None,
            git_commit: None,
            cpu_model: None,
            cpu_wait: Some(0.5),
            steal,
            app_wait,
        }
    }

    #[test]
    fn loads_within_the_gap_or_unknown_shift_nothing() {
        let quiet = loaded(Some(0.05), Some(0.0));
        assert_eq!(
            LoadShift::between(&quiet, &loaded(Some(0.12), Some(0.0))),
            None
        );
        assert_eq!(LoadShift::between(&quiet, &loaded(None, Some(0.5))), None);
        let busy = LoadShift::between(&quiet, &loaded(Some(1.0), Some(0.0))).unwrap();
        assert!((busy.factor - 2.0 / 1.05).abs() < 1e-9, "{busy:?}");
        let calmer = LoadShift::between(&loaded(Some(1.0), Some(0.0)), &quiet).unwrap();
        assert!((calmer.factor - 1.05 / 2.0).abs() < 1e-9, "{calmer:?}");
        // Steal, which the app's counts do not see, slows it too.
        let stolen = LoadShift::between(&quiet, &loaded(Some(0.05), Some(0.5))).unwrap();
        assert!((stolen.factor - 2.0).abs() < 1e-9, "{stolen:?}");
    }

    /// p50 doubled: unsure when the busier B explains twice the time,
    /// slower when it explains less, and slower whatever the load when
    /// B also runs more statements.
    #[test]
    fn a_busier_machine_makes_latency_alone_unsure() {
        let o = TestOptions::default();
        let fast: Vec<u64> = (0..40).map(|i| 5 + i % 3).collect();
        let slow: Vec<u64> = fast.iter().map(|d| d * 2).collect();
        let (a, b) = (side(&fast, &[1; 40]), side(&slow, &[1; 40]));
        let quiet = loaded(Some(0.0), Some(0.0));
        let shift = |wait: f64| LoadShift::between(&quiet, &loaded(Some(wait), Some(0.0)));
        let c = endpoint(Some(&a), Some(&b), shift(1.5), &o);
        assert_eq!(c.verdict, Verdict::Unsure, "{:?}", c.reasons);
        assert!(!c.timing_slower());
        assert!(
            c.reasons
                .iter()
                .any(|r| r.ends_with("within what the busier machine explains")),
            "{:?}",
            c.reasons
        );
        let c = endpoint(Some(&a), Some(&b), shift(0.3), &o);
        assert_eq!(c.verdict, Verdict::Slower, "{:?}", c.reasons);
        let mut more = b.clone();
        more.stats.queries_avg = 3.0;
        let c = endpoint(Some(&a), Some(&more), shift(1.5), &o);
        assert_eq!(c.verdict, Verdict::Slower, "{:?}", c.reasons);
        // Faster on the busier machine is no load's doing.
        let c = endpoint(Some(&b), Some(&a), shift(1.5), &o);
        assert_eq!(c.verdict, Verdict::Faster, "{:?}", c.reasons);
        // And faster when A was the busier one is unsure.
        let calmer = LoadShift::between(&loaded(Some(1.5), Some(0.0)), &quiet);
        let c = endpoint(Some(&b), Some(&a), calmer, &o);
        assert_eq!(c.verdict, Verdict::Unsure, "{:?}", c.reasons);
    }
}
