use std::sync::Arc;

use timeglass_join::{Join, GRACE_NS};
use timeglass_model::{Frame, Quality, Sample, Stack, State};
use timeglass_wire::{Event, RequestEnd, RequestStart, END_ERROR};

fn stack(names: &[&str]) -> Stack {
    names
        .iter()
        .map(|n| match n.starts_with('[') {
            true => Frame::synthetic(n),
            false => Frame {
                name: (*n).into(),
                filename: "app.py".into(),
                short: "app.py".into(),
                line: 1,
            },
        })
        .collect::<Vec<_>>()
        .into()
}

fn start(id: u64, ts: u64) -> Event {
    Event::RequestStart(RequestStart {
        request_id: id,
        ts_ns: ts,
        tid: 10,
        method: "GET".into(),
        path: format!("/r/{id}"),
    })
}

fn end(id: u64, ts: u64, status: u16) -> Event {
    Event::RequestEnd(RequestEnd {
        request_id: id,
        ts_ns: ts,
        response_ns: ts,
        status,
        flags: 0,
        route: "/r/{id}".into(),
    })
}

fn sample(rid: u64, ts: u64, q: Quality, s: &Stack) -> Sample {
    Sample {
        pid: 1,
        tid: 10,
        ts_ns: ts,
        request_id: rid,
        quality: q,
        state: State::Python,
        interval_ns: 1_000_000,
        slot_seq: 0,
        cpu_ns: 0,
        in_gc: false,
        gc_collections: 0,
        stack: Arc::clone(s),
    }
}

#[test]
fn samples_are_charged_to_their_request_and_aggregated_per_stack() {
    let (a, b) = (
        stack(&["<module>", "handler", "burn"]),
        stack(&["<module>", "handler"]),
    );
    const MS: u64 = 1_000_000;
    let mut j = Join::new();
    j.event(1, start(1, MS));
    for ts in [2 * MS, 3 * MS, 4 * MS] {
        j.sample(sample(1, ts, Quality::Clean, &a));
    }
    j.sample(sample(1, 5 * MS, Quality::Switched, &b));
    j.event(1, end(1, 10 * MS, 200));
    assert!(
        j.finished(10 * MS).is_empty(),
        "late samples are awaited for the grace period"
    );
    let done = j.finished(10 * MS + GRACE_NS);
    assert_eq!(done.len(), 1);
    let r = &done[0];
    assert_eq!(
        (r.request.method.as_str(), r.request.path.as_str()),
        ("GET", "/r/1")
    );
    assert_eq!(r.request.route.as_deref(), Some("/r/{id}"));
    assert_eq!(r.request.status, Some(200));
    assert_eq!(r.request.duration_ns(), 9 * MS);
    // The switched sample is counted, not charged: its stack may be another request's.
    // Each tick stands for the time nearest to it: 2 ms for 1.5, 3 and 4 ms for 1 each,
    // so the stack weighs 3.5 periods of 1 ms, rounded to 4.
    assert_eq!(r.samples(), 4);
    assert_eq!(r.stacks.len(), 1);
    assert_eq!(r.stacks[0].stack, a);
    assert_eq!(r.stacks[0].samples, 4);
    assert_eq!(r.switched_samples, 1);
    assert_eq!(j.stats().unattributable, 1);
    assert!(j.take_outside().is_empty());
}

#[test]
fn samples_outside_requests_go_to_the_session() {
    let s = stack(&["<module>", "startup"]);
    let mut j = Join::new();
    j.sample(sample(0, 5, Quality::Clean, &s));
    j.sample(sample(0, 6, Quality::Clean, &s));
    let outside = j.take_outside();
    assert_eq!(outside.len(), 1);
    assert_eq!((outside[0].0, outside[0].1.samples), (1, 2));
    assert_eq!(j.stats().outside_samples, 2);
}

#[test]
fn a_sample_outside_its_requests_window_is_not_charged_to_it() {
    let s = stack(&["<module>", "x"]);
    let mut j = Join::new();
    j.event(1, start(3, 1_000));
    j.event(1, end(3, 2_000, 200));
    j.sample(sample(3, 2_500, Quality::Clean, &s));
    j.sample(sample(3, 500, Quality::Clean, &s));
    let done = j.flush(None);
    assert_eq!(done[0].samples(), 0);
    assert_eq!(j.stats().out_of_window, 2);
    assert_eq!(j.take_outside()[0].1.samples, 2);
}

