//! `Follow::Tree`, as `attach` uses it, against ring files made here: only the
//! tree's rings are read, a ring written before the recorder started is read
//! from its oldest record, and history older than `HISTORY` is skipped.

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timeglass_recorder::{
    Follow, Notice, PySpyOptions, Recorder, RecorderOptions, SamplerOptions, HISTORY,
};
use timeglass_store::{ClockMap, NewSession, RequestQuery, Store};
use timeglass_wire::{monotonic_ns, Event, Geometry, Region, RequestEnd, RequestStart};

fn publish(region: &Region, event: Event) {
    let mut buf = Vec::new();
    let kind = event.encode(&mut buf);
    assert!(region.publish(kind, &buf));
}

/// One whole request, `ago_ns` before now, lasting 1 ms.
fn request(region: &Region, id: u64, path: &str, ago_ns: u64) {
    let start = monotonic_ns().saturating_sub(ago_ns);
    publish(
        region,
        Event::RequestStart(RequestStart {
            request_id: id,
            ts_ns: start,
            tid: 1,
            method: "GET".into(),
            path: path.into(),
        }),
    );
    publish(
        region,
        Event::RequestEnd(RequestEnd {
            request_id: id,
            ts_ns: start + 1_000_000,
            response_ns: start + 1_000_000,
            status: 200,
            flags: 0,
            route: path.into(),
        }),
    );
}

/// Polls `done` every 10 ms until it holds; fails the test after 10 s.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn attach_reads_its_trees_rings_from_their_recent_history() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry {
        slot_count: 16,
        ring_slots: 1024,
        scope_count: 64,
    };
    // A process of our tree (our child) and one outside it (our parent's).
    let child = Sleeper(Command::new("sleep").arg("30").spawn().unwrap());
    let inside = Region::create(dir.path(), child.0.id(), geometry).unwrap();
    let outside_pid = std::os::unix::process::parent_id();
    let outside = Region::create(dir.path(), outside_pid, geometry).unwrap();
    // Written before anyone listened: one request too old to matter, one recent.
    let old = HISTORY.as_nanos() as u64 + 30_000_000_000;
    request(&inside, 1, "/too-old", old);
    request(&inside, 2, "/just-before", 2_000_000_000);
    request(&outside, 1, "/someone-else", 1_000_000_000);

    let db = dir.path().join("store.db");
    let mut store = Store::open(&db).unwrap();
    let session = store
        .begin_session(&NewSession {
            command: vec!["uvicorn".into()],
            cwd: "/".into(),
            rate_hz: 100,
            clock: ClockMap {
                mono_ns: monotonic_ns(),
                unix_ns: 1_700_000_000_000_000_000,
            },
        })
        .unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = notices.clone();
    let recorder = Recorder::start(
        store,
        session,
        RecorderOptions {
            runtime_dir: dir.path().to_path_buf(),
            follow: Follow::Tree {
                root: std::process::id(),
            },
            sampler: SamplerOptions {
                rate_hz: 100,
                idle_hz: 10,
                wall_clock: true,
            },
            pyspy: PySpyOptions {
                gil_only: true,
                lines: false,
                pyspy_walker: false,
            },
            n_plus_one: timeglass_recorder::defaults::N_PLUS_ONE,
            loop_block_ms: timeglass_recorder::defaults::LOOP_BLOCK_MS,
        },
        Box::new(move |n| seen.lock().unwrap().push(n)),
    );
    let pid = child.0.id();
    let tried = notices.clone();
    wait_until("the recorder found the child's ring", || {
        tried
            .lock()
            .unwrap()
            .iter()
            .any(|n| matches!(n, Notice::AttachFailed { pid: p, .. } if *p == pid))
    });
    request(&inside, 3, "/while-attached", 0);
    // No wait here: `stop` drains every ring it found before it returns.
    let (summary, store) = recorder.stop().unwrap();

    let rows = store
        .requests(&RequestQuery {
            limit: 10,
            session: None,
        })
        .unwrap();
    let mut paths: Vec<(&str, u32)> = rows.iter().map(|r| (r.path.as_str(), r.pid)).collect();
    paths.sort();
    assert_eq!(paths, [("/just-before", pid), ("/while-attached", pid)]);
    assert_eq!(summary.processes, 1);
    assert_eq!(summary.lost_events, 0);
    // `sleep` is no Python: its requests are stored without stacks, and said so.
    let notices = notices.lock().unwrap();
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, Notice::AttachFailed { pid: p, .. } if *p == pid)),
        "{notices:?}"
    );
    let processes = store.processes(session).unwrap();
    assert_eq!(processes.len(), 1);
    assert_eq!(processes[0].exit.as_deref(), Some("running"));
}
