//! `<stats>` from `endpoint_minutes` and the partial minutes at a window's
//! edges equal the same figures computed here request by request, with the
//! one nearest-rank definition, over a real SQLite store.

use timeglass_model::{ProfiledRequest, Request};
use timeglass_report::percentile::{nearest_rank, Permille};
use timeglass_report::{ReportQuery, Selection, Stats};
use timeglass_store::testing::{self, TestStore};
use timeglass_store::{ClockMap, NewSession, RouteMatch, Store};

const MS: u64 = 1_000_000;
const CLOCK: ClockMap = ClockMap {
    mono_ns: 1_000 * MS,
    unix_ns: 1_790_000_000_000_000_000,
};

/// Requests every 700 ms for about four minutes of the monotonic clock, so
/// that they span several rows of `endpoint_minutes`: three endpoints (one
/// without a route), 4xx, 5xx and raised-without-status answers.
fn requests() -> Vec<Request> {
    (0..360u64)
        .map(|i| {
            let start_ns = 50_000 * MS + i * 700 * MS;
            let (method, route) = match i % 3 {
                0 => ("GET", Some("/items")),
                1 => ("POST", Some("/items")),
                _ => ("GET", None),
            };
            let status = match i % 11 {
                0 => Some(503),
                1 => Some(422),
                2 => None,
                _ => Some(200),
            };
            Request {
                marker_id: i + 1,
                pid: 42,
                tid: 42,
                method: method.into(),
                path: "/items".into(),
                route: route.map(str::to_string),
                status,
                errored: status.is_none(),
                start_ns,
                end_ns: start_ns + (1 + (i * 37) % 50) * MS,
                ..Request::default()
            }
        })
        .collect()
}

fn store(dir: &std::path::Path) -> Store {
    let session = NewSession {
        cwd: dir.display().to_string(),
        clock: CLOCK,
        ..testing::session()
    };
    let mut t = TestStore::open_with(&dir.join("t.db"), &session, &testing::process());
    // Two batches: the trigger adds the second to the rows of the first.
    let all = requests();
    for half in all.chunks(all.len() / 2 + 7) {
        t.write(half.iter().map(|r| ProfiledRequest::new(r.clone())));
    }
    t.store
}

fn rfc3339(mono_ns: u64) -> String {
    let unix = CLOCK.unix_ns + (mono_ns - CLOCK.mono_ns) as i64;
    jiff::Timestamp::from_nanosecond(i128::from(unix))
        .unwrap()
        .to_string()
}

/// What the report must say about `selected`, computed directly.
fn expect(selected: &[&Request], stats: &Stats) {
    let mut us: Vec<u64> = selected
        .iter()
        .map(|r| (r.end_ns - r.start_ns) / 1000)
        .collect();
    us.sort_unstable();
    let n = us.len() as f64;
    assert_eq!(stats.requests, us.len() as u64);
    let e5 = selected
        .iter()
        .filter(|r| r.status.map_or(r.errored, |s| s >= 500))
        .count();
    let e4 = selected
        .iter()
        .filter(|r| matches!(r.status, Some(400..=499)))
        .count();
    assert_eq!(stats.error_rate_5xx, e5 as f64 / n);
    assert_eq!(stats.rate_4xx, e4 as f64 / n);
    let l = stats.latency_ms.as_ref().unwrap();
    let ms = |p| nearest_rank(&us, p).unwrap() as f64 / 1000.0;
    assert_eq!(
        [l.min, l.p50, l.p90, l.p95, l.p99, l.p99_9, l.max],
        [
            us[0] as f64 / 1000.0,
            ms(Permille::P50),
            ms(Permille::P90),
            ms(Permille::P95),
            ms(Permille::P99),
            ms(Permille::P99_9),
            *us.last().unwrap() as f64 / 1000.0,
        ]
    );
    let avg = us.iter().sum::<u64>() as f64 / 1000.0 / n;
    assert!((l.avg - avg).abs() < 1e-9);
}

