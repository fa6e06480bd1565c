"""`timeglass report` over a real uvicorn app under `timeglass run`: its
figures equal those computed here from `timeglass requests --json` with the
documented percentile definition (nearest rank), and bad input is one line
and exit 2."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.context import TestContext, assert_clean_error

APP = "fixtures.report_app:app"

# (path, times): known latencies and statuses.
TRAFFIC = [
    ("/fast", 20),
    ("/slow", 10),
    ("/fail", 5),
    ("/items/3", 6),
    ("/items/99", 4),
    ("/burn?ms=120", 4),
]


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> TestContext:
    ctx = TestContext(tmp_path_factory.mktemp("report"))
    with ctx.run_app(app=APP) as app:
        for path, times in TRAFFIC:
            for _ in range(times):
                app.request("GET", path)
    return ctx


def report(ctx: TestContext, *args: str, cwd: Path | None = None) -> tuple[int, dict[str, Any]]:
    result = ctx.cli("report", "--db", str(ctx.db), "--format", "json", *args, cwd=cwd)
    assert result.returncode in (0, 1), result.describe()
    return result.returncode, json.loads(result.stdout)


def check_stats(stats: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    durations = [r["duration_ms"] for r in rows]
    assert stats["requests"] == len(rows)
    latency = stats["latency_ms"]
    for name, p in [("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9)]:
        assert latency[name] == pytest.approx(nearest_rank(durations, p), abs=0.001), name
    assert latency["min"] == pytest.approx(min(durations), abs=0.001)
    assert latency["max"] == pytest.approx(max(durations), abs=0.001)
    assert latency["avg"] == pytest.approx(sum(durations) / len(durations), abs=0.01)
    fives = sum(1 for r in rows if (r["status"] or 500) >= 500)
    fours = sum(1 for r in rows if 400 <= (r["status"] or 0) < 500)
    assert stats["error_rate_5xx"] == pytest.approx(fives / len(rows))
    assert stats["rate_4xx"] == pytest.approx(fours / len(rows))


def test_report_figures_equal_those_computed_from_the_requests(recorded: TestContext) -> None:
    rows = recorded.requests()
    assert len(rows) == sum(times for _, times in TRAFFIC)
    code, r = report(recorded)
    assert r["percentile"] == "nearest-rank"
    check_stats(r["overall"], rows)
    by_endpoint: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_endpoint.setdefault((row["method"], row["route"]), []).append(row)
    got = {(e["method"], e["route"]): e for e in r["endpoints"]}
    assert set(got) == set(by_endpoint)
    for key, endpoint_rows in by_endpoint.items():
        check_stats(got[key], endpoint_rows)
    assert r["window"]["seconds"] > 0
    assert r["overall"]["rps"] == pytest.approx(len(rows) / r["window"]["seconds"])
    # Known by construction: /slow waits 40 ms, /fast 5 ms.
    assert got[("GET", "/slow")]["latency_ms"]["min"] >= 40
    assert got[("GET", "/fast")]["latency_ms"]["p50"] < got[("GET", "/slow")]["latency_ms"]["p50"]
    # One request at a time: never two in flight.
    assert r["throughput"]["peak_concurrency"] == 1
    # 5 of 49 answered 500: the default 1% threshold fails, and so does the report.
    scores = {s["benchmark"]: s for s in r["scores"]}
    assert scores["error_rate_5xx"]["status"] == "fail"
    assert scores["bad_input_4xx"]["status"] == "not_measured"
    assert "timeglass probe" in scores["coverage"]["note"]
    assert code == 1


def test_the_app_processes_cpu_and_memory_were_sampled(recorded: TestContext) -> None:
    _, r = report(recorded)
    process = r["process"]
    # 4 x 120 ms of CPU at 10 Hz while in flight: several samples, one near a core.
    assert process["samples"] >= 4, process
    assert process["cpu_percent_peak"] > 50, process
    assert 10 < process["rss_mb_peak"] < 1024, process
    scores = {s["benchmark"]: s for s in r["scores"]}
    assert scores["peak_rss"]["value"] == pytest.approx(process["rss_mb_peak"])


def test_thresholds_come_from_timeglass_toml_and_decide_the_exit_code(
    recorded: TestContext, tmp_path: Path
) -> None:
    config = tmp_path / "timeglass.toml"
    # On a loaded machine an async handler can hold the loop past the block
    # threshold now and then: this test is about where thresholds come from.
    config.write_text(
        "[thresholds]\nerror_rate_5xx = 0.5\npeak_cpu = 400\nloop_blocks = 1\n"
        "p90_latency = { warn = 1, fail = 2000 }\n"
    )
    code, r = report(recorded, cwd=tmp_path)
    assert r["thresholds_file"] == str(config)
    scores = {s["benchmark"]: s for s in r["scores"]}
    assert scores["error_rate_5xx"]["status"] == "warn"
    assert scores["p90_latency"]["status"] == "warn"
    assert code == 0, [s for s in r["scores"] if s["status"] == "fail"]
    table = recorded.cli("report", "--db", str(recorded.db), cwd=tmp_path)
    assert f"Score (thresholds: {config})" in table.stdout, table.describe()
    assert "\x1b[" not in table.stdout, "no colours when not on a terminal"


def test_a_route_filter_and_markdown(recorded: TestContext) -> None:
    _, r = report(recorded, "--route", "items")
    assert {e["route"] for e in r["endpoints"]} == {"/items/{item_id}"}
    assert r["overall"]["requests"] == 10
    assert r["overall"]["rate_4xx"] == pytest.approx(0.4)
    md = recorded.cli("report", "--db", str(recorded.db), "--format", "markdown")
    assert "| `GET /fast` | 20 |" in md.stdout, md.describe()
    assert "| `GET /items/{item_id}` | 10 |" in md.stdout, md.describe()


def test_status_and_response_time_filters_judge_only_the_requests_they_keep(
    recorded: TestContext,
) -> None:
    rows = recorded.requests()
    _, fives = report(recorded, "--status", "5xx")
    # Known by construction: the 5 answers of /fail, and nothing else.
    assert [(e["route"], e["requests"]) for e in fives["endpoints"]] == [("/fail", 5)]
    assert fives["overall"]["error_rate_5xx"] == 1.0
    check_stats(fives["overall"], [r for r in rows if r["status"] == 500])
    _, fours = report(recorded, "--status", "4XX", "--route", "items")
    assert fours["overall"]["requests"] == 4, "the 4 of /items/99"
    assert fours["overall"]["rate_4xx"] == 1.0
    # /slow sleeps 40 ms and /burn burns 120: each of theirs is in.
    _, slow = report(recorded, "--min-ms", "39.5")
    kept = [r for r in rows if r["duration_ms"] >= 39.5]
    check_stats(slow["overall"], kept)
    counts = {e["route"]: e["requests"] for e in slow["endpoints"]}
    assert counts["/slow"] == 10, counts
    assert counts["/burn"] == 4, counts
    assert slow["throughput"]["peak_concurrency"] == 1
    # The table formats carry the same rows.
    out = recorded.cli("report", "--db", str(recorded.db), "--min-ms", "39.5", "--format", "csv")
    assert out.returncode in (0, 1), out.describe()
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["route"] for r in table[:-1]] == [e["route"] for e in slow["endpoints"]]
    assert table[-1]["route"] == "(overall)"
    assert int(table[-1]["requests"]) == len(kept)


@pytest.mark.parametrize(
    ("args", "mention"),
    [
        (["--status", "teapot"], "not a status class"),
        (["--status", "6xx"], "not a status class"),
        (["--min-ms", "-5"], "not a response time"),
        (["--min-ms", "fast"], "not a response time"),
        (["--session", "99"], "no session 99"),
        (["--since", "yesterday"], "is not a time"),
        (["--until", "2026-13-40T00:00:00Z"], "is not a time"),
        (["--route", "no-such-route"], "matches route"),
        (["--since", "1m", "--until", "2m"], "not before"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    recorded: TestContext, args: list[str], mention: str
) -> None:
    result = recorded.cli("report", "--db", str(recorded.db), *args)
    assert_clean_error(result, mention)
    assert result.returncode == 2, result.describe()
    assert len(result.stderr.strip().splitlines()) == 1, result.describe()
