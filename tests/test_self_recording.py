"""The one line records by itself (issue 14): `app.add_middleware(TimeGlassMiddleware)` and a
plain `uvicorn app:app` (also `--reload`, `--workers 2`) record into the default store of the
app's directory, `timeglass ui` shows the requests, one recorder serves the whole process tree,
and it ends when the app does. Real uvicorn, real HTTP, the real store and dashboard.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures import harness
from tests.context import TestContext
from tests.following import VENV_BIN, copy_app, edit, served_by, wait_for_pid

pytestmark = [pytest.mark.e2e, pytest.mark.core]

MARKER_LINES = """
from fastapi import Request
from timeglass import TimeGlassMiddleware

app.add_middleware(TimeGlassMiddleware)


@app.get("/whoami")
async def whoami(request: Request) -> dict:
    mine = request.scope["timeglass"]
    return {"id": mine.id, "url": mine.url, "state": request.state.timeglass.id}
"""
STARTED = re.compile(r"^timeglass: recording requests into (.+) \(recorder pid (\d+)\)", re.M)


def recorders_of(root: int) -> list[int]:
    """Pids of the live recorders the middleware started for the tree rooted at `root`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state in ("Z", "X") or b"--by-marker" not in argv or b"attach" not in argv:
            continue
        if argv[argv.index(b"--pid") + 1] == str(root).encode():
            found.append(int(cmdline.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def app_env(**extra: str) -> dict[str, str]:
    """What a user's shell gives the app: no TimeGlass settings, `timeglass` on PATH (the
    app environments of other CPythons have the marker wheel only)."""
    path = f"{harness.timeglass_bin().parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return harness.clean_env({"PATH": path, **extra})


@contextmanager
def served(
    ctx: TestContext, extra: list[str], *, gunicorn: bool = False, env: dict[str, str] | None = None
) -> Iterator[tuple[harness.Process, httpx.Client, Path]]:
    """`uvicorn app:app EXTRA` (or gunicorn's) in a fresh directory whose app has the one line."""
    port = harness.free_port()
    source = copy_app(ctx.tmp / "src", "app.py")
    source.write_text(source.read_text() + MARKER_LINES)
    command = [str(ctx.python), "-m", "uvicorn", "app:app", "--port", str(port), *extra]
    if gunicorn:
        # gunicorn is a development requirement: it runs on .venv's CPython only.
        command = [str(VENV_BIN / "gunicorn"), "-k", "uvicorn.workers.UvicornWorker"]
        command += ["-b", f"127.0.0.1:{port}", *extra, "app:app"]
    with harness.Process(
        command, log_dir=ctx.tmp / "app", cwd=source.parent, env=app_env(**(env or {}))
    ) as app:
        try:
            app.wait_for_port(port, timeout=60)
        except harness.HarnessError as error:
            pytest.fail(str(error))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield app, client, source


def recorder_started(app: harness.Process, timeout: float = 30.0) -> tuple[Path, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = STARTED.findall(app.stderr())
        if found:
            assert len(found) == 1, app.describe()
            return Path(found[0][0]), int(found[0][1])
        time.sleep(0.05)
    raise AssertionError("the middleware started no recorder\n" + app.describe())


def wait_recorded(ctx: TestContext, db: Path, paths: set[str], timeout: float = 30.0) -> list[Any]:
    """The store's requests once every path of `paths` is among them."""
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        if db.exists():
            result = ctx.cli("requests", "--db", str(db), "--json", "--limit", "1000")
            if result.returncode == 0:
                import json

                rows = json.loads(result.stdout)
                if paths <= {r["path"] for r in rows}:
                    return rows
        time.sleep(0.2)
    raise AssertionError(f"{paths} not all recorded in {db}; have {[r['path'] for r in rows]}")


def dashboard_lists(
    ctx: TestContext, cwd: Path, paths: set[str], port: int | None = None, link: str = ""
) -> None:
    """`timeglass ui` started in the app's directory, with no options, lists the requests;
    `link`, a request's `scope["timeglass"].url`, leads to that request's page."""
    port = port or harness.free_port()
    argv = [str(harness.timeglass_bin()), "ui", "--port", str(port)]
    with harness.Process(argv, log_dir=ctx.tmp / "ui", name="ui", cwd=cwd) as ui:
        ui.wait_for_port(port, timeout=30)
        listed = httpx.get(f"http://127.0.0.1:{port}/api/v1/requests?limit=1000", timeout=30)
        assert listed.status_code == 200, listed.text
        body = listed.json()
        rows = body["requests"] if isinstance(body, dict) else body
        assert paths <= {r["path"] for r in rows}, rows
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200
        for path in paths:
            assert path in page.text
        if link:
            shown = httpx.get(link, timeout=30, follow_redirects=True)
            assert shown.status_code == 200, shown.text
            assert re.search(r"/requests/\d+$", str(shown.url)), shown.url
            assert "/whoami" in shown.text
        ui.interrupt()


def assert_recorder_ends(app: harness.Process, recorder: int) -> None:
    """The recorder ends with the app, and leaves no lock behind (`cli/src/tree_lock.rs`)."""
    lock = Path(f"/dev/shm/timeglass-{os.getuid()}/recorder-{app.pid}.lock")
    assert lock.read_text() == str(recorder)
    assert app.interrupt(timeout=30) == 0, app.describe()
    deadline = time.monotonic() + 20
    while alive(recorder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(recorder), "the recorder outlived the app"
    assert not lock.exists(), "the recorder left its lock behind"


def test_a_killed_recorder_s_lock_is_swept(ctx: TestContext) -> None:
    """What a recorder killed with `kill -9` leaves: a lock file nobody holds, naming a pid that
    may be anybody's by now. The next recorder to start removes it, and records as ever."""
    runtime = Path(f"/dev/shm/timeglass-{os.getuid()}")
    runtime.mkdir(mode=0o700, exist_ok=True)
    stale = runtime / "recorder-1.lock"
    stale.write_text(str(os.getpid()))
    with served(ctx, []) as (app, client, _):
        db, recorder = recorder_started(app)
        assert client.get("/cpu/first?ms=20").status_code == 200
        wait_recorded(ctx, db, {"/cpu/first"})
        assert not stale.exists(), "the starting recorder swept the leftover lock"
        assert_recorder_ends(app, recorder)


def test_plain_uvicorn_records_by_itself(ctx: TestContext) -> None:
    ui_port = harness.free_port()
    env = {"TIMEGLASS_UI_URL": f"http://127.0.0.1:{ui_port}"}
    with served(ctx, [], env=env) as (app, client, source):
        db, recorder = recorder_started(app)
        assert db == source.parent / ".timeglass" / "timeglass.db"
        assert recorders_of(app.pid) == [recorder]
        for tag in ("one", "two"):
            assert client.get(f"/cpu/{tag}?ms=30").status_code == 200
        mine = client.get("/whoami").json()
        assert mine["state"] == mine["id"]
        assert mine["url"] == f"{env['TIMEGLASS_UI_URL']}/requests/by-marker/{app.pid}/{mine['id']}"
        rows = wait_recorded(ctx, db, {"/cpu/one", "/cpu/two", "/whoami"})
        assert {r["pid"] for r in rows} == {app.pid}
        dashboard_lists(
            ctx, source.parent, {"/cpu/one", "/cpu/two"}, port=ui_port, link=mine["url"]
        )
        # `timeglass attach` on it does not record it a second time.
        attach = ctx.cli("attach", "--pid", str(app.pid), "--db", str(ctx.db), "--duration", "1")
        assert attach.returncode == 2, attach.describe()
        assert "already recorded by the recorder its TimeGlassMiddleware started" in attach.stderr
        assert attach.stderr.count("\n") == 1
        assert_recorder_ends(app, recorder)
    assert "Traceback" not in app.stderr()


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_workers_share_one_recorder_under(ctx: TestContext, server: str) -> None:
    if server == "gunicorn" and os.environ.get(harness.TEST_PYTHON):
        pytest.skip("gunicorn is installed in .venv only; this case runs with the apps on it")
    extra = ["-w", "2"] if server == "gunicorn" else ["--workers", "2"]
    with served(ctx, extra, gunicorn=server == "gunicorn") as (app, client, source):
        db, recorder = recorder_started(app)
        workers: set[int] = set()
        deadline = time.monotonic() + 30
        tags: list[str] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=str(client.base_url), headers={"connection": "close"}) as c:
                tag = f"w{len(tags)}"
                workers.add(served_by(c.get(f"/pid?tag={tag}")))
                assert c.get(f"/cpu/{tag}?ms=20").status_code == 200
                tags.append(tag)
        assert len(workers) == 2, workers
        assert app.pid not in workers
        rows = wait_recorded(ctx, db, {f"/cpu/{t}" for t in tags})
        assert {r["pid"] for r in rows if r["path"].startswith("/cpu/")} <= workers
        # Both workers' markers ran; one started the recorder, the other found its lock.
        assert recorders_of(app.pid) == [recorder]
        assert len(STARTED.findall(app.stderr())) == 1
        dashboard_lists(ctx, source.parent, {f"/cpu/{tags[0]}"})
        assert_recorder_ends(app, recorder)


def test_reload_keeps_one_recorder_across_restarts(ctx: TestContext) -> None:
    with served(ctx, ["--reload"]) as (app, client, source):
        db, recorder = recorder_started(app)
        first = served_by(client.get("/pid"))
        assert first != app.pid
        client.get("/cpu/before?ms=20")
        edit(source)
        second, _ = wait_for_pid(client, lambda pid: pid not in (first, app.pid))
        assert client.get("/cpu/after?ms=20").status_code == 200
        rows = wait_recorded(ctx, db, {"/cpu/before", "/cpu/after"})
        by_path = {r["path"]: r["pid"] for r in rows}
        assert (by_path["/cpu/before"], by_path["/cpu/after"]) == (first, second)
        assert recorders_of(app.pid) == [recorder]
        assert len(STARTED.findall(app.stderr())) == 1
        assert_recorder_ends(app, recorder)


def test_disabled_starts_nothing(ctx: TestContext) -> None:
    for env in ({"TIMEGLASS_ENABLED": "0"}, {"TIMEGLASS_RECORD": "0"}):
        with served(ctx, [], env=env) as (app, client, source):
            assert client.get("/pid").status_code == 200
            time.sleep(0.5)
            assert not STARTED.search(app.stderr()), app.describe()
            assert recorders_of(app.pid) == []
            assert not (source.parent / ".timeglass").exists()
            app.interrupt()
            assert "timeglass:" not in app.stderr(), app.describe()


def test_a_store_that_cannot_be_made_is_one_warning(ctx: TestContext) -> None:
    blocked = ctx.tmp / "not-a-dir"
    blocked.write_text("a file where the store's directory would go")
    with served(ctx, [], env={"TIMEGLASS_DB": str(blocked / "timeglass.db")}) as (app, client, _):
        assert client.get("/pid").status_code == 200
        assert client.get("/cpu/x?ms=1").status_code == 200
        app.interrupt()
    lines = [line for line in app.stderr().splitlines() if line.startswith("timeglass:")]
    assert len(lines) == 1, app.stderr()
    assert "cannot start a recorder" in lines[0]
    assert "requests are not recorded" in lines[0]
    assert "Traceback" not in app.stderr()
