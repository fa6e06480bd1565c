"""`requests`, `show` and `report` as tables: CSV, JSON, JSON Lines and Parquet (read back
with pyarrow), with the list's filters and `--sort duration`, over the shared recording."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import Recording

pytestmark = pytest.mark.e2e


def cli(recording: Recording, *args: str) -> str:
    ctx = recording.ctx
    return ctx.cli_ok(args[0], "--db", str(ctx.db), *args[1:]).stdout


def as_json(recording: Recording, *args: str) -> Any:
    return json.loads(cli(recording, *args, "--format", "json"))


def test_every_table_format_lists_the_same_requests(recording: Recording, tmp_path: Path) -> None:
    args = ("requests", "--limit", "1000")
    rows = as_json(recording, *args)
    assert rows == json.loads(cli(recording, *args, "--json")), "--json is --format json"
    ids = [r["id"] for r in rows]
    table = list(csv.DictReader(io.StringIO(cli(recording, *args, "--format", "csv"))))
    assert [int(r["id"]) for r in table] == ids
    lines = [json.loads(line) for line in cli(recording, *args, "--format", "jsonl").splitlines()]
    assert [r["id"] for r in lines] == ids
    out = tmp_path / "requests.parquet"
    cli(recording, *args, "--format", "parquet", "-o", str(out))
    frame = pq.read_table(out).to_pylist()
    assert [r["id"] for r in frame] == ids
    for row, flat, parquet in zip(rows, lines, frame, strict=True):
        for key in ("route", "status", "duration_ms", "samples", "queries", "cpu_ms", "start"):
            assert flat[key] == row[key] == parquet[key], key
        assert parquet["db_ms"] == pytest.approx(row["db_ms"])
    assert pq.read_schema(out).field("duration_ms").type == "double"
    assert [p.name for p in tmp_path.iterdir()] == ["requests.parquet"]


def test_filters_and_the_slowest_first_sort_apply_to_tables(recording: Recording) -> None:
    base = ("requests", "--limit", "1000")
    everything = as_json(recording, *base)
    items = as_json(recording, *base, "--route", "items")
    assert items
    assert {r["id"] for r in items} == {
        r["id"] for r in everything if "items" in (r["route"] or "") or "items" in r["path"]
    }
    errors = as_json(recording, *base, "--status", "4xx")
    assert errors
    assert {r["id"] for r in errors} == {
        r["id"] for r in everything if r["status"] and 400 <= r["status"] < 500
    }
    slow = as_json(recording, *base, "--min-ms", "100")
    assert slow
    assert {r["id"] for r in slow} == {r["id"] for r in everything if r["duration_ms"] >= 100}
    slowest = as_json(recording, *base, "--sort", "duration")
    durations = [r["duration_ms"] for r in slowest]
    assert durations == sorted(durations, reverse=True)
    assert len(slowest) == len(everything)
    flat = cli(recording, *base, "--sort", "duration", "--min-ms", "100", "--format", "csv")
    assert [float(r["duration_ms"]) for r in csv.DictReader(io.StringIO(flat))] == sorted(
        (r["duration_ms"] for r in slow), reverse=True
    )


def test_show_lists_a_requests_statements_as_rows(recording: Recording, tmp_path: Path) -> None:
    (row,) = recording.require("/items/1")
    shown = as_json(recording, "show", str(row["id"]))
    assert shown == json.loads(cli(recording, "show", str(row["id"]), "--json"))
    table = list(
        csv.DictReader(io.StringIO(cli(recording, "show", str(row["id"]), "--format", "csv")))
    )
    assert [r["text"] for r in table] == [q["sql"] for q in shown["queries"]]
    assert table[0]["kind"] == "sql"
    assert float(table[0]["start_ms"]) == pytest.approx(shown["queries"][0]["start_ms"])
    out = tmp_path / "show.parquet"
    cli(recording, "show", str(row["id"]), "--format", "parquet", "-o", str(out))
    (read,) = pq.read_table(out).to_pylist()
    assert read["request_id"] == row["id"]
    assert read["caller"].startswith("fixtures/demo_app.py:")


def test_report_statistics_as_parquet_match_its_json(recording: Recording, tmp_path: Path) -> None:
    ctx = recording.ctx
    report = json.loads(ctx.cli("report", "--db", str(ctx.db), "--format", "json").stdout)
    out = tmp_path / "report.parquet"
    result = ctx.cli("report", "--db", str(ctx.db), "--format", "parquet", "-o", str(out))
    assert result.returncode in (0, 1), result.describe()  # 1: a score failed, still written
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(report["endpoints"]) + 1
    for row, endpoint in zip(rows, report["endpoints"], strict=False):
        assert (row["method"], row["route"]) == (endpoint["method"], endpoint["route"])
        assert row["requests"] == endpoint["requests"]
        assert row["p95_ms"] == pytest.approx(endpoint["latency_ms"]["p95"])
    assert rows[-1]["route"] == "(overall)"
    assert rows[-1]["requests"] == report["overall"]["requests"]
    csv_rows = list(
        csv.DictReader(
            io.StringIO(ctx.cli("report", "--db", str(ctx.db), "--format", "csv").stdout)
        )
    )
    assert [r["route"] for r in csv_rows] == [r["route"] or "" for r in rows]


def test_a_bad_status_class_is_a_usage_error(recording: Recording) -> None:
    ctx = recording.ctx
    result = ctx.cli("requests", "--db", str(ctx.db), "--status", "teapot")
    assert result.returncode == 2, result.describe()
    assert "not a status class" in result.stderr
