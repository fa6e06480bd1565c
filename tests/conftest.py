from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, sync_playwright

from fixtures import harness
from tests.context import RunningApp, TestContext

# Set by `make test-core-X.Y` beside harness.TEST_PYTHON: the CPython version (`3.12`)
# that interpreter must be, so a switch pointing at the wrong venv stops the run at once.
EXPECTED_VERSION = "TIMEGLASS_TEST_PYTHON_VERSION"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "core: the end-to-end subset `make test` runs with the apps on every CPython "
        f"(pick the interpreter with ${harness.TEST_PYTHON})",
    )
    version = app_python_version()
    expected = os.environ.get(EXPECTED_VERSION)
    if expected and minor(version) != expected:
        raise pytest.UsageError(
            f"{EXPECTED_VERSION}={expected}, but the apps' interpreter "
            f"{harness.venv_python()} is CPython {version}"
        )


def pytest_report_header(config: pytest.Config) -> str:
    return f"apps run on: CPython {app_python_version()} ({harness.venv_python()})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Again at the end, where a matrix run's log is read: which interpreter this was.
    terminalreporter.write_sep("-", f"apps ran on CPython {app_python_version()}")


@functools.cache
def app_python_version() -> str:
    """`3.12.1`: the version of the interpreter every app of this run is started with."""
    try:
        python = harness.venv_python()
    except harness.HarnessError as error:
        raise pytest.UsageError(str(error)) from None
    code = "import platform; print(platform.python_version())"
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise pytest.UsageError(f"{python} does not run: {done.stderr.strip()}")
    return done.stdout.strip()


def minor(version: str) -> str:
    """`3.12` of `3.12.1`."""
    return ".".join(version.split(".")[:2])


def recorded_pythons(base: Path) -> list[tuple[Path, int, str | None]]:
    """(store, pid, Python version the sampler read) of every process recorded under `base`."""
    found = []
    for db in sorted(base.rglob("*.db")):
        try:
            with sqlite3.connect(db) as conn:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
                if "processes" in tables:
                    rows = conn.execute("SELECT pid, python_version FROM processes").fetchall()
                    found += [(db, pid, version) for pid, version in rows]
        except sqlite3.DatabaseError:
            continue  # an app's own database, or not SQLite at all
    return found


@pytest.fixture(scope="session", autouse=True)
def apps_ran_on_the_chosen_python(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """After the run, every process any store recorded ran on the chosen interpreter's
    version (as the sampler read it from the process): a switch that some path ignores
    cannot quietly test .venv's Python in its place."""
    yield
    expected = minor(app_python_version())
    recorded = recorded_pythons(tmp_path_factory.getbasetemp())
    wrong = [(str(db), pid, v) for db, pid, v in recorded if v and minor(v) != expected]
    assert not wrong, (
        f"these apps did not run on CPython {expected} ({harness.venv_python()}); every path "
        f"that starts an app must take its interpreter from harness.venv_python(): {wrong}"
    )
    e2e = any(item.get_closest_marker("e2e") for item in request.session.items)
    if os.environ.get(harness.TEST_PYTHON) and e2e:
        assert any(v for _, _, v in recorded), (
            f"{harness.TEST_PYTHON} is set, but no recorded process says which Python it ran"
        )


# The dashboard's browser tests drive Debian's chromium (`make build` installs it),
# never a browser that Playwright downloads.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make build` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def viewport() -> ViewportSize:
    """The `page` fixture's window; a test module overrides it for another size."""
    return {"width": 1400, "height": 900}


@pytest.fixture
def page(browser: Browser, viewport: ViewportSize) -> Iterator[Page]:
    """A fresh browser tab; the test fails if a script on it threw."""
    context = browser.new_context(viewport=viewport)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))

    # The pages' policy has no 'unsafe-inline': an inline style or script the
    # browser refused is a page drawn wrong.
    def refused(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            errors.append(message.text)

    p.on("console", refused)
    yield p
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def ctx(tmp_path: Path) -> TestContext:
    return TestContext(tmp_path)


@dataclass(frozen=True)
class Recording:
    """One profiled run of the fixture app, shared by the tests that read it back."""

    ctx: TestContext
    sent: list[tuple[str, str, int]]
    rows: list[dict[str, Any]]
    started: datetime
    stopped: datetime

    def rows_for(self, path: str) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["path"].partition("?")[0] == path]

    def require(self, path: str) -> list[dict[str, Any]]:
        rows = self.rows_for(path)
        if not rows:
            recorded = sorted({row["path"] for row in self.rows})
            pytest.fail(f"no {path} request was recorded; recorded paths: {recorded}")
        return rows


def send_traffic(app: RunningApp) -> None:
    for _ in range(5):
        app.request("GET", "/health")
    app.request("GET", "/items", params={"limit": 5})
    app.request("GET", "/items/1")
    app.request("GET", "/items/7")
    app.request("GET", "/items/999999")
    app.request("POST", "/items", json={"name": "hourglass", "price": 12.5})
    app.request("GET", "/does-not-exist")
    app.request("GET", "/error")
    app.request("GET", "/slow-io?ms=50")
    app.request("GET", "/cpu?ms=200")
    app.request("GET", "/sync-cpu?ms=200")
    # Short CPU-bound requests: at 1 kHz each must still get 15 samples or more.
    for _ in range(5):
        app.request("GET", "/cpu?ms=20")
    # /health while CPU is burnt elsewhere: those samples must not be charged to it.
    # The sync burn runs on a pool thread beside the loop; the async one blocks the
    # loop, so these /health requests queue behind it.
    while_busy(app, "/sync-cpu?ms=400", health_requests=10)
    while_busy(app, "/cpu?ms=300", health_requests=3)


def while_busy(app: RunningApp, busy_path: str, health_requests: int) -> None:
    busy = threading.Thread(target=app.request, args=("GET", busy_path))
    busy.start()
    # A head start, not a synchronisation: nothing outside the app shows when the
    # busy handler begins, and the assertions on /health hold either way.
    time.sleep(0.05)
    for _ in range(health_requests):
        app.request("GET", "/health")
    busy.join()


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    ctx = TestContext(tmp_path_factory.mktemp("recording"))
    started = datetime.now(timezone.utc)
    with ctx.run_app() as app:
        send_traffic(app)
    stopped = datetime.now(timezone.utc)
    return Recording(ctx, app.sent, ctx.requests(), started, stopped)
