//! A reader (`timeglass requests`) while `timeglass run` writes.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::*;
use timeglass_store::{Batch, RequestQuery, Store};

fn all() -> RequestQuery {
    RequestQuery {
        limit: 1000,
        session: None,
    }
}

#[test]
fn reader_is_not_blocked_by_an_open_write_transaction() {
    let mut t = TestStore::start();
    t.store
        .write(&Batch {
            session: t.session,
            requests: vec![(
                t.process,
                request(1, 0, 5, vec![counted(&[("main", 1)], 1)]),
            )],
            outside: vec![],
            outside_timeline: vec![],
            process_samples: vec![],
        })
        .unwrap();

    // Another connection holds the write lock with uncommitted rows.
    let writer = t.raw();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    writer
        .execute(
            "INSERT INTO sessions (started_at, command, cwd, rate_hz, clock_mono_ns, clock_unix_ns)
             VALUES ('2030-01-01T00:00:00.000Z', '[]', '/', 1, 0, 0)",
            [],
        )
        .unwrap();

    for open in [Store::open, Store::open_existing] {
        let reader = open(&t.path).unwrap();
        assert_eq!(reader.requests(&all()).unwrap().len(), 1);
        assert_eq!(reader.request_stacks(1).unwrap().len(), 1);
        assert_eq!(
            reader.sessions().unwrap().len(),
            1,
            "uncommitted rows are invisible"
        );
    }
    writer.execute_batch("COMMIT").unwrap();
    assert_eq!(t.store.sessions().unwrap().len(), 2);
}

#[test]
fn reader_thread_alongside_writer_thread() {
    let mut t = TestStore::start();
    let path = t.path.clone();
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let store = Store::open_existing(&path).unwrap();
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let rows = store.requests(&all()).unwrap();
                if let Some(newest) = rows.first() {
                    store.request_stacks(newest.id).unwrap();
                }
                reads += 1;
            }
            reads
        });
        for b in 0..50u64 {
            let requests = (0..20)
                .map(|i| {
                    let id = b * 20 + i;
                    let stack = counted(&[("main", 1), ("handler", id as u32 % 7)], 1);
                    (t.process, request(id, id, 1, vec![stack]))
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
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    assert_eq!(t.store.requests(&all()).unwrap().len(), 1000);
}
