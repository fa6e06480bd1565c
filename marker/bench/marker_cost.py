"""Per-request and per-step cost of the marker, in-process, without a server.

Drives a trivial ASGI app's coroutine directly (no event loop) N times, with and without
`TimeGlassMiddleware`, and prints microseconds per request (median of several rounds).
Then does the same for an app that suspends K times, to get the cost of one task step.
Last, a FastAPI ``GET /health`` with the scope uvicorn hands over (so request and response
context are captured as in a real run), bare and marked in alternating rounds.

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


HEALTH_SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/health",
    "raw_path": b"/health",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


def fastapi_health(requests: int, rounds: int) -> None:
    import asyncio

    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def timed(target: Callable[..., Any], n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await target(dict(HEALTH_SCOPE), receive, _send)
        return (time.perf_counter() - t0) / n * 1e6

    async def compare() -> tuple[float, float]:
        marked = TimeGlassMiddleware(app)
        await timed(marked, n=200)  # the first request installs the marker's patches
        bare_us, marked_us = [], []
        for _ in range(rounds):
            bare_us.append(await timed(app, requests))
            marked_us.append(await timed(marked, requests))
        return statistics.median(bare_us), statistics.median(marked_us)

    b, m = asyncio.run(compare())
    print(
        f"FastAPI GET /health: bare {b:7.2f} us/request, marked {m:7.2f} us/request, "
        f"marker cost {m - b:5.2f} us/request ({(m - b) / b * 100:.1f}%)"
    )


if __name__ == "__main__":
    main()
    fastapi_health(requests=3000, rounds=7)
