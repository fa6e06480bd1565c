"""Zero-code injection: every Starlette/FastAPI app is recorded, outside its own middlewares.

Imported by the ``sitecustomize`` that ``timeglass run`` puts on ``PYTHONPATH``. It patches
``Starlette.__call__`` (now, or right after ``starlette.applications`` is first imported) so the
app object handed to any server is wrapped in :class:`timeglass.TimeGlassMiddleware` outside
its ``ServerErrorMiddleware``. Stdlib only, like the rest of the package.
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

_TARGET = "starlette.applications"
_MARK = "__timeglass_patched__"
_CACHE_ATTR = "_timeglass_marker"


def install() -> None:
    """Patches Starlette now if it is imported, otherwise as soon as it is; hooks the database
    drivers and HTTP clients before the app imports them (``_capture``)."""
    try:
        from timeglass import _capture

        _capture.install()
    except Exception as exc:
        print(f"timeglass: SQL and HTTP capture is off ({exc!r})", file=sys.stderr)
    module = sys.modules.get(_TARGET)
    if module is not None:
        patch_starlette(module)
    elif not any(isinstance(f, _PostImportHook) for f in sys.meta_path):
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


def _mark_coroutine_function(func: Any) -> None:
    """Servers check ``iscoroutinefunction(app.__call__)`` to pick ASGI 3: keep answering yes."""
    marker = getattr(inspect, "markcoroutinefunction", None)  # Python >= 3.12
    if marker is not None:
        marker(func)
    legacy = getattr(asyncio.coroutines, "_is_coroutine", None)  # Python < 3.12
    if legacy is not None:
        func._is_coroutine = legacy


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Finds ``starlette.applications`` through the other finders, patches it once executed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._inner.exec_module(module)
        try:
            patch_starlette(module)
        except Exception as exc:
            print(f"timeglass: cannot wrap Starlette apps ({exc})", file=sys.stderr)
