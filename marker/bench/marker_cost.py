"""Per-request and per-step cost of the marker, in-process, without a server.

Drives a trivial ASGI app's coroutine directly (no event loop) N times, with and without
`TimeGlassMiddleware`, and prints microseconds per request (median of several rounds).
Then does the same for an app that suspends K times, to get the cost of one task step.

    python bench/marker_cost.py [--requests N] [--rounds R] [--steps K]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import types
from collections.abc import Callable, Generator
from typing import Any

os.environ.setdefault("TIMEGLASS_RUNTIME_DIR", tempfile.mkdtemp(prefix="timeglass-bench-"))

from timeglass import TimeGlassMiddleware

START = {"type": "http.response.start", "status": 200, "headers": []}
BODY = {"type": "http.response.body", "body": b"ok"}


@types.coroutine
def _suspend() -> Generator[None, None, None]:
    yield None


def make_app(steps: int) -> Callable[..., Any]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(steps):
            await _suspend()
        await send(START)
        await send(BODY)

    return app


async def _send(message: Any) -> None:
    return None


def drive(app: Callable[..., Any], n: int) -> float:
    """Seconds for n requests, each a fresh scope driven to completion."""
    t0 = time.perf_counter()
    for _ in range(n):
        coro = app({"type": "http", "method": "GET", "path": "/"}, None, _send)
        try:
            while True:
                coro.send(None)
        except StopIteration:
            pass
    return time.perf_counter() - t0


def per_request_us(app: Callable[..., Any], n: int, rounds: int) -> float:
    drive(app, n // 10)  # warm up
    return statistics.median(drive(app, n) / n * 1e6 for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    base_cost = 0.0
    for steps in (0, args.steps):
        bare = make_app(steps)
        marked = TimeGlassMiddleware(bare)
        n = args.requests if steps == 0 else max(args.requests // steps, 1000)
        b = per_request_us(bare, n, args.rounds)
        m = per_request_us(marked, n, args.rounds)
        print(
            f"{steps:>4} suspensions: bare {b:7.3f} us/request, marked {m:7.3f} us/request, "
            f"marker cost {m - b:6.3f} us/request"
        )
        if steps:
            print(f"      per step: {(m - b - base_cost) / steps * 1000:6.1f} ns")
        else:
            base_cost = m - b


if __name__ == "__main__":
    main()
