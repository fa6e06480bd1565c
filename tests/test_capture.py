"""SQL statements and outgoing HTTP calls, captured from a real app under `timeglass run`.

One run of fixtures/capture_app.py against a real SQLite file and a real HTTP server in this
process; each test reads back what the store holds for one kind of request.
"""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fixtures import harness
from tests.context import FoldedStack, RunningApp, TestContext, parse_folded

pytestmark = [pytest.mark.e2e, pytest.mark.core]

APP = "fixtures.capture_app:app"
TAGS = [f"tag{i}" for i in range(6)]


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # Slow enough that the wait weighs in the flame graph (20 samples at 1 kHz).
        time.sleep(0.02)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@dataclass(frozen=True)
class Captured:
    ctx: TestContext
    answers: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    stderr: str

    def row(self, path: str) -> dict[str, Any]:
        found = [r for r in self.rows if r["path"] == path]
        assert len(found) == 1, f"{path}: {found}"
        return found[0]

    def show(self, path: str) -> dict[str, Any]:
        return self.ctx.show(self.row(path)["id"])

    def folded(self, path: str) -> list[FoldedStack]:
        return self.ctx.folded(self.row(path)["id"])


def _get(app: RunningApp, path: str, answers: dict[str, dict[str, Any]]) -> None:
    response = app.request("GET", path)
    assert response.status_code == 200, (path, response.text)
    answers[path] = response.json()


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory, echo_server: str) -> Captured:
    ctx = TestContext(tmp_path_factory.mktemp("capture"))
    env = {"CAPTURE_SQLITE": str(ctx.tmp / "app.db"), "CAPTURE_HTTP": echo_server}
    answers: dict[str, dict[str, Any]] = {}
    with ctx.run_app(app=APP, env=env) as app:
        for path in (
            "/sqlite/n-plus-one",
            "/sqlite/error",
            "/sqlite/huge",
            "/sqlite/odd-text",
            "/http/httpx",
            "/http/httpx-async",
            "/http/requests",
            f"/http/refused?port={harness.free_port()}",
            "/mixed/sync",
            "/mixed/async",
        ):
            _get(app, path, answers)
        # Concurrent async requests on one event loop, each with its own statements.
        with ThreadPoolExecutor(len(TAGS)) as pool:
            list(pool.map(lambda t: _get(app, f"/async/tag/{t}", answers), TAGS))
        stderr_path = app.process.stderr_path
    return Captured(ctx, answers, ctx.requests(), stderr_path.read_text(errors="replace"))


def test_statements_are_listed_in_order_with_caller_params_and_rows(captured: Captured) -> None:
    shown = captured.show("/sqlite/n-plus-one")
    queries = shown["queries"]
    assert [q["sql"] for q in queries[:6]] == ["SELECT name FROM items WHERE id = ?"] * 6
    assert [q["params"] for q in queries[:6]] == [f"({i},)" for i in range(6)]
    slow, update = queries[6], queries[7]
    assert slow["sql"].startswith("WITH RECURSIVE"), slow
    assert update["sql"].startswith("UPDATE items"), update
    assert update["rows"] == captured.answers["/sqlite/n-plus-one"]["changed"] == 3
    starts = [q["start_ms"] for q in queries]
    assert starts == sorted(starts), starts
    assert starts[0] >= 0, starts
    for q in queries:
        assert q["driver"] == "sqlite3", q
        assert q["error"] is None, q
        assert q["duration_ms"] >= 0, q
    first = queries[0]["caller"][0]
    assert (first["name"], first["short"]) == (
        "list_items_one_by_one",
        "fixtures/capture_app.py",
    ), first
    assert queries[0]["caller"][1]["name"] == "sqlite_n_plus_one"
    assert slow["caller"][0]["name"] == "sqlite_n_plus_one"


def test_requests_list_counts_db_time_and_flags_n_plus_one(captured: Captured) -> None:
    row = captured.row("/sqlite/n-plus-one")
    assert row["queries"] == 8
    assert row["n_plus_one"] is True
    repeated = row["repeated"]
    assert repeated["count"] == 6
    assert repeated["normalized"] == "SELECT name FROM items WHERE id = ?"
    assert repeated["caller"].startswith("fixtures/capture_app.py:"), repeated
    assert repeated["caller"].endswith("in list_items_one_by_one"), repeated
    slow_ms = captured.show("/sqlite/n-plus-one")["queries"][6]["duration_ms"]
    assert slow_ms <= row["db_ms"] <= row["duration_ms"], row
    assert captured.row("/sqlite/error")["n_plus_one"] is False
    table = captured.ctx.cli_ok("requests", "--db", str(captured.ctx.db)).stdout
    assert "QUERIES" in table, table
    assert "6x" in table, table


