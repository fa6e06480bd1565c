"""Bad input to the middleware: it must not raise into the app nor corrupt the ring.

Each test hands `TimeGlassMiddleware` what a careless server or app could: headers that are
not text, a header of a megabyte, a scope with only its type, websocket and lifespan
scopes, a response that never starts. The app must see exactly what it was given, and the
ring must read back whole: every event decodes, and the events around the bad request are
the ones expected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from timeglass import TimeGlassMiddleware, stats

from conftest import contexts_of, events_of, read_all_events

pytestmark = pytest.mark.anyio

END_ERROR, END_CANCELLED, END_NO_RESPONSE = 1, 2, 4
MAX_HEADER_BYTES = 16 * 1024


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class App:
    """Answers 200 "ok", noting the scope it was called with."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def run(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await TimeGlassMiddleware(app)(scope, _receive, send)
    return sent


def http_scope(**items: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": "/x",
        "query_string": b"",
        "headers": [(b"host", b"t")],
    }
    scope.update(items)
    return scope


def assert_ring_reads_back() -> None:
    """Every record of the ring decodes (an undecodable one comes back as an error)."""
    events = read_all_events()
    assert events
    assert all("kind" in e and e["kind"] != "error" for e in events), [
        e for e in events if e.get("kind") in (None, "error")
    ]


def last_request_id(app: App) -> int:
    return int(app.scopes[-1]["timeglass"].id)


async def test_headers_that_are_not_text() -> None:
    app = App()
    headers = [
        (b"x-latin", "café".encode("latin-1")),  # not UTF-8
        (b"x-binary", bytes(range(256))),
        (b"X-MIXED-Case", b"v"),
        ("x-str-name", "str values are not ASGI"),  # wrong types: skipped
        (b"x-list", ["not", "bytes"]),
        [b"x-as-list", b"fine"],
        (b"x-short",),
        "not a pair",
        (b"authorization", b"Basic \xff\xfe secret"),
    ]
    sent = await run(app, http_scope(headers=headers))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert app.scopes[0]["headers"] is headers
    rid = last_request_id(app)
    request = dict(contexts_of(rid)[0]["headers"])
    assert request["x-latin"] == "caf\ufffd"
    assert request["x-mixed-case"] == "v"
    assert request["x-as-list"] == "fine"
    assert request["authorization"] == "[redacted]"
    assert "x-str-name" not in request
    assert "x-list" not in request
    assert [e["kind"] for e in events_of(rid)] == ["start", "end"]
    assert_ring_reads_back()


async def test_huge_headers_are_cut_and_the_ring_stays_whole() -> None:
    app = App()
    big = b"v" * (1024 * 1024)
    headers = [(b"x-big", big)] + [(b"x-h%d" % i, b"x" * 300) for i in range(200)]
    headers.append((b"cookie", b"c" * 100_000))
    sent = await run(app, http_scope(headers=headers, query_string=b"q=" + b"a" * 200_000))
    assert sent[0]["status"] == 200
    assert app.scopes[0]["headers"][0][1] is big  # the app's bytes are untouched
    rid = last_request_id(app)
    request = contexts_of(rid)[0]
    carried = dict(request["headers"])
    assert sum(len(n) + len(v) for n, v in carried.items()) <= MAX_HEADER_BYTES
    assert 0 < len(carried["x-big"]) < len(big)
    assert carried["cookie"] == "[redacted]"
    assert "x-h0" in carried
    assert len(request["query"]) <= 8 * 1024
    assert [e["kind"] for e in events_of(rid)] == ["start", "end"]
    # The next request is recorded as usual.
    await run(app, http_scope(path="/after"))
    after = last_request_id(app)
    assert events_of(after)[0]["path"] == "/after"
    assert_ring_reads_back()


