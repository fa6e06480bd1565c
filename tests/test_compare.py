"""`timeglass baseline`, `compare` and `check` over real recordings: the
test suite `fixtures/compare_traffic.py` run under `timeglass run -- python -m
pytest`, as a project's CI would, against `fixtures/compare_app.py`, whose
costs are set by construction (`SLOW_FACTOR`, `EXTRA_QUERIES`).

Four sessions of the same app and traffic (after a first one that nothing
compares) give three "same" comparisons here;
`bench/compare.py` repeats it 20 times. The README's second recipe, a served
app sent the same traffic by a script, and `[tool.timeglass.check]` in the
session directory's `pyproject.toml` are tested end to end too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fixtures import harness

ENDPOINTS = {"GET /report", "GET /items", "GET /compute", "GET /health"}


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


def timeglass(db: Path, *args: str) -> Done:
    p = harness.timeglass(db, *args)
    return Done(p.returncode, p.stdout, p.stderr)


latest_session = harness.latest_session


def record(db: Path, cwd: Path = harness.REPO_ROOT, **env: str) -> int:
    """Runs the traffic suite under `timeglass run` in `cwd`; the new session's id."""
    done, session = harness.record_compare_traffic(db, env, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return session


def serve_and_send(db: Path, log_dir: Path) -> int:
    """The README's served-app recipe: the app under `timeglass run`, the
    traffic script sent to it with httpx, then Ctrl-C; the session's id."""
    port = harness.free_port()
    app = harness.uvicorn_argv(port, "--no-access-log", app="fixtures.compare_app:app")
    argv = [str(harness.timeglass_bin()), "run", "--", *app]
    env = harness.clean_env({"TIMEGLASS_DB": str(db)})
    with harness.Process(argv, log_dir=log_dir, env=env) as served:
        served.wait_for_port(port)
        script = [str(harness.venv_python()), "-m", "fixtures.compare_traffic"]
        url = ["--url", f"http://127.0.0.1:{port}"]
        sent = subprocess.run(
            [*script, *url], capture_output=True, text=True, cwd=harness.REPO_ROOT, timeout=120
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert served.interrupt() == 0, served.describe()
    return latest_session(db)


@dataclass(frozen=True)
class Recorded:
    db: Path
    same: list[int]
    changed: int


# Sessions a few seconds apart on a loaded 2-core VM can differ by more than
# the verdicts' thresholds (10% and 1 ms) on endpoints whose work did not
# change: seen on CI and in a fresh clone's full run, /health's p50 at 2.3 ms
# in one session and 1.1 ms in the next, the same in every other session
# when the module ran alone. That is the machine, not the app: a recording in
# which an endpoint's work is the same across sessions but its p50 moved by
# both thresholds is made again (at most ATTEMPTS times).
ATTEMPTS = 3
UNCHANGED_IN_ALL = ("/health", "/compute")
UNCHANGED_IN_SAME = ("/items", "/report")


def p50s(db: Path, session: int, route: str) -> float:
    with sqlite3.connect(db) as conn:
        durations = sorted(
            d
            for (d,) in conn.execute(
                "SELECT duration_us FROM requests WHERE session_id = ? AND route = ?",
                (session, route),
            )
        )
    assert durations, (session, route)
    return float(durations[len(durations) // 2])


def machine_held_still(db: Path, same: list[int], changed: int) -> bool:
    def still(sessions: list[int], route: str) -> bool:
        p = [p50s(db, s, route) for s in sessions]
        return max(p) - min(p) < 1000 or max(p) < 1.1 * min(p)

    return all(still([*same, changed], r) for r in UNCHANGED_IN_ALL) and all(
        still(same, r) for r in UNCHANGED_IN_SAME
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    for attempt in range(ATTEMPTS):
        db = tmp_path_factory.mktemp(f"compare-{attempt}") / "store.db"
        # A first session that nothing compares: on CI the first of the four
        # ran 15-25% slower on every endpoint than the next (whatever the
        # previous test module left running, or the first start's cold
        # files), which is the machine, not the app.
        record(db)
        same = [record(db) for _ in range(4)]
        changed = record(db, SLOW_FACTOR="2", EXTRA_QUERIES="3")
        if machine_held_still(db, same, changed):
            break
    done = timeglass(db, "baseline", "save", "main", "--session", str(same[0]))
    assert done.code == 0, done.err
    return Recorded(db, same, changed)


def compare_json(db: Path, *args: str) -> dict[str, Any]:
    done = timeglass(db, "compare", *args, "--format", "json")
    assert done.code == 0, done.err
    result: dict[str, Any] = json.loads(done.out)
    return result


def verdicts(result: dict[str, Any]) -> dict[str, str]:
    return {f"{e['method']} {e['route']}": e["verdict"] for e in result["endpoints"]}


def same_unless_the_machine_moved(result: dict[str, Any], *routes: str) -> None:
    """`routes` (all by default) are `same`; or, where the two sessions' machine
    loads were measured far apart, `unsure`, which `compare` must then explain."""
    got = {k: v for k, v in verdicts(result).items() if not routes or k.split()[1] in routes}
    allowed = {"same"} if result["load"] is None else {"same", "unsure"}
    assert set(got.values()) <= allowed, json.dumps(result, indent=1)[:4000]
    if "unsure" in got.values():
        assert any("the machine was busier" in w for w in result["warnings"]), result["warnings"]


def test_the_traffic_suite_is_recorded_per_endpoint(recorded: Recorded) -> None:
    result = compare_json(recorded.db, "--session", str(recorded.same[0]))
    assert set(verdicts(result)) == ENDPOINTS
    for e in result["endpoints"]:
        assert e["a"]["requests"] == 40, e
    assert result["a_settings"]["sample_mode"] == "wall"
    assert result["a_settings"]["rate_hz"] == 1000
    assert result["a_settings"]["python_version"]


def test_the_same_app_and_traffic_is_same_everywhere_and_check_passes(
    recorded: Recorded,
) -> None:
    for a, b in zip(recorded.same, recorded.same[1:], strict=False):
        result = compare_json(recorded.db, "--session", str(a), "--session", str(b))
        same_unless_the_machine_moved(result)
    for b in recorded.same[1:]:
        done = timeglass(recorded.db, "check", "--baseline", "main", "--session", str(b))
        assert done.code == 0, done.out + done.err
        assert done.out.startswith("PASS"), done.out


def test_a_slower_handler_and_added_queries_regress_exactly_their_endpoints(
    recorded: Recorded,
) -> None:
    result = compare_json(recorded.db, "--baseline", "main", "--session", str(recorded.changed))
    got = verdicts(result)
    assert (got["GET /report"], got["GET /items"]) == ("slower", "slower"), got
    same_unless_the_machine_moved(result, "/compute", "/health")
    by = {e["route"]: e for e in result["endpoints"]}
    report = by["/report"]
    assert report["functions"][0]["function"].startswith("render_report ("), report["functions"]
    # SLOW_FACTOR=2 adds 4 ms of spinning to `render_report`; the rest of
    # the request is untouched, so the p50 grows by 4 ms (±30%, since the
    # two p50s come from different sessions on a shared machine) and the
    # ratio by 4 ms over whatever the rest costs here.
    p50 = next(t for t in report["tests"] if t["statistic"] == "p50")
    assert 2800 < p50["b"] - p50["a"] < 5200, p50
    assert p50["ratio"] > 1.3, p50
    assert p50["low"] > 1.1, p50
    items = by["/items"]
    assert items["queries_added"] == pytest.approx(3.0)
    assert [(s["a_per_request"], s["b_per_request"]) for s in items["statements"]] == [(0.0, 3.0)]
    assert "FROM tags" in items["statements"][0]["normalized"]

    done = timeglass(recorded.db, "check", "--baseline", "main", "--session", str(recorded.changed))
    assert done.code == 1, done.out + done.err
    failing = [line for line in done.out.splitlines() if line.startswith("FAIL ")]
    assert sorted(failing) == ["FAIL GET /items (slower)", "FAIL GET /report (slower)"], done.out
    assert "render_report" in done.out
    assert "FROM tags" in done.out
    assert "ran 3x instead of 0x" in done.out


def test_junit_has_one_testcase_per_endpoint_and_markdown_a_table(
    recorded: Recorded, tmp_path: Path
) -> None:
    out = tmp_path / "check.xml"
    args = ["check", "--baseline", "main", "--session", str(recorded.changed)]
    done = timeglass(recorded.db, *args, "--format", "junit", "-o", str(out))
    assert done.code == 1
    assert "regression: GET /report" in done.err
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "2"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == ENDPOINTS
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    assert failed == {"GET /report", "GET /items"}
    failure = cases["GET /items"].find("failure")
    assert failure is not None
    assert "FROM tags" in (failure.text or "")

    md = timeglass(recorded.db, *args, "--format", "markdown")
    assert md.code == 1
    assert "| GET /report | ❌ fail (slower) |" in md.out
    assert "| GET /health | ✅ pass (same) |" in md.out
    # A looser gate lets the added statements through, not the slower handler.
    loose = timeglass(recorded.db, *args, "--max-queries-added", "3", "--max-slower", "150%")
    assert loose.code == 0, loose.out


def test_an_exported_baseline_imported_into_a_fresh_store_compares_the_same(
    recorded: Recorded, tmp_path: Path
) -> None:
    exported = tmp_path / "main.json"
    assert timeglass(recorded.db, "baseline", "export", "main", "-o", str(exported)).code == 0
    document = json.loads(exported.read_text())
    assert (document["format"], document["format_version"], document["name"]) == (
        "timeglass-baseline",
        1,
        "main",
    )
    fresh = tmp_path / "fresh.db"
    done = timeglass(fresh, "baseline", "import", str(exported))
    assert done.code == 0, done.err
    again = tmp_path / "again.json"
    assert timeglass(fresh, "baseline", "export", "main", "-o", str(again)).code == 0
    assert again.read_text() == exported.read_text()
    # The same comparison from both stores, against the same session.
    session = recorded.same[1]
    before = compare_json(recorded.db, "--baseline", "main", "--session", str(session))
    listed = timeglass(fresh, "baseline", "list", "--json")
    assert [b["name"] for b in json.loads(listed.out)] == ["main"]
    b_session = record(fresh)
    after = compare_json(fresh, "--baseline", "main", "--session", str(b_session))
    same_unless_the_machine_moved(before)
    same_unless_the_machine_moved(after)
    assert after["a_settings"] == before["a_settings"]
    a_sides = [e["a"] for e in after["endpoints"]]
    assert a_sides == [e["a"] for e in before["endpoints"]]


def dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def one_line_exit_2(done: Done, says: str) -> None:
    assert done.code == 2, f"{done.code}: {done.out}{done.err}"
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    assert lines[0].startswith("timeglass: error:"), done.err
    assert says in lines[0], lines[0]


def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    recorded: Recorded, tmp_path: Path
) -> None:
    exported = tmp_path / "main.json"
    assert timeglass(recorded.db, "baseline", "export", "main", "-o", str(exported)).code == 0
    document = json.loads(exported.read_text())

    def variant(name: str, change: Any) -> Path:
        doc = json.loads(json.dumps(document))
        change(doc)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        return path

    def other_routes(doc: dict[str, Any]) -> None:
        for e in doc["endpoints"]:
            e["route"] = "/elsewhere" + e["route"]

    def gil_only(doc: dict[str, Any]) -> None:
        doc["settings"]["sample_mode"] = "gil-only"

    def version_99(doc: dict[str, Any]) -> None:
        doc["format_version"] = 99

    not_json = tmp_path / "notes.txt"
    not_json.write_text("not a baseline\n")
    other_json = tmp_path / "other.json"
    other_json.write_text('{"endpoints": []}')
    # Imported while the store is looked at: valid baselines, but ones that do not compare.
    assert (
        timeglass(
            recorded.db, "baseline", "import", str(variant("away", other_routes)), "--name", "away"
        ).code
        == 0
    )
    assert (
        timeglass(
            recorded.db, "baseline", "import", str(variant("gil", gil_only)), "--name", "gil"
        ).code
        == 0
    )
    before = dump(recorded.db)
    db = recorded.db
    cases = [
        (timeglass(db, "compare", "--baseline", "nope"), "no baseline `nope`"),
        (timeglass(db, "check", "--baseline", "nope"), "no baseline `nope`"),
        (timeglass(db, "compare", "--session", "999"), "no session 999"),
        (timeglass(db, "check", "--baseline", "main", "--session", "999"), "no session 999"),
        (timeglass(db, "baseline", "save", "x", "--session", "999"), "no session 999"),
        (timeglass(db, "baseline", "rm", "nope"), "no baseline `nope`"),
        (timeglass(db, "baseline", "export", "nope", "-o", str(tmp_path / "x.json")), "nope"),
        (timeglass(db, "baseline", "save", "main"), "exists already"),
        (timeglass(db, "baseline", "save", "bad name"), "not a baseline name"),
        (timeglass(db, "baseline", "import", str(not_json)), "not a TimeGlass baseline"),
        (timeglass(db, "baseline", "import", str(other_json)), "not a TimeGlass baseline"),
        (timeglass(db, "baseline", "import", str(variant("v99", version_99))), "version 99"),
        (timeglass(db, "baseline", "import", str(exported)), "exists already"),
        (timeglass(db, "compare", "--baseline", "away"), "no endpoint in common"),
        (timeglass(db, "check", "--baseline", "away"), "no endpoint in common"),
        (timeglass(db, "compare", "--baseline", "gil"), "`gil-only` mode"),
        (timeglass(db, "check", "--baseline", "gil"), "`gil-only` mode"),
        (timeglass(db, "check", "--baseline", "main", "--max-slower", "fast"), "not a share"),
    ]
    for done, says in cases:
        one_line_exit_2(done, says)
    assert dump(recorded.db) == before
    assert not (tmp_path / "x.json").exists()
    fresh = tmp_path / "never.db"
    one_line_exit_2(timeglass(fresh, "baseline", "import", str(not_json)), "not a TimeGlass")
    assert not fresh.exists()
    # The two imported here go again, leaving the store as the other tests want it.
    assert timeglass(db, "baseline", "rm", "away").code == 0
    assert timeglass(db, "baseline", "rm", "gil").code == 0


def failing(out: str) -> list[str]:
    return sorted(line for line in out.splitlines() if line.startswith("FAIL "))


def test_a_served_app_recorded_twice_with_a_traffic_script_passes_the_gate(
    tmp_path: Path,
) -> None:
    db = tmp_path / "served.db"
    first = serve_and_send(db, tmp_path / "first")
    saved = timeglass(db, "baseline", "save", "main")
    assert saved.code == 0, saved.err
    second = serve_and_send(db, tmp_path / "second")
    assert second == first + 1
    result = compare_json(db, "--baseline", "main")
    assert (result["a_session"], result["b_session"]) == (first, second)
    for e in result["endpoints"]:
        assert (e["a"]["requests"], e["b"]["requests"]) == (40, 40), e
    assert set(verdicts(result)) == ENDPOINTS
    done = timeglass(db, "check", "--baseline", "main")
    assert done.code == 0, done.out + done.err
    assert done.out.startswith(f"PASS: no endpoint of session {second} regressed"), done.out


def test_the_session_directory_pyproject_sets_the_gate(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    db = tmp_path / "gate.db"
    base = record(db, cwd=project)
    changed = record(db, cwd=project, SLOW_FACTOR="2", EXTRA_QUERIES="3")
    assert timeglass(db, "baseline", "save", "main", "--session", str(base)).code == 0
    pyproject = project / "pyproject.toml"

    def gate(section: str | None, *flags: str) -> Done:
        if section is None:
            pyproject.unlink(missing_ok=True)
        else:
            pyproject.write_text(f"[project]\nname = 'app'\n\n[tool.timeglass.check]\n{section}")
        # Run from the repository: only the session's own directory has the file.
        return timeglass(db, "check", "--baseline", "main", "--session", str(changed), *flags)

    both = ["FAIL GET /items (slower)", "FAIL GET /report (slower)"]
    done = gate(None)
    assert (done.code, failing(done.out)) == (1, both), done.out
    assert "max slower 10%, max queries added 0, N+1s allowed, unsure allowed\n" in done.out
    assert "(from " not in done.out

    done = gate("max-queries-added = 3\n")
    # The 3 statements are allowed now; they also cost /items about 1 ms, the
    # latency threshold, so its p50 may still fail (seen: 4.6 -> 5.8 ms).
    assert done.code == 1, done.out
    assert "FAIL GET /report (slower)" in failing(done.out), done.out
    assert "queries per request (at most" not in done.out, done.out
    assert f"max queries added 3, N+1s allowed, unsure allowed (from {pyproject})" in done.out

    done = gate('max-slower = "150%"\n')
    assert (done.code, failing(done.out)) == (1, ["FAIL GET /items (slower)"]), done.out
    assert "max slower 150%" in done.out

    done = gate('max-slower = "150%"\nmax-queries-added = 3\n')
    assert (done.code, failing(done.out)) == (0, []), done.out
    assert done.out.startswith("PASS"), done.out

    # A flag overrides the file.
    done = gate('max-slower = "150%"\nmax-queries-added = 3\n', "--max-queries-added", "0")
    assert (done.code, failing(done.out)) == (1, ["FAIL GET /items (slower)"]), done.out

    done = gate("max-slower = 1.5\nfail-on = ['nothing']\n")
    one_line_exit_2(done, "fail-on: unknown `nothing`")


def hog_the_cpus() -> list[subprocess.Popen[bytes]]:
    """Three busy loops per CPU, in this session's scheduling group, as a busy
    CI machine has."""
    n = 3 * (os.cpu_count() or 2)
    loop = [sys.executable, "-c", "while True: pass"]
    return [subprocess.Popen(loop) for _ in range(n)]


def test_a_session_recorded_on_a_busier_machine_is_unsure_not_slower(tmp_path: Path) -> None:
    """The same app and traffic, the second session beside CPU hogs: every
    endpoint is slower there with no change to its code. `compare` measures
    how much longer the app waited for a CPU, says the machine was busier,
    and calls exactly the latency changes that this explains unsure; `check`
    passes those, unless told to fail on unsure; the exact counts still
    decide."""
    db = tmp_path / "busy.db"
    quiet = record(db)
    hogs = hog_the_cpus()
    try:
        time.sleep(0.5)
        busy = record(db, EXTRA_QUERIES="3")
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait()
    result = compare_json(db, "--session", str(quiet), "--session", str(busy))
    # Quiet, the app's threads waited 0.5 s for a CPU per second they ran
    # here (the recorder and the traffic share the 2 cores); beside three
    # loops per CPU, 1.7 s.
    load = result["load"]
    assert load is not None, result["warnings"]
    assert load["factor"] > 1.3, load
    (warning,) = [w for w in result["warnings"] if "the machine was busier in B" in w]
    assert "the app waited for a CPU" in warning, warning
    by = {e["route"]: e for e in result["endpoints"]}
    # Three more statements per request are no load's doing.
    assert by.pop("/items")["verdict"] == "slower", result
    for e in by.values():
        assert e["verdict"] in {"unsure", "slower", "same"}, e
        for t in (t for t in e["tests"] if t["statistic"] != "mean"):
            # Explained exactly when the least change the data allow is within the factor.
            within = t["change"] == "slower" and t["low"] <= load["factor"]
            assert t["explained_by_load"] == within, (t, load)
    # How much of the slowdown the load explains varies: beside six loops
    # on 2 cores the factor was 2.8 and p50s grew 1.8x to 5x, so some
    # endpoints stay `slower` (with the warning above) and others are unsure.
    unsure = sorted(r for r, e in by.items() if e["verdict"] == "unsure")
    slower = sorted(r for r, e in by.items() if e["verdict"] == "slower")
    assert unsure or slower, f"the hogs slowed nothing: {json.dumps(result)[:4000]}"
    for r in unsure:
        assert any("within what the busier machine explains" in x for x in by[r]["reasons"])

    assert timeglass(db, "baseline", "save", "main", "--session", str(quiet)).code == 0
    args = ["check", "--baseline", "main", "--session", str(busy), "--max-queries-added", "3"]
    done = timeglass(db, *args)
    assert done.code == (1 if slower else 0), done.out + done.err
    if unsure:
        assert f"({len(unsure)} unsure: the machine was busier" in done.out, done.out
    warned = sorted(
        line.split(" (")[0] for line in done.out.splitlines() if line.startswith("warn ")
    )
    assert warned == [f"warn GET {r}" for r in unsure], done.out
    assert failing(done.out) == [f"FAIL GET {r} (slower)" for r in slower], done.out
    strict = timeglass(db, *args, "--fail-on", "unsure")
    assert strict.code == (1 if unsure or slower else 0), strict.out + strict.err
    because = "(unsure: latency moved no more than the busier machine explains)"
    assert failing(strict.out) == sorted(
        [f"FAIL GET {r} {because}" for r in unsure] + [f"FAIL GET {r} (slower)" for r in slower]
    ), strict.out
