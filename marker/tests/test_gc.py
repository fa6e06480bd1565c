"""Exact garbage collections per request, opt-in (`TIMEGLASS_GC_CALLBACKS=1`):
`_native.gc_callback` in `gc.callbacks` publishes each collection that ran
while the thread's slot held a request. The marker was imported before any
test could set the variable, so whether it is read is tested in subprocesses,
and what the callback does is tested with it put in place as the variable
would have."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from timeglass import _env, _native

from conftest import read_all_events


@pytest.fixture(autouse=True)
def callback_installed() -> Iterator[None]:
    if _native.gc_callback not in gc.callbacks:
        gc.callbacks.append(_native.gc_callback)
    yield
    gc.callbacks.remove(_native.gc_callback)


def installed_in_a_fresh_process(value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != _env.GC_CALLBACKS}
    if value is not None:
        env[_env.GC_CALLBACKS] = value
    code = (
        "import gc\nfrom timeglass import _native\n"
        "assert _native.start()\n"
        "print(sum(c is _native.gc_callback for c in gc.callbacks))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def gc_events(rid: int) -> list[dict[str, object]]:
    return [e for e in read_all_events() if e["kind"] == "gc" and e["request_id"] == rid]


def test_the_callback_is_installed_once_when_asked_for() -> None:
    assert installed_in_a_fresh_process("1") == "1"


def test_no_callback_runs_unless_asked_for() -> None:
    # By default the recorder reads the collector's state from outside.
    assert installed_in_a_fresh_process(None) == "0"
    assert installed_in_a_fresh_process("0") == "0"


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
