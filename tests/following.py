"""Helpers for the tests that follow processes: supervisors, reloads, crashes, attach."""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from fixtures import harness

CRASHY_APP = harness.REPO_ROOT / "fixtures" / "crashy_app.py"
VENV_BIN = harness.venv_python().parent
SAMPLING = re.compile(r"^timeglass: sampling process (\d+) ", re.MULTILINE)
CRASHED = re.compile(r"^timeglass: warning: process (\d+) died without exiting", re.MULTILINE)


def wait_sampled(process: harness.Process, count: int, timeout: float = 30.0) -> list[int]:
    """Pids `timeglass` said it samples, in order, once there are `count` of them.

    A supervisor listens before its workers are ready; traffic sent before
    they are sampled would measure start-up, not following.
    """
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(pid) for pid in SAMPLING.findall(process.stderr())]
        if len(pids) >= count:
            return pids
        if time.monotonic() > deadline or process.popen.poll() is not None:
            raise AssertionError(f"{len(pids)} of {count} processes sampled\n{process.describe()}")
        time.sleep(0.05)


def wait_crashed(process: harness.Process, count: int, timeout: float = 30.0) -> list[int]:
    """Pids `timeglass` said died without exiting cleanly, once there are `count`."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(pid) for pid in CRASHED.findall(process.stderr())]
        if len(pids) >= count:
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pids)} of {count} crashes reported\n{process.describe()}")
        time.sleep(0.05)


def copy_app(directory: Path, name: str, source: Path = CRASHY_APP) -> Path:
    """A private copy of a fixture app, so editing it reloads only this test's server."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    shutil.copyfile(source, path)
    return path


def edit(path: Path) -> None:
    """A code change a reloader notices."""
    path.write_text(path.read_text() + f"\nEDITED_AT = {time.time()!r}\n")


def served_by(response: httpx.Response) -> int:
    pid = response.json()["pid"]
    assert isinstance(pid, int), response.text
    return pid


def wait_for_pid(
    client: httpx.Client, accept: Any, timeout: float = 30.0, path: str = "/pid"
) -> tuple[int, float]:
    """Ask `path` until a process for which `accept(pid)` is true answers.

    Returns that pid and the monotonic time of its answer. Connection errors
    (a reloading server) are retried.
    """
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while time.monotonic() < deadline:
        try:
            pid = served_by(client.get(path))
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if accept(pid):
            return pid, time.monotonic()
        seen.add(pid)
        time.sleep(0.05)
    raise AssertionError(f"no matching process answered within {timeout:.0f} s; saw {seen}")


def spread(base_url: str, paths: list[str], parallel: int, query: str = "") -> list[httpx.Response]:
    """Each path on a fresh connection, `parallel` at a time, so the kernel
    hands them to different workers of a shared socket."""

    def one(path: str) -> httpx.Response:
        headers = {"connection": "close"}
        with httpx.Client(base_url=base_url, timeout=60, headers=headers) as client:
            return client.get(path + query)

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, paths))


def rows_by_path(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows of requests to distinct paths (`/cpu/TAG`), by path."""
    return {row["path"]: row for row in rows}


def process_exits(db: Path) -> dict[int, str | None]:
    """`processes.pid -> processes.exit`, straight from the store."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT pid, exit FROM processes"))
