"""The dashboard in a real browser: headless Chromium (Debian's `chromium`,
never a downloaded one) driven by Playwright, against `timeglass run --ui`
recording the fixture app.

Screenshots go to `$TIMEGLASS_SCREENSHOTS` (default: the test's temporary
directory) so a person can look at what the pages look like.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from fixtures import harness
from tests.context import RunningApp, TestContext

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET_TOKEN = "Bearer tg-e2e-s3cr3t"
SECRET_PASSWORD = "hunter2-e2e"
# `/queries?n=100` runs one statement 100 times: an N+1 (the threshold is 5),
# and enough database time for its `[sql]` wait to weigh in the flame graph.
N_QUERIES = 100
STATEMENT = "SELECT price FROM items WHERE id = ?"


@dataclass
class Dashboard:
    app: RunningApp
    url: str
    shots: Path

    def shot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def shot_of(self, page: Page, selector: str, name: str) -> None:
        page.locator(selector).screenshot(path=str(self.shots / f"{name}.png"))

    def stored(self) -> list[dict[str, object]]:
        rows = httpx.get(f"{self.url}api/v1/requests?limit=1000", timeout=10).json()["requests"]
        assert isinstance(rows, list)
        return rows

    def wait_stored(self, count: int, timeout: float = 10.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.stored()
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    def request_id(self, method: str, path: str) -> object:
        for row in self.stored():
            if (row["method"], row["path"]) == (method, path):
                return row["id"]
        pytest.fail(f"{method} {path} was not recorded")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    ctx = TestContext(tmp_path_factory.mktemp("dashboard"))
    shots = Path(os.environ.get("TIMEGLASS_SCREENSHOTS") or ctx.tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    ui_port = harness.free_port()
    with ctx.run_app("--ui", "--ui-port", str(ui_port)) as app:
        url = f"http://127.0.0.1:{ui_port}/"
        app.process.wait_for_port(ui_port)
        assert f"dashboard at {url}" in app.process.stderr(), app.process.describe()
        app.request("GET", "/cpu?ms=150")
        app.request("GET", "/sync-cpu?ms=60")
        for item in (1, 2, 3):
            app.request("GET", f"/items/{item}")
        app.request("GET", "/error")
        app.request("GET", "/health")
        app.request("GET", f"/queries?n={N_QUERIES}")
        app.request(
            "POST",
            "/items?api_key=k-e2e",
            json={"name": "hourglass", "price": 12.5, "password": SECRET_PASSWORD},
            headers={"Authorization": SECRET_TOKEN},
        )
        board = Dashboard(app, url, shots)
        board.wait_stored(len(app.sent))
        yield board


class _Slow(http.server.BaseHTTPRequestHandler):
    """A real HTTP server for the app to call: slow enough for its wait to weigh."""

    def do_GET(self) -> None:
        time.sleep(0.03)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def outgoing(tmp_path_factory: pytest.TempPathFactory, dashboard: Dashboard) -> Iterator[Dashboard]:
    """fixtures/capture_app.py under `timeglass run --ui`, having made one httpx call."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ctx = TestContext(tmp_path_factory.mktemp("outgoing"))
    env = {
        "CAPTURE_SQLITE": str(ctx.tmp / "app.db"),
        "CAPTURE_HTTP": f"http://127.0.0.1:{server.server_address[1]}",
    }
    ui_port = harness.free_port()
    try:
        with ctx.run_app(
            "--ui", "--ui-port", str(ui_port), app="fixtures.capture_app:app", env=env
        ) as app:
            app.process.wait_for_port(ui_port)
            assert app.request("GET", "/http/httpx").status_code == 200
            board = Dashboard(app, f"http://127.0.0.1:{ui_port}/", dashboard.shots)
            board.wait_stored(1)
            yield board
    finally:
        server.shutdown()


def rows(page: Page) -> list[str]:
    return page.locator("tbody.rows td.path").all_inner_texts()


def test_list_shows_the_recorded_requests(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url)
    shown = rows(page)
    for path in ("/cpu", "/sync-cpu", "/items/1", "/error", "/health"):
        assert path in shown, shown
    assert len(shown) == len(dashboard.app.sent)
    expect(page.locator("tr.err td.path")).to_have_text("/error")
    expect(page.locator("#live.connected")).to_be_visible()
    dashboard.shot(page, "list")


