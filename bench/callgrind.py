"""Instructions per FastAPI request, bare and with `TimeGlassMiddleware`, counted by callgrind.

Runs ``marker/bench/request_instructions.py`` under ``valgrind --tool=callgrind`` for each of
bare and marked at two request counts; the difference between the two counts, divided by the
number of extra requests, is the instructions of one request without start-up and imports.
Instruction counts do not move with the machine's load, so this is the marker's cost figure
that a noisy machine cannot blur. Prints both counts, their ratio and the functions where the
marker's extra instructions go (self cost per request, marked minus bare), and fails when the
ratio is above the limit (1.03: the marker costs at most 3% of a FastAPI request).

Then the same for a garbage collection: ``marker/bench/gc_cost.py --only`` runs ``gc.collect(0)``
at two counts with no callback in ``gc.callbacks``, with the cheapest C callable there
(``operator.is_``: what CPython spends on any callback) and with TimeGlass's, inside a request
and outside one; instructions per collection, and as time at the instructions per nanosecond
that the same run gets outside valgrind (a secondary figure: it moves with the machine).

    python -m bench.callgrind [--part all|requests|gc] [--requests N] [--collections N]
                              [--limit 1.03] [--top K] [--python PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fixtures import harness

DRIVER = harness.REPO_ROOT / "marker" / "bench" / "request_instructions.py"
GC_DRIVER = harness.REPO_ROOT / "marker" / "bench" / "gc_cost.py"
#: Requests in the short run; the long run adds ``--requests`` to it.
BASE_REQUESTS = 50
#: Collections in the short GC run; the long run adds ``--collections`` to it.
BASE_COLLECTIONS = 1_000
#: The GC configurations: ``gc_cost.py --only`` arguments.
GC_CONFIGS = {
    "none": ["off"],
    "cheapest": ["cheapest"],
    "inside": ["on"],
    "outside": ["on", "--outside"],
}
LIMIT = 1.03
_RECURSION = re.compile(r"'\d+$")
_ROW = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$")


@dataclass
class Run:
    total: int
    functions: dict[str, int]


def callgrind(python: Path, config: str, requests: int, work: Path) -> Run:
    return callgrind_script(python, [str(DRIVER), config, str(requests)], work)


def callgrind_script(python: Path, argv: list[str], work: Path) -> Run:
    out = work / ("callgrind." + "_".join(a.strip("-") for a in argv[1:]))
    env = dict(os.environ, PYTHONHASHSEED="0", TIMEGLASS_RUNTIME_DIR=str(work / "run"))
    env.pop("TIMEGLASS_CONTEXT", None)
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(python), *argv],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    annotated = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    out.unlink()
    total = 0
    functions: dict[str, int] = {}
    for line in annotated.splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        count = int(match.group(1).replace(",", ""))
        name = match.group(2).strip()
        if name.startswith("PROGRAM TOTALS"):
            total = count
        elif ":" in name or "???" in name:
            functions[name] = functions.get(name, 0) + count
    if not total:
        raise RuntimeError(f"no totals in callgrind_annotate's output for {argv}")
    return Run(total, functions)


def per_request(short: Run, long: Run, requests: int) -> tuple[float, dict[str, float]]:
    names = set(short.functions) | set(long.functions)
    functions = {
        n: (long.functions.get(n, 0) - short.functions.get(n, 0)) / requests for n in names
    }
    return (long.total - short.total) / requests, functions


def short_name(name: str) -> str:
    """``file:function'2 [object]`` → ``function``: code inlined from other files and
    recursion levels are counted with the function they run in."""
    where = name.partition(" [")[0]
    return _RECURSION.sub("", where.partition(":")[2] or where)


def measure(python: Path, requests: int) -> tuple[float, float, list[tuple[str, float]]]:
    with tempfile.TemporaryDirectory(prefix="timeglass-callgrind-") as tmp:
        work = Path(tmp)
        jobs = [
            (c, n) for c in ("bare", "marked") for n in (BASE_REQUESTS, BASE_REQUESTS + requests)
        ]
        # Counts do not depend on load: the four runs share the machine's cores.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            runs = list(pool.map(lambda job: callgrind(python, job[0], job[1], work), jobs))
        costs = {
            config: per_request(runs[2 * i], runs[2 * i + 1], requests)
            for i, config in enumerate(("bare", "marked"))
        }
    bare, bare_fns = costs["bare"]
    marked, marked_fns = costs["marked"]
    names = set(bare_fns) | set(marked_fns)
    delta = {short_name(n): 0.0 for n in names}
    for n in names:
        delta[short_name(n)] += marked_fns.get(n, 0.0) - bare_fns.get(n, 0.0)
    table = sorted(delta.items(), key=lambda kv: -abs(kv[1]))
    return bare, marked, table


def gc_instructions(python: Path, collections: int) -> dict[str, float]:
    """Instructions per ``gc.collect(0)`` of each of :data:`GC_CONFIGS`."""
    with tempfile.TemporaryDirectory(prefix="timeglass-callgrind-") as tmp:
        work = Path(tmp)
        jobs = [
            [str(GC_DRIVER), "--collections", str(n), "--only", *config]
            for config in GC_CONFIGS.values()
            for n in (BASE_COLLECTIONS, BASE_COLLECTIONS + collections)
        ]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            runs = list(pool.map(lambda argv: callgrind_script(python, argv, work), jobs))
    return {
        name: (runs[2 * i + 1].total - runs[2 * i].total) / collections
        for i, name in enumerate(GC_CONFIGS)
    }


def gc_ns_per_collection(python: Path, collections: int) -> float:
    """Nanoseconds per collection with TimeGlass's callback, inside a request, outside
    valgrind (``gc_cost.py`` prints microseconds)."""
    out = subprocess.run(
        [str(python), str(GC_DRIVER), "--collections", str(collections), "--only", "on"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.split(":")[1].split()[0]) * 1000


def report_gc(python: Path, collections: int) -> None:
    counts = gc_instructions(python, collections)
    # Instructions per nanosecond of this very loop, to turn counts into time.
    per_ns = counts["inside"] / gc_ns_per_collection(python, 20 * collections)
    cpython = counts["cheapest"] - counts["none"]
    print(
        f"\nGC callback: gc.collect(0) under callgrind ({collections:,} collections):"
        f" {counts['none']:,.0f} instructions per collection with no callback"
    )
    for name, label in (("inside", "inside a request"), ("outside", "outside a request")):
        cost = counts[name] - counts["none"]
        print(
            f"  TimeGlass's callback, {label}: {cost:+,.0f} instructions per collection"
            f" ({cost / per_ns / 1000:.2f} µs at {per_ns:.1f} instructions/ns; target ≤ 0.5 µs),"
            f" of which CPython's for any callback {cpython:+,.0f} (operator.is_),"
            f" the callback's own {counts[name] - counts['cheapest']:+,.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "requests", "gc"), default="all")
    parser.add_argument("--requests", type=int, default=300, help="extra requests of the long run")
    parser.add_argument(
        "--collections", type=int, default=2_000, help="extra collections of the long GC run"
    )
    parser.add_argument("--limit", type=float, default=LIMIT, help="largest marked/bare ratio")
    parser.add_argument("--top", type=int, default=25, help="rows of the per-function table")
    parser.add_argument("--python", type=Path, default=harness.venv_python())
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("error: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    if args.part == "gc":
        report_gc(args.python, args.collections)
        return 0
    bare, marked, table = measure(args.python, args.requests)
    ratio = marked / bare
    print(
        "FastAPI GET /items?page=2&token=abc, 5 headers, under callgrind"
        f" ({args.requests} requests): bare {bare:,.0f} instructions/request, marked {marked:,.0f},"
        f" marker {marked - bare:+,.0f} ({ratio:.4f} of bare; limit {args.limit})"
    )
    print("\nWhere the marker's instructions go (self cost per request, marked - bare):")
    for name, count in table[: args.top]:
        print(f"  {count:+10,.0f}  {name[:110]}")
    if args.part == "all":
        report_gc(args.python, args.collections)
    if ratio > args.limit:
        print(
            f"error: the marker costs {ratio:.4f} of a bare request's instructions,"
            f" above the limit {args.limit}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
