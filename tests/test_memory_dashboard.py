"""Memory in the dashboard (issue 12), in real headless Chromium against
`timeglass run --ui --memory` recording `fixtures.memory_app`: the list's
Peak RSS and Allocated columns and their sort, the request page's memory
tiles and the flame graph's Memory view, and the endpoint view's leak hint
for an endpoint that leaks by construction and none for one that does not.

Screenshots go to `$TIMEGLASS_SCREENSHOTS` (default: the test's temporary
directory).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, ViewportSize, expect

from fixtures import harness
from tests.context import TestContext

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

APP = "fixtures.memory_app:app"
# Requests per endpoint of the leak test: the hint needs 50.
LEAK_REQUESTS = 60


@dataclass
class Board:
    url: str
    shots: Path

    def api(self, path: str) -> Any:
        response = httpx.get(self.url + path, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def shot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def row(self, path: str) -> dict[str, Any]:
        rows = self.api("api/v1/requests?limit=1000")["requests"]
        found: dict[str, Any] = next(r for r in rows if r["path"] == path)
        return found


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    ctx = TestContext(tmp_path_factory.mktemp("memory-dashboard"))
    shots = Path(os.environ.get("TIMEGLASS_SCREENSHOTS", str(ctx.tmp / "shots")))
    shots.mkdir(parents=True, exist_ok=True)
    ui_port = harness.free_port()
    with ctx.run_app("--ui", "--ui-port", str(ui_port), "--memory", app=APP) as app:
        app.process.wait_for_port(ui_port)
        assert app.request("GET", "/health").status_code == 200
        # The endpoint that frees what it uses first, then the one that keeps it.
        for i in range(LEAK_REQUESTS):
            assert app.request("GET", f"/steady/s{i}").status_code == 200
        for i in range(LEAK_REQUESTS):
            assert app.request("GET", f"/leak/l{i}").status_code == 200
        assert app.request("GET", "/build/big", params={"mb": 24}).status_code == 200
        assert app.request("GET", "/hold/h0", params={"mb": 8}).status_code == 200
        board = Board(f"http://127.0.0.1:{ui_port}/", shots)
        deadline = time.monotonic() + 15
        while len(board.api("api/v1/requests?limit=1000")["requests"]) < 2 * LEAK_REQUESTS + 3:
            assert time.monotonic() < deadline, "the requests were not stored in time"
            time.sleep(0.2)
        yield board


@pytest.fixture
def viewport() -> ViewportSize:
    # The list must fit a 1280 px window without scrolling sideways.
    return {"width": 1280, "height": 900}


def test_the_list_has_sortable_memory_columns(board: Board, page: Page) -> None:
    page.goto(board.url)
    expect(page.locator("th.mem a")).to_have_text("Peak RSS")
    expect(page.locator("th.alloc a")).to_have_text("Allocated")
    page.click("th.alloc a")
    page.wait_for_url(re.compile(r"sort=-allocated"))
    first = page.locator("tbody.rows tr").first
    expect(first.locator("td.path")).to_have_text("/build/big")
    expect(first.locator("td.alloc")).to_contain_text("MiB")
    page.click("th.mem a")
    page.wait_for_url(re.compile(r"sort=-memory"))
    peaks = [
        r["memory"]["rss_peak_bytes"] for r in board.api("api/v1/requests?sort=-memory")["requests"]
    ]
    assert peaks == sorted(peaks, reverse=True), peaks
    first = board.api("api/v1/requests?sort=-memory&limit=1")["requests"][0]
    expect(page.locator("tbody.rows tr").first.locator("td.path")).to_have_text(first["path"])
    scroll = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll[0] <= scroll[1], f"the list scrolls sideways at 1280 px: {scroll}"
    board.shot(page, "memory-list")


def test_the_request_page_shows_memory_and_a_memory_flame_graph(board: Board, page: Page) -> None:
    row = board.row("/build/big")
    page.goto(f"{board.url}requests/{row['id']}")
    expect(page.locator(".tile", has_text="Allocated")).to_contain_text("MiB")
    expect(page.locator(".tile", has_text="Peak memory")).to_contain_text("MiB")
    page.click("[data-time=memory]")
    expect(page.locator("[data-time=memory]")).to_have_attribute("aria-pressed", "true")
    # The list comprehension allocates: its own frame before 3.12 (PEP 709
    # inlined it), `<listcomp>` or `build_objects.<locals>.<listcomp>`.
    expect(page.locator("#functions tbody")).to_contain_text(re.compile("build_objects|listcomp"))
    expect(page.locator("#functions tbody")).to_contain_text("MiB")
    expect(page.locator("#flame-graph")).to_contain_text("build_objects")
    board.shot(page, "memory-flame")
    page.click("[data-time=wall]")
    expect(page.locator("[data-time=wall]")).to_have_attribute("aria-pressed", "true")


def test_a_leaking_endpoint_gets_the_hint_with_its_site(board: Board, page: Page) -> None:
    leak = board.api("api/v1/routes/GET/leak/%7Btag%7D")["leak"]
    assert leak is not None
    assert leak["requests"] >= 50, leak
    assert leak["rise_bytes"] >= 8 << 20, leak
    assert leak["sites"], leak
    assert leak["sites"][0]["frame"].startswith("leak_some ("), leak
    page.goto(board.url + "routes/GET/leak/%7Btag%7D")
    card = page.locator("#leak")
    expect(card).to_contain_text("Memory keeps climbing")
    expect(card).to_contain_text("leak_some")
    board.shot(page, "memory-leak-endpoint")


def test_an_endpoint_that_frees_what_it_uses_gets_none(board: Board, page: Page) -> None:
    detail = board.api("api/v1/routes/GET/steady/%7Btag%7D")
    assert detail["leak"] is None, detail["leak"]
    assert detail["stats"]["rss_peak"]["requests"] == LEAK_REQUESTS
    page.goto(board.url + "routes/GET/steady/%7Btag%7D")
    expect(page.locator(".tile", has_text="Peak RSS")).to_contain_text("MiB")
    expect(page.locator("#leak")).to_have_count(0)
    board.shot(page, "memory-steady-endpoint")
