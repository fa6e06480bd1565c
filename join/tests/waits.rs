//! Queries and calls joined with their requests: attribution, stacks sent
//! once and then by id, weights in samples, N+1 flags.

use timeglass_join::{Join, JoinOptions, GRACE_NS};
use timeglass_wire::{Call, Event, Query, RequestEnd, RequestStart, StackFrame, StackRef};

const MS: u64 = 1_000_000;

fn start(id: u64, ts: u64) -> Event {
    Event::RequestStart(RequestStart {
        request_id: id,
        ts_ns: ts,
        tid: 1,
        method: "GET".into(),
        path: format!("/r/{id}"),
    })
}

fn end(id: u64, ts: u64, response_ns: u64) -> Event {
    Event::RequestEnd(RequestEnd {
        request_id: id,
        ts_ns: ts,
        response_ns,
        status: 200,
        flags: 0,
        route: String::new(),
    })
}

fn frame(name: &str, library: bool) -> StackFrame {
    StackFrame {
        name: name.into(),
        filename: format!("/app/{name}.py"),
        short: format!("{name}.py"),
        line: 7,
        library,
    }
}

fn issuer(id: u64, define: bool) -> StackRef {
    StackRef {
        id,
        frames: define.then(|| {
            vec![
                frame("main", true),
                frame("handler", false),
                frame("loop_items", false),
            ]
        }),
    }
}

fn query(rid: u64, sql: &str, start_ns: u64, dur_ns: u64, stack: StackRef) -> Event {
    Event::Query(Query {
        request_id: rid,
        start_ns,
        end_ns: start_ns + dur_ns,
        rows: 1,
        driver: "sqlite3".into(),
        sql: sql.into(),
        sql_len: sql.chars().count() as u64,
        params: Some("(1,)".into()),
        params_len: 4,
        error: None,
        stack,
    })
}

#[test]
fn queries_join_their_request_with_stacks_weights_and_an_n_plus_one_flag() {
    let mut j = Join::with_options(JoinOptions {
        rate_hz: 1000,
        n_plus_one: 5,
        ..JoinOptions::default()
    });
    j.event(7, start(1, 0));
    j.event(7, start(2, 0));
    for i in 0..5 {
        // The stack travels with the first event only.
        let sql = format!("SELECT name FROM items WHERE id = {i}");
        j.event(7, query(1, &sql, (10 + i) * MS, 2 * MS, issuer(3, i == 0)));
    }
    j.event(
        7,
        query(
            2,
            "UPDATE items SET x = 1",
            5 * MS,
            30 * MS,
            issuer(3, false),
        ),
    );
    j.event(
        7,
        Event::Call(Call {
            request_id: 1,
            start_ns: 55 * MS,
            end_ns: 75 * MS,
            method: "GET".into(),
            url: "https://api.example.com/v1?key=REDACTED".into(),
            status: 200,
            error: None,
            library: "httpx".into(),
            stack: issuer(3, false),
        }),
    );
    j.event(7, end(1, 100 * MS, 50 * MS));
    j.event(7, end(2, 100 * MS, 100 * MS));
    let done = j.finished(100 * MS + GRACE_NS);
    let (one, two) = (&done[0], &done[1]);
    let one = if one.request.marker_id == 1 { one } else { two };
    assert_eq!(one.queries.len(), 5);
    assert_eq!(
        one.queries[0].normalized,
        "SELECT name FROM items WHERE id = ?"
    );
    assert_eq!(one.queries[4].stack.len(), 3, "resolved by id");
    let caller: Vec<&str> = one.queries[4]
        .caller
        .iter()
        .map(|f| f.name.as_ref())
        .collect();
    assert_eq!(caller, ["loop_items", "handler"]);
    assert_eq!(one.db_ns(), 10 * MS);
    assert_eq!(one.http_ns(), 20 * MS);
    let flagged = one.n_plus_one.as_ref().expect("five repeats are an N+1");
    assert_eq!(flagged.count, 5);
    assert_eq!(
        flagged.caller.as_deref(),
        Some("loop_items.py:7 in loop_items")
    );
    // 10 ms of queries, then 20 ms on a call started after the response: background.
    let sql: Vec<(String, u64)> = one
        .waits
        .iter()
        .map(|w| {
            (
                w.stack
                    .iter()
                    .map(|f| f.name.as_ref())
                    .collect::<Vec<_>>()
                    .join(";"),
                w.samples,
            )
        })
        .collect();
    assert!(
        sql.contains(&(
            "main;handler;loop_items;[sql] SELECT ... FROM items ...".into(),
            10
        )),
        "{sql:?}"
    );
    assert!(
        sql.contains(&(
            "[background];main;handler;loop_items;[http] GET api.example.com".into(),
            20
        )),
        "{sql:?}"
    );
    assert_eq!(one.samples(), 0, "waits are not samples");
    let two = if done[0].request.marker_id == 2 {
        &done[0]
    } else {
        &done[1]
    };
    assert_eq!(two.queries.len(), 1);
    assert!(two.n_plus_one.is_none());
    assert_eq!(two.waits[0].samples, 30);
}

#[test]
fn a_stack_whose_definition_was_lost_leaves_the_wait_at_the_root() {
    let mut j = Join::new();
    j.event(1, start(1, 0));
    j.event(1, query(1, "SELECT 1", MS, 5 * MS, issuer(99, false)));
    j.event(1, end(1, 10 * MS, 10 * MS));
    let done = j.flush(None);
    let q = &done[0].queries[0];
    assert!(q.stack.is_empty() && q.caller.is_empty());
    assert_eq!(done[0].waits[0].stack.len(), 1);
}