async def test_scope_with_only_its_type() -> None:
    app = App()
    sent = await run(app, {"type": "http"})
    assert sent[0]["status"] == 200
    rid = last_request_id(app)
    start, end = events_of(rid)
    assert (start["method"], start["path"]) == ("", "")
    assert (end["status"], end["flags"], end["route"]) == (200, 0, "")
    assert contexts_of(rid)[0]["headers"] == []
    assert_ring_reads_back()


async def test_scope_with_values_of_the_wrong_type() -> None:
    app = App()
    scope = http_scope(
        method=b"GET",
        path=None,
        headers=None,
        query_string="q=1",
        http_version=2,
        root_path=3,
        route="not a route",
    )
    sent = await run(app, scope)
    assert sent[0]["status"] == 200
    start, end = events_of(last_request_id(app))
    assert (start["method"], start["path"], end["status"]) == ("", "", 200)
    assert_ring_reads_back()


async def test_websocket_scope_passes_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))
        message = await receive()
        assert message == {"type": "websocket.connect"}
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    before = stats()["records_written"]
    scope = {"type": "websocket", "path": "/ws", "headers": [(b"host", b"t")]}
    await TimeGlassMiddleware(app)(scope, receive, send)
    assert seen == [(scope, receive, send)]
    assert "timeglass" not in scope
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert stats()["records_written"] == before


async def test_lifespan_scope_passes_through() -> None:
    # Its shutdown removes the ring file, so that part runs in a process of its own
    # (test_process.py); here the startup, and a lifespan the app refuses.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        raise RuntimeError("no lifespan here")

    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        sent.append(message)

    before = stats()["records_written"]
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}}
    with pytest.raises(RuntimeError, match="no lifespan here"):
        await TimeGlassMiddleware(app)(scope, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete"]
    assert stats()["records_written"] == before
    assert "timeglass" not in scope
    assert stats()["ring_path"] is not None


async def test_unknown_scope_types_pass_through() -> None:
    called: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    for scope in ({"type": "webtransport"}, {"type": None}, {}, {"type": b"http"}):
        await TimeGlassMiddleware(app)(scope, None, None)
        assert called[-1] is scope
        assert "timeglass" not in scope


async def test_response_that_never_starts() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    silent_scope = http_scope(path="/silent")
    assert await run(silent, silent_scope) == []
    _, end = events_of(silent_scope["timeglass"].id)
    assert (end["status"], end["flags"]) == (0, END_NO_RESPONSE)

    async def body_without_start(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.body", "body": b"x"})

    odd_scope = http_scope(path="/odd")
    sent = await run(body_without_start, odd_scope)
    assert [m["type"] for m in sent] == ["http.response.body"]
    _, end = events_of(odd_scope["timeglass"].id)
    assert end["flags"] & END_NO_RESPONSE

    async def raises(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError("before the response")

    raising_scope = http_scope(path="/raises")
    with pytest.raises(KeyError, match="before the response"):
        await run(raises, raising_scope)
    _, end = events_of(raising_scope["timeglass"].id)
    assert end["flags"] == END_ERROR | END_NO_RESPONSE
    assert stats()["inflight"] == 0
    assert_ring_reads_back()


async def test_response_that_hangs_until_cancelled() -> None:
    started = asyncio.Event()

    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await asyncio.sleep(3600)

    scope = http_scope(path="/hangs")
    task = asyncio.ensure_future(run(hangs, scope))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _, end = events_of(scope["timeglass"].id)
    assert end["flags"] == END_CANCELLED | END_NO_RESPONSE
    assert stats()["inflight"] == 0


async def test_messages_that_are_not_dicts_reach_the_server() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(["not", "a", "dict"])
        await send({"type": "http.response.start", "status": "200"})
        await send({"type": "http.response.start", "status": 201, "headers": None})
        await send({"type": "http.response.body", "more_body": "yes"})
        await send({"type": "http.response.body"})

    scope = http_scope(path="/odd-messages")
    await TimeGlassMiddleware(app)(scope, _receive, send)
    assert len(sent) == 5
    _, end = events_of(scope["timeglass"].id)
    assert end["status"] == 201
    assert_ring_reads_back()
