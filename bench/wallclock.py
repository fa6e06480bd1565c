"""Wall-clock truth, for `make bench`: how close each request's flame graph is
to what it really did, and what sampling every in-flight request costs.

`fixtures.wall_app` knows its answer: each `/wall/<kind>` request burns 15 ms
of Python, then waits 60 ms in `wait_<kind>` its own way, and reports the
wait it measured. Printed here, alone and with six requests in flight:

* the error of each wait's share of its flame graph against that truth;
* how much of each request's wall time its flame graph and its time
  breakdown cover;
* torn plus switched samples with four concurrent sync requests.

Then the recorder's CPU with eight requests in flight (`wrk -c8` on a mix of
awaiting and sleeping requests) and with the app idle, wall-clock sampling
against `--gil-only-samples`, in interleaved rounds. Last, per CPython found
among the app environments (`.venv`, `.venv-X.Y` from `make matrix`): the
uncharged share with four sync requests in flight, walks per 20 ms
CPU-bound request, and the recorder's CPU under that load.

    python -m bench.wallclock [--rounds N] [--versions-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.measure import cpu_percent_during
from fixtures import attribution, harness

APP = "fixtures.wall_app:app"
KINDS = ("await", "sync-sleep", "async-block", "hash")
MIX = ["await", "sync-sleep", "hash", "await", "sync-sleep", "hash"]
FRAME_FUNCTION = re.compile(r"(?:^|;)(?:[\w<>]+\.)*(\w+) \(")


def parallel(client: httpx.Client, paths: list[str]) -> list[httpx.Response]:
    out: list[httpx.Response | None] = [None] * len(paths)

    def send(i: int, path: str) -> None:
        out[i] = client.get(path)

    threads = [threading.Thread(target=send, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in out if r is not None]


def share(folded: str, function: str) -> tuple[float, int]:
    total = mine = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        if function in FRAME_FUNCTION.findall(stack):
            mine += int(count)
    return (mine / total if total else 0.0), total


def judged(
    recorded: attribution.Recorded, sent: list[tuple[str, httpx.Response]], rows: list[Any]
) -> list[dict[str, float]]:
    by_path = {str(row["path"]): row for row in rows}
    out = []
    for path, response in sent:
        kind = path.split("/")[2]
        row = by_path[path]
        folded = recorded.folded(row["id"])
        shown = json.loads(recorded.cli("show", str(row["id"]), "--json"))
        got, weight = share(folded, "wait_" + kind.replace("-", "_"))
        truth = min(1.0, response.json()["wait_ms"] / row["duration_ms"])
        out.append(
            {
                "error": got - truth,
                "coverage": weight / row["duration_ms"],
                "breakdown": sum(shown["breakdown"].values()) / row["duration_ms"],
                "uncharged": (row["torn_samples"] + row["switched_samples"])
                / max(1, row["samples"] + row["torn_samples"] + row["switched_samples"]),
                "sync": kind in ("sync-sleep", "hash"),
            }
        )
    return out


class Tags:
    """`/wall/<kind>/<tag>` paths, a tag each, so responses pair with rows."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, kind: str) -> str:
        self.count += 1
        return f"/wall/{kind}/t{self.count}"


