"""Process-wide behaviour, each case in a fresh interpreter: off switch, unwritable
runtime directory, fork, and the injected ``sitecustomize``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import timeglass
from timeglass import _env

PACKAGE_DIR = Path(timeglass.__file__).parent
TESTS_DIR = Path(__file__).parent

# Serves one request to a marked FastAPI app and prints what the marker saw.
SERVE_ONE = """
import asyncio, httpx, sys
sys.path.insert(0, {tests!r})
from apps import make_app
from timeglass import TimeGlassMiddleware, _native, stats

async def main():
    transport = httpx.ASGITransport(app=TimeGlassMiddleware(make_app()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/items/5")
    print(r.status_code, r.text, r.headers["x-item"])
    # Records other than garbage collections, which come when the interpreter decides.
    ring = stats()["ring_path"]
    records = [e for e in _native._read_events(ring) if e["kind"] != "gc"] if ring else []
    print(stats()["enabled"], len(records))
asyncio.run(main())
"""


def run_python(
    code: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEGLASS_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_disabled_marker_writes_nothing(tmp_path: Path) -> None:
    p = run_python(
        SERVE_ONE.format(tests=str(TESTS_DIR)),
        {_env.RUNTIME_DIR: str(tmp_path), _env.ENABLED: "0"},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["200 item 5 5", "False 0"]
    assert list(tmp_path.iterdir()) == []


def test_context_capture_can_be_turned_off(tmp_path: Path) -> None:
    p = run_python(
        SERVE_ONE.format(tests=str(TESTS_DIR)),
        {_env.RUNTIME_DIR: str(tmp_path), _env.CONTEXT: "0"},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["200 item 5 5", "True 2"], "start and end only"


def test_unwritable_runtime_dir_passes_requests_through(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    p = run_python(
        SERVE_ONE.format(tests=str(TESTS_DIR)),
        {_env.RUNTIME_DIR: str(blocker / "runtime")},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["200 item 5 5", "False 0"]
    warnings = [line for line in p.stderr.splitlines() if line.startswith("timeglass:")]
    assert len(warnings) == 1
    assert len(p.stderr.splitlines()) == 1


def test_ring_file_exists_while_running_and_is_removed_at_exit(tmp_path: Path) -> None:
    listing = f"import os; print(os.listdir({str(tmp_path)!r}))"
    code = SERVE_ONE.format(tests=str(TESTS_DIR)) + listing
    p = run_python(code, {_env.RUNTIME_DIR: str(tmp_path)})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    # start, request context, endpoint call (FastAPI), response context, end
    assert lines[1] == "True 5"
    assert lines[2].endswith(".ring']")
    assert list(tmp_path.iterdir()) == []


def test_ring_file_is_removed_when_the_app_shuts_down(tmp_path: Path) -> None:
    # Servers stopped by SIGTERM may die of it after a clean shutdown, exit
    # handlers unrun: the lifespan's end is when the marker cleans up.
    code = """
    import asyncio, os
    from timeglass import TimeGlassMiddleware, stats

    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def main():
        marker = TimeGlassMiddleware(app)
        path = stats()["ring_path"]
        inbox = asyncio.Queue()
        inbox.put_nowait({"type": "lifespan.startup"})
        inbox.put_nowait({"type": "lifespan.shutdown"})
        sent = []

        async def send(message):
            sent.append((message["type"], os.path.exists(path)))

        await marker({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
        print(sent)
        os._exit(0)  # no exit handlers: only the shutdown removed the file

    asyncio.run(main())
    """
    p = run_python(code, {_env.RUNTIME_DIR: str(tmp_path)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(
        [("lifespan.startup.complete", True), ("lifespan.shutdown.complete", False)]
    )
    assert list(tmp_path.iterdir()) == []


def test_forked_child_gets_its_own_ring(tmp_path: Path) -> None:
    code = """
    import os, asyncio, threading
    from timeglass import TimeGlassMiddleware, _native

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def sent(message):
        pass

    def one_request():
        scope = {"type": "http", "method": "GET", "path": "/"}
        asyncio.run(TimeGlassMiddleware(app)(scope, None, sent))

    def last_start_tid(ring):
        return [e for e in _native._read_events(ring) if e["kind"] == "start"][-1]["tid"]

    one_request()  # creates the parent's ring; its thread id is known from here on
    parent_ring = _native.stats()["ring_path"]
    pid = os.fork()
    if pid == 0:
        child = _native.stats()
        ok = child["ring_path"] != parent_ring and child["pid"] == os.getpid()
        ok = ok and os.path.exists(child["ring_path"])
        ok = ok and _native.bind(3, _native.current_request)() == 3
        one_request()
        ok = ok and last_start_tid(child["ring_path"]) == threading.get_native_id()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), os.path.exists(parent_ring))
    """
    p = run_python(code, {_env.RUNTIME_DIR: str(tmp_path)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0 True"


def bootstrap_dir(tmp_path: Path) -> Path:
    """What `timeglass run` puts on PYTHONPATH: the sitecustomize and a package symlink."""
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(
        (PACKAGE_DIR / "_bootstrap" / "sitecustomize.py").read_text()
    )
    (boot / "timeglass").symlink_to(PACKAGE_DIR, target_is_directory=True)
    return boot


AUTO_CHECK = """
import sys
print("other ran:", getattr(sys, "other_sitecustomize_ran", False))
from fastapi import FastAPI
from starlette.applications import Starlette
print("patched:", getattr(Starlette.__call__, "__timeglass_patched__", False))
import asyncio, httpx
app = FastAPI()
@app.get("/x/{y}")
async def x(y: int):
    from timeglass import _native
    return _native.current_request()
async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        print("current:", (await c.get("/x/1")).json())
asyncio.run(main())
from timeglass import _native
events = _native._read_events(_native.stats()["ring_path"])
print("events:", [(e["kind"], e.get("route")) for e in events if e["kind"] != "context"])
"""


def test_sitecustomize_injects_and_chains(tmp_path: Path) -> None:
    boot = bootstrap_dir(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import sys\nsys.other_sitecustomize_ran = True\n")
    p = run_python(
        AUTO_CHECK,
        {
            "PYTHONPATH": os.pathsep.join([str(boot), str(other)]),
            _env.AUTO: "1",
            _env.RUNTIME_DIR: str(tmp_path / "run"),
        },
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert p.stdout.splitlines() == [
        "other ran: True",
        "patched: True",
        "current: 1",
        "events: [('start', None), ('end', '/x/{y}')]",
    ]


def test_sitecustomize_does_nothing_without_auto(tmp_path: Path) -> None:
    p = run_python(
        AUTO_CHECK.split("import asyncio")[0],
        {"PYTHONPATH": str(bootstrap_dir(tmp_path))},
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["other ran: False", "patched: False"]


def test_sitecustomize_never_raises(tmp_path: Path) -> None:
    boot = bootstrap_dir(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("raise RuntimeError('broken site')\n")
    p = run_python(
        "print('alive')",
        {"PYTHONPATH": os.pathsep.join([str(boot), str(other)]), _env.AUTO: "1"},
        cwd=tmp_path,
    )
    assert p.returncode == 0
    assert p.stdout == "alive\n"
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("timeglass: ")


def test_package_works_from_the_symlink_in_a_bare_interpreter(tmp_path: Path) -> None:
    base = getattr(sys, "_base_executable", sys.executable)
    code = """
    import sys, importlib.util
    assert importlib.util.find_spec("starlette") is None, "not a bare interpreter"
    import timeglass
    from timeglass import _patching
    print(timeglass.__file__.startswith({boot!r}), type(timeglass.TimeGlassMiddleware).__name__)
    print(any(isinstance(f, _patching._Finder) for f in sys.meta_path))
    """
    boot = bootstrap_dir(tmp_path)
    env = {"PYTHONPATH": str(boot), _env.AUTO: "1", _env.RUNTIME_DIR: str(tmp_path)}
    p = subprocess.run(
        [base, "-c", textwrap.dedent(code.format(boot=str(boot)))],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["True type", "True"]


def test_context_capture_pauses_on_a_full_ring_nobody_reads(tmp_path: Path) -> None:
    # Once a ring that no recorder ever read has wrapped, a request's context would only
    # push out other unread events: the marker leaves it out of the request's begin and
    # finish records (one ring slot each then), and the first read (what a recorder's
    # drain does) puts it back. Begin and finish records never stop.
    code = """
    import asyncio
    from timeglass import TimeGlassMiddleware, _native, stats

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def noop(message):
        return None

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    def scope():
        return {"type": "http", "method": "GET", "path": "/", "headers": [(b"h", b"v" * 200)]}

    async def main():
        marker = TimeGlassMiddleware(app)

        async def one():
            before = stats()
            await marker(scope(), receive, noop)
            after = stats()
            records = after["records_written"] - before["records_written"]
            return f"{records}:{after['ring_position'] - before['ring_position']}"

        fresh = await one()
        while stats()["ring_position"] < 70_000:  # more slots than the ring has
            await one()
        full = await one()
        _native._read_events(stats()["ring_path"])  # a reader drains it once
        read = await one()
        print(fresh, full, read)

    asyncio.run(main())
    """
    p = run_python(code, {_env.RUNTIME_DIR: str(tmp_path), _env.RECORD: "0"})
    assert p.returncode == 0, p.stderr
    fresh, full, read = p.stdout.split()
    assert (fresh, full) == (read, "2:2"), p.stdout
    assert int(fresh.split(":")[1]) > 4, "the context takes slots of its own"