fn check(store: &Store, q: ReportQuery, keep: impl Fn(&Request) -> bool) {
    let all = requests();
    let selected: Vec<&Request> = all.iter().filter(|r| keep(r)).collect();
    let sel = Selection::read(store, &q, timeglass_report::now_unix_ns()).unwrap();
    let (overall, endpoints) = sel.stats(store).unwrap();
    expect(&selected, &overall);
    for e in &endpoints {
        let mine: Vec<&Request> = selected
            .iter()
            .copied()
            .filter(|r| r.method == e.method && r.route == e.route)
            .collect();
        expect(&mine, &e.stats);
    }
    let total: u64 = endpoints.iter().map(|e| e.stats.requests).sum();
    assert_eq!(total, selected.len() as u64);
}

#[test]
fn the_whole_session_sums_its_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    check(&store, ReportQuery::default(), |_| true);
}

#[test]
fn a_window_adds_its_partial_minutes_request_by_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    // From 75.3 s to 200.1 s: partial minutes 1 and 3, whole minute 2.
    let (since, until) = (75_300 * MS, 200_100 * MS);
    let q = ReportQuery {
        since: Some(rfc3339(since)),
        until: Some(rfc3339(until)),
        ..ReportQuery::default()
    };
    check(&store, q, |r| r.start_ns >= since && r.start_ns < until);
    // Within one minute: no whole minute at all.
    let (since, until) = (130_000 * MS, 150_000 * MS);
    let q = ReportQuery {
        since: Some(rfc3339(since)),
        until: Some(rfc3339(until)),
        ..ReportQuery::default()
    };
    check(&store, q, |r| r.start_ns >= since && r.start_ns < until);
}

#[test]
fn method_and_route_filters_apply_to_the_minutes_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let q = ReportQuery {
        method: Some("get".into()),
        route: Some(RouteMatch::Contains("ITEM".into())),
        since: Some(rfc3339(90_500 * MS)),
        ..ReportQuery::default()
    };
    check(&store, q, |r| {
        r.method == "GET" && r.route.is_some() && r.start_ns >= 90_500 * MS
    });
}

#[test]
fn status_and_response_time_filters_count_the_requests_they_keep() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let took_ms = |r: &Request| (r.end_ns - r.start_ns) / MS;
    // The minutes hold every request: these filters read the rows.
    let q = ReportQuery {
        status: Some("5xx".into()),
        ..ReportQuery::default()
    };
    // 503s only: the raised-without-status requests have no class.
    check(&store, q, |r| r.status == Some(503));
    let q = ReportQuery {
        min_ms: Some("40".into()),
        ..ReportQuery::default()
    };
    check(&store, q, |r| took_ms(r) >= 40);
    let (since, until) = (75_300 * MS, 200_100 * MS);
    let q = ReportQuery {
        since: Some(rfc3339(since)),
        until: Some(rfc3339(until)),
        route: Some(RouteMatch::Contains("items".into())),
        status: Some("2xx".into()),
        min_ms: Some("12.5".into()),
        ..ReportQuery::default()
    };
    check(&store, q, |r| {
        r.start_ns >= since
            && r.start_ns < until
            && r.route.is_some()
            && r.status == Some(200)
            && (r.end_ns - r.start_ns) >= 12_500_000
    });
}

#[test]
fn a_filter_that_keeps_nothing_is_an_empty_report_not_an_unknown_route() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let q = ReportQuery {
        route: Some(RouteMatch::Exact("/items".into())),
        min_ms: Some("10000".into()),
        ..ReportQuery::default()
    };
    let sel = Selection::read(&store, &q, timeglass_report::now_unix_ns()).unwrap();
    let (overall, endpoints) = sel.stats(&store).unwrap();
    assert_eq!(overall.requests, 0);
    assert!(endpoints.is_empty());
    for (status, min_ms) in [(Some("7xx"), None), (None, Some("-3"))] {
        let q = ReportQuery {
            status: status.map(str::to_string),
            min_ms: min_ms.map(str::to_string),
            ..ReportQuery::default()
        };
        let Err(e) = Selection::read(&store, &q, timeglass_report::now_unix_ns()) else {
            panic!("{q:?} is bad input");
        };
        assert!(e.is_bad_input(), "{e}");
    }
}
