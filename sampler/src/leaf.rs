//! What a suspended request awaits, named from its await chain: the leaf
//! frame its sample ends in, and whether it is waiting or queued.

use timeglass_model::{Frame, State, AWAIT_FRAME_PREFIX, LOOP_BUSY_FRAME, WORKER_WAIT_FRAME};

use crate::AwaitChain;

/// `(library file suffix, function name, what it awaits)`. Names are
/// matched with and without their class (3.10 frames carry no qualified
/// names), innermost frame first.
const KNOWN: &[(&str, &str, &str)] = &[
    ("asyncio/tasks.py", "sleep", "asyncio.sleep"),
    ("asyncio/locks.py", "Lock.acquire", "asyncio.Lock"),
    ("asyncio/locks.py", "Event.wait", "asyncio.Event"),
    ("asyncio/locks.py", "Condition.wait", "asyncio.Condition"),
    ("asyncio/locks.py", "Semaphore.acquire", "asyncio.Semaphore"),
    ("asyncio/queues.py", "Queue.get", "asyncio.Queue.get"),
    ("asyncio/queues.py", "Queue.put", "asyncio.Queue.put"),
    (
        "asyncio/streams.py",
        "StreamReader._wait_for_data",
        "socket read",
    ),
    ("asyncio/selector_events.py", "sock_recv", "socket read"),
    (
        "asyncio/selector_events.py",
        "sock_connect",
        "socket connect",
    ),
    (
        "asyncio/base_events.py",
        "BaseEventLoop.run_in_executor",
        "thread pool",
    ),
    (
        "asyncio/base_events.py",
        "BaseEventLoop.getaddrinfo",
        "DNS lookup",
    ),
    ("asyncio/threads.py", "to_thread", "thread pool"),
    (
        "anyio/_backends/_asyncio.py",
        "run_sync_in_worker_thread",
        "thread pool",
    ),
    ("asyncio/tasks.py", "wait_for", "asyncio.wait_for"),
    ("asyncio/tasks.py", "gather", "asyncio.gather"),
];

/// anyio's thread pool: a sync endpoint or dependency suspended here waits
/// for a worker thread, either for a token of the pool's limiter or for the
/// worker to start the call. (Once a worker runs it, the worker's thread
/// carries the request and is sampled instead.)
fn waits_for_worker(frame: &Frame) -> bool {
    frame.filename.ends_with("anyio/_backends/_asyncio.py")
        && (matches_name(&frame.name, "CapacityLimiter.acquire_on_behalf_of")
            || matches_name(&frame.name, "CapacityLimiter.acquire")
            || matches_name(&frame.name, "AsyncIOBackend.run_sync_in_worker_thread"))
}

fn matches_name(name: &str, qualified: &str) -> bool {
    name == qualified
        || qualified
            .rsplit_once('.')
            .is_some_and(|(_, plain)| name == plain)
}

/// The leaf frame and state of a request suspended in `chain`.
pub(crate) fn await_leaf(chain: &AwaitChain) -> (Frame, State) {
    if chain.frames.iter().any(waits_for_worker) {
        return (Frame::synthetic(WORKER_WAIT_FRAME), State::Queued);
    }
    if chain.ready {
        return (Frame::synthetic(LOOP_BUSY_FRAME), State::Queued);
    }
    let what = chain.frames.iter().rev().find_map(|f| {
        KNOWN
            .iter()
            .find(|(file, name, _)| f.filename.ends_with(file) && matches_name(&f.name, name))
            .map(|(_, _, what)| *what)
    });
    let name = match what {
        Some(what) => format!("{AWAIT_FRAME_PREFIX} {what}]"),
        None => format!("{AWAIT_FRAME_PREFIX}]"),
    };
    (Frame::synthetic(&name), State::Awaiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, file: &str) -> Frame {
        Frame {
            name: name.into(),
            filename: file.into(),
            short: "".into(),
            line: 1,
        }
    }

    fn chain(frames: Vec<Frame>, ready: bool) -> AwaitChain {
        AwaitChain {
            frames,
            awaits: Some("_asyncio.Future".into()),
            ready,
            running: false,
            awaited: 0,
        }
    }

    #[test]
    fn known_awaits_are_named_by_the_innermost_library_frame() {
        let handler = f("handler", "/app/main.py");
        let sleep = f("sleep", "/usr/lib/python3.12/asyncio/tasks.py");
        let (leaf, state) = await_leaf(&chain(vec![handler.clone(), sleep], false));
        assert_eq!(&*leaf.name, "[await asyncio.sleep]");
        assert_eq!(state, State::Awaiting);
        assert!(leaf.is_state() && leaf.is_off_cpu());
        let lock = f("Lock.acquire", "/usr/lib/python3.12/asyncio/locks.py");
        let (leaf, _) = await_leaf(&chain(vec![handler.clone(), lock], false));
        assert_eq!(&*leaf.name, "[await asyncio.Lock]");
        let plain = f("acquire", "/usr/lib/python3.10/asyncio/locks.py");
        let (leaf, _) = await_leaf(&chain(vec![handler.clone(), plain], false));
        assert_eq!(
            &*leaf.name, "[await asyncio.Lock]",
            "3.10 frames have no class"
        );
        let (leaf, _) = await_leaf(&chain(vec![handler], false));
        assert_eq!(&*leaf.name, "[await]");
    }

    #[test]
    fn a_done_future_or_the_thread_limiter_is_queued_not_awaiting() {
        let handler = f("handler", "/app/main.py");
        let (leaf, state) = await_leaf(&chain(vec![handler.clone()], true));
        assert_eq!(
            (leaf.name.as_ref(), state),
            (LOOP_BUSY_FRAME, State::Queued)
        );
        let limiter = f(
            "CapacityLimiter.acquire_on_behalf_of",
            "/venv/lib/python3.11/site-packages/anyio/_backends/_asyncio.py",
        );
        let (leaf, state) = await_leaf(&chain(vec![handler, limiter], false));
        assert_eq!(
            (leaf.name.as_ref(), state),
            (WORKER_WAIT_FRAME, State::Queued)
        );
        assert!(leaf.is_off_cpu());
    }
}
