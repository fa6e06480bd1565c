"""False alarms and missed regressions of `timeglass compare` and `check`.

The traffic suite `fixtures/compare_traffic.py` is recorded under
`timeglass run -- python -m pytest`, as a project's CI would record it, over
`fixtures/compare_app.py`, alternately unchanged (U) and changed (C:
`SLOW_FACTOR=2` makes `GET /report` 2x slower in `render_report`,
`EXTRA_QUERIES=3` adds 3 statements on `tags` to `GET /items`):

    U0 C0 U1 C1 ... U19 C19 U20

That is 21 unchanged sessions and 20 changed ones, so that every comparison
below uses sessions of its own, recorded one after the other:

* unchanged against unchanged, `Ui` against `Ui+1` (20): right when every
  endpoint is "same" and `check --baseline Ui --session Ui+1` exits 0;
* unchanged against changed, `Ui` against `Ci` (20): right when exactly
  `GET /report` and `GET /items` are "slower", the others "same", the first
  function explaining `/report` is `render_report`, `/items`'s statement on
  `tags` went from 0 to 3 per request, and `check` exits 1 naming both.

Prints the counts against the target of 20 of 20, the range of `/report`'s
p50 ratio, and every wrong comparison in detail.

Only this part of `make bench`: `python -m bench.compare [--pairs N] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fixtures import harness

CHANGED_ENV = {"SLOW_FACTOR": "2", "EXTRA_QUERIES": "3"}
SLOWED = "GET /report"
QUERIED = "GET /items"
EXPECTED_CHANGE = {
    SLOWED: "slower",
    QUERIED: "slower",
    "GET /compute": "same",
    "GET /health": "same",
}


class BenchError(RuntimeError):
    pass


@dataclass
class Tally:
    right: int = 0
    wrong: list[str] = field(default_factory=list)

    def judge(self, problems: list[str], what: str) -> None:
        if problems:
            self.wrong.append(f"{what}: " + "; ".join(problems))
        else:
            self.right += 1


timeglass = harness.timeglass


def record(db: Path, rounds: int, changed: bool) -> int:
    """Runs the traffic suite under `timeglass run`; the new session's id."""
    env = {"COMPARE_ROUNDS": str(rounds), **(CHANGED_ENV if changed else {})}
    done, session = harness.record_compare_traffic(db, env)
    if done.returncode != 0:
        raise BenchError(f"recording failed:\n{done.stdout}{done.stderr}")
    return session


def compare(db: Path, a: int, b: int) -> dict[str, Any]:
    done = timeglass(db, "compare", "--session", str(a), "--session", str(b), "--format", "json")
    if done.returncode != 0:
        raise BenchError(f"compare {a} {b} exited {done.returncode}: {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{e['method']} {e['route']}": e for e in result["endpoints"]}


def describe(e: dict[str, Any]) -> str:
    """An endpoint's verdict with its tests and reasons, for a wrong comparison."""
    tests = ", ".join(
        f"{t['statistic']} {fmt_ms(t['a'])}->{fmt_ms(t['b'])} ms"
        f" ratio {fmt(t['ratio'])} [{fmt(t['low'])}, {fmt(t['high'])}] {t['change']}"
        for t in e["tests"]
    )
    reasons = " / ".join(e["reasons"]) or "no reason"
    return f"{e['verdict']} ({tests}; {reasons})"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f}"


def check(db: Path, baseline: str, session: int) -> subprocess.CompletedProcess[str]:
    return timeglass(db, "check", "--baseline", baseline, "--session", str(session))


def judge_same(db: Path, a: int, b: int, baseline: str) -> list[str]:
    problems = [
        f"{name} {describe(e)}"
        for name, e in by_name(compare(db, a, b)).items()
        if e["verdict"] != "same"
    ]
    gate = check(db, baseline, b)
    if gate.returncode != 0:
        problems.append(f"check exited {gate.returncode}:\n{gate.stdout}{gate.stderr}")
    return problems