def test_filtering(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url)
    page.fill("input[name=q]", "items")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(r"q=items"))
    assert set(rows(page)) == {"/items/1", "/items/2", "/items/3", "/items"}
    page.select_option("select[name=method]", "POST")
    page.wait_for_url(re.compile(r"method=POST"))
    assert rows(page) == ["/items"]
    page.goto(dashboard.url)
    page.select_option("select[name=status]", "5xx")
    page.wait_for_url(re.compile(r"status=5xx"))
    assert rows(page) == ["/error"]


def test_new_requests_appear_live_and_keep_the_filter(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url + "?q=items")
    before = len(rows(page))
    dashboard.app.request("GET", "/health")  # filtered out: must not show up
    sent = time.monotonic()
    dashboard.app.request("GET", "/items/42")
    expect(page.locator("tbody.rows td.path", has_text="/items/42")).to_be_visible(timeout=10_000)
    seen_after = time.monotonic() - sent
    print(f"/items/42 appeared {seen_after:.2f} s after its response")
    assert rows(page)[0] == "/items/42"
    assert len(rows(page)) == before + 1
    assert "/health" not in rows(page)
    assert page.input_value("input[name=q]") == "items"


def test_clicking_a_row_opens_the_request(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url)
    page.locator("tbody.rows tr", has_text="/cpu").first.locator("td.time").click()
    page.wait_for_url(re.compile(r"/requests/\d+$"))
    expect(page.locator("h1")).to_contain_text("/cpu")
    expect(page.locator(".tile", has_text="Duration")).to_be_visible()
    expect(page.locator(".tl-bar").first).to_be_visible()


def test_flame_graph_zooms_and_search_highlights(dashboard: Dashboard, page: Page) -> None:
    page.goto(f"{dashboard.url}requests/{dashboard.request_id('GET', '/cpu')}")
    page.click("#full-stack")  # it opens focused on the app's code
    graph = page.locator("#flame-graph")
    burner = graph.locator(".fr", has_text=re.compile(r"^burn_cpu_async$"))
    expect(burner).to_have_count(1)
    full = graph.bounding_box()
    assert full is not None
    before = burner.bounding_box()
    assert before is not None

    page.fill("#flame-search", "burn_cpu")
    expect(graph.locator(".fr.match", has_text="burn_cpu_async")).to_have_count(1)
    expect(page.locator("#matched")).to_contain_text("matched")
    dashboard.shot(page, "request-search")

    page.locator(".fr", has_text="_run_module_as_main").hover()
    expect(page.locator("#flame-tip")).to_contain_text("samples")
    burner.click()
    expect(page.locator("#zoom-path")).to_contain_text("burn_cpu_async")
    expect(page.locator("#reset")).to_be_enabled()
    after = burner.bounding_box()
    assert after is not None
    assert after["width"] >= before["width"]
    assert after["width"] > full["width"] * 0.95
    dashboard.shot(page, "request-zoomed")
    page.click("#reset")
    expect(page.locator("#zoom-path")).to_have_text("")


def test_my_code_only_changes_the_graph(dashboard: Dashboard, page: Page) -> None:
    page.goto(f"{dashboard.url}requests/{dashboard.request_id('GET', '/cpu')}")
    graph = page.locator("#flame-graph")
    page.click("#full-stack")  # it opens focused on the app's code
    expect(graph.locator(".fr", has_text="run_until_complete")).not_to_have_count(0)
    boxes = graph.locator(".fr").count()
    page.check("#mine")
    expect(graph.locator(".fr", has_text="run_until_complete")).to_have_count(0)
    expect(graph.locator(".fr", has_text=re.compile(r"^burn_cpu_async$"))).to_have_count(1)
    assert graph.locator(".fr").count() < boxes
    dashboard.shot(page, "request-my-code")
    page.uncheck("#mine")
    # Refetched, it opens focused again, past the library frames.
    expect(page.locator("#zoom-path")).to_contain_text("library frames")
    page.click("#full-stack")
    expect(graph.locator(".fr", has_text="run_until_complete")).not_to_have_count(0)


