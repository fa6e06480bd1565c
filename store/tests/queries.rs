//! Schema v5 and v6: a request's SQL statements and HTTP calls, their callers, and its counts.

mod common;

use common::{counted, frame, request, sorted, stack, TestStore};
use timeglass_model::{Frame, HttpCall, Repeated, SqlQuery, StackCount};
use timeglass_store::{Batch, RequestQuery};

const MS: u64 = 1_000_000;

fn query(start_ns: u64, sql: &str, error: Option<&str>) -> SqlQuery {
    SqlQuery {
        sql: sql.into(),
        sql_len: 1_234_567,
        normalized: "SELECT ? FROM t".into(),
        params: Some("(1, 'é')".into()),
        params_len: 8,
        start_ns,
        end_ns: start_ns + 1_500_000,
        rows: error.is_none().then_some(3),
        driver: "sqlite3".into(),
        error: error.map(Into::into),
        caller: vec![frame("loop_items", 12), frame("handler", 40)].into(),
        stack: stack(&[("main", 1), ("handler", 40), ("loop_items", 12)]),
    }
}

#[test]
fn queries_and_calls_round_trip_with_offsets_and_request_totals() {
    let mut t = TestStore::start();
    let mut r = request(1, 0, 100, vec![counted(&[("main", 1), ("handler", 40)], 4)]);
    let start = r.request.start_ns;
    r.queries = vec![
        query(start + 2 * MS, "SELECT 1 FROM t", None),
        query(
            start + 5 * MS,
            "SELECT 2 FROM t",
            Some("OperationalError: locked"),
        ),
    ];
    r.calls = vec![HttpCall {
        method: "GET".into(),
        url: "https://api.example.com/x?token=REDACTED".into(),
        status: None,
        start_ns: start + 10 * MS,
        end_ns: start + 30 * MS,
        error: Some("ConnectError: refused".into()),
        library: "httpx".into(),
        caller: vec![frame("fetch", 3)].into(),
        stack: stack(&[("main", 1), ("fetch", 3)]),
    }];
    let mut wait_frames: Vec<Frame> = r.queries[0].stack.to_vec();
    wait_frames.push(Frame::synthetic("[sql] SELECT ... FROM t"));
    r.waits = vec![StackCount {
        stack: wait_frames.into(),
        samples: 3,
    }];
    r.n_plus_one = Some(Repeated {
        normalized: "SELECT ? FROM t".into(),
        count: 2,
        caller: Some("app.py:12 in loop_items".into()),
    });
    let batch = Batch {
        session: t.session,
        requests: vec![(t.process, r)],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();

    let row = &t
        .store
        .requests(&RequestQuery {
            limit: 10,
            session: None,
        })
        .unwrap()[0];
    assert_eq!((row.queries, row.calls), (2, 1));
    assert!((row.db_ms - 3.0).abs() < 1e-9, "{}", row.db_ms);
    assert!((row.http_ms - 20.0).abs() < 1e-9, "{}", row.http_ms);
    assert!(row.n_plus_one);
    assert_eq!(
        row.repeated.as_ref().unwrap().caller.as_deref(),
        Some("app.py:12 in loop_items")
    );
    assert_eq!(row.samples, 4, "waits are not counted as samples");

    let queries = t.store.request_queries(row.id).unwrap();
    assert_eq!(queries.len(), 2);
    assert_eq!(queries[0].sql, "SELECT 1 FROM t");
    assert_eq!(queries[0].sql_length, 1_234_567);
    assert_eq!(queries[0].params.as_deref(), Some("(1, 'é')"));
    assert!((queries[0].start_ms - 2.0).abs() < 1e-9);
    assert!((queries[0].duration_ms - 1.5).abs() < 1e-9);
    assert_eq!(queries[0].rows, Some(3));
    assert_eq!(
        queries[1].error.as_deref(),
        Some("OperationalError: locked")
    );
    assert_eq!(queries[1].rows, None);
    assert_eq!(
        queries[0].caller,
        vec![frame("loop_items", 12), frame("handler", 40)]
    );
    let calls = t.store.request_calls(row.id).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].status, calls[0].library.as_str()),
        (None, "httpx")
    );
    assert!((calls[0].start_ms - 10.0).abs() < 1e-9);

    let stacks = t.store.request_stacks(row.id).unwrap();
    assert!(stacks
        .iter()
        .any(|s| s.stack.last().is_some_and(Frame::is_wait) && s.samples == 3));
    assert!(t.store.request_queries(999).unwrap().is_empty());
}

