"""Run at interpreter start-up: every Starlette/FastAPI app is recorded, outside its own
middlewares.

Imported by the ``sitecustomize`` that ``timeglass run`` puts on ``PYTHONPATH`` (only then). It
patches
``Starlette.__call__`` (now, or right after ``starlette.applications`` is first imported) so the
app object handed to any server is wrapped in :class:`timeglass.TimeGlassMiddleware` outside
its ``ServerErrorMiddleware``, and Uvicorn's ``Server.shutdown`` so that a graceful shutdown
is told apart from a crash even without a lifespan. Stdlib only, like the rest of the package.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import types
from typing import Any

from timeglass._guard import never_raise
from timeglass._patching import after_import, is_patched, mark_patched

_CACHE_ATTR = "_timeglass_marker"


def install() -> None:
    """Patches Starlette now if it is imported, otherwise as soon as it is; hooks the database
    drivers and HTTP clients before the app imports them (``_on_driver_import``)."""
    try:
        from timeglass import _on_driver_import

        _on_driver_import.install()
    except Exception as exc:  # noqa: BLE001 - capture is off, the app starts as before
        print(f"timeglass: SQL and HTTP capture is off ({exc!r})", file=sys.stderr)
    for name, patch in _PATCHES.items():
        after_import(name, _quietly(name, patch))


def patch_starlette(module: types.ModuleType) -> None:
    starlette_cls: Any = module.Starlette
    original = starlette_cls.__call__
    if is_patched(original):
        return
    from timeglass import TimeGlassMiddleware

    def __call__(self: Any, scope: Any, receive: Any, send: Any) -> Any:
        marker = self.__dict__.get(_CACHE_ATTR)
        if marker is None:
            marker = TimeGlassMiddleware(types.MethodType(original, self))
            self.__dict__[_CACHE_ATTR] = marker
        return marker(scope, receive, send)

    __call__.__qualname__ = original.__qualname__
    __call__.__doc__ = original.__doc__
    _mark_coroutine_function(__call__)
    mark_patched(__call__)
    starlette_cls.__call__ = __call__


def patch_uvicorn_shutdown(module: types.ModuleType) -> None:
    """Marks the process as cleanly stopped once Uvicorn's graceful shutdown has finished.

    Without a lifespan, nothing else tells a clean stop from a crash: Uvicorn re-raises the
    SIGTERM or SIGINT it caught after shutting down, so ``atexit`` never runs.
    """
    server_cls: Any = module.Server
    original = server_cls.shutdown
    if is_patched(original):
        return

    async def shutdown(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await original(self, *args, **kwargs)
        with never_raise:
            from timeglass import _native

            _native.stopped()
        return result

    shutdown.__qualname__ = original.__qualname__
    shutdown.__doc__ = original.__doc__
    mark_patched(shutdown)
    server_cls.shutdown = shutdown


_PATCHES = {
    "starlette.applications": patch_starlette,
    "uvicorn.server": patch_uvicorn_shutdown,
}


def _quietly(name: str, patch: Any) -> Any:
    """``patch``, saying in one line why it could not be applied instead of raising."""

    def apply(module: types.ModuleType) -> None:
        try:
            patch(module)
        except Exception as exc:  # noqa: BLE001 - unpatched, the app runs as before
            with never_raise:
                print(f"timeglass: cannot patch {name} ({exc!r})", file=sys.stderr)

    return apply


def _mark_coroutine_function(func: Any) -> None:
    """Servers check ``iscoroutinefunction(app.__call__)`` to pick ASGI 3: keep answering yes."""
    marker = getattr(inspect, "markcoroutinefunction", None)  # Python >= 3.12
    if marker is not None:
        marker(func)
    legacy = getattr(asyncio.coroutines, "_is_coroutine", None)  # Python < 3.12
    if legacy is not None:
        func._is_coroutine = legacy
