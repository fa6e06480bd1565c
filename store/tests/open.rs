//! Which files the store accepts, and that it never changes the ones it refuses.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use timeglass_store::{Store, StoreError, APPLICATION_ID, SCHEMA_VERSION};

/// The file and any SQLite side files next to it, by name.
fn snapshot(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Both ways of opening refuse the file, and leave the directory as it was.
fn assert_refused(path: &Path, check: impl Fn(&StoreError)) {
    let before = snapshot(path);
    for open in [Store::open, Store::open_existing] {
        let err = open(path).err().expect("the file must be refused");
        check(&err);
        assert_eq!(snapshot(path), before, "refusing must not touch any file");
    }
}

fn foreign_sqlite(path: &Path, application_id: i32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('keep me');")
        .unwrap();
    conn.pragma_update(None, "application_id", application_id)
        .unwrap();
}

#[test]
fn text_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    fs::write(&path, "just some notes\n").unwrap();
    assert_refused(&path, |e| {
        assert!(matches!(e, StoreError::NotTimeGlass { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("not a TimeGlass database"), "{msg}");
        assert!(msg.contains("not an SQLite database"), "{msg}");
        assert!(msg.contains("notes.db"), "{msg}");
    });
}

#[test]
fn sqlite_file_of_another_application_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    foreign_sqlite(&path, 0x0F0F_0F0F);
    assert_refused(&path, |e| {
        assert!(matches!(e, StoreError::NotTimeGlass { .. }), "{e:?}");
        assert!(e.to_string().contains("another application"), "{e}");
    });
}

#[test]
fn sqlite_file_without_application_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    foreign_sqlite(&path, 0);
    assert_refused(&path, |e| {
        assert!(matches!(e, StoreError::NotTimeGlass { .. }), "{e:?}");
    });
}

#[test]
fn newer_schema_is_refused_with_upgrade_hint() {
    let t = TestStore::start();
    let path = t.path.clone();
    drop(t.store);
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    assert_refused(&path, |e| {
        assert!(
            matches!(e, StoreError::TooNew { found, .. } if *found == SCHEMA_VERSION + 1),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("newer TimeGlass") && msg.contains("upgrade"),
            "{msg}"
        );
    });
}

#[test]
fn missing_path_is_created_with_parent_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/.timeglass/timeglass.db");
    let store = Store::open(&path).unwrap();
    assert!(store.sessions().unwrap().is_empty());
    drop(store);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let id: i32 = raw
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    let version: u32 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let mode: String = raw
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(
        (id, version, mode.as_str()),
        (APPLICATION_ID, SCHEMA_VERSION, "wal")
    );
}

#[test]
fn empty_file_becomes_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timeglass.db");
    fs::write(&path, b"").unwrap();
    let mut store = Store::open(&path).unwrap();
    store.begin_session(&new_session()).unwrap();
    assert_eq!(
        Store::open_existing(&path)
            .unwrap()
            .sessions()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn readers_get_missing_for_absent_or_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("nope/timeglass.db");
    let err = Store::open_existing(&absent).err().unwrap();
    assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("`timeglass run -- uvicorn app:app`"),
        "{err}"
    );
    assert!(
        !absent.parent().unwrap().exists(),
        "a reader creates nothing"
    );

    let empty = dir.path().join("empty.db");
    fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Store::open_existing(&empty),
        Err(StoreError::Missing { .. })
    ));
    assert_eq!(fs::read(&empty).unwrap(), b"");
}

#[test]
fn existing_store_keeps_its_data() {
    let mut t = TestStore::start();
    t.store
        .write(&timeglass_store::Batch {
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
    drop(t.store);
    for open in [Store::open, Store::open_existing] {
        let store = open(&t.path).unwrap();
        assert_eq!(store.sessions().unwrap().len(), 1);
        assert_eq!(store.request_stacks(1).unwrap().len(), 1);
    }
}

/// Version 0 with our application id stands for "an older TimeGlass file":
/// it goes through the same migration steps a v1 → v2 upgrade will.
#[test]
fn older_version_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timeglass.db");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    drop(raw);

    let mut store = Store::open(&path).unwrap();
    store.begin_session(&new_session()).unwrap();
    drop(store);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}
