"""Faults, each with real processes: the app keeps serving unchanged responses, the
store stays valid SQLite, at most the last second is lost, and the loss is counted
and shown where the user looks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from fixtures import harness
from tests.context import TestContext
from tests.faults import Load, expected_body, integrity, start_run, wait_until


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
    # Kept with their samples so far (1.5 s of waiting at up to 1000 Hz; a loaded
    # machine samples less often, never not at all).
    assert all(r["samples"] >= 10 for r in incomplete), [r["samples"] for r in incomplete]
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


def test_recorder_stopped_for_ten_seconds_under_load(ctx: TestContext) -> None:
    process, port = start_run(ctx)
    try:
        expected = expected_body(port)
        load = Load(port).start()
        time.sleep(1.0)
        os.kill(process.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            time.sleep(10.0)
            # A stopped recorder is alive: no command calls its session interrupted.
            (session,) = ctx.sessions()
            assert session["interrupted"] is False, session
            assert session["ended_at"] is None, session
        finally:
            os.kill(process.pid, signal.SIGCONT)
        time.sleep(2.0)
        load.stop()
        answered = len(load.answers) + 1  # and the one that read the expected body
        assert process.interrupt(timeout=30) == 0, process.stderr()
    finally:
        process.kill()
    load.assert_unchanged(expected)
    during = load.answered_before(stopped_at + 10) - load.answered_before(stopped_at)
    assert during > 100, "the app answered at its pace while its recorder was stopped"
    (session,) = ctx.sessions()
    stored, lost_events = session["requests"], session["lost_events"]
    # Everything answered is stored, or the ring lapped the stopped reader and what it
    # overwrote is counted (and said when the run ended).
    assert stored == answered or lost_events > 0, (stored, answered, session)
    if lost_events:
        assert "marker events were lost" in process.stderr()
    assert integrity(ctx.db) == "ok"


def test_two_runs_on_one_store_at_once(ctx: TestContext) -> None:
    first, port_a = start_run(ctx)
    second, port_b = start_run(ctx)
    try:
        loads = [Load(port_a).start(), Load(port_b).start()]
        time.sleep(3.0)
        for load in loads:
            load.stop()
        for p in (first, second):
            assert p.interrupt(timeout=30) == 0, p.stderr()
            assert "warning" not in p.stderr(), p.stderr()
    finally:
        first.kill()
        second.kill()
    expected = {len(load.answers) for load in loads}
    sessions = ctx.sessions()
    assert len(sessions) == 2
    assert {s["requests"] for s in sessions} == expected, (sessions, expected)
    assert all(s["lost_requests"] == 0 and s["lost_events"] == 0 for s in sessions)
    assert integrity(ctx.db) == "ok"


def ui(ctx: TestContext, db: Path) -> tuple[harness.Process, str]:
    port = harness.free_port()
    argv = [str(ctx.bin), "ui", "--db", str(db), "--port", str(port)]
    process = harness.Process(argv, log_dir=ctx.tmp / "ui", name="ui")
    process.wait_for_port(port, timeout=30)
    return process, f"http://127.0.0.1:{port}"


def test_the_store_deleted_or_replaced_while_ui_reads_it(ctx: TestContext) -> None:
    with ctx.run_app() as app:
        for _ in range(3):
            app.request("GET", "/items/1")
    other = ctx.tmp / "other.db"
    ctx.db, original = other, ctx.db
    with ctx.run_app() as app:
        app.request("GET", "/health")
    ctx.db = original

    server, url = ui(ctx, original)
    try:
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        assert "/items/1" in page.text

        for suffix in ("", "-wal", "-shm"):
            Path(f"{original}{suffix}").unlink(missing_ok=True)
        gone = httpx.get(url, timeout=10)
        assert gone.status_code == 404, gone.text
        assert "no TimeGlass database" in gone.text

        original.write_bytes(b"not a database at all\n" * 10)
        foreign = httpx.get(f"{url}/api/v1/requests", timeout=10)
        assert foreign.status_code >= 400, foreign.text
        assert "not an SQLite database" in foreign.text

        original.unlink()
        original.write_bytes(other.read_bytes())
        back = httpx.get(url, timeout=10)
        assert back.status_code == 200, back.text
        assert "/health" in back.text
        assert "/items/1" not in back.text
        assert server.popen.poll() is None, "the dashboard kept running"
    finally:
        server.kill()
    assert "panicked" not in server.stderr()


def test_a_full_disk_while_recording(ctx: TestContext, tmp_path: Path) -> None:
    """A small tmpfs the test mounts fills up under load: the app answers unchanged,
    the recorder keeps requests in memory and says so once, and when space comes back
    it writes them all."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True)
    try:
        ctx.db = disk / "store.db"
        process, port = start_run(ctx)
        try:
            expected = expected_body(port)
            load = Load(port).start()
            time.sleep(0.5)
            # Take all but the last few hundred KiB.
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            filler = disk / "filler"
            filler.write_bytes(b"\0" * max(0, free - 256 * 1024))
            wait_until("the store to fill up", lambda: "store failed" in process.stderr())
            time.sleep(1.0)
            filler.unlink()
            wait_until("writing to work again", lambda: "works again" in process.stderr())
            time.sleep(1.0)
            load.stop()
            assert process.interrupt(timeout=30) == 0, process.stderr()
        finally:
            process.kill()
        load.assert_unchanged(expected)
        stderr = process.stderr()
        assert stderr.count("writing the store failed") == 1, stderr
        assert "database or disk is full" in stderr, stderr
        (session,) = ctx.sessions()
        # Every answer, and the one that read the expected body: none was lost.
        assert session["requests"] == len(load.answers) + 1, (session, len(load.answers))
        assert integrity(ctx.db) == "ok"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
