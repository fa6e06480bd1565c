//! Writing batches and reading them back.

mod common;

use std::time::Instant;

use common::*;
use timeglass_store::{
    Batch, MachineLoad, ProcessExit, ProcessId, RequestPage, RequestQuery, SessionEnd, Sort,
    StoreError,
};

fn handler_stacks() -> Vec<timeglass_model::StackCount> {
    vec![
        counted(&[("main", 1), ("routing", 20), ("handler", 5)], 7),
        counted(&[("main", 1), ("routing", 20), ("db", 9)], 3),
        counted(&[("main", 1)], 1),
    ]
}

#[test]
fn round_trip() {
    let mut t = TestStore::start();
    let mut failing = request(2, 500, 12, vec![counted(&[("main", 1), ("boom", 3)], 2)]);
    failing.request.method = "POST".into();
    failing.request.route = None;
    failing.request.status = None;
    failing.request.errored = true;
    failing.request.cancelled = true;
    failing.switched_samples = 1;
    failing.torn_samples = 4;
    let ok = request(1, 1_234, 250, handler_stacks());
    let batch = Batch {
        session: t.session,
        requests: vec![(t.process, ok.clone()), (t.process, failing.clone())],
        outside: vec![(t.process, counted(&[("main", 1), ("idle", 2)], 40))],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();
    t.store
        .end_session(
            t.session,
            &SessionEnd {
                exit_code: Some(0),
                samples: 57,
                torn_samples: 4,
                lost_events: 1,
                load: MachineLoad {
                    cpu_wait: Some(0.25),
                    steal: None,
                    app_wait: Some(1.5),
                },
            },
        )
        .unwrap();
    let info = t.store.session_info(t.session).unwrap().unwrap();
    assert_eq!(
        info.load,
        MachineLoad {
            cpu_wait: Some(0.25),
            steal: None,
            app_wait: Some(1.5),
        }
    );

    let rows = t
        .store
        .requests(&RequestQuery {
            limit: 10,
            session: None,
        })
        .unwrap();
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first.marker_id, 1, "newest start first");
    assert_eq!(first.session_id, t.session);
    assert_eq!(first.pid, 4242);
    assert_eq!(first.tid, 7);
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, "/items/1");
    assert_eq!(first.route.as_deref(), Some("/items/{id}"));
    assert_eq!(first.status, Some(200));
    assert!(!first.errored && !first.cancelled);
    assert_eq!(first.start, "2024-05-01T12:00:01.234Z");
    assert_eq!(first.start_ns, ok.request.start_ns);
    assert_eq!(first.end_ns, ok.request.end_ns);
    assert_eq!(first.duration_ms, 250.0);
    assert_eq!(first.samples, 11);

    let second = &rows[1];
    assert_eq!(second.method, "POST");
    assert_eq!((second.route.as_deref(), second.status), (None, None));
    assert!(second.errored && second.cancelled);
    assert_eq!(second.start, "2024-05-01T12:00:00.500Z");
    assert_eq!(
        (second.samples, second.switched_samples, second.torn_samples),
        (2, 1, 4)
    );

    assert_eq!(t.store.request(first.id).unwrap().as_ref(), Some(first));
    assert_eq!(t.store.request(9999).unwrap(), None);
    assert_eq!(
        sorted(t.store.request_stacks(first.id).unwrap()),
        sorted(ok.stacks.clone())
    );
    assert_eq!(
        sorted(t.store.request_stacks(second.id).unwrap()),
        sorted(failing.stacks.clone())
    );
    assert_eq!(
        sorted(t.store.outside_stacks(t.session).unwrap()),
        sorted(batch.outside.iter().map(|(_, s)| s.clone()).collect())
    );

    let sessions = t.store.sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.id, t.session);
    assert_eq!(s.started_at, "2024-05-01T12:00:00.000Z");
    assert!(s.ended_at.is_some());
    assert_eq!(s.command, new_session().command);
    assert_eq!(
        (s.cwd.as_str(), s.rate_hz, s.exit_code),
        ("/srv/app", 100, Some(0))
    );
    assert_eq!(
        (s.samples, s.torn_samples, s.lost_events, s.requests),
        (57, 4, 1, 2)
    );
}

