"""TimeGlass marker: tells the TimeGlass profiler which request each thread is running.

Use ``app.add_middleware(TimeGlassMiddleware)``, wrap an ASGI app with
``TimeGlassMiddleware(app)``, or let ``timeglass run`` inject it without code changes.
Whatever happens, the marker never changes a response or raises into the app.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["TimeGlassMiddleware", "current_request", "stats"]

try:
    from timeglass import _native, _record
except ImportError as exc:  # pragma: no cover - exercised only without the extension
    _native = None  # type: ignore[assignment]
    print(
        f"timeglass: native marker unavailable ({exc}); requests are not recorded", file=sys.stderr
    )


class _PassThrough:
    """Stands in for the native middleware when it cannot be loaded."""

    def __init__(self, app: ASGIApp, *args: Any, **options: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


if _native is not None:

    class TimeGlassMiddleware(_native.TimeGlassMiddleware):
        """ASGI middleware recording each HTTP request for TimeGlass.

        ``request.scope["timeglass"]`` (and ``request.state.timeglass``) is the request's
        ``RequestInfo``: its ``id`` and the ``url`` of its profile on the dashboard.
        ``server_timing=True`` adds ``Server-Timing`` (total, db, cpu) and
        ``X-TimeGlass-Request`` to every response; off by default, when TimeGlass never
        changes a response. Other options are accepted and ignored, so
        ``app.add_middleware(TimeGlassMiddleware)`` works. Calling it runs in Rust and
        returns an awaitable around the app's coroutine.
        """

        def __init__(self, app: ASGIApp, *args: Any, **options: Any) -> None:
            # Servers (uvicorn's `--interface auto`) pick the ASGI version by asking whether
            # `obj.__call__` is a coroutine function; the native slot is not one. This
            # instance attribute answers for it, while `obj(...)` still takes the fast slot.
            native_call = super().__call__

            async def __call__(scope: Scope, receive: Receive, send: Send) -> None:
                await native_call(scope, receive, send)

            self.__call__ = __call__  # type: ignore[method-assign]
            # Without `timeglass run`, the first marked process of the tree starts a recorder.
            _record.ensure(_native.stats()["ring_path"])

    def current_request() -> int:
        """The id of the request the calling thread is executing, 0 when none."""
        return _native.current_request()

    def stats() -> dict[str, Any]:
        """The marker's counters: enabled, pid, ring_path, records_written, dropped,
        ring_position (ring slots claimed), inflight."""
        return _native.stats()

else:  # pragma: no cover

    class TimeGlassMiddleware(_PassThrough):  # type: ignore[no-redef]
        """Pass-through stand-in: the native marker could not be loaded."""

    def current_request() -> int:
        return 0

    def stats() -> dict[str, Any]:
        return {"enabled": False}
