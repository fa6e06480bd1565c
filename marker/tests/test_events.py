"""Start/end events of real requests, and responses left exactly as they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.middleware import Middleware

from timeglass import TimeGlassMiddleware

from apps import Boom, make_app, make_mounted_app
from conftest import events_of, read_events

pytestmark = pytest.mark.anyio

END_ERROR, END_CANCELLED, END_NO_RESPONSE = 1, 2, 4


def wrapped() -> Any:
    return TimeGlassMiddleware(make_app())


async def get(
    client_for: Callable[[Any], httpx.AsyncClient], app: Any, path: str
) -> httpx.Response:
    async with client_for(app) as client:
        return await client.get(path)


def last_request_events() -> list[dict[str, Any]]:
    rid = max(e["request_id"] for e in read_events() if e["kind"] == "start")
    return events_of(rid)


async def test_ok_request_has_start_and_end(client_for: Any) -> None:
    r = await get(client_for, wrapped(), "/items/7?x=1")
    assert r.status_code == 200
    start, end = last_request_events()
    assert start["kind"] == "start"
    assert end["kind"] == "end"
    assert (start["method"], start["path"]) == ("GET", "/items/7")
    assert (end["status"], end["flags"], end["route"]) == (200, 0, "/items/{item_id}")
    assert start["ts_ns"] <= end["ts_ns"]


async def test_not_found_has_no_route(client_for: Any) -> None:
    r = await get(client_for, wrapped(), "/missing")
    assert r.status_code == 404
    _, end = last_request_events()
    assert (end["status"], end["flags"], end["route"]) == (404, 0, "")


async def test_responses_are_unchanged(client_for: Any) -> None:
    plain = await get(client_for, make_app(), "/items/3")
    marked = await get(client_for, wrapped(), "/items/3")
    assert marked.status_code == plain.status_code
    assert marked.content == plain.content
    assert marked.headers.multi_items() == plain.headers.multi_items()


async def test_app_exception_reaches_the_server_unchanged() -> None:
    for app in (make_app(), wrapped()):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with pytest.raises(Boom, match="boom"):
                await client.get("/boom")
    _, end = last_request_events()
    assert end["flags"] & END_ERROR
    assert end["route"] == "/boom"


async def test_error_outside_server_error_middleware_sees_the_500(client_for: Any) -> None:
    app = make_app()
    outer = TimeGlassMiddleware(app)  # outside FastAPI's ServerErrorMiddleware
    r = await get(client_for, outer, "/boom")
    assert r.status_code == 500
    _, end = last_request_events()
    assert (end["status"], end["flags"]) == (500, END_ERROR)


async def test_add_middleware_records_once(client_for: Any) -> None:
    app = make_app()
    app.add_middleware(TimeGlassMiddleware, some_option=1)
    before = len(read_events())
    r = await get(client_for, TimeGlassMiddleware(app), "/items/1")
    assert r.status_code == 200
    assert len(read_events()) - before == 2


async def test_starlette_middleware_list_is_accepted(client_for: Any) -> None:
    from starlette.applications import Starlette

    app = Starlette(middleware=[Middleware(TimeGlassMiddleware)])
    r = await get(client_for, app, "/nothing")
    assert r.status_code == 404
    assert last_request_events()[0]["path"] == "/nothing"


async def test_mounted_route_is_prefixed(client_for: Any) -> None:
    r = await get(client_for, TimeGlassMiddleware(make_mounted_app()), "/v1/hello/ann")
    assert r.text == "hi"
    _, end = last_request_events()
    assert end["route"] == "/v1/hello/{name}"


async def test_non_http_scopes_pass_through() -> None:
    calls = []

    async def app(scope: Any, receive: Any, send: Any) -> str:
        calls.append(scope["type"])
        return "inner result"

    marker = TimeGlassMiddleware(app)
    scope: dict[str, Any] = {"type": "lifespan"}
    assert await marker(scope, None, None) == "inner result"
    assert "timeglass" not in scope
    assert calls == ["lifespan"]


async def test_auto_wrapping_plus_add_middleware_records_once(client_for: Any) -> None:
    import starlette.applications as sa

    from timeglass import _at_startup

    original = sa.Starlette.__call__
    _at_startup.patch_starlette(sa)
    try:
        app = make_app()
        app.add_middleware(TimeGlassMiddleware)
        before = len(read_events())
        r = await get(client_for, app, "/boom")
        assert r.status_code == 500
        new = read_events()[before:]
        assert [e["kind"] for e in new] == ["start", "end"]
        # Auto-wrapping sits outside FastAPI's own error middleware: it sees the 500.
        assert (new[1]["status"], new[1]["flags"]) == (500, END_ERROR)
    finally:
        sa.Starlette.__call__ = original  # type: ignore[method-assign]


async def test_uvicorn_detects_asgi3() -> None:
    import uvicorn

    config = uvicorn.Config(TimeGlassMiddleware(make_app()))
    config.load()
    assert config.interface == "asgi3"
