"""The recorder the middleware starts by itself: ``app.add_middleware(TimeGlassMiddleware)`` and
a plain ``uvicorn app:app`` record into the default store, and ``timeglass ui`` shows it.

The first marked process of a process tree (plain uvicorn: the server itself; ``--reload`` and
``--workers N``: the uvicorn process that started the worker; gunicorn: its arbiter) starts
``timeglass attach --pid ROOT``, the binary that the same wheel installs, in the app's working
directory. One recorder per tree, not per worker: the recorder inherits an exclusive lock on
``<runtime dir>/recorder-ROOT.lock`` and holds it while it lives, and the lock file names its
pid, so every later worker (or a restarted ``--reload`` child) finds it and only grants it ptrace
rights (``prctl(PR_SET_PTRACER)``, what Yama's ``ptrace_scope=1`` asks for). ``timeglass
attach`` takes the same lock and refuses a tree that has it, so nothing is recorded twice. The
recorder stops when the tree's root exits.

Nothing happens under ``timeglass run`` (its private ``TIMEGLASS_RUNTIME_DIR`` says a recorder
is there already), with ``TIMEGLASS_ENABLED=0``, or with ``TIMEGLASS_RECORD=0``. Where a
recorder cannot start (no binary, a read-only directory, no rights) the app gets one
``timeglass:`` line on stderr and runs on, unprofiled. Stdlib only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from timeglass import _env

#: prctl(2): who may ptrace this process when Yama's ptrace_scope is 1.
PR_SET_PTRACER = 0x59616D61
PR_SET_PTRACER_ANY = -1
#: How long after starting it the recorder is watched for an early failure.
STARTUP_WATCH_S = 5.0

_started = False
_recorder: subprocess.Popen[bytes] | None = None


def lock_path(runtime_dir: Path, root: int) -> Path:
    """The lock the recorder of tree ``root`` holds; ``cli/src/attach.rs`` names it the same."""
    return runtime_dir / f"recorder-{root}.lock"


def ensure(ring_path: str | None) -> None:
    """Makes sure a recorder reads this process's tree; at most once per process. Never raises."""
    global _started
    if _started:
        return
    _started = True
    try:
        problem = _ensure(ring_path)
    except Exception as exc:  # noqa: BLE001 - the app must run on whatever happened
        problem = f"{exc!r}"
    if problem:
        _warn(f"cannot start a recorder ({problem}); requests are not recorded")


def _ensure(ring_path: str | None) -> str | None:
    if ring_path is None or not sys.platform.startswith("linux"):
        return None  # no ring (off, or a warning was printed already): nothing to record
    if os.environ.get(_env.RUNTIME_DIR) or os.environ.get(_env.RECORD) == "0":
        return None  # under `timeglass run`, or turned off
    root = tree_root()
    lock = lock_path(Path(ring_path).parent, root)
    fd = _take_lock(lock)
    if fd is None:
        return None  # a recorder reads this tree already, and may now read this process too
    recorder = None
    try:
        binary = find_binary()
        if binary is None:
            return (
                f"no `timeglass` binary next to {sys.executable} or on PATH;"
                " `pip install timeglass` installs it"
            )
        db = store_path()
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create `{db.parent}`: {exc.strerror}"
        if not os.access(db.parent, os.W_OK):
            return f"`{db.parent}` is read-only"
        log = db.parent / "recorder.log"
        _allow_ptrace(PR_SET_PTRACER_ANY)  # until its pid is known
        with open(log, "ab") as out:
            recorder = subprocess.Popen(
                [binary, "attach", "--pid", str(root), "--db", str(db), "--by-marker"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(fd,),
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if k != _env.AUTO},
            )
        _allow_ptrace(recorder.pid)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(recorder.pid).encode(), 0)
    finally:
        if recorder is None:
            with contextlib.suppress(OSError):
                os.unlink(lock)  # none started: no lock to leave behind
        os.close(fd)  # the recorder's copy keeps the lock
    global _recorder
    _recorder = recorder
    print(
        f"timeglass: recording requests into {db} (recorder pid {recorder.pid});"
        " `timeglass ui` shows them",
        file=sys.stderr,
    )
    threading.Thread(
        target=_watch_start, args=(recorder, log), name="timeglass-recorder-watch", daemon=True
    ).start()
    return None


def tree_root() -> int:
    """The process the app's server was started as: what the recorder follows."""
    process = sys.modules.get("multiprocessing.process")
    parent = process.parent_process() if process is not None else None
    if parent is not None and parent.pid:
        return int(parent.pid)  # a uvicorn --reload or --workers child (spawned)
    if "gunicorn.arbiter" in sys.modules:
        return os.getppid()  # a gunicorn worker, forked by its arbiter
    return os.getpid()


def find_binary() -> str | None:
    """The ``timeglass`` of this interpreter's environment (the wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "timeglass"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    import shutil

    return shutil.which("timeglass")


def store_path() -> Path:
    """Where ``timeglass attach`` (and ``timeglass ui``) keep the store when not told."""
    return Path(os.environ.get(_env.DB) or ".timeglass/timeglass.db").absolute()


def _take_lock(lock: Path) -> int | None:
    """The tree's lock, open and held; ``None`` when a live recorder holds it (it is then let
    read this process). A lock file is unlinked by its recorder before it lets go, and a starting
    recorder removes leftovers (``cli/src/tree_lock.rs``): a lock taken on a file that is no
    longer at its path, or found held with no live recorder named in it, is tried again."""
    for _ in range(5):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _recorder_pid(fd)
            os.close(fd)
            if pid is not None and _alive(pid):
                _allow_ptrace(pid)
                return None
            time.sleep(0.05)
            continue
        if _names(lock, fd):
            return fd
        os.close(fd)
    raise OSError(f"cannot take the recorder lock {lock}")


def _names(path: Path, fd: int) -> bool:
    try:
        here, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's: alive
    return True


def _recorder_pid(fd: int) -> int | None:
    # The starting process writes the pid right after starting it: give it a moment.
    for _ in range(50):
        with contextlib.suppress(OSError, ValueError):
            text = os.pread(fd, 32, 0).decode().strip()
            if text:
                return int(text)
        time.sleep(0.01)
    return None


def _allow_ptrace(pid: int | None) -> None:
    """Lets ``pid`` read this process under Yama's ``ptrace_scope=1``; a no-op without Yama."""
    if pid is None:
        return
    with contextlib.suppress(Exception):
        libc: Any = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PTRACER, ctypes.c_ulong(pid & 0xFFFFFFFFFFFFFFFF), 0, 0, 0)


def _watch_start(recorder: subprocess.Popen[bytes], log: Path) -> None:
    """One line on stderr if the recorder gave up early (its reason is the log's last line)."""
    deadline = time.monotonic() + STARTUP_WATCH_S
    while time.monotonic() < deadline:
        code = recorder.poll()
        if code is not None:
            if code != 0:
                lines = log.read_text(errors="replace").strip().splitlines()
                reason = lines[-1] if lines else f"exit status {code}"
                reason = reason.removeprefix("timeglass: ").removeprefix("error: ")
                _warn(f"the recorder stopped ({reason}); requests are not recorded")
            return
        time.sleep(0.1)


def _warn(message: str) -> None:
    with contextlib.suppress(Exception):
        print(f"timeglass: {message}", file=sys.stderr)
