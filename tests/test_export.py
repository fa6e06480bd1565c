"""`timeglass export` in every profile format, over the shared recording of the fixture app.

Each format is checked against what the tool that opens it reads: speedscope's published JSON
schema (from the `speedscope` npm package), pprof's published profile.proto (the `pprof`
package's generated decoder, tests/js/decode_pprof.js), and the Trace Event Format's rules.
The numbers are checked against `timeglass show` and the folded export of the same request.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import Recording
from tests.context import assert_clean_error, parse_folded

pytestmark = pytest.mark.e2e

JS = Path(__file__).resolve().parent / "js"
SPEEDSCOPE_SCHEMA = (
    JS / "node_modules" / "speedscope" / "dist" / "release" / "file-format-schema.json"
)


def export(recording: Recording, tmp_path: Path, fmt: str, *subject: str) -> Path:
    out = tmp_path / f"export.{fmt}"
    ctx = recording.ctx
    ctx.cli_ok("export", "--db", str(ctx.db), *subject, "--format", fmt, "-o", str(out))
    assert [p.name for p in tmp_path.iterdir()] == [out.name], "a temporary file was left"
    return out


def item_request(recording: Recording) -> dict[str, Any]:
    (row,) = recording.require("/items/1")
    return row


def folded_total(recording: Recording, *subject: str) -> int:
    ctx = recording.ctx
    text = ctx.cli_ok("export", "--db", str(ctx.db), *subject).stdout
    return sum(s.count for s in parse_folded(text))


def validate_speedscope(document: Any) -> None:
    schema = json.loads(SPEEDSCOPE_SCHEMA.read_text())
    jsonschema.validate(document, schema)


def test_a_request_in_speedscope_is_its_timeline_with_statements_at_their_offsets(
    recording: Recording, tmp_path: Path
) -> None:
    row = item_request(recording)
    doc = json.loads(
        export(recording, tmp_path, "speedscope", "--request", str(row["id"])).read_text()
    )
    validate_speedscope(doc)
    timeline, sampled = doc["profiles"]
    assert (timeline["type"], sampled["type"]) == ("evented", "sampled")
    frames = [f["name"] for f in doc["shared"]["frames"]]
    opened = {frames[e["frame"]]: e["at"] for e in timeline["events"] if e["type"] == "O"}
    assert opened[f"GET {row['route']}"] == 0
    assert timeline["endValue"] == pytest.approx(
        row["duration_ms"] + (row["background_ms"] or 0), abs=0.01
    )
    shown = recording.ctx.show(row["id"])
    (statement,) = shown["queries"]
    sql = next(name for name in opened if name.startswith("[sql] "))
    assert statement["sql"].startswith(sql.removeprefix("[sql] ").rstrip("…"))
    assert opened[sql] == pytest.approx(statement["start_ms"], abs=0.001)
    # The sampled stacks weigh one millisecond per sample at 1 kHz: the folded export's count.
    total = folded_total(recording, "--request", str(row["id"]))
    assert sum(sampled["weights"]) == pytest.approx(total, rel=1e-9)


def test_an_endpoint_in_speedscope_is_one_sampled_profile_of_all_its_requests(
    recording: Recording, tmp_path: Path
) -> None:
    route = "GET /items/{item_id}"
    doc = json.loads(export(recording, tmp_path, "speedscope", "--route", route).read_text())
    validate_speedscope(doc)
    (profile,) = doc["profiles"]
    assert profile["type"] == "sampled"
    per_request = sum(
        folded_total(recording, "--request", str(r["id"]))
        for r in recording.rows
        if r["method"] == "GET" and r["route"] == "/items/{item_id}"
    )
    assert sum(profile["weights"]) == pytest.approx(per_request)
    assert per_request == folded_total(recording, "--route", route)


def test_a_session_in_chrome_has_a_track_per_thread_and_requests_with_their_statements(
    recording: Recording, tmp_path: Path
) -> None:
    (session,) = recording.ctx.sessions()
    doc = json.loads(
        export(recording, tmp_path, "chrome", "--session", str(session["id"])).read_text()
    )
    events = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    requests = [e for e in events if e.get("cat") == "request"]
    assert len(requests) == len(recording.rows)
    for e in events:
        assert e["ph"] in ("M", "X"), e
        if e["ph"] == "X":
            assert e["dur"] >= 0, e
            assert e["ts"] >= 0, e
            assert (e["pid"], e["tid"]) in names, e
    pids = {r["pid"] for r in recording.rows}
    assert {e["pid"] for e in requests} == pids
    # Each statement lies within its request's span on the same track, its text in args.
    shown = recording.ctx.show(item_request(recording)["id"])
    (statement,) = shown["queries"]
    sql = [e for e in events if e.get("cat") == "sql" and e["args"]["sql"] == statement["sql"]]
    assert sql, "the statement is not in the trace"
    by_id = {e["args"]["request_id"]: e for e in requests}
    request = by_id[item_request(recording)["id"]]
    assert any(
        e["tid"] == request["tid"]
        and request["ts"] <= e["ts"]
        and e["ts"] + e["dur"] <= request["ts"] + request["dur"] + 0.001
        for e in sql
    )
    # Its stacks (samples and SQL waits, as the folded export counts them) are in its args.
    assert request["args"]["samples"] == folded_total(
        recording, "--request", str(request["args"]["request_id"])
    )
    assert "get_item" in request["args"]["stacks"]


def decode_pprof(path: Path) -> Any:
    node = shutil.which("node")
    assert node, "node is needed to decode with the published profile.proto (make build)"
    done = subprocess.run(
        [node, str(JS / "decode_pprof.js"), str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_pprof_decodes_with_the_published_schema_with_wall_and_cpu_and_labels(
    recording: Recording, tmp_path: Path
) -> None:
    route = "GET /cpu"
    profile = decode_pprof(export(recording, tmp_path, "pprof", "--route", route))
    strings = profile["stringTable"]
    types = [(strings[t["type"]], strings[t["unit"]]) for t in profile["sampleType"]]
    assert types == [("samples", "count"), ("wall", "nanoseconds"), ("cpu", "nanoseconds")]
    assert strings[profile["defaultSampleType"]] == "wall"
    rows = [r for r in recording.rows if r["method"] == "GET" and r["route"] == "/cpu"]
    labels: dict[int, int] = {}
    for sample in profile["sample"]:
        count, wall, cpu = sample["value"]
        assert wall == count * 1_000_000
        assert cpu in (0, wall)
        label = {strings[x["key"]]: x for x in sample["label"]}
        assert strings[label["route"]["str"]] == route
        assert label["pid"]["num"] in {r["pid"] for r in rows}
        request_id = label["request_id"]["num"]
        labels[request_id] = labels.get(request_id, 0) + count
    for r in rows:
        assert labels.get(r["id"], 0) == folded_total(recording, "--request", str(r["id"]))
    # Locations name the functions that burn: leaf first, as pprof orders them.
    functions = {f["id"]: strings[f["name"]] for f in profile["function"]}
    location = {loc["id"]: functions[loc["line"][0]["functionId"]] for loc in profile["location"]}
    heaviest = max(profile["sample"], key=lambda s: s["value"][0])
    assert any("burn" in location[i] for i in heaviest["locationId"]), heaviest
    # CPU time: the async /cpu handler runs on the CPU.
    cpu = sum(s["value"][2] for s in profile["sample"])
    assert cpu > 0.5 * sum(s["value"][1] for s in profile["sample"])


def test_svg_and_folded_show_the_same_samples(recording: Recording, tmp_path: Path) -> None:
    row = item_request(recording)
    svg = export(recording, tmp_path, "svg", "--request", str(row["id"])).read_text()
    assert svg.startswith("<?xml")
    assert "<svg" in svg
    assert f"request {row['id']}" in svg


@pytest.mark.parametrize(
    ("args", "mention"),
    [
        (["--request", "1", "--format", "flamegraph"], "unknown format `flamegraph`"),
        (["--route", "GET /no-such-route"], "no request of `GET /no-such-route`"),
        (["--route", "/items"], "METHOD ROUTE"),
        (["--route", "GET /items/{item_id}", "--session", "999"], "no session with id 999"),
        (["--session", "999"], "no session with id 999"),
        (["--request", "1", "-o", "/no/such/dir/out.folded"], "cannot write"),
        # Its directory is a file: unwritable even for root.
        (["--request", "1", "-o", "/etc/hostname/out.folded"], "cannot write"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    recording: Recording, args: list[str], mention: str
) -> None:
    result = recording.ctx.cli("export", "--db", str(recording.ctx.db), *args)
    assert result.returncode == 2, result.describe()
    assert_clean_error(result, mention)
    assert len(result.stderr.strip().splitlines()) == 1, result.describe()


def test_a_failed_write_keeps_the_old_file_whole(recording: Recording, tmp_path: Path) -> None:
    """The output replaces an existing file only once it is written whole."""
    target = tmp_path / "profile.json"
    target.write_text("previous")
    ctx = recording.ctx
    bad = ctx.cli("export", "--db", str(ctx.db), "--request", "999999", "-o", str(target))
    assert bad.returncode == 2
    assert target.read_text() == "previous"
    ctx.cli_ok(
        "export",
        "--db",
        str(ctx.db),
        "--request",
        str(item_request(recording)["id"]),
        "--format",
        "chrome",
        "-o",
        str(target),
    )
    json.loads(target.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]
