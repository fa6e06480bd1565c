"""`timeglass probe` against a real app under `timeglass run`: per operation, the
answers known by construction (fixtures/probe_app.py), the recorded request of the
first 5xx, the safety rules, the timeout, exit codes and the stored rows; and bad
input to the probe itself, each one line and exit 2."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from fixtures import harness
from tests.context import CliResult, RunningApp, TestContext, assert_clean_error

pytestmark = pytest.mark.e2e

APP = "fixtures.probe_app:app"
TIMEOUT_S = 1.0

# (method, route) -> (sent, 4xx, accepted, 5xx, hung), by construction.
EXPECTED = {
    ("GET", "/convert"): (2, 1, 0, 1, 0),
    ("GET", "/health"): (0, 0, 0, 0, 0),
    ("POST", "/items"): (0, 0, 0, 0, 0),
    ("DELETE", "/items/{item_id}"): (0, 0, 0, 0, 0),
    ("GET", "/items/{item_id}"): (5, 5, 0, 0, 0),
    ("GET", "/jobs/{job_id}"): (4, 3, 0, 0, 1),
    ("GET", "/orders/{order_id}"): (2, 1, 0, 1, 0),
    ("GET", "/search"): (7, 6, 1, 0, 0),
    ("GET", "/users/{user_id}"): (2, 1, 1, 0, 0),
}
UNSAFE = {
    ("POST", "/items"): (12, 11, 1, 0, 0),
    ("DELETE", "/items/{item_id}"): (4, 4, 0, 0, 0),
}


@dataclass(frozen=True)
class Probed:
    ctx: TestContext
    url: str
    default: CliResult
    unsafe: CliResult
    cut: CliResult
    good: CliResult
    table: CliResult
    session: int

    def json(self, result: CliResult) -> dict[str, Any]:
        out = json.loads(result.stdout)
        assert isinstance(out, dict), result.describe()
        return out


def probe(ctx: TestContext, url: str, *args: str) -> CliResult:
    return ctx.cli("probe", "--db", str(ctx.db), "--url", url, *args, timeout=120)


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    ctx = TestContext(tmp_path_factory.mktemp("probe"))
    with ctx.run_app(app=APP) as app:
        url = str(app.client.base_url).rstrip("/")
        wait_recording(ctx, app)
        common = ("--timeout", f"{TIMEOUT_S}s", "--format", "json")
        default = probe(ctx, url, *common)
        unsafe = probe(ctx, url, "--include-unsafe", *common)
        cut = probe(ctx, url, "--max-requests", "3", *common)
        good = probe(ctx, url, "--openapi", "/openapi-good.json", *common)
        table = probe(ctx, url, "--openapi", "/openapi-good.json")
        session = ctx.sessions()[0]["id"]
        yield Probed(ctx, url, default, unsafe, cut, good, table, session)


def wait_recording(ctx: TestContext, app: RunningApp) -> None:
    """One request recorded before probing: the app's process has joined the session,
    which is how the probe finds the live session."""
    assert app.request("GET", "/health").status_code == 200
    deadline = time.monotonic() + 10
    while not any(row["path"] == "/health" for row in ctx.requests()):
        assert time.monotonic() < deadline, "the /health request was never recorded"
        time.sleep(0.1)


def counts(op: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (op["sent"], op["rejected_4xx"], op["accepted"], op["failed_5xx"], op["hung"])


def by_operation(out: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(op["method"], op["route"]): op for op in out["operations"]}


def test_every_operation_gets_the_answers_known_by_construction(probed: Probed) -> None:
    assert probed.default.returncode == 1, probed.default.describe()
    out = probed.json(probed.default)
    ops = by_operation(out)
    assert list(ops) == sorted(EXPECTED, key=lambda k: (k[1], k[0]))
    assert {k: counts(op) for k, op in ops.items()} == EXPECTED
    assert out["totals"] == {
        "sent": 22,
        "rejected_4xx": 17,
        "accepted": 2,
        "failed_5xx": 2,
        "hung": 1,
        "connection_errors": 0,
    }
    assert not out["truncated"]
    assert out["session"] == probed.session
    skipped = {k: op["skipped"] for k, op in ops.items() if op["skipped"]}
    assert skipped == {
        ("GET", "/health"): "nothing to break",
        ("POST", "/items"): "unsafe method",
        ("DELETE", "/items/{item_id}"): "unsafe method",
    }
    search = [(r["kind"], r["target"], r["status"]) for r in ops[("GET", "/search")]["results"]]
    assert ("unusual_text", "query:q", 200) in search
    users = ops[("GET", "/users/{user_id}")]["results"]
    assert [(r["kind"], r["status"]) for r in users] == [("wrong_type", 422), ("unknown_id", 200)]


def test_the_first_5xx_names_the_recorded_request_that_failed(probed: Probed) -> None:
    ops = by_operation(probed.json(probed.default))
    for key, path in [
        (("GET", "/convert"), "/convert"),
        (("GET", "/orders/{order_id}"), "/orders/987654321"),
    ]:
        first = ops[key]["first_5xx"]
        assert first["status"] == 500, first
        assert isinstance(first["request_id"], int), first
        shown = probed.ctx.show(first["request_id"])
        assert (shown["method"], shown["path"], shown["status"]) == ("GET", path, 500), shown
    assert ops[("GET", "/convert")]["first_5xx"]["kind"] == "unusual_text"
    assert ops[("GET", "/orders/{order_id}")]["first_5xx"]["kind"] == "unknown_id"


def test_every_answered_request_is_matched_to_its_own_recording(probed: Probed) -> None:
    out = probed.json(probed.default)
    results = [r for op in out["operations"] for r in op["results"]]
    answered = [r for r in results if r["status"] is not None]
    assert len(answered) == 21
    ids = [r["request_id"] for r in answered]
    assert all(isinstance(i, int) for i in ids), answered
    assert len(set(ids)) == len(ids)
    recorded = {row["id"]: row for row in probed.ctx.requests()}
    for r in answered:
        row = recorded[r["request_id"]]
        assert row["status"] == r["status"], (r, row)
        assert unquote(urlsplit(r["url"]).path) == row["path"], (r, row)


def test_the_hanging_endpoint_times_out_within_bounds(probed: Probed) -> None:
    jobs = by_operation(probed.json(probed.default))[("GET", "/jobs/{job_id}")]
    hung = [r for r in jobs["results"] if r["outcome"] == "hung"]
    assert [(r["kind"], r["url"].rsplit("/", 1)[1]) for r in hung] == [("unknown_id", "5000")]
    assert hung[0]["status"] is None
    assert TIMEOUT_S * 1000 * 0.9 <= hung[0]["elapsed_ms"] <= TIMEOUT_S * 1000 * 2, hung
    assert "no answer within 1 s" in hung[0]["error"]
    # One hang, 22 requests and the wait for the recorder: seconds, not the app's 3 s hang
    # per request.
    assert probed.default.seconds < 12, probed.default.describe()


def test_unsafe_methods_are_sent_only_with_include_unsafe(probed: Probed) -> None:
    ops = by_operation(probed.json(probed.unsafe))
    assert {k: counts(ops[k]) for k in UNSAFE} == UNSAFE
    assert ops[("POST", "/items")]["skipped"] is None
    posted = [(r["kind"], r["target"]) for r in ops[("POST", "/items")]["results"]]
    assert posted[:4] == [
        ("missing_body", "body"),
        ("invalid_json", "body"),
        ("wrong_content_type", "body"),
        ("oversized_body", "body"),
    ]
    assert probed.unsafe.returncode == 1, probed.unsafe.describe()


def test_max_requests_cuts_the_run_in_order_and_says_so(probed: Probed) -> None:
    out = probed.json(probed.cut)
    assert out["truncated"]
    assert out["totals"]["sent"] == 3
    ops = by_operation(out)
    assert ops[("GET", "/convert")]["sent"] == 2
    assert ops[("GET", "/items/{item_id}")]["sent"] == 1
    for key in [("GET", "/jobs/{job_id}"), ("GET", "/search"), ("GET", "/users/{user_id}")]:
        assert (ops[key]["sent"], ops[key]["skipped"]) == (0, "max requests reached")
    assert probed.cut.returncode == 1, "the /convert 5xx is among the 3"


def test_an_app_that_refuses_all_bad_input_exits_0(probed: Probed) -> None:
    assert probed.good.returncode == 0, probed.good.describe()
    out = probed.json(probed.good)
    assert out["totals"]["sent"] == 12
    assert out["totals"]["rejected_4xx"] == 11
    assert out["totals"]["accepted"] == 1  # /search's unusual q is a fine query
    table = probed.table
    assert table.returncode == 0, table.describe()
    lines = table.stdout.splitlines()
    assert lines[1].split() == [
        "METHOD",
        "ROUTE",
        "SENT",
        "4XX",
        "ACCEPTED",
        "5XX",
        "HUNG",
        "CONN",
        "FIRST",
        "5XX",
    ]
    assert lines[2].split() == ["GET", "/items/{item_id}", "5", "5", "0", "0", "0", "0"]
    assert lines[3].split() == ["GET", "/search", "7", "6", "1", "0", "0", "0"]
    assert "No 5xx and no hang." in table.stdout
    assert f"of session {probed.session}" in table.stdout


def test_runs_are_stored_with_the_session(probed: Probed) -> None:
    ids = [probed.json(r)["run_id"] for r in (probed.default, probed.unsafe, probed.cut)]
    with sqlite3.connect(probed.ctx.db) as conn:
        runs = conn.execute(
            "SELECT id, session_id, sent, truncated, operations FROM probe_runs ORDER BY id"
        ).fetchall()
        assert [r[0] for r in runs][:3] == ids
        assert [r[1:] for r in runs[:3]] == [
            (probed.session, 22, 0, 9),
            (probed.session, 38, 0, 9),
            (probed.session, 3, 1, 9),
        ]
        outcomes = dict(
            conn.execute(
                "SELECT outcome, count(*) FROM probe_results WHERE run_id = ? GROUP BY outcome",
                (ids[0],),
            ).fetchall()
        )
        assert outcomes == {"rejected": 17, "accepted": 2, "failed": 2, "hung": 1}
        failed = conn.execute(
            "SELECT route, kind, target, status, request_id FROM probe_results"
            " WHERE run_id = ? AND outcome = 'failed' ORDER BY seq",
            (ids[0],),
        ).fetchall()
        assert [f[:4] for f in failed] == [
            ("/convert", "unusual_text", "query:q", 500),
            ("/orders/{order_id}", "unknown_id", "path:order_id", 500),
        ]
        assert all(isinstance(f[4], int) for f in failed)
        skipped = conn.execute(
            "SELECT method, route, cases, skipped FROM probe_operations"
            " WHERE run_id = ? AND skipped IS NOT NULL ORDER BY route, method",
            (ids[0],),
        ).fetchall()
        assert skipped == [
            ("GET", "/health", 0, "nothing to break"),
            ("POST", "/items", 0, "unsafe method"),
            ("DELETE", "/items/{item_id}", 0, "unsafe method"),
        ]


def one_line_error(result: CliResult, *mentions: str) -> None:
    assert result.returncode == 2, result.describe()
    assert_clean_error(result, *mentions)
    assert len(result.stderr.strip().splitlines()) == 1, result.describe()
    assert result.stdout == "", result.describe()


def test_a_url_off_this_machine_is_refused_without_allow_remote(ctx: TestContext) -> None:
    result = probe(ctx, "http://example.invalid:8000")
    one_line_error(result, "not a loopback address", "--allow-remote")
    assert not ctx.db.exists()


def test_an_unreachable_url_is_one_line(ctx: TestContext) -> None:
    url = f"http://127.0.0.1:{harness.free_port()}"
    result = probe(ctx, url)
    one_line_error(result, "could not reach", url)
    assert result.seconds < 10, result.describe()


def test_json_that_is_not_openapi_is_one_line(probed: Probed) -> None:
    result = probe(probed.ctx, probed.url, "--openapi", "/items/1")
    one_line_error(result, "not an OpenAPI 3.x document", "openapi")


def test_a_missing_schema_is_one_line(probed: Probed) -> None:
    result = probe(probed.ctx, probed.url, "--openapi", "/no-such-schema.json")
    one_line_error(result, "answered 404", "--openapi")


@pytest.mark.parametrize("value", ["0", "-3", "abc", "99999999999999999999"])
def test_a_bad_max_requests_is_refused(ctx: TestContext, value: str) -> None:
    result = probe(ctx, "http://127.0.0.1:9", f"--max-requests={value}")
    assert result.returncode == 2, result.describe()
    assert_clean_error(result, "--max-requests", value)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("timeglass: error: "), result.describe()


@pytest.mark.parametrize("value", ["0s", "soon", "-1"])
def test_a_bad_timeout_is_refused(ctx: TestContext, value: str) -> None:
    result = probe(ctx, "http://127.0.0.1:9", f"--timeout={value}")
    assert result.returncode == 2, result.describe()
    assert_clean_error(result, "--timeout", value)


def test_without_request_context_requests_are_matched_by_path_and_time(
    ctx: TestContext,
) -> None:
    """`TIMEGLASS_CONTEXT=0` records no headers, so no probe tag: method, path and
    start time still find each request, one at a time as the probe sends them."""
    with ctx.run_app(app=APP, env={"TIMEGLASS_CONTEXT": "0"}) as app:
        wait_recording(ctx, app)
        url = str(app.client.base_url).rstrip("/")
        result = probe(ctx, url, "--openapi", "/openapi-good.json", "--format", "json")
    assert result.returncode == 0, result.describe()
    out = json.loads(result.stdout)
    results = [r for op in out["operations"] for r in op["results"]]
    assert len(results) == 12
    recorded = {row["id"]: row for row in ctx.requests()}
    for r in results:
        assert isinstance(r["request_id"], int), r
        assert unquote(urlsplit(r["url"]).path) == recorded[r["request_id"]]["path"], r


def test_the_report_scores_bad_input_and_coverage_from_the_probe(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Ordinary traffic to two operations, then a probe: the report's score
    for bad input is the probe's 4xx share, and coverage counts the two
    operations, not the ones only the probe reached."""
    ctx = TestContext(tmp_path_factory.mktemp("probe-report"))
    with ctx.run_app(app=APP) as app:
        url = str(app.client.base_url).rstrip("/")
        wait_recording(ctx, app)
        for path in ("/health", "/items/1"):
            assert app.client.get(path).status_code == 200, path
        probed = probe(ctx, url, "--timeout", f"{TIMEOUT_S}s", "--format", "json")
        assert probed.returncode == 1, probed.describe()
        totals = json.loads(probed.stdout)["totals"]
    report = ctx.cli("report", "--db", str(ctx.db), "--format", "json")
    out = json.loads(report.stdout)
    scores = {s["benchmark"]: s for s in out["scores"]}
    assert scores["bad_input_4xx"]["value"] == pytest.approx(
        totals["rejected_4xx"] / totals["sent"]
    ), out
    assert scores["bad_input_4xx"]["status"] == "fail", out
    assert scores["coverage"]["value"] == pytest.approx(2 / len(EXPECTED)), out
    never = {(e["method"], e["route"]) for e in out["coverage"]["never_exercised"]}
    assert never == set(EXPECTED) - {("GET", "/health"), ("GET", "/items/{item_id}")}, out
    assert report.returncode == 1, "a failing score fails the report"