#[test]
fn torn_samples_are_counted_on_the_request_but_not_in_its_stacks() {
    let s = stack(&["handler"]);
    let mut j = Join::new();
    j.event(1, start(4, 0));
    j.sample(sample(4, 10, Quality::Torn, &s));
    j.event(1, end(4, 20, 500));
    let done = j.flush(Some(1));
    assert_eq!((done[0].samples(), done[0].torn_samples), (0, 1));
    assert_eq!(j.stats().torn_samples, 1);
}

#[test]
fn a_request_cut_off_by_the_process_exiting_is_kept_as_unfinished() {
    let s = stack(&["<module>", "handler"]);
    let mut j = Join::new();
    j.event(1, start(5, 100));
    j.sample(sample(5, 900, Quality::Clean, &s));
    let done = j.flush(Some(1));
    assert_eq!(done.len(), 1);
    let r = &done[0].request;
    assert_eq!((r.status, r.cancelled, r.end_ns), (None, true, 900));
    assert_eq!(j.stats().unfinished, 1);
}

#[test]
fn a_request_whose_start_was_lost_keeps_its_samples_outside() {
    let s = stack(&["h"]);
    let mut j = Join::new();
    j.sample(sample(6, 10, Quality::Clean, &s));
    j.event(
        1,
        Event::RequestEnd(RequestEnd {
            request_id: 6,
            ts_ns: 20,
            response_ns: 0,
            status: 500,
            flags: END_ERROR,
            route: String::new(),
        }),
    );
    assert!(j.finished(20 + GRACE_NS).is_empty());
    assert_eq!(j.stats().orphans, 1);
    assert_eq!(j.take_outside()[0].1.samples, 1);
}

#[test]
fn requests_of_different_processes_with_the_same_marker_id_stay_apart() {
    let s = stack(&["h"]);
    let mut j = Join::new();
    for pid in [1, 2] {
        j.event(pid, start(1, 0));
        j.sample(Sample {
            pid,
            ..sample(1, 5, Quality::Clean, &s)
        });
        j.event(pid, end(1, 10, 200));
    }
    let done = j.flush(None);
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|r| r.samples() == 1));
}

/// The end of request 8, started at 100 ms: its response sent at 150 ms,
/// its background stage over at 200 ms.
fn signup_end() -> Event {
    const MS: u64 = 1_000_000;
    Event::RequestEnd(RequestEnd {
        request_id: 8,
        ts_ns: 200 * MS,
        response_ns: 150 * MS,
        status: 200,
        flags: 0,
        route: "/signup".into(),
    })
}

#[test]
fn samples_after_the_response_was_sent_form_the_background_stage() {
    let s = stack(&["<module>", "handler"]);
    let bg = stack(&["<module>", "send_welcome_email"]);
    const MS: u64 = 1_000_000;
    let mut j = Join::new();
    j.event(1, start(8, 100 * MS));
    j.sample(sample(8, 120 * MS, Quality::Clean, &s));
    j.sample(sample(8, 170 * MS, Quality::Clean, &bg));
    j.sample(sample(8, 180 * MS, Quality::Clean, &bg));
    j.event(1, signup_end());
    let done = j.flush(None);
    let r = &done[0];
    assert_eq!(
        r.request.duration_ns(),
        50 * MS,
        "response time ends at the last body chunk"
    );
    assert_eq!(r.request.background_ns(), Some(50 * MS));
    let labels: Vec<(String, u64)> = r
        .stacks
        .iter()
        .map(|c| {
            (
                c.stack
                    .iter()
                    .map(|f| f.name.clone())
                    .collect::<Vec<_>>()
                    .join(";"),
                c.samples,
            )
        })
        .collect();
    // Ticks 50 ms apart each stand for the time nearest to them: the handler's
    // (120 ms) from the start to 145 ms, the two after the response the rest.
    assert_eq!(
        labels,
        vec![
            ("[background];<module>;send_welcome_email".to_string(), 55),
            ("<module>;handler".to_string(), 45),
        ]
    );
}

