"""`timeglass run` follows every real way of running an app: a reloader's
worker and its replacement, several workers, gunicorn, and a worker that
crashes and is restarted (issue: following processes)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import httpx
import pytest

from fixtures import harness
from tests.context import TestContext, path_only
from tests.following import (
    VENV_BIN,
    copy_app,
    edit,
    process_exits,
    rows_by_path,
    served_by,
    spread,
    wait_crashed,
    wait_for_pid,
    wait_sampled,
)

pytestmark = pytest.mark.e2e


def reload_commands(port: int) -> dict[str, tuple[list[str], str]]:
    """Command and the file it serves, for each reloading way to run an app."""
    return {
        "uvicorn --reload": (
            [str(VENV_BIN / "uvicorn"), "app:app", "--reload", "--port", str(port)],
            "app.py",
        ),
        "fastapi dev": (
            [str(VENV_BIN / "fastapi"), "dev", "main.py", "--port", str(port)],
            "main.py",
        ),
    }


@pytest.mark.parametrize("way", ["uvicorn --reload", "fastapi dev"])
def test_a_reloaded_worker_is_followed_within_a_second(ctx: TestContext, way: str) -> None:
    port = harness.free_port()
    command, name = reload_commands(port)[way]
    source = copy_app(ctx.tmp / "src", name)
    with ctx.run_command(command, port, cwd=source.parent) as app:
        wait_sampled(app.process, 1)
        first = served_by(app.request("GET", "/cpu/before?ms=80"))
        edit(source)
        second, serving_since = wait_for_pid(app.client, lambda pid: pid != first)
        # Requests one after another from the moment the new worker answers:
        # those that started within a second of it must already have stacks.
        sent_at: dict[str, float] = {}
        for n in range(12):
            path = f"/cpu/after{n}"
            sent_at[path] = time.monotonic() - serving_since
            assert served_by(app.request("GET", f"{path}?ms=80")) == second
    rows = ctx.requests()
    by_path = rows_by_path(rows)
    assert len({row["session_id"] for row in rows}) == 1, "not one session"
    assert by_path["/cpu/before"]["pid"] == first
    assert by_path["/cpu/before"]["samples"] >= 10, by_path["/cpu/before"]
    after = [by_path[p] for p in sent_at]
    assert {row["pid"] for row in after} == {second}
    sampled_early = [p for p in sent_at if sent_at[p] <= 1.0 and by_path[p]["samples"] >= 10]
    assert sampled_early, {p: (round(sent_at[p], 2), by_path[p]["samples"]) for p in sent_at}
    assert all(row["samples"] >= 10 for row in after if sent_at[row["path"]] > 1.0), after
    (session,) = ctx.sessions()
    assert session["processes"] >= 2, session
    # The reloader stops the old worker with SIGTERM, which uvicorn re-raises
    # after its clean shutdown: that is no crash.
    assert session["crashed"] == 0, session
    assert process_exits(ctx.db)[first] == "clean"


def test_every_uvicorn_worker_is_sampled(ctx: TestContext) -> None:
    port = harness.free_port()
    command = harness.uvicorn_argv(port, "--workers", "3", app="fixtures.crashy_app:app")
    with ctx.run_command(command, port) as app:
        workers = wait_sampled(app.process, 3)
        served = spread_until_two_workers(str(app.client.base_url))
    assert_served_rows_match(ctx, served)
    exits = process_exits(ctx.db)
    assert {pid: exits.get(pid) for pid in workers} == dict.fromkeys(workers, "clean"), exits


def test_every_gunicorn_worker_is_sampled(ctx: TestContext) -> None:
    port = harness.free_port()
    with ctx.run_command(gunicorn_argv(port, workers=2), port) as app:
        workers = wait_sampled(app.process, 2)
        served = spread_until_two_workers(str(app.client.base_url))
    assert_served_rows_match(ctx, served)
    exits = process_exits(ctx.db)
    assert {pid: exits.get(pid) for pid in workers} == dict.fromkeys(workers, "clean"), exits


def test_crashed_gunicorn_workers_are_recorded_and_their_replacements_followed(
    ctx: TestContext,
) -> None:
    port = harness.free_port()
    with ctx.run_command(gunicorn_argv(port, workers=2), port) as app:
        originals = wait_sampled(app.process, 2)
        # One worker dies mid-request (its request is cut off)...
        with pytest.raises(httpx.TransportError):
            app.client.get("/crash")
        first_replacement = wait_sampled(app.process, 3)[2]
        (crashed_mid_request,) = wait_crashed(app.process, 1)
        # ...the other is killed while idle: only its ring file tells.
        (killed_idle,) = set(originals) - {crashed_mid_request}
        os.kill(killed_idle, signal.SIGKILL)
        second_replacement = wait_sampled(app.process, 4)[3]
        # Fresh connections until each replacement served three requests.
        replacements = {first_replacement, second_replacement}
        after: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            list(after.values()).count(pid) < 3 for pid in replacements
        ):
            path = f"/cpu/after{len(after)}"
            response = app.client.get(f"{path}?ms=40", headers={"connection": "close"})
            after[path] = served_by(response)
    assert set(wait_crashed(app.process, 2)) == set(originals)
    assert not replacements & set(originals)
    rows = ctx.requests()
    (crash,) = [row for row in rows if path_only(row["path"]) == "/crash"]
    assert crash["pid"] == crashed_mid_request, crash
    assert crash["cancelled"], crash
    assert crash["status"] is None, crash
    by_path = rows_by_path(rows)
    for replacement in replacements:
        mine = [by_path[p] for p, pid in after.items() if pid == replacement]
        assert len(mine) >= 3, after
        assert {row["pid"] for row in mine} == {replacement}, mine
        assert all(row["samples"] >= 1 for row in mine), mine
    exits = process_exits(ctx.db)
    assert {pid: exits[pid] for pid in originals} == dict.fromkeys(originals, "crashed"), exits
    assert {exits[pid] for pid in replacements} == {"clean"}, exits
    (session,) = ctx.sessions()
    assert (session["processes"], session["crashed"]) == (4, 2), session
    table = ctx.cli_ok("sessions", "--db", str(ctx.db)).stdout
    header, line = table.splitlines()[:2]
    # The command has spaces: count the columns from the right.
    columns = header.split()
    from_right = len(columns) - columns.index("CRASHED")
    assert line.split()[-from_right] == "2", table


def spread_until_two_workers(base_url: str) -> dict[str, int]:
    """`/cpu/TAG` requests on fresh connections, until two workers served some."""
    served: dict[str, int] = {}
    for round_ in range(5):
        paths = [f"/cpu/r{round_}n{n}" for n in range(9)]
        responses = spread(base_url, paths, parallel=3, query="?ms=40")
        served.update((path, served_by(r)) for path, r in zip(paths, responses, strict=True))
        if len(set(served.values())) >= 2:
            break
    return served


def gunicorn_argv(port: int, workers: int) -> list[str]:
    return [
        str(VENV_BIN / "gunicorn"),
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "fixtures.crashy_app:app",
    ]


def assert_served_rows_match(ctx: TestContext, served: dict[str, int]) -> None:
    """Each request is stored once, with the pid that served it and its stacks."""
    pids = Counter(served.values())
    assert len(pids) >= 2, f"every request went to one worker: {pids}"
    rows = ctx.requests()
    by_path = rows_by_path(rows)
    exported: Counter[int] = Counter()
    for path, pid in served.items():
        row = by_path.get(path)
        assert row is not None, f"{path} was not recorded"
        assert row["pid"] == pid, (path, row)
        # At least one: on a loaded 2-core machine a burst of concurrent
        # requests gets far fewer samples than its wall time suggests.
        assert row["samples"] >= 1, row
        if exported[pid] < 2:
            exported[pid] += 1
            stacks = ctx.folded(row["id"])
            assert any("burn_cpu" in f for s in stacks for f in s.frames), (row, stacks)
    assert len({row["session_id"] for row in rows}) == 1
    table = ctx.cli_ok("requests", "--db", str(ctx.db), "--limit", "1").stdout
    assert table.split()[2] == "PID", table


def test_a_server_stopped_without_a_lifespan_is_no_crash(ctx: TestContext) -> None:
    # With `--lifespan off` nothing marks the shutdown but uvicorn's own, and
    # uvicorn re-raises the SIGTERM it caught afterwards, so atexit never runs.
    port = harness.free_port()
    command = harness.uvicorn_argv(port, "--lifespan", "off", app="fixtures.crashy_app:app")
    with ctx.run_command(command, port) as app:
        pid = served_by(app.request("GET", "/pid"))
        os.kill(pid, signal.SIGTERM)
        app.process.popen.wait(timeout=30)
    (session,) = ctx.sessions()
    assert session["crashed"] == 0, session
    assert process_exits(ctx.db) == {pid: "clean"}