#[test]
fn request_rows_serialize_for_json_output() {
    let mut t = TestStore::start();
    let batch = Batch {
        session: t.session,
        requests: vec![(t.process, request(1, 0, 3, vec![]))],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();
    let row = t.store.request(1).unwrap().unwrap();
    let json = serde_json::to_value(&row).unwrap();
    assert_eq!(json["session_id"], t.session.0);
    assert_eq!(json["start"], "2024-05-01T12:00:00.000Z");
    assert_eq!(json["duration_ms"], 3.0);
    assert_eq!(json["route"], "/items/{id}");
}

#[test]
fn stacks_come_back_most_samples_first() {
    let mut t = TestStore::start();
    let batch = Batch {
        session: t.session,
        requests: vec![(t.process, request(1, 0, 10, handler_stacks()))],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();
    let samples: Vec<u64> = t
        .store
        .request_stacks(1)
        .unwrap()
        .iter()
        .map(|s| s.samples)
        .collect();
    assert_eq!(samples, [7, 3, 1]);
}

#[test]
fn interning_dedupes_frames_and_stack_nodes() {
    let mut t = TestStore::start();
    let same = || counted(&[("main", 1), ("routing", 20), ("handler", 5)], 1);
    let batch = Batch {
        session: t.session,
        requests: vec![
            (t.process, request(1, 0, 10, vec![same()])),
            (t.process, request(2, 10, 10, vec![same()])),
        ],
        outside: vec![(t.process, same())],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();
    assert_eq!((t.count("frames"), t.count("stacks")), (3, 3));

    // A shared prefix reuses nodes; the same function at another line is a
    // new frame. Then a reopened store (cold cache) finds existing rows.
    let branch = counted(&[("main", 1), ("routing", 20), ("handler", 6)], 1);
    t.store
        .write(&Batch {
            session: t.session,
            requests: vec![(t.process, request(3, 20, 10, vec![branch]))],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    assert_eq!((t.count("frames"), t.count("stacks")), (4, 4));

    let mut reopened = timeglass_store::Store::open(&t.path).unwrap();
    reopened
        .write(&Batch {
            session: t.session,
            requests: vec![(t.process, request(4, 30, 10, vec![same()]))],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    assert_eq!((t.count("frames"), t.count("stacks")), (4, 4));
    assert_eq!(t.count("request_stacks"), 4);
}

#[test]
fn duplicate_stacks_in_one_request_are_summed() {
    let mut t = TestStore::start();
    let twice = vec![counted(&[("main", 1)], 2), counted(&[("main", 1)], 3)];
    t.store
        .write(&Batch {
            session: t.session,
            requests: vec![(t.process, request(1, 0, 10, twice))],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    assert_eq!(
        sorted(t.store.request_stacks(1).unwrap()),
        sorted(vec![counted(&[("main", 1)], 5)])
    );
}

#[test]
fn empty_stack_round_trips() {
    let mut t = TestStore::start();
    t.store
        .write(&Batch {
            session: t.session,
            requests: vec![(t.process, request(1, 0, 10, vec![counted(&[], 2)]))],
            outside: vec![(t.process, counted(&[], 1))],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    assert_eq!(
        sorted(t.store.request_stacks(1).unwrap()),
        sorted(vec![counted(&[], 2)])
    );
    assert_eq!(
        sorted(t.store.outside_stacks(t.session).unwrap()),
        sorted(vec![counted(&[], 1)])
    );
}

#[test]
fn outside_stacks_accumulate_across_batches_and_processes() {
    let mut t = TestStore::start();
    let other = t.store.add_process(t.session, &new_process(4343)).unwrap();
    let idle = || counted(&[("main", 1), ("idle", 2)], 10);
    for process in [t.process, t.process, other] {
        t.store
            .write(&Batch {
                session: t.session,
                requests: vec![],
                outside: vec![(process, idle()), (process, counted(&[("gc", 1)], 1))],
                outside_timeline: vec![],
                process_samples: vec![],
            })
            .unwrap();
    }
    assert_eq!(
        t.count("outside_stacks"),
        4,
        "one row per process and stack"
    );
    assert_eq!(
        sorted(t.store.outside_stacks(t.session).unwrap()),
        sorted(vec![
            counted(&[("main", 1), ("idle", 2)], 30),
            counted(&[("gc", 1)], 3)
        ])
    );

    let second = t.store.begin_session(&new_session()).unwrap();
    assert!(t.store.outside_stacks(second).unwrap().is_empty());
}

#[test]
fn newest_first_with_limit_and_session_filter() {
    let mut t = TestStore::start();
    // Written out of start order, as a batch of finished requests can be.
    let starts = [30, 10, 50, 20, 40];
    let requests = starts
        .iter()
        .enumerate()
        .map(|(i, &ms)| (t.process, request(i as u64, ms, 1, vec![])))
        .collect();
    t.store
        .write(&Batch {
            session: t.session,
            requests,
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();
    let later = t.store.begin_session(&new_session()).unwrap();
    let later_process = t.store.add_process(later, &new_process(5)).unwrap();
    t.store
        .write(&Batch {
            session: later,
            requests: vec![(later_process, request(99, 5, 1, vec![]))],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();

    let marker_ids = |limit, session| -> Vec<u64> {
        t.store
            .requests(&RequestQuery { limit, session })
            .unwrap()
            .iter()
            .map(|r| r.marker_id)
            .collect()
    };
    assert_eq!(marker_ids(3, None), [2, 4, 0]);
    assert_eq!(marker_ids(10, Some(t.session)), [2, 4, 0, 3, 1]);
    assert_eq!(marker_ids(10, Some(later)), [99]);
    assert_eq!(marker_ids(0, None), Vec::<u64>::new());
    assert_eq!(marker_ids(usize::MAX, None).len(), 6);
}

#[test]
fn newest_first_listing_uses_an_index() {
    let t = TestStore::start();
    let raw = t.raw();
    for filter in ["", "WHERE r.session_id = 1"] {
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT r.id FROM requests r JOIN processes p ON p.id = r.process_id
             {filter} ORDER BY r.started_at DESC, r.id DESC LIMIT 10"
        );
        let plan: Vec<String> = raw
            .prepare(&sql)
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "sorts instead of using an index:\n{plan}"
        );
    }
}

#[test]
fn failed_batch_writes_nothing_and_next_batch_still_works() {
    let mut t = TestStore::start();
    let fresh = || counted(&[("main", 1), ("new", 2)], 1);
    let bad = Batch {
        session: t.session,
        requests: vec![
            (t.process, request(1, 0, 1, vec![fresh()])),
            (timeglass_store::ProcessId(999), request(2, 0, 1, vec![])),
        ],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    assert!(matches!(
        t.store.write(&bad),
        Err(StoreError::Sqlite { .. })
    ));
    assert_eq!(
        (t.count("requests"), t.count("frames"), t.count("stacks")),
        (0, 0, 0)
    );

    // The interner must not remember the rolled-back frames and nodes.
    let good = Batch {
        session: t.session,
        requests: vec![(t.process, request(1, 0, 1, vec![fresh()]))],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&good).unwrap();
    assert_eq!(
        sorted(t.store.request_stacks(1).unwrap()),
        sorted(vec![fresh()])
    );
}

#[test]
fn unknown_ids_are_typed_errors() {
    let mut t = TestStore::start();
    let missing = timeglass_store::SessionId(77);
    let unknown = |r: Result<_, StoreError>| matches!(r, Err(StoreError::UnknownId { .. }));
    assert!(unknown(
        t.store.add_process(missing, &new_process(1)).map(|_| ())
    ));
    assert!(unknown(t.store.end_process(timeglass_store::ProcessId(77))));
    assert!(unknown(t.store.write(&Batch {
        session: missing,
        ..Batch::default()
    })));
    let end = SessionEnd {
        exit_code: None,
        samples: 0,
        torn_samples: 0,
        lost_events: 0,
        load: Default::default(),
    };
    assert!(unknown(t.store.end_session(missing, &end)));
    t.store.end_process(t.process).unwrap();
}

/// Not a benchmark (no assertion on time): shows the order of magnitude of a
/// realistic recording, and that it finishes.
#[test]
fn writes_ten_thousand_requests_of_twenty_stacks() {
    let mut t = TestStore::start();
    let frames_per_stack = 30;
    let stacks_for = |r: u64| -> Vec<timeglass_model::StackCount> {
        (0..20)
            .map(|s| {
                let names: Vec<(String, u32)> = (0..frames_per_stack)
                    .map(|d| {
                        (
                            format!("f{d}"),
                            ((r + s) % 50) as u32 * (d == 29) as u32 + d,
                        )
                    })
                    .collect();
                let refs: Vec<(&str, u32)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
                counted(&refs, 1 + s % 3)
            })
            .collect()
    };
    let requests: Vec<_> = (0..10_000)
        .map(|r| request(r, r, 1, stacks_for(r)))
        .collect();
    let started = Instant::now();
    for chunk in requests.chunks(100) {
        let batch = Batch {
            session: t.session,
            requests: chunk.iter().map(|r| (t.process, r.clone())).collect(),
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        };
        t.store.write(&batch).unwrap();
    }
    let elapsed = started.elapsed();
    let size = std::fs::metadata(&t.path).unwrap().len()
        + std::fs::metadata(t.path.with_extension("db-wal")).map_or(0, |m| m.len());
    println!("wrote 10,000 requests x 20 stacks in {elapsed:.2?} ({size} bytes with WAL)");
    assert_eq!(t.count("request_stacks"), 200_000);

    let started = Instant::now();
    let stacks = t.store.request_stacks(5_000).unwrap();
    println!(
        "read back one request's stacks in {:.2?}",
        started.elapsed()
    );
    assert_eq!(sorted(stacks), sorted(stacks_for(4_999)));
}

#[test]
fn processes_list_how_each_ended() {
    let mut t = TestStore::start();
    let second = t.store.add_process(t.session, &new_process(4343)).unwrap();
    let batch = Batch {
        session: t.session,
        requests: vec![(t.process, request(1, 0, 3, vec![]))],
        outside: vec![],
        outside_timeline: vec![],
        process_samples: vec![],
    };
    t.store.write(&batch).unwrap();
    t.store.end_process(t.process).unwrap();
    t.store
        .set_process_exit(t.process, ProcessExit::Crashed)
        .unwrap();

    let rows = t.store.processes(t.session).unwrap();
    let seen: Vec<_> = rows
        .iter()
        .map(|p| {
            (
                p.id,
                p.pid,
                p.exit.as_deref(),
                p.requests,
                p.ended_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (t.process, 4242, Some("crashed"), 1, true),
            (second, 4343, None, 0, false)
        ]
    );
    let session = &t.store.sessions().unwrap()[0];
    assert_eq!(
        (session.processes, session.crashed, session.requests),
        (2, 1, 1)
    );
    assert!(matches!(
        t.store.set_process_exit(ProcessId(77), ProcessExit::Clean),
        Err(StoreError::UnknownId { .. })
    ));
}

fn tick(ts_ns: u64, tid: u32, state: timeglass_model::State, stack: u32) -> timeglass_model::Tick {
    timeglass_model::Tick {
        ts_ns,
        tid,
        state,
        stack,
    }
}

#[test]
fn samples_keep_their_times_threads_states_and_stacks() {
    use timeglass_model::{State, Timeline};

    let mut t = TestStore::start();
    let mut req = request(1, 1_000, 50, handler_stacks());
    let start = req.request.start_ns;
    let stacks: Vec<_> = req.stacks.iter().map(|s| s.stack.clone()).collect();
    req.timeline = Timeline {
        stacks: stacks.clone(),
        ticks: vec![
            tick(start, 7, State::Python, 0),
            tick(start + 1_000_000, 7, State::Python, 0),
            tick(start + 2_000_123, 0, State::Awaiting, 2),
            tick(start + 2_000_123, 99, State::Blocked, 1),
            tick(start + 49_999_999, 7, State::Native, 0),
        ],
    };
    let idle = stack(&[("main", 1), ("idle", 2)]);
    let outside = |at_ms: u64| Timeline {
        stacks: vec![idle.clone()],
        ticks: vec![tick(
            CLOCK.mono_ns + at_ms * 1_000_000,
            8,
            State::Blocked,
            0,
        )],
    };
    let other = t.store.add_process(t.session, &new_process(5151)).unwrap();
    t.store
        .write(&Batch {
            session: t.session,
            requests: vec![
                (t.process, req.clone()),
                (t.process, request(2, 2_000, 5, vec![])),
            ],
            outside: vec![],
            // Two writes of one process, the later one first (a retried write).
            outside_timeline: vec![
                (t.process, outside(30)),
                (other, outside(5)),
                (t.process, outside(20)),
            ],
            process_samples: vec![],
        })
        .unwrap();

    let back = t.store.request_timeline(1).unwrap();
    let as_read = |tl: &Timeline| -> Vec<(u64, u32, State, Vec<timeglass_model::Frame>)> {
        tl.ticks
            .iter()
            .map(|k| {
                (
                    k.ts_ns,
                    k.tid,
                    k.state,
                    tl.stacks[k.stack as usize].to_vec(),
                )
            })
            .collect()
    };
    assert_eq!(as_read(&back), as_read(&req.timeline));
    let (stacks, timeline) = t.store.request_profile(1).unwrap();
    assert_eq!(stacks, t.store.request_stacks(1).unwrap());
    assert_eq!(as_read(&timeline), as_read(&back));
    assert!(
        std::sync::Arc::ptr_eq(&timeline.stacks[0], &stacks[0].stack),
        "read once, shared"
    );
    assert!(
        t.store.request_timeline(2).unwrap().is_empty(),
        "no samples, no row"
    );
    assert!(t.store.request_timeline(99).unwrap().is_empty());

    let outside = t.store.outside_timelines(t.session).unwrap();
    let pids: Vec<u32> = outside.iter().map(|o| o.0).collect();
    assert_eq!(pids, [4242, 5151]);
    let times: Vec<u64> = outside[0].1.ticks.iter().map(|k| k.ts_ns).collect();
    assert_eq!(
        times,
        [CLOCK.mono_ns + 20_000_000, CLOCK.mono_ns + 30_000_000]
    );
    assert_eq!(&*outside[0].1.stacks[0], &*idle);
}

#[test]
fn duration_sorts_order_requests_within_one_microsecond_and_page_through_them() {
    let mut t = TestStore::start();
    // 624.210, 624.853 and 624.500 µs all store duration_us = 624; the list
    // shows them to the nanosecond, so that is the order it must keep.
    let extra_ns = [210, 853, 500, 0];
    let requests = extra_ns
        .iter()
        .enumerate()
        .map(|(i, &extra)| {
            let mut r = request(i as u64, 10 * i as u64, 0, vec![]);
            let end = r.request.start_ns + 624_000 + extra;
            r.request.end_ns = end;
            r.request.response_end_ns = Some(end);
            (t.process, r)
        })
        .collect();
    t.store
        .write(&Batch {
            session: t.session,
            requests,
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();

    for (sort, expected) in [(Sort::Slowest, [1, 2, 0, 3]), (Sort::Fastest, [3, 0, 2, 1])] {
        let whole: Vec<u64> = t
            .store
            .request_page(&RequestPage {
                limit: 10,
                sort,
                ..RequestPage::default()
            })
            .unwrap()
            .iter()
            .map(|r| r.marker_id)
            .collect();
        assert_eq!(whole, expected, "{sort:?}");

        // One at a time, each page after the last one's id.
        let mut paged = vec![];
        let mut before = None;
        loop {
            let page = t
                .store
                .request_page(&RequestPage {
                    limit: 1,
                    before,
                    sort,
                    ..RequestPage::default()
                })
                .unwrap();
            let Some(row) = page.first() else { break };
            paged.push(row.marker_id);
            before = Some(row.id);
        }
        assert_eq!(paged, expected, "{sort:?}, paged");
    }

    // One index walk gives that order, the page after a cursor included:
    // no sort of the whole table.
    let exact = "(coalesce(r.response_end_ns, r.end_ns) - r.start_ns)";
    for sql in [
        format!("SELECT r.id FROM requests r ORDER BY r.duration_us DESC, {exact} DESC, r.id DESC"),
        format!(
            "SELECT r.id FROM requests r JOIN processes p ON p.id = r.process_id
             WHERE (r.duration_us, {exact}, r.id) > (SELECT b.duration_us,
                 (coalesce(b.response_end_ns, b.end_ns) - b.start_ns), b.id
                 FROM requests b WHERE b.id = 2)
             ORDER BY r.duration_us, {exact}, r.id LIMIT 10"
        ),
    ] {
        let plan: Vec<String> = t
            .raw()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("INDEX requests_by_duration"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "sorts:\n{plan}");
    }
}
