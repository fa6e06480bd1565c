"""The thread slot holds the running request's id at every step, and 0 outside requests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from timeglass import TimeGlassMiddleware, _native

from apps import make_app
from conftest import events_of

pytestmark = pytest.mark.anyio


async def test_async_handler_sees_its_request(client_for: Any) -> None:
    app = make_app()
    async with client_for(TimeGlassMiddleware(app)) as client:
        assert (await client.get("/items/1")).status_code == 200
    rid, current = app.state.seen["items"]
    assert rid > 0
    assert current == rid
    assert _native.current_request() == 0
    assert [e["kind"] for e in events_of(rid)] == ["start", "end"]


async def test_sync_endpoint_in_thread_pool_sees_its_request(client_for: Any) -> None:
    async with client_for(TimeGlassMiddleware(make_app())) as client:
        body = (await client.get("/sync")).json()
    assert body["current"] == body["rid"] > 0


async def test_work_submitted_to_a_thread_pool_sees_its_request(client_for: Any) -> None:
    async with client_for(TimeGlassMiddleware(make_app())) as client:
        body = (await client.get("/pool")).json()
    assert body["executor"] == body["to_thread"] == body["rid"] > 0
    assert body["error"] == "from the pool", "the exception reaches the app unchanged"
    # Outside a request the pool's work is left unbound.
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, _native.current_request) == 0


async def test_child_task_sees_its_request(client_for: Any) -> None:
    async with client_for(TimeGlassMiddleware(make_app())) as client:
        body = (await client.get("/child")).json()
    assert body["child"] == body["rid"] > 0


async def test_concurrent_requests_see_their_own_id_at_every_step(client_for: Any) -> None:
    async with client_for(TimeGlassMiddleware(make_app())) as client:
        responses = await asyncio.gather(*(client.get("/interleave/20") for _ in range(4)))
    bodies = [r.json() for r in responses]
    assert len({b["rid"] for b in bodies}) == 4
    for b in bodies:
        assert b["steps"] == [b["rid"]] * 20
    assert _native.current_request() == 0


async def test_cancelled_request_is_ended_as_cancelled() -> None:
    started = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await asyncio.sleep(10)

    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/slow"}
    task = asyncio.ensure_future(TimeGlassMiddleware(slow_app)(scope, None, None))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (_, end) = events_of(scope["timeglass"].id)
    assert end["flags"] == 2 | 4  # END_CANCELLED | END_NO_RESPONSE


async def test_return_value_and_send_results_pass_through() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> str:
        sent.append(message)
        return "send result"

    async def app(scope: Any, receive: Any, send: Any) -> str:
        got = await send({"type": "http.response.start", "status": 204, "headers": []})
        assert got == "send result"
        return "app result"

    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/x"}
    assert await TimeGlassMiddleware(app)(scope, None, send) == "app result"
    assert sent == [{"type": "http.response.start", "status": 204, "headers": []}]
    (_, end) = events_of(scope["timeglass"].id)
    assert (end["status"], end["flags"]) == (204, 0)


def test_scope_is_a_coroutine_for_asyncio() -> None:
    from collections.abc import Coroutine

    async def inner() -> int:
        return 5

    scope = _native.bind_task(7, inner())
    assert isinstance(scope, Coroutine)
    assert asyncio.run(_run_as_task(scope)) == 5


async def _run_as_task(coro: Any) -> Any:
    return await asyncio.get_running_loop().create_task(coro)


async def test_bound_call_restores_the_slot() -> None:
    seen = _native.bind(41, _native.current_request)()
    assert seen == 41
    assert _native.current_request() == 0


async def test_existing_task_factory_is_chained() -> None:
    # The patches chain an existing task factory instead of replacing it.
    loop = asyncio.get_running_loop()
    calls: list[int] = []

    def factory(loop: Any, coro: Any, **kw: Any) -> Any:
        calls.append(1)
        return asyncio.Task(coro, loop=loop, **kw)

    loop.set_task_factory(factory)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=TimeGlassMiddleware(make_app())),
            base_url="http://t",
        ) as client:
            body = (await client.get("/child")).json()
        assert body["child"] == body["rid"]
        assert calls
    finally:
        loop.set_task_factory(None)


def test_threads_that_exit_give_their_slot_back() -> None:
    import threading

    _native.start()
    # More short-lived threads than the table has slots (1024), one at a time,
    # as anyio's idle workers come and go.
    for _ in range(1500):
        t = threading.Thread(target=_native.bind(1, lambda: None))
        t.start()
        t.join()
    assert _native.stats()["slotless_threads"] == 0
