"""Small real FastAPI/Starlette apps used by the tests."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from timeglass import _native


class Boom(RuntimeError):
    pass


def make_app() -> FastAPI:
    app = FastAPI()
    app.state.seen = {}

    @app.get("/items/{item_id}")
    async def item(item_id: int, request: Request) -> Response:
        app.state.seen["items"] = (
            getattr(request.scope.get("timeglass"), "id", 0),
            _native.current_request(),
        )
        return Response(f"item {item_id}", headers={"x-item": str(item_id)}, media_type="text/x")

    @app.get("/boom")
    async def boom() -> None:
        raise Boom("boom")

    @app.get("/sync")
    def sync(request: Request) -> dict[str, int]:
        return {
            "rid": getattr(request.scope.get("timeglass"), "id", 0),
            "current": _native.current_request(),
        }

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        body = await request.body()
        return Response(body, media_type="application/octet-stream", headers={"set-cookie": "s=1"})

    @app.get("/pool")
    async def pool(request: Request) -> dict[str, Any]:
        def fails() -> None:
            raise LookupError("from the pool")

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, fails)
        except LookupError as e:
            error = str(e)
        return {
            "rid": getattr(request.scope.get("timeglass"), "id", 0),
            "executor": await loop.run_in_executor(None, _native.current_request),
            "to_thread": await asyncio.to_thread(_native.current_request),
            "error": error,
        }

    @app.get("/child")
    async def child(request: Request) -> dict[str, Any]:
        async def in_child() -> int:
            await asyncio.sleep(0)
            return _native.current_request()

        seen = await asyncio.create_task(in_child())
        return {"rid": getattr(request.scope.get("timeglass"), "id", 0), "child": seen}

    @app.get("/interleave/{n}")
    async def interleave(n: int, request: Request) -> dict[str, Any]:
        steps = []
        for _ in range(n):
            steps.append(_native.current_request())
            await asyncio.sleep(0)
        return {"rid": getattr(request.scope.get("timeglass"), "id", 0), "steps": steps}

    return app


def make_mounted_app() -> Starlette:
    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    inner = Starlette(routes=[Route("/hello/{name}", hello)])
    return Starlette(routes=[Mount("/v1", app=inner)])