def judge_changed(db: Path, a: int, b: int, baseline: str, ratios: list[float]) -> list[str]:
    endpoints = by_name(compare(db, a, b))
    problems = [
        f"{name} expected {want}, got {describe(endpoints[name])}"
        for name, want in EXPECTED_CHANGE.items()
        if name not in endpoints or endpoints[name]["verdict"] != want
    ]
    report = endpoints.get(SLOWED)
    if report is not None:
        p50 = next(t for t in report["tests"] if t["statistic"] == "p50")
        if p50["ratio"] is not None:
            ratios.append(p50["ratio"])
        first = report["functions"][0]["function"] if report["functions"] else "nothing"
        if not first.startswith("render_report ("):
            problems.append(f"{SLOWED} explained by {first}, not render_report")
    items = endpoints.get(QUERIED)
    if items is not None:
        changes = [
            (s["normalized"], s["a_per_request"], s["b_per_request"]) for s in items["statements"]
        ]
        if len(changes) != 1 or "FROM tags" not in changes[0][0] or changes[0][1:] != (0.0, 3.0):
            problems.append(f"{QUERIED} statements changed: {changes}")
    gate = check(db, baseline, b)
    failing = sorted(line for line in gate.stdout.splitlines() if line.startswith("FAIL "))
    if gate.returncode != 1 or failing != [f"FAIL {QUERIED} (slower)", f"FAIL {SLOWED} (slower)"]:
        problems.append(f"check exited {gate.returncode} with {failing}")
    elif "render_report" not in gate.stdout or "FROM tags" not in gate.stdout:
        problems.append(f"check does not name render_report and FROM tags:\n{gate.stdout}")
    return problems


def run(pairs: int, rounds: int, work: Path) -> int:
    db = work / "compare.db"
    unchanged: list[int] = []
    changed: list[int] = []
    started = time.monotonic()
    for i in range(pairs + 1):
        unchanged.append(record(db, rounds, changed=False))
        if i < pairs:
            changed.append(record(db, rounds, changed=True))
        print(f"  recorded {len(unchanged) + len(changed)} of {2 * pairs + 1}", flush=True)
    recorded_s = time.monotonic() - started
    for i, session in enumerate(unchanged[:-1]):
        done = timeglass(db, "baseline", "save", f"u{i}", "--session", str(session))
        if done.returncode != 0:
            raise BenchError(f"baseline save u{i} failed: {done.stderr}")
    same, regressed = Tally(), Tally()
    ratios: list[float] = []
    for i in range(pairs):
        a, b, c = unchanged[i], unchanged[i + 1], changed[i]
        same.judge(judge_same(db, a, b, f"u{i}"), f"sessions {a} vs {b} (unchanged)")
        regressed.judge(judge_changed(db, a, c, f"u{i}", ratios), f"sessions {a} vs {c} (changed)")
    print(
        f"\nComparisons (`timeglass compare` and `check`), {2 * pairs + 1} recordings of"
        f" {rounds} requests per endpoint, {recorded_s:.0f} s of recording\n"
    )
    print(f"  unchanged vs unchanged: {same.right} of {pairs} all `same` and `check` exit 0")
    print(
        f"  unchanged vs changed:   {regressed.right} of {pairs} exactly {SLOWED}"
        f" (render_report) and {QUERIED} (FROM tags, 0x to 3x) slower, the rest `same`"
    )
    if ratios:
        print(f"  {SLOWED} p50 ratio, changed/unchanged: {min(ratios):.2f} to {max(ratios):.2f}")
    for wrong in same.wrong + regressed.wrong:
        print(f"\n  WRONG {wrong}")
    return 0 if not same.wrong and not regressed.wrong else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20, help="comparisons of each kind")
    parser.add_argument("--rounds", type=int, default=40, help="requests per endpoint a session")
    args = parser.parse_args(argv)
    if not harness.timeglass_bin().exists():
        print(f"error: {harness.timeglass_bin()} is missing: run `make build`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="timeglass-compare-") as work:
        try:
            return run(args.pairs, args.rounds, Path(work))
        except BenchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
