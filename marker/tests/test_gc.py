"""Garbage collections per request: `_native.gc_callback` in `gc.callbacks`
publishes each collection that ran while the thread's slot held a request."""

from __future__ import annotations

import gc
import threading

from timeglass import _native

from conftest import read_all_events


def gc_events(rid: int) -> list[dict[str, object]]:
    return [e for e in read_all_events() if e["kind"] == "gc" and e["request_id"] == rid]


def test_the_callback_is_installed_once() -> None:
    assert _native.start()
    ours = [c for c in gc.callbacks if c is _native.gc_callback]
    assert len(ours) == 1, gc.callbacks


def test_a_collection_inside_a_request_is_published_with_its_thread() -> None:
    assert _native.start()
    rid = 91_001
    _native.bind(rid, lambda: [gc.collect() for _ in range(3)])()
    events = gc_events(rid)
    assert len(events) == 3, events
    tid = threading.get_native_id()
    for e in events:
        assert e["tid"] == tid
        assert 0 < int(e["start_ns"]) <= int(e["end_ns"])  # type: ignore[call-overload]


def test_a_collection_outside_any_request_is_not() -> None:
    assert _native.start()
    before = [e for e in read_all_events() if e["kind"] == "gc"]
    gc.collect()
    after = [e for e in read_all_events() if e["kind"] == "gc"]
    assert after == before


def test_bad_phases_are_ignored_quietly() -> None:
    _native.gc_callback("neither", {})
    _native.gc_callback(3, None)
    _native.gc_callback("stop", {})  # a stop without its start