#[test]
fn requests_read_from_a_ring_after_the_fact_come_out_without_samples() {
    // `attach` reads what the marker wrote before anyone listened: whole
    // requests with no samples, and ends whose start is no longer there.
    let mut j = Join::new();
    j.event(1, start(1, 100));
    j.event(1, end(1, 300, 200));
    j.event(1, end(0x7f, 250, 200));
    let done = j.finished(300 + GRACE_NS);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].request.marker_id, 1);
    assert_eq!(done[0].request.status, Some(200));
    assert_eq!(done[0].samples(), 0);
    assert_eq!(j.stats().orphans, 1);
}

#[test]
fn context_events_join_their_request() {
    use timeglass_wire::{RequestContext, PHASE_HANDLER, PHASE_REQUEST, PHASE_RESPONSE};
    let mut j = Join::new();
    j.event(1, start(1, 1_000));
    j.event(
        1,
        Event::RequestContext(RequestContext {
            request_id: 1,
            ts_ns: 1_001,
            phase: PHASE_REQUEST,
            headers: vec![("accept".into(), "*/*".into())],
            query: "a=1".into(),
            ..RequestContext::default()
        }),
    );
    for ts_ns in [1_200, 1_300] {
        j.event(
            1,
            Event::RequestContext(RequestContext {
                request_id: 1,
                ts_ns,
                phase: PHASE_HANDLER,
                ..RequestContext::default()
            }),
        );
    }
    j.event(
        1,
        Event::RequestContext(RequestContext {
            request_id: 1,
            ts_ns: 1_500,
            phase: PHASE_RESPONSE,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"hi \xff".to_vec(),
            body_bytes: 40_000,
            ..RequestContext::default()
        }),
    );
    j.event(1, end(1, 2_000, 200));
    j.event(1, start(2, 3_000));
    j.event(1, end(2, 4_000, 200));
    let done = j.flush(None);
    let context = done[0].context.as_ref().expect("request 1 has a context");
    assert_eq!(context.request_headers, [("accept".into(), "*/*".into())]);
    assert_eq!(context.query, "a=1");
    assert_eq!(context.body, "hi \u{fffd}");
    assert_eq!(context.body_bytes, 40_000);
    assert_eq!(context.response_start_ns, Some(1_500));
    assert_eq!(
        context.handler_start_ns,
        Some(1_200),
        "the first handler call"
    );
    assert_eq!(done[1].context, None, "no context event, no context");
}

#[test]
fn begin_and_finish_records_join_as_the_events_they_fold() {
    use timeglass_wire::{RequestBegin, RequestFinish, RequestHeaders, ResponseHeaders};
    let Event::RequestStart(first) = start(1, 1_000) else {
        unreachable!()
    };
    let Event::RequestEnd(last) = end(1, 2_000, 201) else {
        unreachable!()
    };
    let mut j = Join::new();
    j.event(
        1,
        Event::RequestBegin(RequestBegin {
            start: first,
            context: Some(RequestHeaders {
                headers: vec![("accept".into(), "*/*".into())],
                query: "a=1".into(),
            }),
        }),
    );
    j.event(
        1,
        Event::RequestFinish(RequestFinish {
            end: last,
            handler_ns: Some(1_200),
            response: Some(ResponseHeaders {
                ts_ns: 1_500,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: b"hi".to_vec(),
                body_bytes: 2,
            }),
        }),
    );
    let done = j.flush(None);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].request.status, Some(201));
    assert_eq!(done[0].request.path, "/r/1");
    let context = done[0].context.as_ref().expect("request 1 has a context");
    assert_eq!(context.request_headers, [("accept".into(), "*/*".into())]);
    assert_eq!(context.query, "a=1");
    assert_eq!(context.body, "hi");
    assert_eq!(context.response_start_ns, Some(1_500));
    assert_eq!(context.handler_start_ns, Some(1_200));
}

fn wall_sample(rid: u64, ts: u64, tid: u32, seq: u64, state: State, s: &Stack) -> Sample {
    Sample {
        tid,
        state,
        slot_seq: seq,
        cpu_ns: if state.on_cpu() { 1_000_000 } else { 0 },
        ..sample(rid, ts, Quality::Clean, s)
    }
}