def test_waiting_on_a_statement_shows_under_the_line_that_ran_it(captured: Captured) -> None:
    row = captured.row("/sqlite/n-plus-one")
    slow = captured.show("/sqlite/n-plus-one")["queries"][6]
    waits = [s for s in captured.folded("/sqlite/n-plus-one") if s.frames[-1].startswith("[sql]")]
    slow_waits = [s for s in waits if s.frames[-1].startswith("[sql] WITH RECURSIVE")]
    assert len(slow_waits) == 1, "\n".join(s.text() for s in waits)
    wait = slow_waits[0]
    assert wait.frames[-2].startswith("sqlite_n_plus_one (fixtures/capture_app.py:"), wait.text()
    # Weighed in samples at the session's rate (1 kHz): one per millisecond waited.
    expected = slow["duration_ms"]
    assert abs(wait.count - expected) <= 1 + 0.01 * expected, (wait.count, expected)
    # Samples include what the request did off the GIL ([blocked], [await ...]),
    # never the timed waits.
    assert row["samples"] == sum(
        s.count
        for s in captured.folded("/sqlite/n-plus-one")
        if not s.frames[-1].startswith(("[sql]", "[http]"))
    )
    # The waits can be left out: then only what was sampled remains.
    result = captured.ctx.cli_ok(
        "export", "--db", str(captured.ctx.db), "--request", str(row["id"]), "--sampled-only"
    )
    sampled = parse_folded(result.stdout)
    assert not [s for s in sampled if s.frames[-1].startswith(("[sql]", "[http]"))]
    assert sum(s.count for s in sampled) == row["samples"]


@pytest.mark.parametrize("path", ["/mixed/sync", "/mixed/async"])
def test_waits_merge_with_the_sampled_stacks_of_the_same_code(
    captured: Captured, path: str
) -> None:
    """The endpoint burns CPU, then waits on a query: in the flame graph both hang under the
    same frames, so the wait's stack names every outer frame exactly as the sampler does."""
    endpoint = "mixed_" + path.rsplit("/", 1)[1]
    stacks = captured.folded(path)
    dump = "\n".join(s.text() for s in stacks)
    waits = [s for s in stacks if s.frames[-1].startswith("[sql] WITH RECURSIVE")]
    burns = [s for s in stacks if any(f.startswith("burn_before_query (") for f in s.frames)]
    assert len(waits) == 1, dump
    assert burns, dump
    wait = waits[0]
    at = next(i for i, f in enumerate(wait.frames) if f.startswith(f"{endpoint} ("))
    assert any(b.frames[:at] == wait.frames[:at] for b in burns), dump
    assert any(b.frames[at].startswith(f"{endpoint} (") for b in burns), dump


def test_a_failing_statement_is_recorded_and_the_app_gets_its_exception(
    captured: Captured,
) -> None:
    answer = captured.answers["/sqlite/error"]
    assert answer == {
        "raised": "OperationalError",
        "message": "no such table: no_such_table",
        "exact": True,
    }
    (query,) = captured.show("/sqlite/error")["queries"]
    assert query["error"] == "OperationalError: no such table: no_such_table"
    assert query["rows"] is None


def test_a_huge_statement_is_stored_cut_with_its_full_length(captured: Captured) -> None:
    length = captured.answers["/sqlite/huge"]["length"]
    assert length > 1_000_000
    (query,) = captured.show("/sqlite/huge")["queries"]
    assert query["sql_length"] == length
    assert 8000 <= len(query["sql"].encode()) <= 8192
    assert query["sql"].startswith("SELECT count(*) FROM items WHERE id IN (0,1,2,")
    assert query["normalized"].startswith("SELECT count(*) FROM items WHERE id IN ("), query


def test_non_utf8_statements_and_parameters_never_break_anything(captured: Captured) -> None:
    answer = captured.answers["/sqlite/odd-text"]
    # CPython 3.10's sqlite3 raises its own Warning for the lone surrogate.
    assert answer["raised"] in ("UnicodeEncodeError", "Warning"), answer
    assert answer == {"length": 4, "raised": answer["raised"]}
    first, second = captured.show("/sqlite/odd-text")["queries"]
    assert first["params"] == r"(b'\xff\xfe\x00\x80',)", first
    assert first["rows"] is None
    assert first["error"] is None
    assert second["error"].startswith(answer["raised"]), second
    # The lone surrogate comes out replaced, the rest as written.
    assert second["sql"].startswith("SELECT '\ufffd"), second
    assert second["sql_length"] == 10, second


