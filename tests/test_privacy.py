"""The store, its directory, the runtime directory and ring files are private to the
user, and a runtime directory of another user is refused with one line."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from fixtures import harness
from tests.context import TestContext


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_dir_of(pid: int, base: Path) -> Path:
    return base / f"run-{pid}"


def test_store_runtime_directory_and_rings_are_private(ctx: TestContext) -> None:
    ctx.db = ctx.tmp / ".timeglass" / "timeglass.db"
    base = ctx.tmp / "runtime"
    env = {"TIMEGLASS_RUNTIME_DIR": str(base)}
    with ctx.run_app(env=env) as app:
        assert app.request("GET", "/health").status_code == 200
        run_dir = run_dir_of(app.process.pid, base)
        deadline = time.monotonic() + 10
        while not list(run_dir.glob("*.ring")) and time.monotonic() < deadline:
            time.sleep(0.05)
        rings = list(run_dir.glob("*.ring"))
        assert rings, f"no ring file in {run_dir}"
        # The store's -wal and -shm exist while the recorder writes.
        deadline = time.monotonic() + 10
        wal = Path(f"{ctx.db}-wal")
        while not wal.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = {
            "runtime base": mode(base),
            "run directory": mode(run_dir),
            "rings": {mode(r) for r in rings},
            "store directory": mode(ctx.db.parent),
            "store": mode(ctx.db),
            "wal": mode(wal),
            "shm": mode(Path(f"{ctx.db}-shm")),
        }
    assert seen == {
        "runtime base": 0o700,
        "run directory": 0o700,
        "rings": {0o600},
        "store directory": 0o700,
        "store": 0o600,
        "wal": 0o600,
        "shm": 0o600,
    }
    assert not run_dir.exists(), "the run's directory is removed when it ends"


def test_an_old_world_readable_store_is_made_private_by_the_next_run(
    ctx: TestContext,
) -> None:
    with ctx.run_app() as app:
        app.request("GET", "/health")
    ctx.db.chmod(0o644)
    with ctx.run_app() as app:
        app.request("GET", "/health")
        assert mode(ctx.db) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory to another user")
def test_a_runtime_directory_of_another_user_is_refused(ctx: TestContext) -> None:
    theirs = ctx.tmp / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 65534, 65534)
    port = harness.free_port()
    argv = harness.uvicorn_argv(port, python=ctx.python)
    env = harness.clean_env({"TIMEGLASS_RUNTIME_DIR": str(theirs)})
    with harness.Process(
        [str(ctx.bin), "run", "--db", str(ctx.db), "--", *argv],
        log_dir=ctx.tmp / "cli",
        env=env,
    ) as p:
        code = p.popen.wait(timeout=30)
        stderr = p.stderr()
    assert code == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert f"refusing `{theirs}`: it is owned by user 65534, not by user 0" in lines[0]
    assert "Traceback" not in stderr
    assert "panicked" not in stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory to another user")
def test_the_app_keeps_serving_when_its_ring_directory_is_another_users(
    ctx: TestContext, tmp_path: Path
) -> None:
    """A marked app whose ring directory is not its user's is not recorded, and says so
    once, but serves as before."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 65534, 65534)
    port = harness.free_port()
    argv = harness.uvicorn_argv(port, python=ctx.python, app="fixtures.marked_app:app")
    env = harness.clean_env({"TIMEGLASS_RUNTIME_DIR": str(theirs)})
    with harness.Process(argv, log_dir=tmp_path / "app", env=env) as app:
        app.wait_for_port(port)
        for _ in range(3):
            assert httpx.get(f"http://127.0.0.1:{port}/pid", timeout=10).status_code == 200
        app.interrupt()
        stderr = app.stderr()
    warnings = [line for line in stderr.splitlines() if line.startswith("timeglass:")]
    assert len(warnings) == 1, stderr
    assert "owned by user 65534" in warnings[0], stderr
    assert not list(theirs.iterdir())
