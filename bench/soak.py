"""The soak (issue 15): the fixture app at its maximum rate under `timeglass run --ui`
for ten minutes with wrk's 64 connections, while 50 dashboard clients hold the live
request stream open. Reports the recorder's RSS over time (it must stay flat and under
200 MB), requests sent against requests recorded (equal) and lost events (0).

    python -m bench.soak                                    # the measurement
    python -m bench.soak --seconds 5 --connections 4 --clients 2   # a smoke run

A bench, not a test: it wants a quiet machine, and prints figures for the README.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from fixtures import harness

PATH = "/items/1"


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def sent_by_wrk(output: str) -> int:
    match = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not match:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    return int(match.group(1))


class LiveClients:
    """`count` clients each reading the list's live stream until stopped."""

    def __init__(self, base: str, count: int) -> None:
        self.base, self.count = base, count
        self.events = [0] * count
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.read, args=(i,)) for i in range(count)]

    def read(self, i: int) -> None:
        with httpx.Client(base_url=self.base, timeout=None) as client:
            while not self.stop.is_set():
                try:
                    with client.stream("GET", "/api/v1/requests/stream?after=0") as stream:
                        for line in stream.iter_lines():
                            if line.startswith("data:"):
                                self.events[i] += 1
                            if self.stop.is_set():
                                return
                except httpx.HTTPError:
                    time.sleep(0.1)

    def __enter__(self) -> LiveClients:
        for t in self.threads:
            t.daemon = True
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="timeglass-soak-"))
    db = tmp / "soak.db"
    port, ui_port = harness.free_port(), harness.free_port()
    argv = [str(harness.timeglass_bin()), "run", "--db", str(db), "--ui"]
    argv += ["--ui-port", str(ui_port), "--", *harness.uvicorn_argv(port)]
    env = harness.clean_env({"FIXTURE_DB": str(tmp / "fixture.db")})
    rss: list[tuple[float, float]] = []
    with harness.Process(argv, log_dir=tmp, env=env, name="soak") as run:
        run.wait_for_port(port)
        run.wait_for_port(ui_port)
        httpx.get(f"http://127.0.0.1:{port}{PATH}", timeout=10)  # one before wrk
        load = [f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s"]
        wrk = subprocess.Popen(
            ["wrk", *load, f"http://127.0.0.1:{port}{PATH}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        start = time.monotonic()
        with LiveClients(f"http://127.0.0.1:{ui_port}", args.clients) as live:
            while wrk.poll() is None:
                rss.append((time.monotonic() - start, rss_mb(run.pid)))
                time.sleep(1.0)
            output = wrk.communicate()[0]
        time.sleep(1.0)  # the last requests reach the store
        run.interrupt(timeout=60)
        stderr = run.stderr()
    sent = sent_by_wrk(output) + 1
    sessions = subprocess.run(
        [str(harness.timeglass_bin()), "sessions", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    (session,) = json.loads(sessions.stdout)
    # Only the load's path: waiting for the port sent requests of its own.
    with sqlite3.connect(db) as conn:
        query = "SELECT count(*) FROM requests WHERE path = ?"
        (recorded,) = conn.execute(query, (PATH,)).fetchone()
    print(f"\nsoak: {args.seconds} s, wrk -c{args.connections}, {args.clients} live clients")
    in_flight = f"+ up to {args.connections} in flight"
    print(f"requests to {PATH} sent {sent} ({in_flight}), recorded {recorded}")
    print(f"lost events {session['lost_events']}, lost requests {session['lost_requests']}")
    print(f"live stream events received: {sum(live.events)}")
    step = max(1, len(rss) // 20)
    for at, mb in rss[::step]:
        print(f"recorder RSS at {at:6.0f} s: {mb:7.1f} MB")
    peak = max((mb for _, mb in rss), default=float("nan"))
    print(f"recorder RSS peak {peak:.1f} MB (target < 200 MB, flat)")
    if "warning" in stderr:
        print(stderr)
    # wrk counts the requests answered before it stopped; those its connections
    # still had in flight were answered (and recorded) after.
    ok = sent <= recorded <= sent + args.connections and session["lost_events"] == 0 and peak < 200
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