def test_outgoing_calls_are_captured_with_secrets_redacted(
    captured: Captured, echo_server: str
) -> None:
    host = echo_server.removeprefix("http://")
    expected = {
        "/http/httpx": ("httpx", "/echo?api_key=REDACTED&q=shoes", "call_with_httpx"),
        "/http/httpx-async": ("httpx", "/echo?token=REDACTED&q=1", "call_with_httpx_async"),
        "/http/requests": ("requests", "/echo?password=REDACTED&page=2", "call_with_requests"),
    }
    for path, (library, url, caller) in expected.items():
        shown = captured.show(path)
        (call,) = shown["calls"]
        assert call["library"] == library, call
        assert (call["method"], call["url"], call["status"]) == (
            "GET",
            f"{echo_server}{url}",
            200,
        )
        assert call["error"] is None, call
        assert call["duration_ms"] > 0, call
        assert call["caller"][0]["name"] == caller, call
        assert shown["calls"]
        assert captured.row(path)["http_ms"] > 0
        assert "hunter2" not in str(shown)
    for path, (_, _, caller) in expected.items():
        stacks = captured.folded(path)
        waits = [s for s in stacks if s.frames[-1] == f"[http] GET {host}"]
        assert len(waits) == 1, "\n".join(s.text() for s in stacks)
        # Under the client's own frames, under the app's line that called it.
        assert any(f.startswith(f"{caller} (fixtures/capture_app.py:") for f in waits[0].frames)
        assert 15 <= waits[0].count <= 1000, waits


def test_a_refused_call_is_recorded_with_its_error(captured: Captured) -> None:
    assert captured.answers[next(p for p in captured.answers if "refused" in p)] == {
        "raised": "ConnectError"
    }
    row = next(r for r in captured.rows if r["path"] == "/http/refused")
    (call,) = captured.ctx.show(row["id"])["calls"]
    assert call["status"] is None, call
    assert call["error"].startswith("ConnectError"), call


def test_concurrent_async_requests_each_get_exactly_their_own_statements(
    captured: Captured,
) -> None:
    for tag in TAGS:
        assert captured.answers[f"/async/tag/{tag}"]["seen"] == [
            f"{tag}-0",
            f"{tag}-1",
            f"{tag}-2",
            "3",
        ]
        queries = captured.show(f"/async/tag/{tag}")["queries"]
        assert [q["driver"] for q in queries] == ["aiosqlite"] * 4, queries
        assert [q["params"] for q in queries] == [
            f"('{tag}', 0)",
            f"('{tag}', 1)",
            f"('{tag}', 2)",
            "(3,)",
        ]
        assert queries[-1]["rows"] == 3
        assert queries[0]["caller"][0]["name"] == "tagged_queries"
    starts = sorted(captured.row(f"/async/tag/{t}")["start"] for t in TAGS)
    assert starts, "the concurrent requests were not recorded"


def test_no_sql_params_and_an_unknown_driver_version(tmp_path: Path) -> None:
    """`--no-sql-params` stores statements without values; a driver version TimeGlass does
    not know is left alone with one warning, and the app works as before."""
    ctx = TestContext(tmp_path)
    # A real aiosqlite whose version says 99.0, first on the app's path.
    shadow = tmp_path / "shadow"
    source = Path(str(__import__("aiosqlite").__file__)).parent
    shutil.copytree(source, shadow / "aiosqlite")
    version = shadow / "aiosqlite" / "__version__.py"
    version.write_text('__version__ = "99.0"\n')
    env = {"CAPTURE_SQLITE": str(tmp_path / "app.db"), "PYTHONPATH": str(shadow)}
    with ctx.run_app("--no-sql-params", app=APP, env=env) as app:
        assert app.request("GET", "/sqlite/n-plus-one?n=2").status_code == 200
        response = app.request("GET", "/async/tag/solo")
        assert response.json() == {"seen": ["solo-0", "solo-1", "solo-2", "3"]}
        time.sleep(0.1)
        stderr = app.process.stderr_path
    warnings = [line for line in stderr.read_text().splitlines() if "aiosqlite 99.0" in line]
    assert len(warnings) == 1, stderr.read_text()
    assert warnings[0].startswith("timeglass: warning:"), warnings
    rows = {r["path"]: r for r in ctx.requests()}
    queries = ctx.show(rows["/sqlite/n-plus-one"]["id"])["queries"]
    assert len(queries) == 4, queries
    assert all(q["params"] is None for q in queries), queries
    assert rows["/async/tag/solo"]["queries"] == 0
