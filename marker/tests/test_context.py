"""Context events: headers, query string and body as the app saw them, secrets redacted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from timeglass import TimeGlassMiddleware

from apps import make_app
from conftest import contexts_of, read_events

pytestmark = pytest.mark.anyio

PHASE_REQUEST, PHASE_RESPONSE, PHASE_HANDLER = 1, 2, 3


def last_rid() -> int:
    return max(e["request_id"] for e in read_events() if e["kind"] == "start")


async def post_echo(
    client_for: Callable[[Any], httpx.AsyncClient], app: Any, content: bytes, **kw: Any
) -> httpx.Response:
    async with client_for(app) as client:
        return await client.post("/echo?page=2&api_key=k123", content=content, **kw)


async def test_request_and_response_context_with_secrets_redacted(client_for: Any) -> None:
    body = json.dumps({"user": "ann", "password": "hunter2", "nested": {"token": "t0k"}}).encode()
    headers = {
        "authorization": "Bearer s3cr3t",
        "cookie": "session=abc",
        "x-api-key": "key",
        "content-type": "application/json",
        "x-trace": "visible",
    }
    r = await post_echo(client_for, TimeGlassMiddleware(make_app()), body, headers=headers)
    assert r.status_code == 200
    assert r.content == body, "the app must receive the body untouched"
    request, handler, response = contexts_of(last_rid())
    phases = (request["phase"], handler["phase"], response["phase"])
    assert phases == (PHASE_REQUEST, PHASE_HANDLER, PHASE_RESPONSE)
    # FastAPI called the endpoint after the request entered and before it responded.
    assert request["ts_ns"] <= handler["ts_ns"] <= response["ts_ns"]
    assert handler["headers"] == []
    assert handler["body"] == b""
    sent = dict(request["headers"])
    assert sent["x-trace"] == "visible"
    for secret in ("authorization", "cookie", "x-api-key"):
        assert sent[secret] == "[redacted]"
    assert request["query"] == "page=2&api_key=[redacted]"
    stored = json.loads(response["body"])
    assert stored == {"user": "ann", "password": "[redacted]", "nested": {"token": "[redacted]"}}
    assert response["body_bytes"] == len(body)
    got = dict(response["headers"])
    assert got["set-cookie"] == "[redacted]"
    assert got["content-type"] == "application/octet-stream"
    for event in (request, response):
        flat = repr(event)
        for secret in ("s3cr3t", "session=abc", "hunter2", "t0k", "k123"):
            assert secret not in flat


async def test_multipart_form_secrets_are_redacted(client_for: Any) -> None:
    async with client_for(TimeGlassMiddleware(make_app())) as client:
        r = await client.post(
            "/echo",
            data={"username": "ann", "password": "hunter2"},
            files={"avatar": ("me.txt", b"file body", "text/plain")},
        )
    assert r.status_code == 200
    assert b"hunter2" in r.content, "the app must receive the body untouched"
    stored = contexts_of(last_rid())[-1]["body"]
    assert b"hunter2" not in stored
    assert b'name="password"\r\n\r\n[redacted]\r\n' in stored
    assert b"ann" in stored
    assert b"file body" in stored


async def test_large_bodies_are_cut_but_counted_and_delivered_whole(client_for: Any) -> None:
    body = b"x" * 100_000
    r = await post_echo(client_for, TimeGlassMiddleware(make_app()), body)
    assert r.content == body
    response = contexts_of(last_rid())[-1]
    assert response["phase"] == PHASE_RESPONSE
    assert len(response["body"]) == 16 * 1024
    assert response["body_bytes"] == len(body)