def test_secrets_are_redacted(dashboard: Dashboard, page: Page) -> None:
    page.goto(f"{dashboard.url}requests/{dashboard.request_id('POST', '/items')}")
    context = page.locator(".ctx")
    expect(context).to_contain_text("hourglass")
    expect(context.locator("tr", has_text="authorization")).to_contain_text("[redacted]")
    expect(context.locator("tr", has_text="api_key")).to_contain_text("[redacted]")
    html = page.content()
    for secret in (SECRET_TOKEN, "tg-e2e-s3cr3t", SECRET_PASSWORD, "k-e2e"):
        assert secret not in html
    dashboard.shot(page, "request-context")


def test_endpoint_view(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url)
    page.locator("tbody.rows a.route", has_text="/items/{item_id}").first.click()
    page.wait_for_url(re.compile(r"/routes/GET/items/%7Bitem_id%7D$"))
    expect(page.locator(".tile", has_text="Requests")).to_contain_text("4")
    expect(page.locator(".histogram .hbar")).not_to_have_count(0)
    page.goto(dashboard.url + "routes")
    page.locator("a", has_text="/cpu").click()
    page.wait_for_url(re.compile(r"/routes/GET/cpu$"))
    expect(page.locator(".histogram .hbar")).not_to_have_count(0)
    expect(page.locator("#flame-graph .fr").first).to_be_visible()
    dashboard.shot(page, "endpoint")


def test_queries_show_in_the_list_the_detail_and_the_timeline(
    dashboard: Dashboard, page: Page
) -> None:
    stored = next(r for r in dashboard.stored() if r["path"] == "/queries")
    assert (stored["queries"], stored["n_plus_one"]) == (N_QUERIES, True), stored

    page.goto(dashboard.url)
    row = page.locator("tbody.rows tr", has_text="/queries")
    expect(row.locator("td.queries")).to_contain_text(str(N_QUERIES))
    badge = row.locator(".nplus1-badge")
    expect(badge).to_be_visible()
    ran = rf"ran {N_QUERIES}\u00d7 from .*demo_app\.py:\d+"
    expect(badge).to_have_attribute("title", re.compile(ran))
    health = page.locator("tbody.rows tr", has_text="/health")
    expect(health.locator(".nplus1-badge")).to_have_count(0)
    dashboard.shot(page, "list-queries")

    row.locator("td.time").click()
    page.wait_for_url(re.compile(r"/requests/\d+$"))
    expect(page.locator(".tile", has_text="Queries")).to_contain_text(str(N_QUERIES))
    statements = page.locator("#statements tbody tr")
    expect(statements).to_have_count(N_QUERIES)
    sql = statements.locator("td.sql").all_inner_texts()
    assert all(STATEMENT in text and f"({i + 1},)" in text for i, text in enumerate(sql)), sql
    callers = statements.locator("td.caller").all_inner_texts()
    assert all("demo_app.py" in c and "ten_queries" in c for c in callers), callers
    expect(page.locator("#repeated tr.nplus1")).to_contain_text(f"{N_QUERIES}\u00d7")
    expect(page.locator("#queries .nplus1-note")).to_be_visible()

    bars = page.locator(".tl-lane .tl-bar.tl-query")
    expect(bars).to_have_count(N_QUERIES)
    expect(bars.first).to_have_attribute("data-title", re.compile(re.escape(STATEMENT)))
    lefts = [b.bounding_box()["x"] for b in bars.all()]  # type: ignore[index]
    assert lefts == sorted(lefts), "bars sit at their statements' offsets, in order"
    # FastAPI marks when it calls the endpoint: what ran before is its own stage.
    stages = httpx.get(f"{dashboard.url}api/v1/requests/{stored['id']}", timeout=10).json()
    names = [s["name"] for s in stages["stages"]]
    assert names[:2] == ["middleware & dependencies", "handler"], stages["stages"]
    assert 0 < stages["stages"][0]["end_ms"] < stages["stages"][1]["end_ms"], stages["stages"]
    expect(page.locator(".timeline")).to_contain_text("middleware & dependencies")
    dashboard.shot(page, "request-queries")
    dashboard.shot_of(page, ".tiles", "request-queries-tiles")
    dashboard.shot_of(page, ".timeline", "request-queries-timeline")
    dashboard.shot_of(page, "#queries", "request-queries-panel")

    # The [sql] waits are in the flame graph, under the line that waited,
    # until synthetic frames are hidden.
    sql_frame = re.compile(r"^\[sql\] SELECT \.\.\. FROM items")
    waits = page.locator("#flame-graph .fr", has_text=sql_frame)
    expect(waits).not_to_have_count(0)
    expect(page.locator("#flame-graph .fr", has_text="ten_queries")).not_to_have_count(0)
    page.uncheck("#synthetic")
    expect(waits).to_have_count(0)
    expect(page.locator("#flame-graph .fr", has_text=re.compile(r"^\[sql\]"))).to_have_count(0)
    page.check("#synthetic")
    expect(waits).not_to_have_count(0)

    page.goto(dashboard.url + "routes/GET/queries")
    tile = page.locator(".tile", has_text="Queries / request")
    expect(tile).to_contain_text(f"{N_QUERIES:.1f}")
    expect(tile.locator(".nplus1-badge")).to_be_visible()
    expect(page.locator(".tile", has_text="DB time share")).to_contain_text("%")


