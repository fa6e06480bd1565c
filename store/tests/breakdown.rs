//! Where each request's time went (schema 7): its breakdown, CPU time and
//! event-loop block, written and read back by every reader.

mod common;

use common::*;
use timeglass_model::{LoopBlock, ProfiledRequest, TimeBreakdown};
use timeglass_store::{Batch, Breakdown, RequestPage, RequestQuery, Sort};

const MS: u64 = 1_000_000;

fn measured(marker_id: u64, start_ms: u64, cpu_ms: u64, blocked_ms: u64) -> ProfiledRequest {
    let mut r = request(marker_id, start_ms, cpu_ms + blocked_ms, vec![]);
    r.breakdown = TimeBreakdown {
        python_ns: cpu_ms * MS,
        blocked_ns: blocked_ms * MS,
        ..TimeBreakdown::default()
    };
    r.cpu_ns = cpu_ms * MS;
    r
}

#[test]
fn breakdown_cpu_and_loop_block_round_trip() {
    let mut t = TestStore::start();
    let mut r = request(1, 0, 100, vec![]);
    r.breakdown = TimeBreakdown {
        python_ns: 30 * MS + 123_456,
        native_ns: 5 * MS,
        blocked_ns: 10 * MS,
        gil_wait_ns: 2 * MS,
        sql_ns: 25 * MS,
        http_ns: 15 * MS,
        await_ns: 8 * MS,
        queued_ns: 4 * MS,
        gc_ns: 1_500_000,
    };
    r.cpu_ns = 34 * MS + 999;
    r.loop_block = Some(LoopBlock {
        blocked_ns: 84 * MS,
        start_ns: CLOCK.mono_ns + 3 * MS,
        line: Some("app.py:31 in handler".into()),
        delayed: vec![2, 3, 77],
    });
    let batch = Batch {
        session: t.session,
        requests: vec![(t.process, r.clone()), (t.process, measured(2, 1, 1, 0))],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();

    let row = t.store.request(1).unwrap().unwrap();
    // Microseconds in the store: sub-microsecond parts are dropped.
    assert_eq!(row.cpu_ms, Some(34.0));
    let b = row.breakdown.unwrap();
    assert_eq!(
        b,
        Breakdown {
            python_ms: 30.123,
            native_ms: 5.0,
            blocked_ms: 10.0,
            gil_wait_ms: 2.0,
            sql_ms: 25.0,
            http_ms: 15.0,
            await_ms: 8.0,
            queued_ms: 4.0,
            gc_ms: 1.5,
        }
    );
    assert!((b.cpu_ms() - 36.623).abs() < 1e-9);
    let block = row.loop_block.as_ref().unwrap();
    assert_eq!((block.blocked_ms, block.start_ms), (84.0, 3.0));
    assert_eq!(block.line.as_deref(), Some("app.py:31 in handler"));
    assert_eq!(block.delayed_marker_ids, [2, 3, 77]);
    assert_eq!(block.delayed, [2], "only request 2 is stored so far");

    // A delayed request stored in a later batch is found then; the same
    // marker id in another process is another request.
    let other = t.store.add_process(t.session, &new_process(5151)).unwrap();
    let later = Batch {
        session: t.session,
        requests: vec![
            (other, measured(77, 2, 1, 0)),
            (t.process, measured(3, 3, 1, 0)),
        ],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&later).unwrap();
    let row = t.store.request(1).unwrap().unwrap();
    assert_eq!(row.loop_block.unwrap().delayed, [2, 4]);

    let json = serde_json::to_value(t.store.request(1).unwrap().unwrap()).unwrap();
    assert_eq!(json["cpu_ms"], 34.0);
    assert_eq!(json["breakdown"]["sql_ms"], 25.0);
    assert_eq!(json["loop_block"]["blocked_ms"], 84.0);
    assert_eq!(json["loop_block"]["delayed"], serde_json::json!([2, 4]));
    let plain = serde_json::to_value(t.store.request(2).unwrap().unwrap()).unwrap();
    assert_eq!(plain["loop_block"], serde_json::Value::Null);
}

#[test]
fn every_list_resolves_the_delayed_requests() {
    let mut t = TestStore::start();
    let mut blocker = measured(1, 0, 50, 0);
    blocker.loop_block = Some(LoopBlock {
        blocked_ns: 50 * MS,
        start_ns: CLOCK.mono_ns,
        line: None,
        delayed: vec![2],
    });
    let batch = Batch {
        session: t.session,
        requests: vec![(t.process, blocker), (t.process, measured(2, 1, 1, 60))],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();
    let listed = t
        .store
        .requests(&RequestQuery {
            limit: 10,
            session: None,
        })
        .unwrap();
    let paged = t.store.request_page(&RequestPage {
        limit: 10,
        ..RequestPage::default()
    });
    let after = t.store.requests_after(0, &Default::default(), 10).unwrap();
    for rows in [listed, paged.unwrap(), after] {
        let blocker = rows.iter().find(|r| r.marker_id == 1).unwrap();
        assert_eq!(blocker.loop_block.as_ref().unwrap().delayed, [2]);
    }
}

#[test]
fn requests_sort_by_cpu_time_and_page_through() {
    let mut t = TestStore::start();
    let requests = [(1, 5), (2, 40), (3, 0), (4, 12)]
        .map(|(id, cpu)| (t.process, measured(id, id * 10, cpu, 3)))
        .to_vec();
    t.store
        .write(&Batch {
            session: t.session,
            requests,
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    let ids = |sort, before| -> Vec<u64> {
        t.store
            .request_page(&RequestPage {
                limit: 2,
                before,
                sort,
                ..RequestPage::default()
            })
            .unwrap()
            .iter()
            .map(|r| r.marker_id)
            .collect()
    };
    assert_eq!(ids(Sort::MostCpu, None), [2, 4]);
    assert_eq!(ids(Sort::MostCpu, Some(4)), [1, 3]);
    assert_eq!(ids(Sort::LeastCpu, None), [3, 1]);
}

#[test]
fn a_route_sums_its_breakdowns_and_counts_its_loop_blocks() {
    let mut t = TestStore::start();
    let mut blocker = measured(1, 0, 30, 10);
    blocker.loop_block = Some(LoopBlock {
        blocked_ns: 30 * MS,
        ..LoopBlock::default()
    });
    let requests = vec![
        (t.process, blocker),
        (t.process, measured(2, 100, 10, 50)),
        // Recorded without a breakdown: not in the sums, not measured.
        (t.process, request(3, 200, 500, vec![])),
    ];
    // Zeros are a measurement too: clear request 3's columns after writing,
    // as the migration leaves rows of schema 6.
    t.store
        .write(&Batch {
            session: t.session,
            requests,
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    t.raw()
        .execute(
            "UPDATE requests SET python_us = NULL, native_us = NULL, blocked_us = NULL,
                 gil_wait_us = NULL, sql_wait_us = NULL, http_wait_us = NULL, await_us = NULL,
                 queued_us = NULL WHERE marker_id = 3",
            [],
        )
        .unwrap();
    let s = t.store.route_sample("GET", "/items/{id}").unwrap();
    assert_eq!(s.durations_us.len(), 3);
    assert_eq!((s.measured, s.loop_blocks), (2, 1));
    assert_eq!(s.breakdown.python_ns, 40 * MS);
    assert_eq!(s.breakdown.blocked_ns, 60 * MS);
    assert_eq!(s.cpu_ns, 40 * MS);
    assert_eq!(s.measured_duration_us, 100_000);
}

#[test]
fn zeros_throughout_are_not_a_measured_cpu_time() {
    let mut t = TestStore::start();
    let batch = Batch {
        session: t.session,
        requests: vec![
            (t.process, measured(1, 0, 3, 1)),
            (t.process, request(2, 10, 1, vec![])),
        ],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();
    let sampled = t.store.request(1).unwrap().unwrap();
    assert_eq!(sampled.measured_cpu_ms(), Some(3.0));
    let unsampled = t.store.request(2).unwrap().unwrap();
    assert_eq!(
        (unsampled.cpu_ms, unsampled.measured_cpu_ms()),
        (Some(0.0), None)
    );
}
