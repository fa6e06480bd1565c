//! The bad-input and coverage scores, read from probe rows inserted the way
//! `timeglass probe` stores them (schema v8's probe tables), beside real
//! recorded requests and resource samples in a real SQLite file.

use std::path::Path;

use timeglass_model::{ProfiledRequest, Request};
use timeglass_report::{Report, ReportQuery, Status};
use timeglass_store::testing::{self, TestStore};
use timeglass_store::{
    Batch, ClockMap, NewProbeOperation, NewProbeResult, NewProbeRun, NewSession, ProbeOutcome,
    ProcessSample, SessionId, Store,
};

const MS: u64 = 1_000_000;

struct World {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    session: SessionId,
}

fn request(
    marker_id: u64,
    method: &str,
    route: &str,
    status: u16,
    start_ms: u64,
) -> ProfiledRequest {
    ProfiledRequest::new(Request {
        marker_id,
        pid: 42,
        tid: 42,
        method: method.into(),
        path: route.replace("{item_id}", "7"),
        route: Some(route.into()),
        status: Some(status),
        start_ns: 1_000 * MS + start_ms * MS,
        end_ns: 1_000 * MS + start_ms * MS + 10 * MS,
        response_end_ns: Some(1_000 * MS + start_ms * MS + 10 * MS),
        ..Request::default()
    })
}

/// Three requests to `GET /items` (the third sent by the probe), one to
/// `GET /items/{item_id}` (by the probe), samples of one process.
fn world(cwd: &Path) -> World {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let session = NewSession {
        cwd: cwd.display().to_string(),
        clock: ClockMap {
            mono_ns: 1_000 * MS,
            ..testing::CLOCK
        },
        ..testing::session()
    };
    let TestStore {
        mut store,
        session,
        process,
    } = TestStore::open_with(&path, &session, &testing::process());
    let requests = vec![
        request(1, "GET", "/items", 200, 0),
        request(2, "GET", "/items", 200, 100),
        request(3, "GET", "/items", 422, 200),
        request(4, "GET", "/items/{item_id}", 404, 300),
    ];
    let sample = |ms: u64, cpu: f64, mb: u64| {
        (
            process,
            ProcessSample {
                ts_ns: 1_000 * MS + ms * MS,
                cpu_percent: cpu,
                rss_bytes: mb << 20,
                threads: 4,
                fds: 12,
            },
        )
    };
    store
        .write(&Batch {
            session,
            requests: requests.into_iter().map(|r| (process, r)).collect(),
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![sample(0, 20.0, 50), sample(100, 60.0, 70)],
        })
        .unwrap();
    store
        .end_session(
            session,
            &timeglass_store::SessionEnd {
                exit_code: Some(0),
                samples: 0,
                torn_samples: 0,
                lost_events: 0,
                load: Default::default(),
            },
        )
        .unwrap();
    World {
        _dir: dir,
        path,
        session,
    }
}

/// A probe run written through the store, as `timeglass probe` writes it:
/// four operations, four malformed requests (two of them matched to
/// recorded requests).
fn insert_probe(path: &Path, session: SessionId) {
    let operation = |method: &str, route: &str| NewProbeOperation {
        method: method.into(),
        route: route.into(),
        cases: 1,
        skipped: None,
    };
    /// `(method, route, status, outcome, recorded request)`.
    type Sent<'a> = (&'a str, &'a str, Option<u16>, ProbeOutcome, Option<i64>);
    let sent: [Sent; 4] = [
        ("GET", "/items", Some(422), ProbeOutcome::Rejected, Some(3)),
        (
            "GET",
            "/items/{item_id}",
            Some(404),
            ProbeOutcome::Rejected,
            Some(4),
        ),
        ("POST", "/orders", Some(500), ProbeOutcome::Failed, None),
        ("GET", "/health", None, ProbeOutcome::Hung, None),
    ];
    let run = NewProbeRun {
        session: Some(session),
        started_ms: 1_790_000_000_000,
        ended_ms: 1_790_000_001_000,
        url: "http://127.0.0.1:8000".into(),
        schema_url: "/openapi.json".into(),
        truncated: false,
        operations: sent.iter().map(|(m, r, ..)| operation(m, r)).collect(),
        results: sent
            .iter()
            .map(
                |&(method, route, status, outcome, request_id)| NewProbeResult {
                    method: method.into(),
                    route: route.into(),
                    kind: "wrong_type".into(),
                    target: "query:q".into(),
                    url: "http://127.0.0.1:8000/x".into(),
                    status,
                    outcome,
                    elapsed_us: 1000,
                    error: None,
                    request_id,
                },
            )
            .collect(),
    };
    Store::open(path).unwrap().write_probe_run(&run).unwrap();
}