def test_wall_and_cpu_views_of_the_flame_graph(dashboard: Dashboard, page: Page) -> None:
    stored = next(r for r in dashboard.stored() if r["path"] == "/queries")
    assert {"cpu_ms", "breakdown", "loop_block"} <= set(stored), stored
    page.goto(f"{dashboard.url}requests/{stored['id']}")
    expect(page.locator("#time")).to_contain_text("Where the response time went")
    sql_frame = re.compile(r"^\[sql\] SELECT \.\.\. FROM items")
    waits = page.locator("#flame-graph .fr", has_text=sql_frame)
    functions = page.locator("#functions tbody tr", has_text=sql_frame)
    expect(page.locator("[data-time=wall]")).to_have_class(re.compile(r"\bon\b"))
    expect(waits).not_to_have_count(0)
    expect(functions).not_to_have_count(0)
    # CPU time only: the waits are off the CPU, in the graph and the table.
    page.click("[data-time=cpu]")
    expect(page.locator("[data-time=cpu]")).to_have_class(re.compile(r"\bon\b"))
    expect(waits).to_have_count(0)
    expect(functions).to_have_count(0)
    expect(page.locator("#svg-link")).to_have_attribute("href", re.compile(r"cpu=true"))
    # The downloads are of the view shown.
    speedscope = page.locator("#flame a[data-export$='/export/speedscope']")
    expect(speedscope).to_have_attribute("href", re.compile(r"/export/speedscope\?cpu=true$"))
    dashboard.shot(page, "request-cpu")
    # The choice is kept for the next page.
    page.reload()
    expect(page.locator("[data-time=cpu]")).to_have_class(re.compile(r"\bon\b"))
    expect(waits).to_have_count(0)
    page.click("[data-time=wall]")
    expect(waits).not_to_have_count(0)
    expect(functions).not_to_have_count(0)

    page.goto(dashboard.url)
    page.click("th.cpu a")
    page.wait_for_url(re.compile(r"sort=-cpu"))
    expect(page.locator("select[name=sort]")).to_have_value("-cpu")
    expect(page.locator("tbody.rows td.cpu").first).to_be_visible()


