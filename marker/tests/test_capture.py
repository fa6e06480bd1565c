"""Capture with the explicit middleware line: drivers are patched on the first request."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from timeglass import TimeGlassMiddleware, _on_driver_import

from conftest import events_of, read_events

pytestmark = pytest.mark.anyio


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/db")
    async def db() -> dict[str, Any]:
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        try:
            conn.execute("SELECT nope FROM t")
        except sqlite3.OperationalError as exc:
            raised = type(exc) is sqlite3.OperationalError and "nope" in str(exc)
        conn.close()
        return {"raised": raised}

    return app


async def test_first_request_installs_capture_and_statements_are_recorded(
    client_for: Callable[[Any], httpx.AsyncClient],
) -> None:
    async with client_for(TimeGlassMiddleware(make_app())) as client:
        response = await client.get("/db")
    assert response.json() == {"raised": True}
    assert getattr(sys.modules["sqlite3"], "__timeglass_patched__", False)
    (start,) = [e for e in read_events() if e["kind"] == "start" and e["path"] == "/db"][-1:]
    queries = [e for e in events_of(start["request_id"]) if e["kind"] == "query"]
    assert [q["sql"] for q in queries] == [
        "CREATE TABLE t (x)",
        "INSERT INTO t VALUES (?)",
        "SELECT nope FROM t",
    ]
    assert queries[1]["params"] == "[(1,), (2,)]"
    assert queries[1]["rows"] == 2
    assert queries[2]["error"] == "OperationalError: no such column: nope"
    assert all(q["driver"] == "sqlite3" for q in queries)
    # The first event of a stack defines it; the caller's frame is the endpoint.
    defined = next(q for q in queries if q["frames"])
    assert defined["frames"][-1][0].endswith("db"), defined["frames"][-1]


async def test_install_is_idempotent_and_nothing_is_recorded_outside_requests() -> None:
    _on_driver_import.install()
    _on_driver_import.install()
    before = len(read_events())
    conn = sqlite3.connect(":memory:")
    conn.execute("SELECT 1").fetchone()
    conn.close()
    assert len(read_events()) == before