#[test]
fn wall_clock_samples_add_up_to_the_duration_by_state() {
    const MS: u64 = 1_000_000;
    let thread = stack(&["<module>", "run_asgi", "app", "handler"]);
    let chain = stack(&["app", "handler", "[await asyncio.sleep]"]);
    let mut j = Join::new();
    j.event(1, start(1, 0));
    // 15 ms of Python on the loop thread (tid 10), one step...
    for t in 1..=15 {
        j.sample(wall_sample(1, t * MS, 10, 4, State::Python, &thread));
    }
    // ... then 60 ms suspended at an await, read from its chain (tid 0).
    for t in 16..=75 {
        j.sample(wall_sample(1, t * MS, 0, 0, State::Awaiting, &chain));
    }
    j.event(1, end(1, 75 * MS, 200));
    let r = j.flush(None).pop().unwrap();
    let b = r.breakdown;
    // Ticks tile the request: the last Python tick (15 ms) stands until halfway to
    // the first suspended one.
    assert_eq!(b.python_ns, 15 * MS + MS / 2);
    assert_eq!(b.await_ns, 60 * MS - MS / 2);
    assert_eq!(b.total_ns(), r.request.duration_ns());
    assert_eq!(r.cpu_ns, 15 * MS);
    assert!(r.loop_block.is_none(), "15 ms is under the threshold");
    // The chain sits under the frames that stepped it on the loop thread.
    let waiting = r
        .stacks
        .iter()
        .find(|s| &*s.stack.last().unwrap().name == "[await asyncio.sleep]")
        .unwrap();
    let names: Vec<&str> = waiting.stack.iter().map(|f| f.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "<module>",
            "run_asgi",
            "app",
            "handler",
            "[await asyncio.sleep]"
        ]
    );
    assert_eq!(waiting.samples, 60, "59.5 periods, rounded");
}

#[test]
fn a_long_step_on_the_loop_thread_is_a_loop_block_naming_the_requests_it_delayed() {
    const MS: u64 = 1_000_000;
    let blocking = stack(&["<module>", "handler", "[blocked]"]);
    let other = stack(&["app", "[ready, event loop busy]"]);
    let mut j = Join::new();
    j.event(1, start(1, 0));
    j.event(1, start(2, 5 * MS));
    for t in 1..=60 {
        j.sample(wall_sample(1, t * MS, 10, 6, State::Blocked, &blocking));
    }
    for t in 6..=60 {
        j.sample(wall_sample(2, t * MS, 0, 0, State::Queued, &other));
    }
    j.event(1, end(1, 61 * MS, 200));
    j.event(1, end(2, 62 * MS, 200));
    let done = j.flush(None);
    let blocker = done.iter().find(|r| r.request.marker_id == 1).unwrap();
    let block = blocker.loop_block.as_ref().expect("flagged");
    // Blocked from its start (0) to its end (61 ms): every tick was in one step.
    assert_eq!(block.blocked_ns, 61 * MS);
    assert_eq!(block.delayed, [2]);
    assert_eq!(block.line.as_deref(), Some("app.py:1 in handler"));
    assert_eq!(blocker.breakdown.blocked_ns, 61 * MS);
    let delayed = done.iter().find(|r| r.request.marker_id == 2).unwrap();
    assert!(delayed.loop_block.is_none());
    assert_eq!(delayed.breakdown.queued_ns, 57 * MS, "from 5 to 62 ms");
}