def test_outgoing_calls_show_in_the_calls_panel_and_the_timeline(
    outgoing: Dashboard, page: Page
) -> None:
    page.goto(f"{outgoing.url}requests/{outgoing.request_id('GET', '/http/httpx')}")
    expect(page.locator(".tile", has_text="HTTP calls")).to_contain_text("1")
    calls = page.locator("#calls tbody tr")
    expect(calls).to_have_count(1)
    expect(calls).to_contain_text("/echo?api_key=REDACTED&q=shoes")
    expect(calls.locator("td").nth(2)).to_have_text("200")
    expect(calls).to_contain_text("httpx")
    bar = page.locator(".tl-lane .tl-bar.tl-call")
    expect(bar).to_have_count(1)
    expect(bar).to_have_attribute("data-title", re.compile(r"GET http://127\.0\.0\.1:\d+/echo"))
    box = bar.bounding_box()
    track = page.locator(".tl-lane .tl-track").bounding_box()
    assert box is not None
    assert track is not None
    # The server takes 30 ms; the request, with the app's start-up work, up to ~100 ms.
    assert box["width"] > track["width"] * 0.15, (box, track)
    waits = page.locator("#flame-graph .fr", has_text=re.compile(r"^\[http\] GET 127\.0\.0\.1"))
    expect(waits).to_have_count(1)
    outgoing.shot(page, "request-calls")
    page.uncheck("#synthetic")
    expect(waits).to_have_count(0)
    page.check("#synthetic")


def test_screenshots_were_taken(dashboard: Dashboard) -> None:
    names = {p.name for p in dashboard.shots.glob("*.png")}
    assert "list.png" in names, names
    if os.environ.get("TIMEGLASS_SCREENSHOTS"):
        return
    # Keep the last run's pictures where a person can find them.
    keep = harness.REPO_ROOT / "target" / "screenshots"
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(dashboard.shots, keep)


