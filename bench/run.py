"""`make bench`: what TimeGlass costs a FastAPI app, measured with wrk.

Four configurations of the same single-worker uvicorn serving the fixture app:

  bare       uvicorn fixtures.demo_app:app
  marker     the same, with the marker injected (PYTHONPATH + TIMEGLASS_AUTO=1) and
             no recorder: the per-request cost inside the app alone
  full       timeglass run -- uvicorn ...: marker plus the sampling recorder, capturing
             every SQL statement
  nocapture  the same with TIMEGLASS_CAPTURE=0: what capturing statements costs is
             `full` against this, on /queries (10 small SQLite statements per request)
  gilonly    `full` sampling only the GIL holder (`--gil-only-samples`, the first
             version's design): what wall-clock sampling of every request in flight
             costs is `full` against this, on every endpoint

They are interleaved (ABCABC...) over several short rounds so drift on the
machine (thermal, other load) spreads over all of them, and medians are
reported. Each round starts a fresh server. The recorder's own CPU use is read
from /proc/<pid>/stat of the `timeglass` process only, not the app's.

`--capture-only` runs just `full` and `nocapture` on /queries, then the
per-statement cost, and skips the other parts (walk, accuracy, wallclock,
compare, exports, dashboard, callgrind); each of those runs alone too, e.g.
`python -m bench.compare`.
`python -m bench.callgrind` counts the marker's instructions per FastAPI request and fails
above 1.03 of bare, then a garbage collection's with the GC callback; `make bench` runs it too.

Stdlib only; run from the repository root as `python -m bench.run`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from bench import accuracy, callgrind, compare, dashboard, exports, walk, wallclock
from bench.measure import cpu_percent_during
from fixtures import harness

CONFIGS = ("bare", "marker", "full", "nocapture", "gilonly", "memory")
RECORDED = ("full", "nocapture", "gilonly", "memory")
# `timeglass run --memory` is on by default only if it keeps this share of
# full's throughput (it is opt-in: README).
MEMORY_FLOOR = 0.98
ENDPOINTS = ("/health", "/cpu?ms=5", "/queries?n=10")
# Capture must keep at least this share of the throughput without it.
CAPTURE_FLOOR = 0.95
# Wall-clock sampling must keep this share of GIL-only sampling's throughput.
WALL_FLOOR = 0.98
UVICORN_QUIET = ("--no-access-log", "--log-level", "warning")
RESULTS_DIR = harness.REPO_ROOT / "bench-results"
MARKER_COST = harness.REPO_ROOT / "marker" / "bench" / "marker_cost.py"
CAPTURE_COST = harness.REPO_ROOT / "marker" / "bench" / "capture_cost.py"
GC_COST = harness.REPO_ROOT / "marker" / "bench" / "gc_cost.py"
ALLOC_COST = harness.REPO_ROOT / "marker" / "bench" / "alloc_cost.py"


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass(frozen=True)
class Measurement:
    round: int
    config: str
    endpoint: str
    wrk: WrkResult
    recorder_cpu_percent: float | None


# --- wrk ---------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return float(match.group(1)) * _UNIT_MS[match.group(2)] if match else float("nan")


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rps:
        raise BenchError(f"could not read wrk's output:\n{text}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(float(rps.group(1)), _latency_ms(text, "50"), _latency_ms(text, "99"), errors)


def wrk(url: str, seconds: int, args: argparse.Namespace) -> WrkResult:
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` failed:\n{done.stderr}")
    return parse_wrk(done.stdout)


# --- the three configurations ------------------------------------------------


def installed_package_dir() -> Path:
    code = "import os, timeglass; print(os.path.dirname(timeglass.__file__))"
    done = subprocess.run(
        [str(harness.venv_python()), "-c", code], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"the marker is not installed in .venv (run `make build`):\n{done.stderr}")
    return Path(done.stdout.strip())


@contextmanager
def marker_env() -> Iterator[dict[str, str]]:
    """What `timeglass run` gives its child, minus the recorder.

    PYTHONPATH: a directory with the bootstrap `sitecustomize.py` and the package.
    TIMEGLASS_RUNTIME_DIR: a private directory on tmpfs for the ring file, as
    `timeglass run` makes one.
    """
    package = installed_package_dir()
    bootstrap = package / "_bootstrap" / "sitecustomize.py"
    if not bootstrap.exists():
        raise BenchError(f"{bootstrap} is missing: the marker wheel has no bootstrap")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with (
        tempfile.TemporaryDirectory(prefix="timeglass-bench-inject-") as inject,
        tempfile.TemporaryDirectory(prefix="timeglass-bench-", dir=shm) as runtime,
    ):
        shutil.copy(bootstrap, Path(inject) / "sitecustomize.py")
        (Path(inject) / "timeglass").symlink_to(package, target_is_directory=True)
        yield {"PYTHONPATH": inject, "TIMEGLASS_AUTO": "1", "TIMEGLASS_RUNTIME_DIR": runtime}


@contextmanager
def serve(config: str, port: int, work: Path, marker: dict[str, str]) -> Iterator[harness.Process]:
    app = harness.uvicorn_argv(port, *UVICORN_QUIET)
    env = harness.clean_env()
    if config == "marker":
        env.update(marker)
    argv = app
    if config in RECORDED:
        extra = {"gilonly": ["--gil-only-samples"], "memory": ["--memory"]}.get(config, [])
        argv = [
            str(harness.timeglass_bin()),
            "run",
            "--db",
            str(work / "bench.db"),
            *extra,
            "--",
            *app,
        ]
    if config == "nocapture":
        env["TIMEGLASS_CAPTURE"] = "0"
    with harness.Process(argv, log_dir=work / "logs", name=config, env=env) as process:
        try:
            process.wait_for_port(port)
        except harness.HarnessError as error:
            raise BenchError(f"{config}: {error}") from None
        yield process
        try:
            process.interrupt()
        except harness.HarnessError as error:
            raise BenchError(f"{config}: {error}") from None


# --- CPU of the recorder -------------------------------------------------------

# --- running ------------------------------------------------------------------


def one_round(
    index: int, config: str, args: argparse.Namespace, work: Path, marker: dict[str, str]
) -> tuple[list[Measurement], float | None]:
    """Start `config`, warm it, measure every endpoint; for `full`, also an idle window."""
    port = harness.free_port()
    base = f"http://127.0.0.1:{port}"
    measurements = []
    idle_cpu = None
    # Without capture only the statements endpoint differs from `full`.
    only_queries = config == "nocapture" or args.capture_only
    endpoints = ENDPOINTS[-1:] if only_queries else ENDPOINTS
    with serve(config, port, work, marker) as server:
        for endpoint in endpoints:
            wrk(base + endpoint, args.warmup, args)
        for endpoint in endpoints:
            load = partial(wrk, base + endpoint, args.duration, args)
            if config in RECORDED:
                result, cpu = cpu_percent_during(server.pid, load)
            else:
                result, cpu = load(), None
            measurements.append(Measurement(index, config, endpoint, result, cpu))
            progress(index, args, config, f"{endpoint:<11} {result.requests_per_s:9.1f} req/s", cpu)
        if config == "full" and not args.capture_only:
            _, idle_cpu = cpu_percent_during(server.pid, partial(time.sleep, args.idle))
            progress(index, args, config, f"{'idle':<11} {'':>15}", idle_cpu)
    return measurements, idle_cpu


def progress(
    index: int, args: argparse.Namespace, config: str, what: str, cpu: float | None
) -> None:
    recorder = f"   recorder {cpu:5.1f}% of a core" if cpu is not None else ""
    print(f"  round {index + 1}/{args.rounds}  {config:<7} {what}{recorder}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(measurements: list[Measurement], idle: list[float]) -> None:
    by_key: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    for m in measurements:
        by_key[(m.config, m.endpoint)].append(m)

    print("\nThroughput (median over rounds; ratio against bare on the same endpoint)\n")
    header = (
        f"  {'config':<8} {'endpoint':<11} {'req/s':>9} {'min-max':>15}"
        f" {'vs bare':>8} {'p50 ms':>8} {'p99 ms':>8}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for endpoint in ENDPOINTS:
        bare = median([m.wrk.requests_per_s for m in by_key[("bare", endpoint)]])
        for config in CONFIGS:
            runs = by_key[(config, endpoint)]
            if not runs:
                continue
            rps = [m.wrk.requests_per_s for m in runs]
            spread = f"{min(rps):.0f}-{max(rps):.0f}"
            vs_bare = f"{median(rps) / bare:7.3f}x" if by_key[("bare", endpoint)] else f"{'-':>8}"
            print(
                f"  {config:<8} {endpoint:<11} {median(rps):9.1f} {spread:>15}"
                f" {vs_bare}"
                f" {median([m.wrk.p50_ms for m in runs]):8.2f}"
                f" {median([m.wrk.p99_ms for m in runs]):8.2f}"
            )
    errors = sum(m.wrk.errors for m in measurements)
    if errors:
        print(f"\n  warning: wrk saw {errors} socket errors or non-2xx responses")

    for endpoint in ENDPOINTS:
        full, sampled = by_key[("full", endpoint)], by_key[("memory", endpoint)]
        if full and sampled:
            ratio = median([m.wrk.requests_per_s for m in sampled]) / median(
                [m.wrk.requests_per_s for m in full]
            )
            floor = "ok" if ratio >= MEMORY_FLOOR else f"below the {MEMORY_FLOOR:.2f} floor"
            print(f"  allocation sampling on {endpoint}: {ratio:.3f}x of full ({floor})")

    queries = ENDPOINTS[-1]
    on = median([m.wrk.requests_per_s for m in by_key[("full", queries)]])
    off = median([m.wrk.requests_per_s for m in by_key[("nocapture", queries)]])
    verdict = "ok" if on / off >= CAPTURE_FLOOR else f"BELOW the {CAPTURE_FLOOR:.2f} floor"
    print(
        f"\nSQL capture on {queries}: {on:.1f} req/s with, {off:.1f} without,"
        f" ratio {on / off:.3f} ({verdict})"
    )

    gil_only = [m for m in measurements if m.config == "gilonly"]
    if gil_only:
        print("\nWall-clock sampling against GIL-only sampling (full / gilonly, same rounds)\n")
        for endpoint in ENDPOINTS:
            wall = median([m.wrk.requests_per_s for m in by_key[("full", endpoint)]])
            gil = median([m.wrk.requests_per_s for m in by_key[("gilonly", endpoint)]])
            ratio = wall / gil
            verdict = "ok" if ratio >= WALL_FLOOR else f"BELOW the {WALL_FLOOR:.2f} floor"
            print(
                f"  {endpoint:<14} {wall:9.1f} vs {gil:9.1f} req/s  ratio {ratio:.3f} ({verdict})"
            )

    print("\nRecorder CPU (the `timeglass` process only, percent of one core, median)\n")
    for endpoint in ENDPOINTS:
        for config in RECORDED:
            cpu = [m.recorder_cpu_percent for m in by_key[(config, endpoint)]]
            known = [c for c in cpu if c is not None]
            if known:
                print(f"  {config:<9} busy on {endpoint:<11} {median(known):6.1f}%")
    if idle:
        print(f"  full      idle {'':<14} {median(idle):6.1f}%")


def save(measurements: list[Measurement], idle: list[float], args: argparse.Namespace) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"bench-{stamp}.json"
    data = {
        "when": stamp,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "python": platform.python_version(),
        "settings": vars(args),
        "measurements": [asdict(m) for m in measurements],
        "recorder_idle_cpu_percent": idle,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def marker_cost(capture_only: bool) -> None:
    if not capture_only:
        print("\nMarker cost per request (marker/bench/marker_cost.py)\n", flush=True)
        subprocess.run([str(harness.venv_python()), str(MARKER_COST)], check=False)
    print("\nCapture cost per SQL statement (marker/bench/capture_cost.py)\n", flush=True)
    subprocess.run([str(harness.venv_python()), str(CAPTURE_COST)], check=False)
    if capture_only:
        return
    print("\nGC callback cost per collection (marker/bench/gc_cost.py)\n", flush=True)
    subprocess.run([str(harness.venv_python()), str(GC_COST)], check=False)
    print(
        "\nAllocation sampling per request, off then on (marker/bench/alloc_cost.py)\n", flush=True
    )
    for memory in ("0", "1"):
        env = {**os.environ, "TIMEGLASS_MEMORY": memory}
        subprocess.run([str(harness.venv_python()), str(ALLOC_COST)], check=False, env=env)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark TimeGlass's overhead with wrk.")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of ABC (default 5)")
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per endpoint")
    parser.add_argument("--idle", type=int, default=3, help="seconds of idle recorder CPU")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s: a smoke test")
    parser.add_argument(
        "--capture-only",
        action="store_true",
        help="only full and nocapture on /queries, then the per-statement cost",
    )
    parser.add_argument(
        "--overhead-only",
        action="store_true",
        help="only the throughput and recorder CPU of bare, marker, full and nocapture",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.idle = 1, 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print(
            "error: `wrk` is not installed; `make bench` installs it with apt-get", file=sys.stderr
        )
        return 1
    if not harness.timeglass_bin().exists():
        print(f"error: {harness.timeglass_bin()} is missing: run `make build`", file=sys.stderr)
        return 1
    measurements: list[Measurement] = []
    idle: list[float] = []
    configs = ("full", "nocapture") if args.capture_only else CONFIGS
    print(
        f"{args.rounds} rounds of {' '.join(configs)}, {args.duration} s per endpoint,"
        f" wrk -t{args.threads} -c{args.connections}, 1 uvicorn worker, {os.cpu_count()} CPUs\n"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="timeglass-bench-") as work, marker_env() as env:
            for index in range(args.rounds):
                for config in configs:
                    found, idle_cpu = one_round(index, config, args, Path(work), env)
                    measurements.extend(found)
                    idle.extend([idle_cpu] if idle_cpu is not None else [])
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report(measurements, idle)
    print(f"\nRaw numbers: {save(measurements, idle, args).relative_to(harness.REPO_ROOT)}")
    if args.overhead_only:
        return 0
    marker_cost(args.capture_only)
    if args.capture_only:
        return 0
    # Instructions per request, not time: the check that the marker stays within 3% of a
    # FastAPI request, which the machine's load cannot move.
    print(
        "\nMarker instructions per FastAPI request and per collection (bench/callgrind.py)\n",
        flush=True,
    )
    instructions = callgrind.main([])
    print()
    walk.main()
    accuracy.main()
    wallclock.main([])
    compared = compare.main([])
    exported = exports.main([])
    return dashboard.main() or compared or instructions or exported


if __name__ == "__main__":
    sys.exit(main())
