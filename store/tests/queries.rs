//! Schema v4: a request's SQL statements and HTTP calls, and its counts.

mod common;

use common::{counted, frame, request, stack, TestStore};
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
