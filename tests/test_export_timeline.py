"""Exports put samples at the times they were taken, against an app whose answer is known.

`fixtures/phases_app.py` spends 150 ms of Python in `phase_a`, then 150 ms in `phase_b`, on the
event loop's thread, while a thread of its own runs `outside_worker` outside any request. The
request's speedscope timeline must hold `phase_a` from the handler's start for as long as the app
timed it, then `phase_b`;
the session's Chrome trace must hold them inside the request's span on its thread's track, in
that order, and `outside_worker` on a track of samples outside requests.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.context import TestContext
from tests.test_export import validate_speedscope

pytestmark = pytest.mark.e2e

APP = "fixtures.phases_app:app"
PHASE_MS = 150
TOLERANCE_MS = 15


def export(ctx: TestContext, fmt: str, *subject: str) -> Any:
    out = ctx.tmp / f"export.{fmt}.json"
    ctx.cli_ok("export", "--db", str(ctx.db), *subject, "--format", fmt, "-o", str(out))
    return json.loads(out.read_text())


def opened_spans(profile: dict[str, Any], names: list[str]) -> list[tuple[str, float, float]]:
    """(frame name, opened at, closed at) of every frame of an evented profile."""
    stack: list[tuple[int, float]] = []
    out = []
    for event in profile["events"]:
        if event["type"] == "O":
            stack.append((event["frame"], event["at"]))
        else:
            frame, at = stack.pop()
            assert frame == event["frame"], "events do not nest"
            out.append((names[frame], at, event["at"]))
    assert not stack
    return out


@pytest.fixture
def recorded(ctx: TestContext) -> tuple[TestContext, dict[str, Any], dict[str, float]]:
    with ctx.run_app("--all-threads", app=APP) as app:
        time.sleep(0.3)  # the worker runs outside any request meanwhile
        answer = app.request("GET", f"/phases?ms={PHASE_MS}").json()
        time.sleep(0.3)
    (row,) = [r for r in ctx.requests() if r["path"] == "/phases"]
    return ctx, row, answer


def test_a_requests_samples_fall_at_their_offsets_on_its_timeline(
    recorded: tuple[TestContext, dict[str, Any], dict[str, float]],
) -> None:
    ctx, row, answer = recorded
    doc = export(ctx, "speedscope", "--request", str(row["id"]))
    validate_speedscope(doc)
    timeline = doc["profiles"][0]
    assert timeline["type"] == "evented"
    names = [f["name"] for f in doc["shared"]["frames"]]
    spans = opened_spans(timeline, names)
    a = [(o, c) for name, o, c in spans if name == "phase_a"]
    b = [(o, c) for name, o, c in spans if name == "phase_b"]
    assert a, sorted({n for n, _, _ in spans})
    assert b, sorted({n for n, _, _ in spans})
    # Samples every millisecond, each held until the next: the phases are covered.
    for phase, ms in ((a, answer["a_ms"]), (b, answer["b_ms"])):
        assert sum(c - o for o, c in phase) > 0.5 * ms, phase
    # Where the app's own clock says: A from the handler's start, B after it.
    # (Not at the timeline's halves: what runs before the handler, routing and
    # the marker, took 18 ms of a 320 ms request on a loaded CI machine.)
    (handler,) = [o for name, o, _ in spans if name.startswith("handler")]
    boundary = handler + answer["a_ms"]
    assert handler - TOLERANCE_MS <= min(o for o, _ in a)
    assert abs(max(c for _, c in a) - boundary) <= TOLERANCE_MS, (a, boundary)
    assert abs(min(o for o, _ in b) - boundary) <= TOLERANCE_MS, (b, boundary)
    assert max(c for _, c in b) <= boundary + answer["b_ms"] + TOLERANCE_MS


def test_a_sessions_trace_has_samples_in_their_requests_and_outside_them(
    recorded: tuple[TestContext, dict[str, Any], dict[str, float]],
) -> None:
    ctx, row, _ = recorded
    doc = export(ctx, "chrome", "--session", str(row["session_id"]))
    events = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    (request,) = [
        e for e in events if e.get("cat") == "request" and e["args"]["request_id"] == row["id"]
    ]
    assert (request["pid"], request["tid"]) == (row["pid"], row["tid"])
    assert names[(request["pid"], request["tid"])] == f"thread {row['tid']}"
    samples = [e for e in events if e.get("cat") == "sample"]
    for e in samples:
        assert e["ph"] == "X", e
        assert e["dur"] > 0, e
        assert (e["pid"], e["tid"]) in names, e

    def phase(name: str) -> list[dict[str, Any]]:
        return [e for e in samples if e["name"].startswith(f"{name} (")]

    a, b = phase("phase_a"), phase("phase_b")
    assert a
    assert b
    start, end = request["ts"], request["ts"] + request["dur"]
    for e in a + b:
        assert (e["pid"], e["tid"]) == (request["pid"], request["tid"]), e
        assert start <= e["ts"], (e, request)
        assert e["ts"] + e["dur"] <= end + 0.001, (e, request)
    assert max(e["ts"] + e["dur"] for e in a) <= min(e["ts"] for e in b) + 0.001
    # The worker's samples, outside any request, on its thread's track of them.
    worker = phase("outside_worker")
    assert worker, "no sample outside the request"
    tracks = {names[(e["pid"], e["tid"])] for e in worker}
    assert all(t.endswith("(outside requests)") for t in tracks), tracks
    # Another thread than the request's (the recorder reads it while requests run).
    assert f"thread {row['tid']} " not in " ".join(tracks), tracks
