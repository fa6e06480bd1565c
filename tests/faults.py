"""What the fault tests share: an app under `timeglass run` with steady load, and the
checks every fault ends with (the store is valid SQLite, what was lost is counted)."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fixtures import harness
from tests.context import TestContext

# A deterministic answer: what every response must equal, before and after a fault.
PATH = "/items/1"


@dataclass
class Load:
    """One client sending `PATH` back to back; every answer is kept with its time."""

    port: int
    answers: list[tuple[float, int, bytes]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(PATH)
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                self.answers.append((time.monotonic(), response.status_code, response.content))

    def stop(self) -> Load:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        return self

    def answered_before(self, t: float) -> int:
        return sum(1 for at, _, _ in self.answers if at < t)

    def assert_unchanged(self, expected: bytes) -> None:
        assert not self.failures, self.failures[:5]
        assert self.answers, "no request was answered"
        wrong = [(s, b) for _, s, b in self.answers if s != 200 or b != expected]
        assert not wrong, wrong[:5]


def start_run(
    ctx: TestContext, *run_args: str, env: dict[str, str] | None = None
) -> tuple[harness.Process, int]:
    """`timeglass run` of the demo app, waited for; returns the process and its port."""
    port = harness.free_port()
    argv = [
        str(ctx.bin),
        "run",
        "--db",
        str(ctx.db),
        *run_args,
        "--",
        *harness.uvicorn_argv(port, python=ctx.python),
    ]
    full_env = harness.clean_env({"FIXTURE_DB": str(ctx.tmp / "fixture.db"), **(env or {})})
    process = harness.Process(argv, log_dir=ctx.tmp / f"run-{port}", env=full_env)
    process.wait_for_port(port, timeout=30)
    return process, port


def expected_body(port: int) -> bytes:
    return httpx.get(f"http://127.0.0.1:{port}{PATH}", timeout=10).content


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        (result,) = conn.execute("PRAGMA integrity_check").fetchone()
        return str(result)


def stored_requests(db: Path, session: int) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM requests WHERE session_id = ?", (session,)
        ).fetchone()
        return int(n)


def wait_until(what: str, check: object, timeout: float = 20.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
