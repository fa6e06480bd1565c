"""Cost of allocation sampling (`timeglass run --memory`) per FastAPI request, in-process.

Drives FastAPI endpoints through `TimeGlassMiddleware` N times, with the scope uvicorn
hands over: `GET /health` (a dict) and `GET /items/{id}` (a pydantic model with a list of
20 dicts, closer to an app's request). Allocation sampling is decided when the marker is
imported, from `TIMEGLASS_MEMORY`, so each configuration is its own process:

    TIMEGLASS_MEMORY=1 python marker/bench/alloc_cost.py [--requests N] [--endpoint health|items]
    TIMEGLASS_MEMORY=0 python marker/bench/alloc_cost.py ...

prints microseconds per request. For the figure that decides the default, count
instructions instead, which do not drift with the machine's load:

    valgrind --tool=callgrind --callgrind-out-file=on.out env TIMEGLASS_MEMORY=1 \\
        python marker/bench/alloc_cost.py --requests 2000
    (the same with TIMEGLASS_MEMORY=0), then (on - off) / off of the two totals, less
    the start-up both share: run each with `--requests 0` too and subtract.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("TIMEGLASS_RUNTIME_DIR", tempfile.mkdtemp(prefix="timeglass-bench-"))

from fastapi import FastAPI
from pydantic import BaseModel

from timeglass import TimeGlassMiddleware, _native


class Item(BaseModel):
    id: int
    name: str
    tags: list[dict[str, Any]]


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> Item:
        tags = [{"key": f"k{i}", "value": i * item_id} for i in range(20)]
        return Item(id=item_id, name=f"item {item_id}", tags=tags)

    return app


def scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


async def run(requests: int, path: str) -> float:
    marked = TimeGlassMiddleware(make_app())
    for _ in range(200):  # the first requests install the marker's patches, warm caches
        await marked(scope(path), receive, send)
    t0 = time.perf_counter()
    for _ in range(requests):
        await marked(scope(path), receive, send)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--endpoint", choices=("health", "items"), default="items")
    args = parser.parse_args()
    path = "/health" if args.endpoint == "health" else "/items/7"
    seconds = asyncio.run(run(args.requests, path))
    state = "on" if _native.memory_sampling() else "off"
    per = seconds / args.requests * 1e6 if args.requests else 0.0
    print(f"allocation sampling {state}: GET {path}: {per:.2f} us/request")


if __name__ == "__main__":
    main()
