from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.context import RunningApp, TestContext


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
