//! Bounded growth: prune by session, by age, all, and caps; the space comes back.

mod common;

use common::{counted, new_process, new_session, request, TestStore, CLOCK};
use timeglass_store::{Batch, Prune, Retention, SessionEnd, SessionId, Store};

fn end(store: &mut Store, session: SessionId) {
    store
        .end_session(
            session,
            &SessionEnd {
                exit_code: Some(0),
                samples: 0,
                torn_samples: 0,
                lost_events: 0,
                load: Default::default(),
            },
        )
        .unwrap();
}

/// A session of `n` requests with stacks, ended unless `live`.
fn session(store: &mut Store, n: u64, live: bool) -> SessionId {
    let session = store.begin_session(&new_session()).unwrap();
    let process = store.add_process(session, &new_process(4242)).unwrap();
    let requests = (0..n)
        .map(|i| {
            let mut r = request(i + 1, i, 5, vec![counted(&[("main", 1), ("h", 2)], 3)]);
            r.request.path = format!("/{}", "x".repeat(2000));
            r.alloc_stacks = vec![counted(&[("main", 1), ("alloc", 3)], 1 << 20)];
            (process, r)
        })
        .collect();
    store
        .write(&Batch {
            session,
            requests,
            ..Batch::default()
        })
        .unwrap();
    if !live {
        end(store, session);
    }
    session
}

#[test]
fn a_pruned_session_leaves_nothing_behind_and_others_untouched() {
    let mut t = TestStore::start();
    end(&mut t.store, t.session);
    let gone = session(&mut t.store, 50, false);
    let kept = session(&mut t.store, 20, false);
    let done = t.store.prune(&Prune::Session(gone)).unwrap();
    assert_eq!((done.sessions, done.requests), (1, 50));
    let raw = t.raw();
    let of =
        |sql: &str, id: SessionId| -> i64 { raw.query_row(sql, [id.0], |r| r.get(0)).unwrap() };
    for (sql, id, want) in [
        (
            "SELECT count(*) FROM requests WHERE session_id = ?1",
            gone,
            0,
        ),
        (
            "SELECT count(*) FROM processes WHERE session_id = ?1",
            gone,
            0,
        ),
        (
            "SELECT count(*) FROM endpoint_minutes WHERE session_id = ?1",
            gone,
            0,
        ),
        ("SELECT count(*) FROM sessions WHERE id = ?1", gone, 0),
        (
            "SELECT count(*) FROM requests WHERE session_id = ?1",
            kept,
            20,
        ),
    ] {
        assert_eq!(of(sql, id), want, "{sql} {id:?}");
    }
    // No row of another table points at a deleted request.
    for table in ["request_stacks", "request_alloc_stacks"] {
        let joined =
            format!("SELECT count(*) FROM {table} s JOIN requests r ON r.id = s.request_id");
        let pointing: i64 = raw.query_row(&joined, [], |r| r.get(0)).unwrap();
        assert_eq!(t.count(table), pointing, "{table}");
    }
    assert_eq!(t.count("request_alloc_stacks"), 20, "the kept session's");
    let check: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let fk: Vec<String> = raw
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(fk.is_empty(), "{fk:?}");
}

#[test]
fn space_is_given_back() {
    let mut t = TestStore::start();
    end(&mut t.store, t.session);
    let big = session(&mut t.store, 2000, false);
    let before = std::fs::metadata(&t.path).unwrap().len();
    let done = t.store.prune(&Prune::Session(big)).unwrap();
    let after = std::fs::metadata(&t.path).unwrap().len();
    assert!(done.bytes_after * 4 < done.bytes_before, "{done:?}");
    assert!(after * 4 < before, "file {before} -> {after}");
    let mode: i64 = t
        .raw()
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "a new store vacuums incrementally");
}

#[test]
fn a_live_session_is_kept_and_all_means_every_ended_one() {
    let mut t = TestStore::start(); // its session is live: never ended
    session(&mut t.store, 3, false);
    session(&mut t.store, 3, false);
    let done = t.store.prune(&Prune::All).unwrap();
    assert_eq!((done.sessions, done.live_kept), (2, 1));
    assert_eq!(t.count("sessions"), 1);
    let done = t.store.prune(&Prune::Session(t.session)).unwrap();
    assert_eq!((done.sessions, done.live_kept), (0, 1));
}

#[test]
fn by_age_and_by_caps_the_oldest_go_first() {
    let mut t = TestStore::start();
    end(&mut t.store, t.session);
    let old = session(&mut t.store, 10, false);
    let new = session(&mut t.store, 10, false);
    // Sessions start at CLOCK's time; make `new` a day younger.
    t.raw()
        .execute(
            "UPDATE sessions SET started_at = '2024-05-02T12:00:00.000Z' WHERE id = ?1",
            [new.0],
        )
        .unwrap();
    let cutoff = CLOCK.unix_ns as i128 + 3_600_000_000_000;
    let done = t.store.prune(&Prune::StartedBefore(cutoff)).unwrap();
    assert_eq!(done.sessions, 2, "the first and `old`: {done:?}");
    let left: Vec<i64> = t
        .raw()
        .prepare("SELECT id FROM sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, vec![new.0]);
    let _ = old;

    let a = session(&mut t.store, 10, false);
    let b = session(&mut t.store, 10, false);
    let caps = Retention {
        keep_days: None,
        max_requests: Some(15),
        max_bytes: None,
    };
    let done = t.store.enforce_retention(&caps).unwrap();
    // Sessions a and b started "2024-05-01", before `new`: they go first.
    assert_eq!(done.sessions, 2, "{done:?}");
    let _ = (a, b);
    assert_eq!(t.count("requests"), 10);
}
