"""Run on the first request: what the marker adds so work outside the request's own task is
attributed to it.

The native middleware calls :func:`install` with the running loop on the first request it sees
on a loop whose task factory is not ours. Every patch is idempotent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
from collections.abc import Callable, Coroutine
from typing import Any

from timeglass import _native, _on_driver_import
from timeglass._patching import is_patched, mark_patched

_TaskFactoryFn = Callable[..., "asyncio.Future[Any]"]


class TaskFactory:
    """Loop task factory: a task created while a request runs keeps that request's id."""

    __slots__ = ("_previous",)

    def __init__(self, previous: _TaskFactoryFn | None) -> None:
        self._previous = previous

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        rid = _native.current_request()
        if rid and not isinstance(coro, _native.RequestScope):
            coro = _native.bind_task(rid, coro)
        if self._previous is not None:
            return self._previous(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Installs the task factory on ``loop`` (chaining any other), patches anyio, thread
    pools and FastAPI once, and starts capturing SQL statements and HTTP calls
    (``_on_driver_import``)."""
    patch_anyio_to_thread()
    patch_thread_pool_submit()
    patch_fastapi_endpoint()
    _on_driver_import.install()
    previous = loop.get_task_factory()
    if not isinstance(previous, TaskFactory):
        factory: Any = TaskFactory(previous)  # typeshed's protocol omits the keyword arguments
        loop.set_task_factory(factory)


def patch_anyio_to_thread() -> None:
    """Makes ``anyio.to_thread.run_sync`` bind the worker thread to the calling request.

    This is how FastAPI runs sync ``def`` endpoints and dependencies.
    """
    try:
        to_thread: Any = importlib.import_module("anyio.to_thread")
    except ImportError:
        return
    original = to_thread.run_sync
    if is_patched(original):
        return

    @functools.wraps(original)
    async def run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        rid = _native.current_request()
        if rid:
            func = _native.bind(rid, func)
        return await original(func, *args, **kwargs)

    mark_patched(run_sync)
    to_thread.run_sync = run_sync


def patch_thread_pool_submit() -> None:
    """Makes work a request submits to a ``ThreadPoolExecutor`` run bound to that request.

    ``loop.run_in_executor`` (asyncio's and uvloop's) and ``asyncio.to_thread`` both end in
    ``ThreadPoolExecutor.submit``. Work submitted outside a request is left as it is.
    """
    pool: Any = concurrent.futures.ThreadPoolExecutor
    original = pool.submit
    if is_patched(original):
        return

    @functools.wraps(original)
    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        rid = _native.current_request()
        if rid:
            fn = _native.bind(rid, fn)
        return original(self, fn, *args, **kwargs)

    mark_patched(submit)
    pool.submit = submit


def patch_fastapi_endpoint() -> None:
    """Marks when FastAPI calls a request's endpoint function.

    What runs before it (middleware, routing, dependencies) is the request's first stage
    on the dashboard's timeline. ``fastapi.routing`` looks the function up at each call,
    so replacing the module attribute is enough; an app without FastAPI is left alone.
    """
    try:
        routing: Any = importlib.import_module("fastapi.routing")
    except Exception:  # noqa: BLE001 - not installed, or broken: nothing to mark, the app runs
        return
    original = getattr(routing, "run_endpoint_function", None)
    if original is None or _native.is_mark_handler(original):
        return
    # Native, so no TimeGlass frame appears in the app's stacks.
    routing.run_endpoint_function = _native.mark_handler(original)
