"""Cost of capturing one SQL statement, in-process, without a server.

Drives a request through `TimeGlassMiddleware` (as marker_cost.py does) whose app runs K small
statements on an SQLite file: once on a connection made before capture was installed (plain
sqlite3) and once on one made after (every statement timed, its stack captured, an event
published). Prints microseconds per statement for both and their difference, median of rounds.

The statements run DEPTH Python frames below the request (default 35, about what uvicorn,
Starlette and FastAPI put above an endpoint), since the issuing stack is walked per statement.
With `--only plain` or `--only captured` it runs that app alone and prints only its time: for
instruction counts under `valgrind --tool=callgrind`, which do not drift with the machine's load.

    python marker/bench/capture_cost.py [--queries K] [--requests N] [--rounds R] [--depth D]
        [--only plain|captured]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TIMEGLASS_RUNTIME_DIR", tempfile.mkdtemp(prefix="timeglass-bench-"))

from timeglass import TimeGlassMiddleware, _on_driver_import, stats

START = {"type": "http.response.start", "status": 200, "headers": []}
BODY = {"type": "http.response.body", "body": b"ok"}


async def _send(message: Any) -> None:
    return None


def make_app(conn: sqlite3.Connection, queries: int, depth: int) -> Callable[..., Any]:
    def run(below: int) -> None:
        if below > 0:
            return run(below - 1)
        for i in range(queries):
            conn.execute("SELECT name FROM items WHERE id = ?", (i,)).fetchone()
        return None

    async def app(scope: Any, receive: Any, send: Any) -> None:
        run(depth)
        await send(START)
        await send(BODY)

    return app


def drive(app: Callable[..., Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        coro = app({"type": "http", "method": "GET", "path": "/"}, None, _send)
        try:
            while True:
                coro.send(None)
        except StopIteration:
            pass
    return time.perf_counter() - t0


def per_query_us(
    apps: list[Callable[..., Any]], requests: int, queries: int, rounds: int
) -> list[float]:
    """Median microseconds per statement of each app, rounds interleaved against drift."""
    for app in apps:
        drive(app, requests // 10)
    times: list[list[float]] = [[] for _ in apps]
    for _ in range(rounds):
        for app, out in zip(apps, times, strict=True):
            out.append(drive(app, requests) / (requests * queries) * 1e6)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--depth", type=int, default=35)
    parser.add_argument("--only", choices=("plain", "captured"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        with sqlite3.connect(path) as setup:
            setup.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
            setup.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"n{i}") for i in range(100)])
        plain = sqlite3.connect(path)
        _on_driver_import.install()
        captured = sqlite3.connect(path)
        apps = [
            TimeGlassMiddleware(make_app(c, args.queries, args.depth)) for c in (plain, captured)
        ]
        if args.only:
            app = apps[0] if args.only == "plain" else apps[1]
            print(f"{args.only}: {drive(app, args.requests):.3f} s")
            return
        before = stats()["records_written"]
        off, on = per_query_us(apps, args.requests, args.queries, args.rounds)
        published = stats()["records_written"] - before
    statements = (args.requests // 10 + args.requests * args.rounds) * args.queries
    assert published >= statements, f"only {published} events for {statements} statements"
    print(
        f"sqlite3, {args.queries} statements per request, {args.depth} frames deep: "
        f"plain {off:6.2f} us/statement, "
        f"captured {on:6.2f} us/statement, capture cost {on - off:5.2f} us/statement"
    )


if __name__ == "__main__":
    main()
