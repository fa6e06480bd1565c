"""What the app sees of its own request: ``request.scope["timeglass"]`` and
``request.state.timeglass``, and the opt-in ``Server-Timing`` header (issue 14)."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from timeglass import TimeGlassMiddleware

from apps import make_app
from conftest import events_of

pytestmark = pytest.mark.anyio

TIMING = re.compile(r"^total;dur=([\d.]+), db;dur=([\d.]+), cpu;dur=([\d.]+)$")


def info_app(db_path: Path) -> FastAPI:
    app = FastAPI()

    @app.get("/info")
    async def info(request: Request) -> dict[str, Any]:
        mine = request.scope["timeglass"]
        return {
            "id": mine.id,
            "pid": mine.pid,
            "url": mine.url,
            "same_in_state": request.state.timeglass is mine,
        }

    @app.get("/work")
    def work() -> dict[str, str]:
        # Known by construction: one statement of at least 40 ms, then 30 ms of CPU.
        conn = sqlite3.connect(db_path)
        conn.create_function("sleep_ms", 1, lambda ms: time.sleep(ms / 1000) or ms)
        conn.execute("SELECT sleep_ms(40)").fetchone()
        conn.close()
        end = time.thread_time() + 0.030
        while time.thread_time() < end:
            pass
        return {"ok": "yes"}

    @app.get("/async-cpu")
    async def async_cpu() -> dict[str, str]:
        end = time.thread_time() + 0.030
        while time.thread_time() < end:
            pass
        return {"ok": "yes"}

    return app


async def get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


async def test_the_request_knows_its_id_and_dashboard_url(tmp_path: Path) -> None:
    r = await get(TimeGlassMiddleware(info_app(tmp_path / "db")), "/info")
    body = r.json()
    (start, end) = events_of(body["id"])
    assert (start["path"], end["status"]) == ("/info", 200)
    assert body["pid"] == os.getpid()
    assert body["url"] == f"http://127.0.0.1:7477/requests/by-marker/{os.getpid()}/{body['id']}"
    assert body["same_in_state"] is True
    # By default nothing is added to the response.
    assert "server-timing" not in r.headers
    assert "x-timeglass-request" not in r.headers


async def test_dashboard_url_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMEGLASS_UI_URL", "http://localhost:9999/")
    body = (await get(TimeGlassMiddleware(info_app(tmp_path / "db")), "/info")).json()
    assert body["url"] == f"http://localhost:9999/requests/by-marker/{os.getpid()}/{body['id']}"


async def test_server_timing_when_asked(tmp_path: Path) -> None:
    app = TimeGlassMiddleware(info_app(tmp_path / "db"), server_timing=True)
    r = await get(app, "/work")
    assert r.json() == {"ok": "yes"}
    match = TIMING.match(r.headers["server-timing"])
    assert match, r.headers["server-timing"]
    total, db, cpu = (float(x) for x in match.groups())
    assert db >= 40.0, r.headers["server-timing"]
    assert total >= db + 30.0, r.headers["server-timing"]
    rid = int(r.headers["x-timeglass-request"])
    assert events_of(rid)[0]["path"] == "/work"
    # A sync endpoint's CPU is spent in the thread pool, not in the request's own steps:
    # cpu counts the event loop's share only, never more than the total.
    assert 0.0 <= cpu <= total


async def test_server_timing_cpu_of_an_async_endpoint(tmp_path: Path) -> None:
    app = TimeGlassMiddleware(info_app(tmp_path / "db"), server_timing=True)
    r = await get(app, "/async-cpu")
    total, db, cpu = (float(x) for x in TIMING.match(r.headers["server-timing"]).groups())  # type: ignore[union-attr]
    assert db == 0.0
    assert 30.0 <= cpu <= total + 0.5, r.headers["server-timing"]


async def test_server_timing_keeps_the_app_headers() -> None:
    plain = await get(make_app(), "/items/3")
    timed = await get(TimeGlassMiddleware(make_app(), server_timing=True), "/items/3")
    assert timed.content == plain.content
    added = {"server-timing", "x-timeglass-request"}
    kept = [(k, v) for k, v in timed.headers.multi_items() if k not in added]
    assert kept == plain.headers.multi_items()
    assert added <= set(timed.headers)


async def test_add_middleware_takes_the_option(tmp_path: Path) -> None:
    app = info_app(tmp_path / "db")
    app.add_middleware(TimeGlassMiddleware, server_timing=True)
    r = await get(app, "/info")
    assert int(r.headers["x-timeglass-request"]) == r.json()["id"]
