//! The endpoint page's aggregates (schema v14: `endpoint_stacks`,
//! `endpoint_alloc_stacks`, the breakdown sums of `endpoint_minutes`, the
//! readings of `requests_by_endpoint`) against the same figures read the
//! slow way, from every request's own rows, over the same store: after
//! several batches and sessions, after a prune and after a clear.

mod common;

use common::{counted, new_process, new_session, request, TestStore, CLOCK};
use rusqlite::{types::Value, Connection};
use timeglass_model::{Frame, Memory, ProfiledRequest, StackCount, TimeBreakdown};
use timeglass_store::{
    Batch, Endpoint, Prune, RequestFilter, RequestPage, RouteMatch, RouteSample, SessionEnd,
    SessionId, Store, WindowQuery,
};

const ENDPOINTS: &[(&str, Option<&str>)] = &[
    ("GET", Some("/items/{id}")),
    ("POST", Some("/items/{id}")),
    ("GET", Some("/search")),
    ("GET", None),
];

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Request `i` of a session: one of the endpoints, some of a few stacks (two
/// requests of a batch often share one), waits, allocations on some, a
/// breakdown on most, memory readings on most, 0.7 s apart on average so
/// that a session spans minutes and the windows cut them in two.
fn varied(rng: &mut Rng, i: u64) -> ProfiledRequest {
    let (method, route) = ENDPOINTS[rng.next(ENDPOINTS.len() as u64) as usize];
    let start_ms = i * 700 + rng.next(500);
    let dur_ms = 1 + rng.next(40);
    let leaf = ["load", "dumps", "render", "hash"][rng.next(4) as usize];
    let mut stacks = vec![counted(
        &[("main", 1), ("handler", 2), (leaf, 3)],
        1 + rng.next(9),
    )];
    if rng.next(2) == 0 {
        stacks.push(counted(&[("main", 1), ("handler", 2)], 1 + rng.next(3)));
    }
    let mut r = request(i + 1, start_ms, dur_ms, stacks);
    r.request.method = method.into();
    r.request.route = route.map(Into::into);
    r.request.status = Some([200, 200, 404, 500][rng.next(4) as usize]);
    if rng.next(3) == 0 {
        r.waits = vec![counted(&[("main", 1), ("[sql] SELECT ?", 0)], rng.next(5))];
    }
    if rng.next(2) == 0 {
        let site = ["alloc", "grow"][rng.next(2) as usize];
        r.alloc_stacks = vec![counted(&[("main", 1), (site, 4)], 1 + rng.next(1 << 20))];
        r.memory.alloc_bytes = Some(rng.next(1 << 24));
    }
    if rng.next(5) != 0 {
        r.breakdown = TimeBreakdown {
            python_ns: rng.next(dur_ms * 1_000_000),
            native_ns: rng.next(1_000_000),
            blocked_ns: rng.next(2_000_000),
            sql_ns: rng.next(3_000_000),
            await_ns: rng.next(500_000),
            gc_ns: rng.next(100_000),
            ..TimeBreakdown::default()
        };
        r.cpu_ns = rng.next(dur_ms * 1_000_000);
    }
    if rng.next(6) != 0 {
        let start = 80 << 20;
        r.memory = Memory {
            rss_start_bytes: Some(start),
            rss_end_bytes: Some(start + rng.next(4 << 20)),
            rss_peak_bytes: Some(start + rng.next(8 << 20)),
            ..r.memory
        };
    }
    r
}

/// Writes `n` varied requests to `session` in batches of up to 7, two
/// processes taking turns.
fn record(store: &mut Store, session: SessionId, n: u64, seed: u64) {
    let processes = [
        store.add_process(session, &new_process(4242)).unwrap(),
        store.add_process(session, &new_process(4343)).unwrap(),
    ];
    let mut rng = Rng(seed);
    let mut i = 0;
    while i < n {
        let size = (1 + rng.next(7)).min(n - i);
        let requests = (i..i + size)
            .map(|j| (processes[(j % 2) as usize], varied(&mut rng, j)))
            .collect();
        store
            .write(&Batch {
                session,
                requests,
                ..Batch::default()
            })
            .unwrap();
        i += size;
    }
}

fn end(store: &mut Store, session: SessionId) {
    let end = SessionEnd {
        exit_code: Some(0),
        samples: 0,
        torn_samples: 0,
        lost_events: 0,
        load: Default::default(),
    };
    store.end_session(session, &end).unwrap();
}

/// Ids of every stored request of the endpoint, in any session.
fn request_ids(raw: &Connection, method: &str, route: &str) -> Vec<i64> {
    let mut stmt = raw
        .prepare("SELECT id FROM requests WHERE method = ?1 AND route IS ?2 ORDER BY id")
        .unwrap();
    let rows = stmt.query_map(rusqlite::params![method, route], |r| r.get(0));
    rows.unwrap().map(Result::unwrap).collect()
}

/// Stacks summed by their frames, zero weights kept: what merging every
/// request's own stacks gives.
fn merged(per_request: impl Iterator<Item = Vec<StackCount>>) -> Vec<(Vec<Frame>, u64)> {
    let mut sums: std::collections::BTreeMap<Vec<Frame>, u64> = Default::default();
    for stacks in per_request {
        for s in stacks {
            *sums.entry(s.stack.to_vec()).or_default() += s.samples;
        }
    }
    sums.into_iter().collect()
}

fn by_frames(stacks: Vec<StackCount>) -> Vec<(Vec<Frame>, u64)> {
    merged(std::iter::once(stacks))
}

/// The merged profiles of every endpoint equal those of its requests.
fn assert_stacks_merge(t: &TestStore) {
    let raw = t.raw();
    for &(method, route) in ENDPOINTS {
        let Some(route) = route else { continue };
        let ids = request_ids(&raw, method, route);
        let wall = merged(ids.iter().map(|&id| t.store.request_stacks(id).unwrap()));
        let fast = by_frames(t.store.route_stacks(method, route).unwrap());
        assert_eq!(fast, wall, "{method} {route}: samples");
        let bytes = merged(
            ids.iter()
                .map(|&id| t.store.request_alloc_stacks(id).unwrap()),
        );
        let fast = by_frames(t.store.route_alloc_stacks(method, route).unwrap());
        assert_eq!(fast, bytes, "{method} {route}: bytes");
    }
}

/// [`Store::window_sample`] read the slow way: every figure from the
/// selected rows of `requests`.
fn slow_sample(raw: &Connection, q: &WindowQuery, e: &Endpoint) -> RouteSample {
    let mut cond = format!("session_id = {} AND method = '{}'", q.session.0, e.method);
    match &e.route {
        Some(route) => cond += &format!(" AND route = '{route}'"),
        None => cond += " AND route IS NULL",
    }
    if let Some(ns) = q.since_ns {
        cond += &format!(" AND start_ns >= {ns}");
    }
    if let Some(ns) = q.until_ns {
        cond += &format!(" AND start_ns < {ns}");
    }
    let column = |sql: &str| -> Vec<u64> {
        let mut stmt = raw.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let list = |col: &str, having: &str| {
        column(&format!(
            "SELECT {col} FROM requests WHERE {cond} {having} ORDER BY {col}"
        ))
    };
    let sum = |expr: &str| -> u64 {
        raw.query_row(
            &format!("SELECT coalesce(sum({expr}), 0) FROM requests WHERE {cond}"),
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let ns = |col: &str| sum(col) * 1000;
    let mut ends = raw
        .prepare(&format!(
            "SELECT process_id, rss_end_bytes FROM requests
             WHERE {cond} AND rss_end_bytes > 0 ORDER BY start_ns, id"
        ))
        .unwrap();
    let rss_ends = ends
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    RouteSample {
        durations_us: list("duration_us", ""),
        rss_peak_bytes: list("rss_peak_bytes", "AND rss_peak_bytes > 0"),
        alloc_bytes: list("alloc_bytes", "AND alloc_bytes >= 0"),
        errors: sum("status >= 500 OR (status IS NULL AND errored)"),
        queries: sum("queries"),
        db_us: sum("db_us"),
        n_plus_one: sum("n_plus_one_count IS NOT NULL"),
        measured: sum("python_us IS NOT NULL"),
        breakdown: TimeBreakdown {
            python_ns: ns("python_us"),
            native_ns: ns("native_us"),
            blocked_ns: ns("blocked_us"),
            gil_wait_ns: ns("gil_wait_us"),
            sql_ns: ns("sql_wait_us"),
            http_ns: ns("http_wait_us"),
            await_ns: ns("await_us"),
            queued_ns: ns("queued_us"),
            gc_ns: ns("gc_us"),
        },
        cpu_ns: ns("cpu_us"),
        measured_duration_us: sum("CASE WHEN python_us IS NOT NULL THEN duration_us END"),
        loop_blocks: sum("loop_blocked_us IS NOT NULL"),
        rss_ends,
    }
}

/// Windows of a session: all of it, from and until points inside minutes,
/// and one within a single minute.
fn windows(session: SessionId) -> Vec<WindowQuery> {
    let at = |s: u64| CLOCK.mono_ns + s * 1_000_000_000;
    let q = |since: Option<u64>, until: Option<u64>| WindowQuery {
        session,
        since_ns: since.map(at),
        until_ns: until.map(at),
        ..WindowQuery::default()
    };
    vec![
        q(None, None),
        q(Some(37), None),
        q(None, Some(101)),
        q(Some(23), Some(151)),
        q(Some(61), Some(62)),
        q(Some(0), Some(120)),
    ]
}

fn assert_samples_agree(t: &TestStore, session: SessionId) {
    let raw = t.raw();
    let mut nonempty = 0;
    for q in windows(session) {
        for &(method, route) in ENDPOINTS {
            let e = Endpoint {
                method: method.into(),
                route: route.map(Into::into),
            };
            let fast = t.store.window_sample(&q, &e).unwrap();
            assert_eq!(fast, slow_sample(&raw, &q, &e), "{q:?} {e:?}");
            nonempty += usize::from(!fast.durations_us.is_empty());
        }
    }
    assert!(nonempty >= 16, "the windows select requests: {nonempty}");
}

/// Every row of `endpoint_minutes`, as the writer added to it batch by
/// batch, equals the same sums taken over the stored requests at once.
fn assert_minutes_sum_the_requests(t: &TestStore) {
    let raw = t.raw();
    let rows = |sql: &str| -> Vec<Vec<Value>> {
        let mut statement = raw.prepare(sql).unwrap();
        let columns = statement.column_count();
        statement
            .query_map([], |row| (0..columns).map(|c| row.get(c)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let kept = rows("SELECT * FROM endpoint_minutes ORDER BY 1, 2, 3, 4");
    let summed = rows(
        "SELECT session_id, method, coalesce(route, ''), start_ns / 60000000000, count(*),
            sum(duration_us), min(duration_us), max(duration_us), max(end_ns),
            count(CASE WHEN status >= 500 OR (status IS NULL AND errored) THEN 1 END),
            count(CASE WHEN status BETWEEN 400 AND 499 THEN 1 END),
            sum(db_us), sum(queries), count(n_plus_one_count), count(loop_blocked_us),
            coalesce(sum(CASE WHEN python_us IS NOT NULL THEN cpu_us END), 0), count(python_us),
            coalesce(sum(python_us), 0), coalesce(sum(native_us), 0),
            coalesce(sum(blocked_us), 0), coalesce(sum(gil_wait_us), 0),
            coalesce(sum(sql_wait_us), 0), coalesce(sum(http_wait_us), 0),
            coalesce(sum(await_us), 0), coalesce(sum(queued_us), 0), sum(gc_us),
            coalesce(sum(CASE WHEN python_us IS NOT NULL THEN duration_us END), 0)
         FROM requests GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    );
    assert!(
        kept.len() >= 8,
        "minutes of several endpoints: {}",
        kept.len()
    );
    assert_eq!(kept, summed);
}

#[test]
fn an_endpoints_figures_and_stacks_equal_those_of_its_requests() {
    let mut t = TestStore::start();
    record(&mut t.store, t.session, 400, 7);
    let second = t.store.begin_session(&new_session()).unwrap();
    record(&mut t.store, second, 150, 11);
    assert_minutes_sum_the_requests(&t);
    assert_stacks_merge(&t);
    assert_samples_agree(&t, t.session);
    assert_samples_agree(&t, second);
    let total: u64 = t.store.sessions().unwrap().iter().map(|s| s.requests).sum();
    assert_eq!(total, 550, "sessions count their requests from the minutes");
}

#[test]
fn pruning_a_session_or_clearing_every_one_keeps_the_sums_true() {
    let mut t = TestStore::start();
    record(&mut t.store, t.session, 300, 3);
    end(&mut t.store, t.session);
    let kept = t.store.begin_session(&new_session()).unwrap();
    record(&mut t.store, kept, 200, 5);
    end(&mut t.store, kept);
    let before = by_frames(t.store.route_stacks("GET", "/items/{id}").unwrap());

    let done = t.store.prune(&Prune::Session(t.session)).unwrap();
    assert_eq!(done.sessions, 1);
    assert_stacks_merge(&t);
    assert_samples_agree(&t, kept);
    let after = by_frames(t.store.route_stacks("GET", "/items/{id}").unwrap());
    assert_ne!(after, before, "the pruned session's samples are gone");
    for table in ["endpoint_stacks", "endpoint_alloc_stacks"] {
        let left: i64 = t
            .raw()
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE session_id = ?1"),
                [t.session.0],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "{table}");
    }

    // A new session after the prune adds to what is left.
    let third = t.store.begin_session(&new_session()).unwrap();
    record(&mut t.store, third, 100, 9);
    end(&mut t.store, third);
    assert_minutes_sum_the_requests(&t);
    assert_stacks_merge(&t);
    assert_samples_agree(&t, third);

    t.store.prune(&Prune::All).unwrap();
    assert_eq!(t.count("endpoint_stacks"), 0);
    assert_eq!(t.count("endpoint_alloc_stacks"), 0);
    assert!(t
        .store
        .route_stacks("GET", "/items/{id}")
        .unwrap()
        .is_empty());
    let page = RequestPage {
        limit: 10,
        filter: RequestFilter::default(),
        ..RequestPage::default()
    };
    assert!(t.store.request_page(&page).unwrap().is_empty());
}

#[test]
fn retention_keeps_the_sums_true() {
    let mut t = TestStore::start();
    record(&mut t.store, t.session, 120, 13);
    end(&mut t.store, t.session);
    let kept = t.store.begin_session(&new_session()).unwrap();
    record(&mut t.store, kept, 80, 17);
    let retention = timeglass_store::Retention {
        keep_days: None,
        max_requests: Some(100),
        max_bytes: None,
    };
    let done = t.store.enforce_retention(&retention).unwrap();
    assert_eq!((done.sessions, done.requests), (1, 120));
    assert_stacks_merge(&t);
    assert_samples_agree(&t, kept);
}

/// The report's own selection of one route (an exact match) and the page's
/// endpoint read the same requests.
#[test]
fn the_endpoint_sample_counts_what_the_report_counts() {
    let mut t = TestStore::start();
    record(&mut t.store, t.session, 200, 21);
    for q in windows(t.session) {
        let q = WindowQuery {
            method: Some("GET".into()),
            route: Some(RouteMatch::Exact("/search".into())),
            ..q
        };
        let e = Endpoint {
            method: "GET".into(),
            route: Some("/search".into()),
        };
        let totals = t.store.endpoint_totals(&q).unwrap();
        let sample = t.store.window_sample(&q, &e).unwrap();
        let requests = totals.first().map_or(0, |e| e.totals.requests);
        assert_eq!(sample.durations_us.len() as u64, requests, "{q:?}");
        let errors = totals.first().map_or(0, |e| e.totals.errors_5xx);
        assert_eq!(sample.errors, errors, "{q:?}");
    }
}
