"""One configuration of the callgrind measurement of `bench/callgrind.py`, run under valgrind.

Drives FastAPI's ASGI callable directly (no server, no socket) with the scope uvicorn hands
over for ``GET /items?page=2&token=abc`` with five headers, ``Authorization`` and ``Cookie``
among them: N requests, bare or wrapped in ``TimeGlassMiddleware``, with the context capture
on as by default. ``bench/callgrind.py`` runs it for two values of N and takes the difference,
so interpreter start-up and imports cancel out.

    python marker/bench/request_instructions.py bare|marked N
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import Any

os.environ.setdefault("TIMEGLASS_RUNTIME_DIR", tempfile.mkdtemp(prefix="timeglass-bench-"))

HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"accept", b"application/json"),
    (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"),
    (b"cookie", b"session=7f3a9c1e2b4d; theme=dark; _ga=GA1.1.123456789.1700000000"),
]

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/items",
    "raw_path": b"/items",
    "query_string": b"page=2&token=abc",
    "root_path": "",
    "headers": HEADERS,
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "state": {},
}


def make_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/items")
    async def items(page: int = 1) -> dict[str, int]:
        return {"page": page}

    return app


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


async def drive(target: Any, n: int) -> None:
    for _ in range(n):
        scope = dict(SCOPE)
        scope["state"] = {}
        await target(scope, receive, send)


def main() -> None:
    config, n = sys.argv[1], int(sys.argv[2])
    app = make_app()
    if config == "marked":
        from timeglass import TimeGlassMiddleware

        target: Any = TimeGlassMiddleware(app)
    elif config == "bare":
        target = app
    else:
        raise SystemExit(f"error: unknown configuration {config!r} (bare or marked)")
    asyncio.run(drive(target, n))


if __name__ == "__main__":
    main()