def accuracy(rounds: int) -> None:
    tag = Tags()
    alone: list[tuple[str, httpx.Response]] = []
    together: list[tuple[str, httpx.Response]] = []
    sync4: list[tuple[str, httpx.Response]] = []
    with tempfile.TemporaryDirectory(prefix="timeglass-wall-") as work:
        with attribution.recording(Path(work), app=APP) as (client, recorded):
            for kind in KINDS:  # warm-up: first-request imports
                client.get(f"/wall/{kind}/warm")
            for _ in range(rounds):
                for kind in KINDS:
                    path = tag(kind)
                    alone.append((path, client.get(path)))
                paths = [tag(k) for k in MIX]
                together.extend(zip(paths, parallel(client, paths), strict=True))
                paths = [tag(k) for k in ("sync-sleep", "hash", "sync-sleep", "hash")]
                sync4.extend(zip(paths, parallel(client, paths), strict=True))
        rows = [r for r in recorded.rows() if str(r["path"]).startswith("/wall/")]
        results = judged(recorded, alone + together + sync4, rows)
    n_alone, n_together = len(alone), len(together)
    groups = {
        "alone": results[:n_alone],
        "6 in flight": results[n_alone : n_alone + n_together],
        "4 sync in flight": results[n_alone + n_together :],
    }
    print(
        "\nWall-clock truth: 15 ms of Python, then a 60 ms wait (await, sleep in a sync"
        f" endpoint, sleep in async def, pbkdf2 off the GIL); {rounds} rounds\n"
    )
    print(
        f"  {'':<18} {'requests':>8} {'share error (points)':>22} {'flame graph':>14}"
        f" {'breakdown':>12} {'torn+switched':>14}"
    )
    print(f"  {'':<18} {'':>8} {'median   worst':>22} {'covers (min)':>14} {'sums to':>12}")
    for name, group in groups.items():
        errors = [100 * r["error"] for r in group]
        worst = max(errors, key=abs)
        covers = min(r["coverage"] for r in group)
        sums = statistics.median(r["breakdown"] for r in group)
        uncharged = statistics.median(r["uncharged"] for r in group)
        print(
            f"  {name:<18} {len(group):>8} {statistics.median(errors):+8.1f} {worst:+8.1f}"
            f" {100 * covers:>12.0f}% {100 * sums:>10.0f}% {100 * uncharged:>12.1f}%"
        )


@contextmanager
def served(work: Path, extra: tuple[str, ...] = ()) -> Iterator[tuple[harness.Process, int]]:
    """`timeglass run` around the wall-clock app, storing into WORK/cpu.db."""
    port = harness.free_port()
    argv = [
        str(harness.timeglass_bin()),
        "run",
        "--db",
        str(work / "cpu.db"),
        *extra,
        "--",
        *harness.uvicorn_argv(port, "--no-access-log", "--log-level", "warning", app=APP),
    ]
    with harness.Process(argv, log_dir=work / "logs", env=harness.clean_env()) as proc:
        proc.wait_for_port(port, timeout=30)
        yield proc, port
        proc.interrupt(timeout=30)


def wrk(url: str, connections: int, seconds: int) -> float:
    """Requests per second `wrk` measured."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else float("nan")


def recorder_cpu(mode: str, seconds: int) -> tuple[float, float, float]:
    """(busy %, idle %, requests/s) of the recorder with 8 requests in flight, then idle."""
    extra = ("--gil-only-samples",) if mode == "gil-only" else ()
    with (
        tempfile.TemporaryDirectory(prefix="timeglass-wallcpu-") as work,
        served(Path(work), extra) as (proc, port),
    ):
        url = f"http://127.0.0.1:{port}/wall/await/load?burn=2&wait=20"
        httpx.get(url, timeout=10)
        rps, busy = cpu_percent_during(proc.pid, lambda: wrk(url, 8, seconds))
        time.sleep(1)
        _, idle = cpu_percent_during(proc.pid, lambda: idle_for(seconds))
    return busy, idle, rps


def idle_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def cost(rounds: int, seconds: int) -> None:
    if not shutil.which("wrk"):
        print("  (wrk is not installed: recorder CPU not measured)")
        return
    found: dict[str, list[tuple[float, float, float]]] = {"wall": [], "gil-only": []}
    for _ in range(rounds):
        for mode in found:
            found[mode].append(recorder_cpu(mode, seconds))
    print(
        f"\n  Recorder CPU, 8 requests in flight (wrk -c8, /wall/await?burn=2&wait=20),"
        f" {rounds} interleaved rounds of {seconds} s, medians [min-max]:"
    )
    for mode, runs in found.items():
        busy = [r[0] for r in runs]
        idle = [r[1] for r in runs]
        rps = [r[2] for r in runs]
        print(
            f"    {mode:<9} busy {statistics.median(busy):5.1f}% [{min(busy):.1f}-{max(busy):.1f}]"
            f"  idle {statistics.median(idle):4.1f}% [{min(idle):.1f}-{max(idle):.1f}]"
            f"  app {statistics.median(rps):7.1f} req/s"
        )


def app_pythons() -> list[tuple[str, Path]]:
    """`.venv` and the `.venv-X.Y` app environments `make matrix` built."""
    found = []
    for venv in sorted(harness.REPO_ROOT.glob(".venv*")):
        python = venv / "bin" / "python"
        if python.exists() and (venv.name == ".venv" or venv.name.startswith(".venv-3.")):
            version = subprocess.run(
                [str(python), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            found.append((version, python))
    return sorted(found, key=lambda v: tuple(int(p) for p in v[0].split(".")))


def session_samples(recorded: attribution.Recorded) -> tuple[int, int, int]:
    """(samples, torn samples, requests) of the recording's one session."""
    (session,) = json.loads(recorded.cli("sessions", "--json"))
    return int(session["samples"]), int(session["torn_samples"]), int(session["requests"])


