"""`timeglass attach --pid`: record an app started without TimeGlass, and
leave it running, untouched (issue: attach --pid, and the errors a user hits)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fixtures import harness
from tests.context import TestContext, assert_clean_error, parse_folded
from tests.following import (
    VENV_BIN,
    copy_app,
    edit,
    process_exits,
    rows_by_path,
    served_by,
    wait_for_pid,
    wait_sampled,
)

pytestmark = [pytest.mark.e2e, pytest.mark.core]

MARKER_LINES = """
from timeglass import TimeGlassMiddleware

app.add_middleware(TimeGlassMiddleware)
"""


@contextmanager
def plain_app(
    ctx: TestContext, command: list[str], port: int, cwd: Path = harness.REPO_ROOT
) -> Iterator[tuple[harness.Process, httpx.Client]]:
    """An app started the ordinary way, without TimeGlass (and with its middleware's own
    recorder off: `test_self_recording.py` tests attaching to an app that has one)."""
    env = harness.clean_env({"TIMEGLASS_RECORD": "0"})
    with harness.Process(command, log_dir=ctx.tmp / "app", cwd=cwd, env=env) as app:
        try:
            app.wait_for_port(port, timeout=30)
        except harness.HarnessError as error:
            pytest.fail(str(error))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield app, client
        # Like Ctrl-C: the marker removes its ring file on a clean exit.
        if app.popen.poll() is None:
            app.interrupt(timeout=20)


def uvicorn(ctx: TestContext, app: str) -> tuple[list[str], int]:
    port = harness.free_port()
    return harness.uvicorn_argv(port, app=app, python=ctx.python), port


def start_attach(ctx: TestContext, pid: int, *extra: str) -> harness.Process:
    argv = [str(ctx.bin), "attach", "--pid", str(pid), "--db", str(ctx.db), *extra]
    return harness.Process(argv, log_dir=ctx.tmp / "attach", name="attach")


def wait_for_text(process: harness.Process, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.stderr():
        if process.popen.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"`{text}` never came\n{process.describe()}")
        time.sleep(0.05)


@contextmanager
def attached(ctx: TestContext, pid: int, *extra: str) -> Iterator[harness.Process]:
    """`timeglass attach` to `pid`, once it samples a process."""
    with start_attach(ctx, pid, *extra) as recorder:
        wait_for_text(recorder, "timeglass: sampling process")
        yield recorder


def test_a_marked_app_is_recorded_request_by_request_and_keeps_running(ctx: TestContext) -> None:
    command, port = uvicorn(ctx, "fixtures.marked_app:app")
    with plain_app(ctx, command, port) as (app, client):
        # Written to the marker's ring before anything listened.
        assert served_by(client.get("/cpu/before?ms=20")) == app.pid
        with attached(ctx, app.pid) as recorder:
            for n in range(4):
                client.get(f"/cpu/during{n}?ms=100")
            assert recorder.interrupt(timeout=20) == 0, recorder.describe()
        # Ctrl-C ended the recording, not the app.
        assert app.popen.poll() is None
        assert served_by(client.get("/pid")) == app.pid
    stderr = recorder.stderr()
    assert "TimeGlassMiddleware" not in stderr, stderr
    by_path = rows_by_path(ctx.requests())
    assert by_path["/cpu/before"]["pid"] == app.pid
    for n in range(4):
        row = by_path[f"/cpu/during{n}"]
        assert row["pid"] == app.pid, row
        assert row["status"] == 200, row
        assert row["samples"] >= 30, row
        stacks = ctx.folded(row["id"])
        assert sum(s.count for s in stacks if any("burn_cpu" in f for f in s.frames)) >= 25
    (session,) = ctx.sessions()
    assert "fixtures.marked_app:app" in session["command"], session
    assert session["ended_at"], session
    assert (session["processes"], session["crashed"]) == (1, 0), session
    assert process_exits(ctx.db) == {app.pid: "running"}


def test_an_app_without_marker_gets_a_whole_process_profile_for_the_duration(
    ctx: TestContext,
) -> None:
    command, port = uvicorn(ctx, "fixtures.crashy_app:app")
    with plain_app(ctx, command, port) as (app, client):
        started = time.monotonic()
        with start_attach(ctx, app.pid, "--duration", "2") as recorder:
            wait_for_text(recorder, "timeglass: sampling process")
            while recorder.popen.poll() is None and time.monotonic() - started < 15:
                client.get("/cpu?ms=100")
            code = recorder.popen.wait(timeout=20)
        took = time.monotonic() - started
        assert code == 0, recorder.describe()
        assert app.popen.poll() is None
        assert served_by(client.get("/pid")) == app.pid
    assert 2.0 <= took < 10, took
    stderr = recorder.stderr()
    # Said once, clearly, with what to do.
    assert stderr.count("no TimeGlass marker") == 1, stderr
    assert stderr.count("app.add_middleware(TimeGlassMiddleware)") == 1, stderr
    assert "timeglass run" in stderr
    assert ctx.requests() == []
    (session,) = ctx.sessions()
    folded = ctx.cli_ok("export", "--db", str(ctx.db), "--session", str(session["id"]))
    stacks = parse_folded(folded.stdout)
    burning = sum(s.count for s in stacks if any("burn_cpu" in f for f in s.frames))
    assert burning >= 200, folded.stdout[:2000]
    assert process_exits(ctx.db) == {app.pid: "running"}


def test_attach_to_a_reloader_follows_its_worker_and_the_next_one(ctx: TestContext) -> None:
    port = harness.free_port()
    source = copy_app(ctx.tmp / "src", "app.py")
    source.write_text(source.read_text() + MARKER_LINES)
    command = [str(VENV_BIN / "uvicorn"), "app:app", "--reload", "--port", str(port)]
    with plain_app(ctx, command, port, cwd=source.parent) as (app, client):
        first = served_by(client.get("/pid"))
        assert first != app.pid, "uvicorn --reload serves from a child"
        with attached(ctx, app.pid) as recorder:
            client.get("/cpu/worker1?ms=100")
            edit(source)
            second, _ = wait_for_pid(client, lambda pid: pid not in (first, app.pid))
            # Discovery runs every 100 ms: wait until the new worker is sampled.
            wait_for_text(recorder, f"timeglass: sampling process {second} ")
            client.get("/cpu/worker2?ms=100")
            assert recorder.interrupt(timeout=20) == 0, recorder.describe()
        assert served_by(client.get("/pid")) == second
    by_path = rows_by_path(ctx.requests())
    assert by_path["/cpu/worker1"]["pid"] == first
    assert by_path["/cpu/worker2"]["pid"] == second
    for path in ("/cpu/worker1", "/cpu/worker2"):
        assert by_path[path]["samples"] >= 30, by_path[path]
    exits = process_exits(ctx.db)
    # The workers, not the supervisor (it has no marker and serves nothing).
    assert exits == {first: "clean", second: "running"}, exits


def test_a_reloader_without_marker_gets_its_workers_profiled(ctx: TestContext) -> None:
    port = harness.free_port()
    source = copy_app(ctx.tmp / "src", "app.py")
    command = [str(VENV_BIN / "uvicorn"), "app:app", "--reload", "--port", str(port)]
    with plain_app(ctx, command, port, cwd=source.parent) as (app, client):
        worker = served_by(client.get("/pid"))
        with start_attach(ctx, app.pid, "--duration", "1.5") as recorder:
            wait_sampled(recorder, 2)
            while recorder.popen.poll() is None:
                client.get("/cpu?ms=100")
            assert recorder.popen.wait(timeout=20) == 0, recorder.describe()
    assert recorder.stderr().count("app.add_middleware(TimeGlassMiddleware)") == 1
    # The supervisor and its worker, each as a whole; the work is the worker's.
    assert process_exits(ctx.db) == {app.pid: "running", worker: "running"}
    (session,) = ctx.sessions()
    folded = ctx.cli_ok("export", "--db", str(ctx.db), "--session", str(session["id"]))
    stacks = parse_folded(folded.stdout)
    assert sum(s.count for s in stacks if any("burn_cpu" in f for f in s.frames)) >= 100


def test_the_app_exiting_while_attached_is_a_normal_end(ctx: TestContext) -> None:
    command, port = uvicorn(ctx, "fixtures.marked_app:app")
    with plain_app(ctx, command, port) as (app, client), attached(ctx, app.pid) as recorder:
        client.get("/cpu/last?ms=50")
        app.interrupt(timeout=20)
        code = recorder.popen.wait(timeout=20)
    assert code == 0, recorder.describe()
    assert f"process {app.pid} exited" in recorder.stderr()
    assert rows_by_path(ctx.requests())["/cpu/last"]["samples"] >= 10
    assert process_exits(ctx.db) == {app.pid: "clean"}


def test_attach_to_no_such_process(ctx: TestContext) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    result = ctx.cli("attach", "--pid", str(gone.pid), "--db", str(ctx.db))
    assert_clean_error(result, f"no process with pid {gone.pid}", "pgrep")
    assert result.returncode == 2
    assert not ctx.db.exists(), "nothing is written for a failed attach"


def test_attach_to_a_process_that_is_not_python(ctx: TestContext) -> None:
    with harness.Process(["sleep", "60"], log_dir=ctx.tmp / "sleep") as sleeper:
        result = ctx.cli("attach", "--pid", str(sleeper.pid), "--db", str(ctx.db))
    assert_clean_error(result, "is not a Python process", "uvicorn")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.describe()


def test_attach_without_ptrace_rights_says_what_to_do(ctx: TestContext) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: runs `timeglass attach` as uid 65534 against a root-owned app")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs `setpriv` (util-linux) to drop privileges")
    # Somewhere uid 65534 may execute the binary and write a store.
    shared = Path(tempfile.mkdtemp(prefix="timeglass-nobody-"))
    try:
        shared.chmod(0o777)
        binary = shared / "timeglass"
        shutil.copyfile(ctx.bin, binary)
        binary.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        sleeper = [str(ctx.python), "-c", "import time; time.sleep(60)"]
        with harness.Process(sleeper, log_dir=ctx.tmp / "victim") as victim:
            argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(binary)]
            argv += ["attach", "--pid", str(victim.pid), "--db", str(shared / "store.db")]
            with harness.Process(argv, log_dir=ctx.tmp / "nobody", name="attach", cwd=shared) as p:
                code = p.popen.wait(timeout=30)
                stderr = p.stderr()
            assert victim.popen.poll() is None, "the app was disturbed"
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert code != 0, stderr
    assert stderr.startswith("timeglass: error: permission denied"), stderr
    for hint in ("ptrace_scope", "CAP_SYS_PTRACE", "--cap-add SYS_PTRACE", "sudo", "same user"):
        assert hint in stderr, f"{hint!r} missing: {stderr}"
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_attach_to_an_app_already_under_run_says_so(ctx: TestContext) -> None:
    with ctx.run_app() as app:
        (worker,) = wait_sampled(app.process, 1)
        result = ctx.cli("attach", "--pid", str(worker), "--db", str(ctx.tmp / "other.db"))
        # The recording under `run` goes on, undisturbed.
        assert app.request("GET", "/health").status_code == 200
    assert_clean_error(result, "already recorded by `timeglass run`", "timeglass requests")
    assert not (ctx.tmp / "other.db").exists()
    assert "/health" in {row["path"] for row in ctx.requests()}
