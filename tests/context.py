"""A test context that builds the world: the CLI, a free port, a temp store.

In the spirit of ruff's `CliTest` and uv's `TestContext`: one object knows where
`timeglass` is, runs it, runs the fixture app under it, and reads back the store.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures import harness, traffic

# `function (file.py:line)`
FRAME = re.compile(r"^(?P<function>.+) \((?P<file>[^()]+):(?P<line>\d+)\)$")


@dataclass(frozen=True)
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    # Processes still alive in the command's process group after it exited.
    left_running: bool

    def describe(self) -> str:
        return (
            f"command: {' '.join(self.argv)}\nexit code: {self.returncode}\n"
            f"stdout:\n{self.stdout or '(empty)'}\nstderr:\n{self.stderr or '(empty)'}"
        )


@dataclass(frozen=True)
class FoldedStack:
    frames: list[str]
    count: int

    def text(self) -> str:
        return ";".join(self.frames)


@dataclass
class RunningApp:
    """The fixture app under `timeglass run`, with an HTTP client pointed at it."""

    process: harness.Process
    client: httpx.Client
    sent: list[tuple[str, str, int]] = field(default_factory=list)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**traffic.headers_for(path), **kwargs.pop("headers", {})}
        response = self.client.request(method, path, headers=headers, **kwargs)
        self.sent.append((method, path, response.status_code))
        return response


class TestContext:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = harness.timeglass_bin()
        self.python = harness.venv_python()
        self.db = tmp / "store.db"
        if not self.bin.exists():
            pytest.fail(f"{self.bin} does not exist: run `make build` (or set TIMEGLASS_BIN)")

    def cli(self, *args: str, timeout: float = 60, cwd: Path | None = None) -> CliResult:
        argv = [str(self.bin), *args]
        start = time.monotonic()
        with harness.Process(argv, log_dir=self.tmp / "cli", name="cli", cwd=cwd or self.tmp) as p:
            try:
                code = p.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                pytest.fail(f"timed out after {timeout:.0f} s\n{p.describe()}")
            seconds = time.monotonic() - start
            left_running = _group_lingers(p, grace=2.0)
            return CliResult(argv, code, p.stdout(), p.stderr(), seconds, left_running)

    def cli_ok(self, *args: str) -> CliResult:
        result = self.cli(*args)
        assert result.returncode == 0, result.describe()
        return result

    @contextmanager
    def run_app(
        self,
        *run_args: str,
        app: str = harness.APP,
        env: dict[str, str] | None = None,
    ) -> Iterator[RunningApp]:
        """Start `app` under `timeglass run [RUN_ARGS]`; on leaving, stop it with SIGINT."""
        port = harness.free_port()
        argv = harness.uvicorn_argv(port, python=self.python, app=app)
        with self.run_command(argv, port, run_args=run_args, env=env) as app_:
            yield app_

    @contextmanager
    def run_command(
        self,
        command: list[str],
        port: int,
        *,
        cwd: Path | None = None,
        run_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Iterator[RunningApp]:
        """`timeglass run [RUN_ARGS] -- COMMAND` on `port`; stopped with SIGINT on leaving."""
        argv = [str(self.bin), "run", "--db", str(self.db), *run_args, "--", *command]
        env = harness.clean_env({"FIXTURE_DB": str(self.tmp / "fixture.db"), **(env or {})})
        cwd = cwd or harness.REPO_ROOT
        with harness.Process(argv, log_dir=self.tmp / "app", env=env, cwd=cwd) as process:
            try:
                process.wait_for_port(port, timeout=30)
            except harness.HarnessError as error:
                pytest.fail(str(error))
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                yield RunningApp(process, client)
            try:
                process.interrupt(timeout=20)
            except harness.HarnessError as error:
                pytest.fail(str(error))

    def requests(self) -> list[dict[str, Any]]:
        result = self.cli_ok("requests", "--db", str(self.db), "--json", "--limit", "1000")
        rows = json.loads(result.stdout)
        assert isinstance(rows, list), result.describe()
        return rows

    def sessions(self) -> list[dict[str, Any]]:
        result = self.cli_ok("sessions", "--db", str(self.db), "--json", "--limit", "1000")
        rows = json.loads(result.stdout)
        assert isinstance(rows, list), result.describe()
        return rows

    def show(self, request_id: object) -> dict[str, Any]:
        result = self.cli_ok("show", "--db", str(self.db), str(request_id), "--json")
        shown = json.loads(result.stdout)
        assert isinstance(shown, dict), result.describe()
        return shown

    def folded(self, request_id: object) -> list[FoldedStack]:
        result = self.cli_ok(
            "export", "--db", str(self.db), "--request", str(request_id), "--format", "folded"
        )
        return parse_folded(result.stdout)


def _group_lingers(process: harness.Process, grace: float) -> bool:
    deadline = time.monotonic() + grace
    while process.group_alive():
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


def parse_folded(text: str) -> list[FoldedStack]:
    stacks = []
    for line in text.splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        assert stack, f"not a folded line: {line!r}"
        assert count.isdigit(), f"not a folded line: {line!r}"
        stacks.append(FoldedStack(stack.split(";"), int(count)))
    return stacks


def parse_start(value: str) -> datetime:
    """RFC 3339, with an explicit offset or `Z`."""
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"start {value!r} has no UTC offset"
    return parsed.astimezone(timezone.utc)


def path_only(path: str) -> str:
    return path.partition("?")[0]


def assert_clean_error(result: CliResult, *mentions: str) -> None:
    """A failure a user can act on: non-zero exit, a message, no crash dump."""
    assert result.returncode > 0, result.describe()
    assert result.stderr.strip(), "no error message on stderr\n" + result.describe()
    for crash in ("panicked", "RUST_BACKTRACE", "Traceback (most recent call last)"):
        assert crash not in result.stderr, result.describe()
    for mention in mentions:
        assert mention.lower() in result.stderr.lower(), (
            f"stderr does not mention {mention!r}\n" + result.describe()
        )