#[test]
fn collections_are_a_breakdown_category_and_a_gc_leaf_under_the_code_that_allocated() {
    use timeglass_model::GC_FRAME;
    use timeglass_wire::Gc;
    const MS: u64 = 1_000_000;
    let build = stack(&["<module>", "handler", "build"]);
    let mut j = Join::new();
    j.event(1, start(1, 0));
    for t in 1..=20 {
        j.sample(wall_sample(1, t * MS, 10, 4, State::Python, &build));
    }
    // A 2.3 ms collection on the request's thread around the 5 ms and 6 ms
    // ticks, and one on another thread (tid 11) that no sample of it saw.
    let gc = |tid, start_ns, end_ns| {
        Event::Gc(Gc {
            request_id: 1,
            tid,
            start_ns,
            end_ns,
        })
    };
    j.event(1, gc(10, 4 * MS + MS / 2, 6 * MS + 8 * MS / 10));
    j.event(1, gc(11, 12 * MS, 12 * MS + MS / 2));
    j.event(1, end(1, 20 * MS, 200));
    for t in 1..=3 {
        j.rss(1, t * 7 * MS, 50 << 20);
    }
    let r = j.flush(None).pop().unwrap();
    assert_eq!(
        (r.memory.gc_collections, r.memory.gc_pause_ns),
        (2, 2_800_000)
    );
    let b = r.breakdown;
    assert_eq!(b.gc_ns, 2_800_000, "timed, not sampled");
    assert_eq!(
        b.python_ns,
        18 * MS,
        "the two ticks inside the collection are its time"
    );
    let in_gc: u64 = r
        .stacks
        .iter()
        .filter(|s| &*s.stack.last().unwrap().name == GC_FRAME)
        .inspect(|s| assert_eq!(s.stack.len(), 4, "under build: {:?}", s.stack))
        .map(|s| s.samples)
        .sum();
    assert_eq!(in_gc, 2);
    assert_eq!(r.memory.rss_peak_bytes, Some(50 << 20));
}

#[test]
fn a_requests_samples_keep_their_times_over_its_counted_stacks() {
    let s = stack(&["<module>", "handler"]);
    let bg = stack(&["<module>", "send_welcome_email"]);
    const MS: u64 = 1_000_000;
    let mut j = Join::new();
    j.event(1, start(8, 100 * MS));
    // Delivered out of order, as two sampler batches can be.
    j.sample(sample(8, 130 * MS, Quality::Clean, &s));
    j.sample(sample(8, 120 * MS, Quality::Clean, &s));
    j.sample(sample(8, 140 * MS, Quality::Switched, &s));
    j.sample(sample(8, 170 * MS, Quality::Clean, &bg));
    j.event(1, signup_end());
    let r = &j.flush(None)[0];
    let t = &r.timeline;
    let counted: Vec<&Stack> = r.stacks.iter().map(|c| &c.stack).collect();
    let on_timeline: Vec<&Stack> = t.stacks.iter().collect();
    assert_eq!(on_timeline, counted, "the same stacks, in the same order");
    let ticks: Vec<(u64, u32, &str)> = t
        .ticks
        .iter()
        .map(|k| {
            let leaf = t.stacks[k.stack as usize].last().unwrap();
            (k.ts_ns, k.tid, &*leaf.name)
        })
        .collect();
    // The switched sample is not on it; the background one is under its root.
    assert_eq!(
        ticks,
        [
            (120 * MS, 10, "handler"),
            (130 * MS, 10, "handler"),
            (170 * MS, 10, "send_welcome_email")
        ]
    );
    assert_eq!(
        &*t.stacks[t.ticks[2].stack as usize][0].name,
        "[background]"
    );
}

#[test]
fn samples_outside_requests_keep_their_times_per_process() {
    let s = stack(&["<module>", "startup"]);
    let idle = stack(&["<module>", "idle"]);
    let mut j = Join::new();
    j.sample(sample(0, 6, Quality::Clean, &s));
    j.sample(Sample {
        pid: 2,
        tid: 20,
        ..sample(0, 7, Quality::Clean, &idle)
    });
    j.sample(sample(0, 5, Quality::Clean, &idle));
    // A lost start's samples join them, in time order.
    j.sample(sample(6, 3, Quality::Clean, &s));
    j.event(1, end(6, 9, 500));
    j.flush(None);
    let timelines = j.take_outside_timeline();
    type Ticks = Vec<(u64, u32, String)>;
    let got: Vec<(u32, Ticks)> = timelines
        .iter()
        .map(|(pid, t)| {
            let ticks = t.ticks.iter().map(|k| {
                let leaf = &t.stacks[k.stack as usize].last().unwrap().name;
                (k.ts_ns, k.tid, leaf.to_string())
            });
            (*pid, ticks.collect())
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                1,
                vec![
                    (3, 10, "startup".into()),
                    (5, 10, "idle".into()),
                    (6, 10, "startup".into())
                ]
            ),
            (2, vec![(7, 20, "idle".into())]),
        ]
    );
    assert_eq!(timelines[0].1.stacks.len(), 2, "each stack once");
    assert!(j.take_outside_timeline().is_empty());
}