#[test]
fn requests_without_queries_read_as_zero() {
    let mut t = TestStore::start();
    let batch = Batch {
        session: t.session,
        requests: vec![(t.process, request(1, 0, 5, vec![]))],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();
    let row = &t
        .store
        .requests(&RequestQuery {
            limit: 10,
            session: None,
        })
        .unwrap()[0];
    assert_eq!((row.queries, row.calls, row.n_plus_one), (0, 0, false));
    assert_eq!(row.repeated, None);
    let json = serde_json::to_value(row).unwrap();
    assert_eq!(json["queries"], 0);
    assert_eq!(json["db_ms"], 0.0);
    assert_eq!(json["n_plus_one"], false);
}

/// A request's statements as a loop issues them: one caller shared by all.
fn looped(r: &mut timeglass_model::ProfiledRequest, n: u64, caller: &timeglass_model::Caller) {
    let start = r.request.start_ns;
    r.queries = (0..n)
        .map(|i| SqlQuery {
            sql: format!("SELECT {i} FROM t"),
            params: (i % 3 != 0).then(|| format!("({i},)")),
            rows: (i % 2 == 0).then_some(i as i64),
            error: (i == 5).then(|| "OperationalError: busy".into()),
            caller: caller.clone(),
            ..query(start + i * MS, "", None)
        })
        .collect();
}

#[test]
fn statements_of_every_count_round_trip_in_order() {
    // 8 rows go in one INSERT; 19 is two of those and three alone.
    let mut t = TestStore::start();
    let caller: timeglass_model::Caller = vec![frame("loop_items", 12)].into();
    let counts = [1, 7, 8, 9, 16, 19];
    let mut requests = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        let mut r = request(i as u64 + 1, i as u64 * 100, 50, vec![]);
        looped(&mut r, n, &caller);
        requests.push((t.process, r));
    }
    let expected: Vec<Vec<SqlQuery>> = requests.iter().map(|(_, r)| r.queries.clone()).collect();
    t.store
        .write(&Batch {
            session: t.session,
            requests,
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    let mut rows = t
        .store
        .requests(&RequestQuery {
            limit: 10,
            session: None,
        })
        .unwrap();
    rows.reverse();
    for (row, expected) in rows.iter().zip(&expected) {
        let stored = t.store.request_queries(row.id).unwrap();
        assert_eq!(stored.len(), expected.len());
        for (i, (s, e)) in stored.iter().zip(expected).enumerate() {
            assert_eq!(s.sql, e.sql, "statement {i} of {}", expected.len());
            assert_eq!(s.params, e.params);
            assert_eq!(s.rows, e.rows);
            assert_eq!(s.error, e.error);
            assert_eq!((s.sql_length, s.params_length), (e.sql_len, e.params_len));
            assert_eq!(s.normalized, e.normalized);
            assert_eq!(s.driver, e.driver);
            assert!((s.start_ms - i as f64).abs() < 1e-9);
            assert!((s.duration_ms - 1.5).abs() < 1e-9);
            assert_eq!(s.caller, e.caller.to_vec());
        }
    }
}

#[test]
fn callers_are_stored_once_and_read_back_identical() {
    let mut t = TestStore::start();
    let shared: timeglass_model::Caller =
        vec![frame("loop_items", 12), frame("handler", 40)].into();
    // The same frames in another allocation (a stack the marker sent again).
    let copy: timeglass_model::Caller = shared.to_vec().into();
    let other: timeglass_model::Caller = vec![frame("fetch", 3)].into();
    let mut first = request(1, 0, 50, vec![]);
    looped(&mut first, 10, &shared);
    first.queries[9].caller = other.clone();
    let mut second = request(2, 100, 50, vec![]);
    looped(&mut second, 3, &copy);
    second.calls = vec![HttpCall {
        method: "GET".into(),
        url: "https://api.example.com/x".into(),
        status: Some(200),
        start_ns: second.request.start_ns,
        end_ns: second.request.start_ns + MS,
        error: None,
        library: "httpx".into(),
        caller: other.clone(),
        stack: stack(&[("main", 1), ("fetch", 3)]),
    }];
    t.store
        .write(&Batch {
            session: t.session,
            requests: vec![(t.process, first), (t.process, second)],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    assert_eq!(t.count("callers"), 2);
    assert_eq!(t.count("queries"), 13);
    let rows = t
        .store
        .requests(&RequestQuery {
            limit: 10,
            session: None,
        })
        .unwrap();
    let (second, first) = (rows[0].id, rows[1].id);
    let queries = t.store.request_queries(first).unwrap();
    assert!(queries[..9].iter().all(|q| q.caller == shared.to_vec()));
    assert_eq!(queries[9].caller, other.to_vec());
    let queries = t.store.request_queries(second).unwrap();
    assert!(queries.iter().all(|q| q.caller == shared.to_vec()));
    assert_eq!(
        t.store.request_calls(second).unwrap()[0].caller,
        other.to_vec()
    );

    // A new writer (empty caches) finds the rows already there.
    let mut again = timeglass_store::Store::open(&t.path).unwrap();
    let mut third = request(3, 200, 50, vec![]);
    looped(&mut third, 2, &copy);
    again
        .write(&Batch {
            session: t.session,
            requests: vec![(t.process, third)],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    assert_eq!(t.count("callers"), 2);
}

#[test]
fn a_failed_batch_leaves_no_caller_or_wait_stack_behind() {
    let mut t = TestStore::start();
    let caller: timeglass_model::Caller = vec![frame("loop_items", 12)].into();
    let wait = counted(&[("main", 1), ("[sql] SELECT ... FROM t", 0)], 2);
    let with_queries = |id| {
        let mut r = request(id, 0, 50, vec![]);
        looped(&mut r, 3, &caller);
        r.waits = vec![wait.clone()];
        r
    };
    let bad = Batch {
        session: t.session,
        requests: vec![
            (t.process, with_queries(1)),
            (timeglass_store::ProcessId(999), request(2, 0, 1, vec![])),
        ],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    assert!(t.store.write(&bad).is_err());
    assert_eq!((t.count("callers"), t.count("stacks")), (0, 0));

    // The same `Arc`s again: the caches must not hand out rolled-back ids.
    t.store
        .write(&Batch {
            session: t.session,
            requests: vec![(t.process, with_queries(1))],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    let id = t
        .store
        .requests(&RequestQuery {
            limit: 1,
            session: None,
        })
        .unwrap()[0]
        .id;
    assert_eq!(
        t.store.request_queries(id).unwrap()[2].caller,
        caller.to_vec()
    );
    assert_eq!(
        sorted(t.store.request_stacks(id).unwrap()),
        sorted(vec![wait])
    );
}
