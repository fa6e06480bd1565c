"""Faults, each with real processes: the app keeps serving unchanged responses, the
store stays valid SQLite, at most the last second is lost, and the loss is counted
and shown where the user looks."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.context import TestContext
from tests.faults import Load, expected_body, integrity, start_run


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_recorder_killed_mid_load(ctx: TestContext) -> None:
    runtime = ctx.tmp / "runtime"
    env = {"TIMEGLASS_RUNTIME_DIR": str(runtime)}
    process, port = start_run(ctx, env=env)
    run_dir = runtime / f"run-{process.pid}"
    try:
        expected = expected_body(port)
        load = Load(port).start()
        time.sleep(2.0)
        killed_at = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
        process.popen.wait(timeout=10)
        time.sleep(1.5)  # the app goes on serving without its recorder
        load.stop()
        load.assert_unchanged(expected)
        assert load.answered_before(time.monotonic()) > load.answered_before(killed_at) + 10
        assert run_dir.is_dir(), "a killed run cannot remove its own directory"

        # The next command that opens the store finds the dead recorder.
        (session,) = ctx.sessions()
        assert session["interrupted"] is True, session
        assert session["ended_at"], session
        table = ctx.cli_ok("sessions", "--db", str(ctx.db)).stdout
        assert "interrupted" in table, table
        stored, lost = session["requests"], session["lost_requests"]
        # At most the last second is lost...
        assert stored >= load.answered_before(killed_at - 1.0), (stored, session)
        # ...and what the recorder had read but not stored is counted: only requests
        # of the last half second before the kill may escape the count.
        last_half_second = load.answered_before(killed_at) - load.answered_before(killed_at - 0.5)
        assert load.answered_before(killed_at) - (stored + lost) <= last_half_second
        assert integrity(ctx.db) == "ok"
    finally:
        process.kill()  # and the app it left running

    # The next run removes what the killed one left in the runtime directory.
    again, _ = start_run(ctx, env=env)
    try:
        assert not run_dir.exists()
    finally:
        again.interrupt()


def test_app_killed_with_requests_in_flight(ctx: TestContext) -> None:
    process, port = start_run(ctx)
    try:
        (app_pid,) = children(process.pid)
        expected = expected_body(port)
        for _ in range(5):
            assert httpx.get(f"http://127.0.0.1:{port}/items/1", timeout=10).content == expected

        def slow() -> None:
            # The app dies under it: a connection error is expected.
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/slow-io", params={"ms": 8000}, timeout=30)

        clients = [threading.Thread(target=slow) for _ in range(3)]
        for c in clients:
            c.start()
        time.sleep(1.5)  # in flight, sampled while they wait
        os.kill(app_pid, signal.SIGKILL)
        code = process.popen.wait(timeout=30)
        for c in clients:
            c.join(timeout=30)
        stderr = process.stderr()
    finally:
        process.kill()
    assert code == 128 + signal.SIGKILL, stderr
    assert f"process {app_pid} died without exiting cleanly" in stderr, stderr
    assert "panicked" not in stderr

    rows = ctx.requests()
    incomplete = [r for r in rows if r["incomplete"]]
    assert len(incomplete) == 3, rows
    assert {r["path"] for r in incomplete} == {"/slow-io"}
    # Kept with their samples so far: 1.5 s of waiting at 1000 Hz.
    assert all(r["samples"] > 100 for r in incomplete), incomplete
    assert all(r["duration_ms"] >= 1000 for r in incomplete), incomplete
    complete = [r for r in rows if not r["incomplete"]]
    assert len(complete) >= 5
    assert all(r["status"] == 200 for r in complete)

    (session,) = ctx.sessions()
    assert session["crashed"] == 1
    assert session["incomplete"] == 3
    assert session["interrupted"] is False
    table = ctx.cli_ok("sessions", "--db", str(ctx.db)).stdout
    assert "INCOMPLETE" in table, table
    assert integrity(ctx.db) == "ok"