def one_version(seconds: int) -> tuple[float, float, float]:
    """On the apps' interpreter of the moment: (uncharged % with four sync
    requests in flight, walks per 20 ms CPU-bound request, recorder CPU %
    under a CPU-bound load)."""
    paths = Tags()
    with tempfile.TemporaryDirectory(prefix="timeglass-wallver-") as work:
        with attribution.recording(Path(work), app=APP) as (client, recorded):
            for kind in KINDS:
                client.get(f"/wall/{kind}/warm")
            for _ in range(5):
                parallel(client, [paths(k) for k in ("sync-sleep", "hash", "sync-sleep", "hash")])
        rows = [r for r in recorded.rows() if "/warm" not in str(r["path"])]
        uncharged = sum(int(r["torn_samples"]) + int(r["switched_samples"]) for r in rows)
        samples, _, _ = session_samples(recorded)
    with tempfile.TemporaryDirectory(prefix="timeglass-wallcpu-") as work:
        with served(Path(work)) as (proc, port):
            url = f"http://127.0.0.1:{port}/wall/await/cpu?burn=20&wait=0"
            httpx.get(url, timeout=10)
            _, busy = cpu_percent_during(proc.pid, lambda: wrk(url, 1, seconds))
        stored = attribution.Recorded(harness.timeglass_bin(), Path(work) / "cpu.db")
        cpu_samples, _, cpu_requests = session_samples(stored)
    return 100 * uncharged / max(1, samples), cpu_samples / max(1, cpu_requests), busy


def per_version(seconds: int) -> None:
    pythons = app_pythons()
    if not shutil.which("wrk") or not pythons:
        return
    print(
        "\n  Per CPython (apps on each app environment): uncharged samples with 4 sync"
        " requests in flight,\n  walks per 20 ms CPU-bound request at 1 kHz, and the"
        f" recorder's CPU under that load (wrk -c1, {seconds} s):"
    )
    header = f"{'python':<8} {'torn+switched':>14} {'walks / 20 ms request':>22}"
    print(f"    {header} {'recorder CPU':>13}")
    previous = os.environ.get(harness.TEST_PYTHON)
    try:
        for version, python in pythons:
            os.environ[harness.TEST_PYTHON] = str(python)
            uncharged, walks, busy = one_version(seconds)
            print(f"    {version:<8} {uncharged:>13.1f}% {walks:>22.1f} {busy:>12.1f}%")
    finally:
        if previous is None:
            os.environ.pop(harness.TEST_PYTHON, None)
        else:
            os.environ[harness.TEST_PYTHON] = previous


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--versions-only", action="store_true", help="only the per-CPython part")
    args = parser.parse_args(argv)
    if not args.versions_only:
        accuracy(args.rounds)
        cost(args.rounds, args.seconds)
    per_version(args.seconds)


if __name__ == "__main__":
    main()