fn build(w: &World) -> Report {
    let store = Store::open_existing(&w.path).unwrap();
    Report::build(
        &store,
        &ReportQuery::default(),
        &[],
        timeglass_report::now_unix_ns(),
    )
    .unwrap()
}

fn score<'a>(r: &'a Report, name: &str) -> &'a timeglass_report::Score {
    r.scores.iter().find(|s| s.benchmark == name).unwrap()
}

#[test]
fn without_a_probe_run_bad_input_and_coverage_are_not_measured() {
    let cwd = tempfile::tempdir().unwrap();
    let w = world(cwd.path());
    let r = build(&w);
    for name in ["bad_input_4xx", "coverage"] {
        let s = score(&r, name);
        assert_eq!((s.status, s.value), (Status::NotMeasured, None), "{name}");
        assert!(s.note.contains("run `timeglass probe`"), "{}", s.note);
    }
    assert_eq!((r.bad_input.as_ref(), r.coverage.as_ref()), (None, None));
    assert_eq!(r.overall.requests, 4);
    assert_eq!(
        (r.process.cpu_percent_peak, r.process.rss_mb_peak),
        (Some(60.0), Some(70.0))
    );
    assert_eq!(r.process.cpu_percent_avg, Some(40.0));
}

#[test]
fn the_latest_probe_run_scores_bad_input_and_coverage() {
    let cwd = tempfile::tempdir().unwrap();
    let w = world(cwd.path());
    insert_probe(&w.path, w.session);
    let r = build(&w);
    let b = r.bad_input.as_ref().unwrap();
    assert_eq!(
        (b.sent, b.answered_4xx, b.answered_5xx, b.no_answer),
        (4, 2, 1, 1)
    );
    let bad = score(&r, "bad_input_4xx");
    assert_eq!((bad.value, bad.status), (Some(0.5), Status::Fail));
    // Only GET /items had traffic the probe did not send.
    let c = r.coverage.as_ref().unwrap();
    assert_eq!((c.operations, c.exercised), (4, 1));
    let never: Vec<String> = c
        .never_exercised
        .iter()
        .map(|e| format!("{} {}", e.method, e.route.as_deref().unwrap()))
        .collect();
    assert_eq!(
        never,
        ["GET /health", "GET /items/{item_id}", "POST /orders"]
    );
    let coverage = score(&r, "coverage");
    assert_eq!(
        (coverage.value, coverage.status),
        (Some(0.25), Status::Fail)
    );
    assert!(r.failed());
}

#[test]
fn thresholds_in_the_sessions_directory_change_the_verdict() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        cwd.path().join("pyproject.toml"),
        "[tool.timeglass.thresholds]\nbad_input_4xx = { warn = 0.9, fail = 0.4 }\ncoverage = { warn = 0.5, fail = 0.2 }\nerror_rate_5xx = 0.5\n",
    )
    .unwrap();
    let w = world(cwd.path());
    insert_probe(&w.path, w.session);
    let r = build(&w);
    assert_eq!(
        r.thresholds_file.as_deref(),
        Some(cwd.path().join("pyproject.toml").as_path())
    );
    assert_eq!(score(&r, "bad_input_4xx").status, Status::Warn);
    assert_eq!(score(&r, "coverage").status, Status::Warn);
    assert!(!r.failed(), "{:#?}", r.scores);
}
