"""What one profiled run of the fixture app leaves in the store (see conftest.send_traffic)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest

from tests.conftest import Recording
from tests.context import FRAME, FoldedStack, parse_start, path_only

pytestmark = [pytest.mark.e2e, pytest.mark.core]


def stacks_containing(stacks: list[FoldedStack], function: str) -> int:
    """Samples whose stack has `function` (bare or qualified, `Class.function`) in it."""
    frame = re.compile(rf"(^|\.){re.escape(function)} \(")
    return sum(s.count for s in stacks if any(frame.search(f) for f in s.frames))


def only(recording: Recording, path: str) -> dict[str, object]:
    rows = recording.rows_for(path)
    assert len(rows) == 1, f"expected one {path} request, found {rows}"
    return rows[0]


def test_every_request_recorded_once(recording: Recording) -> None:
    sent = Counter((method, path_only(path)) for method, path, _ in recording.sent)
    stored = Counter((row["method"], path_only(row["path"])) for row in recording.rows)
    assert stored == sent


def test_rows_have_the_documented_fields(recording: Recording) -> None:
    for row in recording.rows:
        for key in ("id", "method", "path", "route", "status", "start", "duration_ms", "samples"):
            assert key in row, f"{key!r} missing from {row}"
        assert isinstance(row["samples"], int), row
        assert row["samples"] >= 0, row
        assert float(row["duration_ms"]) >= 0, row
    ids = [row["id"] for row in recording.rows]
    assert len(set(ids)) == len(ids), "request ids are not unique"


def test_status_matches_what_the_client_saw(recording: Recording) -> None:
    seen = {(m, path_only(p)): s for m, p, s in recording.sent}
    expected = {
        ("GET", "/items/1"): 200,
        ("GET", "/items/999999"): 404,
        ("POST", "/items"): 201,
        ("GET", "/does-not-exist"): 404,
        ("GET", "/error"): 500,
        ("GET", "/slow-io"): 200,
    }
    assert {key: seen[key] for key in expected} == expected, "the fixture app misbehaved"
    for (method, path), status in expected.items():
        rows = [r for r in recording.rows_for(path) if r["method"] == method]
        assert [r["status"] for r in rows] == [status], (method, path, rows)
    assert {r["status"] for r in recording.rows_for("/health")} == {200}


def test_routes_are_templates(recording: Recording) -> None:
    for path in ("/items/1", "/items/7", "/items/999999"):
        assert only(recording, path)["route"] == "/items/{item_id}"
    assert only(recording, "/slow-io")["route"] == "/slow-io"
    assert {r["route"] for r in recording.rows_for("/health")} == {"/health"}


def test_durations_are_plausible(recording: Recording) -> None:
    assert 50 <= float(str(only(recording, "/slow-io")["duration_ms"])) <= 2000
    cpu = sorted(float(r["duration_ms"]) for r in recording.require("/cpu"))
    # Five asked for 20 ms of burning, one for 200 and one for 300.
    assert all(d >= 19.5 for d in cpu[:5]), cpu
    assert all(d >= 195 for d in cpu[5:]), cpu


def test_a_response_ends_when_its_last_chunk_is_written(recording: Recording) -> None:
    # No endpoint here has background tasks: what follows the response is
    # only the app unwinding. Writing the last chunk to the socket belongs to
    # the response, not to a background stage.
    after = sorted(float(r["background_ms"] or 0) for r in recording.rows)
    assert after[len(after) // 2] < 0.5, after


def test_starts_are_rfc3339_within_the_run(recording: Recording) -> None:
    slack = timedelta(seconds=5)
    for row in recording.rows:
        start = parse_start(row["start"])
        assert recording.started - slack <= start <= recording.stopped + slack, row


def test_async_cpu_burn_is_sampled(recording: Recording) -> None:
    # The shorter of the long ones: /cpu?ms=200 (another burns 300 ms, others 20 ms).
    long = [r for r in recording.require("/cpu") if float(r["duration_ms"]) >= 150]
    row = min(long, key=lambda r: float(r["duration_ms"]))
    assert row["samples"] >= 100, row
    stacks = recording.ctx.folded(row["id"])
    total = sum(s.count for s in stacks)
    burning = stacks_containing(stacks, "burn_cpu_async")
    assert burning > 0, "\n".join(s.text() for s in stacks)
    assert burning >= total / 2, f"only {burning} of {total} samples in burn_cpu_async"


def test_timeglass_itself_is_not_in_the_app_stacks(recording: Recording) -> None:
    # The marker's wrappers are native: no frame of the timeglass package.
    row = max(recording.require("/cpu"), key=lambda r: float(r["duration_ms"]))
    stacks = recording.ctx.folded(row["id"])
    assert stacks
    ours = [f for s in stacks for f in s.frames if "(timeglass/" in f]
    assert not ours, ours


def test_a_20_ms_cpu_bound_request_gets_15_samples_or_more(recording: Recording) -> None:
    short = [r for r in recording.require("/cpu") if float(r["duration_ms"]) < 100]
    assert len(short) == 5, short
    samples = sorted(int(r["samples"]) for r in short)
    # The median, so one request slowed by a noisy neighbour cannot decide it.
    assert samples[2] >= 15, samples


def test_sync_cpu_burn_is_sampled(recording: Recording) -> None:
    for row in recording.require("/sync-cpu"):
        stacks = recording.ctx.folded(row["id"])
        dump = "\n".join(s.text() for s in stacks)
        assert stacks_containing(stacks, "burn_cpu_sync") > 0, f"{row}\n{dump}"


# Frames TimeGlass adds (model/src/lib.rs): the background stage as a root, and
# what the request was doing instead of running Python as a leaf.
BACKGROUND_ROOT = "[background]"
STATE_LEAVES = {
    "[native, on CPU]",
    "[gc]",
    "[blocked]",
    "[waiting for the GIL]",
    "[ready, event loop busy]",
    "[waiting for a worker thread]",
}


def test_folded_frames_are_function_file_line(recording: Recording) -> None:
    row = max(recording.require("/cpu"), key=lambda r: float(r["duration_ms"]))
    stacks = recording.ctx.folded(row["id"])
    assert stacks, f"no stacks exported for {row}"
    for stack in stacks:
        frames = list(stack.frames)
        # A wall-clock sample can end in a state leaf (the response's socket
        # write runs native code) or start in the background stage; every
        # other frame is Python's.
        if frames and frames[0] == BACKGROUND_ROOT:
            frames = frames[1:]
        if frames and (frames[-1] in STATE_LEAVES or frames[-1].startswith("[await")):
            frames = frames[:-1]
        assert frames, f"a stack of TimeGlass's frames only: {stack.frames}"
        for frame in frames:
            assert FRAME.match(frame), f"frame {frame!r} is not `function (file.py:line)`"


def test_health_is_not_charged_for_other_requests(recording: Recording) -> None:
    health = recording.require("/health")
    assert len(health) == 18
    for row in health:
        text = "\n".join(s.text() for s in recording.ctx.folded(row["id"]))
        assert "burn_cpu" not in text, f"{row} carries another request's samples:\n{text}"
