"""How the marker changes other code: the one import hook, and the one "already patched" mark.

Every patch TimeGlass applies (Starlette and Uvicorn at start-up, the drivers when they are
imported, anyio and thread pools on the first request) marks what it replaced with
:data:`MARK`, so applying it twice is a no-op; and every patch of a module that is not imported
yet waits for it through :func:`after_import`, one finder on ``sys.meta_path`` for them all.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

#: Set to True on whatever a patch replaced or wrapped (a function, a class, a module).
MARK = "__timeglass_patched__"

_lock = threading.Lock()
_waiting: dict[str, list[Callable[[types.ModuleType], None]]] = {}


def is_patched(obj: Any) -> bool:
    return bool(getattr(obj, MARK, False))


def mark_patched(obj: Any) -> None:
    setattr(obj, MARK, True)


def after_import(name: str, patch: Callable[[types.ModuleType], None]) -> None:
    """Calls ``patch(module)`` now if module ``name`` is imported, and after each execution of
    it from now on (a module imported again after leaving ``sys.modules``). ``patch`` must not
    raise: the callers' patches report their own failures."""
    with _lock:
        patches = _waiting.setdefault(name, [])
        if patch not in patches:
            patches.append(patch)
        if not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())
    module = sys.modules.get(name)
    if module is not None:
        patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the modules patches wait for through the other finders, and wraps their loader."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _waiting:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, fullname)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    """The module's own loader, then the patches waiting for it."""

    def __init__(self, inner: importlib.abc.Loader, name: str) -> None:
        self._inner = inner
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._inner.exec_module(module)
        with _lock:
            patches = list(_waiting.get(self._name, ()))
        for patch in patches:
            patch(module)

    def __getattr__(self, name: str) -> Any:
        # Resource readers and `get_data` callers see the real loader.
        return getattr(self._inner, name)