def chart_sizes(page: Page) -> dict[str, list[int]]:
    """Each chart's canvas width and height, once the charts have drawn."""
    page.wait_for_selector("#charts[data-drawn=true]", timeout=10_000)
    sizes: dict[str, list[int]] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map(
            el => { const c = el.querySelector('canvas');
                    return [el.dataset.chart, c ? [c.width, c.height] : [0, 0]]; }))"""
    )
    return sizes


def test_report_page_scores_the_session(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url + "report")
    expect(page.locator("h1")).to_have_text("Report")
    scores = page.locator("table.score tbody tr")
    expect(scores).to_have_count(10)
    expect(page.locator("tr.score-error_rate_5xx .verdict")).to_have_text("fail")
    expect(page.locator("tr.score-coverage")).to_contain_text("run `timeglass probe`")
    expect(page.locator("tr.all")).to_contain_text(str(len(dashboard.app.sent)))
    sizes = chart_sizes(page)
    assert set(sizes) == {"latency", "rps", "in_flight", "cpu", "rss"}
    for name, (width, height) in sizes.items():
        assert width > 200, (name, sizes)
        assert height > 100, (name, sizes)
    series = httpx.get(dashboard.url + "api/v1/series", timeout=10).json()
    assert sum(series["rps"]) * series["bucket_seconds"] == len(dashboard.app.sent)
    assert series["cpu_percent"], "the app's CPU was sampled while it served"
    dashboard.shot(page, "report")


def test_report_filters_choose_the_session_and_time_range(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url + "report")
    page.fill("input[name=until]", "2000-01-01T00:00:00Z")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr.all td.num").first).to_have_text("0")
    expect(page.locator("select[name=session] option[selected]")).to_contain_text("#1")
    page.fill("input[name=since]", "not-a-time")
    page.click("form.filters button[type=submit]")
    expect(page.locator("main")).to_contain_text("is not a time")


def test_endpoint_page_charts_latency_and_rps(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url + "routes/GET/items/%7Bitem_id%7D")
    sizes = chart_sizes(page)
    for name in ("latency", "rps", "in_flight"):
        width, height = sizes[name]
        assert width > 200, (name, sizes)
        assert height > 100, (name, sizes)
    series_url = page.locator("#charts").get_attribute("data-series")
    assert series_url is not None
    assert "route=%2Fitems%2F%7Bitem_id%7D" in series_url
    series = httpx.get(dashboard.url.rstrip("/") + series_url, timeout=10).json()
    # Every request of the endpoint so far (earlier tests add to the app's
    # traffic), counted by the endpoints API's own query.
    routes = httpx.get(dashboard.url + "api/v1/routes", timeout=10).json()
    recorded = next(
        r["count"] for r in routes if (r["method"], r["route"]) == ("GET", "/items/{item_id}")
    )
    assert sum(series["rps"]) * series["bucket_seconds"] == recorded
    assert any(v is not None for v in series["p95_ms"])
    dashboard.shot(page, "endpoint-charts")


# Two sessions recorded into one store, with paths known by construction:
# the first ended, the second still recording under `--ui`.
FIRST_PATHS = ["/items/1", "/items/2", "/health"]
SECOND_PATHS = ["/items/3", "/items/4", "/sync-cpu"]


@dataclass
class TwoSessions:
    board: Dashboard
    ctx: TestContext
    # When the second session started, RFC 3339.
    second_start: str


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoSessions]:
    ctx = TestContext(tmp_path_factory.mktemp("two-sessions"))
    shots = Path(os.environ.get("TIMEGLASS_SCREENSHOTS") or ctx.tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with ctx.run_app() as first:
        for path in FIRST_PATHS:
            first.request("GET", path)
        deadline = time.monotonic() + 10
        while len(ctx.requests()) < len(FIRST_PATHS) and time.monotonic() < deadline:
            time.sleep(0.1)
    ui_port = harness.free_port()
    with ctx.run_app("--ui", "--ui-port", str(ui_port)) as app:
        app.process.wait_for_port(ui_port)
        for path in SECOND_PATHS:
            app.request("GET", path + ("?ms=10" if path == "/sync-cpu" else ""))
        board = Dashboard(app, f"http://127.0.0.1:{ui_port}/", shots)
        board.wait_stored(len(FIRST_PATHS) + len(SECOND_PATHS))
        sessions = sorted(ctx.sessions(), key=lambda s: s["id"])
        assert [s["id"] for s in sessions] == [1, 2], sessions
        yield TwoSessions(board, ctx, str(sessions[1]["started_at"]))


def test_list_picks_a_session_and_a_time_range(two_sessions: TwoSessions, page: Page) -> None:
    board = two_sessions.board
    page.goto(board.url)
    assert sorted(rows(page)) == sorted(FIRST_PATHS + SECOND_PATHS)
    board.shot(page, "list-two-sessions")
    # Choosing a session submits the form at once, as the other selects do.
    page.select_option("select[name=session]", "1")
    page.wait_for_url(re.compile(r"session=1"))
    assert rows(page) == list(reversed(FIRST_PATHS))
    page.select_option("select[name=session]", "2")
    page.wait_for_url(re.compile(r"session=2"))
    assert sorted(rows(page)) == sorted(SECOND_PATHS)
    # Every session, before the second one started: the first's requests.
    page.select_option("select[name=session]", "")
    page.wait_for_url(lambda url: "session=" not in url)
    page.fill("input[name=until]", two_sessions.second_start)
    page.press("input[name=until]", "Enter")
    page.wait_for_url(re.compile(r"until="))
    assert "session=" not in page.url, "an empty choice stays out of the address"
    assert rows(page) == list(reversed(FIRST_PATHS))
    page.goto(board.url + "?since=" + two_sessions.second_start + "&q=items")
    assert sorted(rows(page)) == ["/items/3", "/items/4"]
    expect(page.locator("input[name=since]")).to_have_value(two_sessions.second_start)
    board.shot(page, "list-filtered")
    # The CLI's list agrees with the page's.
    cli = two_sessions.ctx.cli_ok(
        "requests", "--db", str(two_sessions.ctx.db), "--json", "--session", "1"
    )
    assert [r["path"] for r in json.loads(cli.stdout)] == list(reversed(FIRST_PATHS))


def test_list_paging_keeps_the_session(two_sessions: TwoSessions, page: Page) -> None:
    page.goto(two_sessions.board.url + "?session=1&limit=2")
    assert rows(page) == ["/health", "/items/2"]
    page.locator("nav.pager a", has_text="Next page").click()
    page.wait_for_url(re.compile(r"before="))
    assert "session=1" in page.url
    assert rows(page) == ["/items/1"]
    expect(page.locator("select[name=session] option[selected]")).to_contain_text("#1")


def test_live_rows_of_another_session_are_not_appended(
    two_sessions: TwoSessions, browser: Browser
) -> None:
    board = two_sessions.board
    contexts = [browser.new_context(viewport={"width": 1400, "height": 900}) for _ in range(2)]
    first, second = (c.new_page() for c in contexts)
    first.goto(board.url + "?session=1")
    second.goto(board.url + "?session=2")
    expect(first.locator("#live.connected")).to_be_visible()
    expect(second.locator("#live.connected")).to_be_visible()
    # A route of its own in session 2, so the endpoint tests' counts stand.
    board.app.request("GET", "/health")
    # It reaches the list of its own session, so the other stream had it too.
    expect(second.locator("tbody.rows td.path", has_text="/health")).to_be_visible(timeout=10_000)
    time.sleep(1.0)  # three more looks at the store by the first page's stream
    assert rows(first) == list(reversed(FIRST_PATHS))
    for c in contexts:
        c.close()


def ms_text(value: float) -> str:
    """`html::ms` of the server: how tiles show milliseconds."""
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def test_endpoint_tiles_follow_the_session(two_sessions: TwoSessions, page: Page) -> None:
    board = two_sessions.board
    route = "routes/GET/items/%7Bitem_id%7D"
    for session, paths in ((1, ["/items/1", "/items/2"]), (2, ["/items/3", "/items/4"])):
        page.goto(f"{board.url}{route}?session={session}")
        stats = httpx.get(
            f"{board.url}api/v1/stats",
            params={"method": "GET", "route": "/items/{item_id}", "session": str(session)},
            timeout=10,
        ).json()
        endpoint = stats["endpoints"][0]
        tiles = dict(
            zip(
                # Text as written: the labels are upper-cased by CSS only.
                page.locator(".tiles .tile .label").all_text_contents(),
                page.locator(".tiles .tile .value").all_text_contents(),
                strict=True,
            )
        )
        assert tiles["Requests"] == str(endpoint["requests"]) == str(len(paths)), tiles
        latency = endpoint["latency_ms"]
        for label, name in (("p50", "p50"), ("p95", "p95"), ("Max", "max"), ("Average", "avg")):
            assert tiles[label] == ms_text(latency[name]), (label, tiles, latency)
        slowest = page.locator("section.card", has_text="Slowest requests")
        assert sorted(slowest.locator("td.path").all_inner_texts()) == paths
    board.shot(page, "endpoint-session-2")


def test_the_request_graph_opens_where_the_app_code_begins(
    dashboard: Dashboard, page: Page
) -> None:
    page.goto(f"{dashboard.url}requests/{dashboard.request_id('GET', '/cpu')}")
    graph = page.locator("#flame-graph")
    expect(graph.locator(".fr").first).to_be_visible()
    width = graph.bounding_box()
    assert width is not None
    # The top row is the app's handler, at full width: the ~20 frames of
    # uvicorn, asyncio, Starlette and FastAPI above it are not drawn.
    top = graph.locator(".fr").first
    expect(top).to_have_text("cpu")
    top_box = top.bounding_box()
    assert top_box is not None
    assert top_box["y"] - width["y"] < 2
    assert top_box["width"] > width["width"] * 0.98
    expect(graph.locator(".fr", has_text="_run_module_as_main")).to_have_count(0)
    expect(page.locator("#zoom-path")).to_contain_text("library frames")
    dashboard.shot(page, "request-focused")

    # One click back to the whole stack, root frames first.
    page.click("#full-stack")
    expect(page.locator("#zoom-path")).to_have_text("")
    root = graph.locator(".fr", has_text=re.compile(r"^_run_module_as_main$"))
    expect(root).to_have_count(1)
    root_box = root.bounding_box()
    assert root_box is not None
    assert root_box["y"] - width["y"] < ROW_PX * 2
    expect(page.locator("#reset")).to_be_disabled()
    expect(graph.locator(".fr", has_text=re.compile(r"^cpu$"))).to_have_count(1)


def test_the_endpoint_graph_opens_where_the_app_code_begins(
    dashboard: Dashboard, page: Page
) -> None:
    # An `async def` endpoint: all its stacks share the event loop's frames.
    page.goto(dashboard.url + "routes/GET/cpu")
    expect(page.locator("#zoom-path #full-stack")).to_be_visible()
    expect(page.locator("#flame-graph .fr").first).to_have_text("cpu")
    expect(page.locator("#flame-graph .fr", has_text="_run_module_as_main")).to_have_count(0)
    page.click("#full-stack")
    expect(page.locator("#flame-graph .fr", has_text="_run_module_as_main")).not_to_have_count(0)
    # A plain `def` one splits at the root between the worker thread that runs
    # it and the event loop that answers for it: it opens on the worker's
    # chain, where the handler is (render/src/tree.rs `focus`).
    page.goto(dashboard.url + "routes/GET/sync-cpu")
    expect(page.locator("#zoom-path #full-stack")).to_be_visible()
    expect(page.locator("#flame-graph .fr").first).to_have_text("sync_cpu")
    expect(page.locator("#flame-graph .fr", has_text="_run_module_as_main")).to_have_count(0)
    dashboard.shot(page, "endpoint-sync-focused")
    page.click("#full-stack")
    expect(page.locator("#flame-graph .fr", has_text="_run_module_as_main")).not_to_have_count(0)
    expect(page.locator("#flame-graph .fr", has_text="Thread._bootstrap")).not_to_have_count(0)


# The flame graph's row height (ROW in flamegraph-templates/flame.js).
ROW_PX = 19

# Text that overlaps other text, or leaves its box, on the timeline and in the
# tables; each problem as one line.
OVERLAPS_JS = """() => {
  const problems = [];
  const box = el => el.getBoundingClientRect();
  const textBox = el => {
    const r = document.createRange();
    r.selectNodeContents(el);
    return r.getBoundingClientRect();
  };
  const hit = (a, b) =>
    a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const inside = (a, b) =>
    a.left >= b.left - 1 && a.right <= b.right + 1
    && a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
  const shown = el => box(el).width > 0 && el.textContent.trim() !== "";
  const name = el => (el.className || el.tagName) + ' "' + el.textContent.trim().slice(0, 40) + '"';
  const pairs = (els, what) => els.forEach((a, i) => els.slice(i + 1).forEach(b => {
    if (hit(box(a), box(b))) problems.push(what + " overlap: " + name(a) + " / " + name(b));
  }));
  pairs([...document.querySelectorAll(".timeline .tl-row")], "timeline rows");
  pairs([...document.querySelectorAll(".timeline .tl-axis span")].filter(shown), "timeline ticks");
  document.querySelectorAll(".timeline .tl-label, .timeline .tl-dur").forEach(el => {
    if (!shown(el)) return;
    const row = box(el.closest(".tl-row"));
    if (!inside(textBox(el), row)) problems.push("leaves its row: " + name(el));
    if (el.scrollWidth > el.clientWidth + 1) problems.push("cut off: " + name(el));
  });
  document.querySelectorAll("table th, table td").forEach(cell => {
    if (!shown(cell)) return;
    if (getComputedStyle(cell).overflow.includes("hidden")) return;  // ellipsis on purpose
    if (!inside(textBox(cell), box(cell))) problems.push("leaves its cell: " + name(cell));
  });
  return problems;
}"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_no_text_overlaps_on_any_page(
    two_sessions: TwoSessions, browser: Browser, width: int
) -> None:
    board = two_sessions.board
    first = board.stored()[0]
    pages = {
        "list": "",
        "request": f"requests/{first['id']}",
        "endpoint": "routes/GET/items/%7Bitem_id%7D",
        "report": "report",
        "compare": "compare",
    }
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        for name, path in pages.items():
            page.goto(board.url + path)
            page.wait_for_load_state("networkidle")
            problems = page.evaluate(OVERLAPS_JS)
            assert problems == [], f"{name} page at {width} px: {problems}"
            if name == "request":
                expect(page.locator(".timeline .tl-label", has_text="middleware")).to_be_visible()
            if width == 1280:
                scroll = page.evaluate(
                    "() => [document.documentElement.scrollWidth,"
                    " document.documentElement.clientWidth]"
                )
                assert scroll[0] <= scroll[1], f"{name} page scrolls sideways at 1280 px: {scroll}"
            board.shot(page, f"layout-{name}-{width}")
    finally:
        context.close()
