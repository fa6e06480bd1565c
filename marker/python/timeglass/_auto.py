"""Zero-code injection: every Starlette/FastAPI app is recorded, outside its own middlewares.

Imported by the ``sitecustomize`` that ``timeglass run`` puts on ``PYTHONPATH``. It patches
``Starlette.__call__`` (now, or right after ``starlette.applications`` is first imported) so the
app object handed to any server is wrapped in :class:`timeglass.TimeGlassMiddleware` outside
its ``ServerErrorMiddleware``, and Uvicorn's ``Server.shutdown`` so that a graceful shutdown
is told apart from a crash even without a lifespan. Stdlib only, like the rest of the package.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import inspect
import sys
import types
from collections.abc import Sequence
from typing import Any

from timeglass._guard import never_raise

_MARK = "__timeglass_patched__"
_CACHE_ATTR = "_timeglass_marker"


def install() -> None:
    """Patches Starlette now if it is imported, otherwise as soon as it is; hooks the database
    drivers and HTTP clients before the app imports them (``_capture``)."""
    try:
        from timeglass import _capture

        _capture.install()
    except Exception as exc:  # noqa: BLE001 - capture is off, the app starts as before
        print(f"timeglass: SQL and HTTP capture is off ({exc!r})", file=sys.stderr)
    pending = False
    for name, patch in _PATCHES.items():
        module = sys.modules.get(name)
        if module is not None:
            _patch_quietly(name, patch, module)
        else:
            pending = True
    if pending and not any(isinstance(f, _PostImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportHook())


def patch_starlette(module: types.ModuleType) -> None:
    starlette_cls: Any = module.Starlette
    original = starlette_cls.__call__
    if getattr(original, _MARK, False):
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
    setattr(__call__, _MARK, True)
    starlette_cls.__call__ = __call__


def patch_uvicorn_shutdown(module: types.ModuleType) -> None:
    """Marks the process as cleanly stopped once Uvicorn's graceful shutdown has finished.

    Without a lifespan, nothing else tells a clean stop from a crash: Uvicorn re-raises the
    SIGTERM or SIGINT it caught after shutting down, so ``atexit`` never runs.
    """
    server_cls: Any = module.Server
    original = server_cls.shutdown
    if getattr(original, _MARK, False):
        return

    async def shutdown(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await original(self, *args, **kwargs)
        with never_raise:
            from timeglass import _native

            _native.stopped()
        return result

    shutdown.__qualname__ = original.__qualname__
    shutdown.__doc__ = original.__doc__
    setattr(shutdown, _MARK, True)
    server_cls.shutdown = shutdown


_PATCHES = {
    "starlette.applications": patch_starlette,
    "uvicorn.server": patch_uvicorn_shutdown,
}


def _patch_quietly(name: str, patch: Any, module: types.ModuleType) -> None:
    try:
        patch(module)
    except Exception as exc:  # noqa: BLE001 - unpatched, the app runs as before
        print(f"timeglass: cannot patch {name} ({exc!r})", file=sys.stderr)


def _mark_coroutine_function(func: Any) -> None:
    """Servers check ``iscoroutinefunction(app.__call__)`` to pick ASGI 3: keep answering yes."""
    marker = getattr(inspect, "markcoroutinefunction", None)  # Python >= 3.12
    if marker is not None:
        marker(func)
    legacy = getattr(asyncio.coroutines, "_is_coroutine", None)  # Python < 3.12
    if legacy is not None:
        func._is_coroutine = legacy


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Finds the modules of ``_PATCHES`` through the other finders, patches each once executed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        patch = _PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, fullname, patch)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, name: str, patch: Any) -> None:
        self._inner = inner
        self._name = name
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._inner.exec_module(module)
        _patch_quietly(self._name, self._patch, module)
