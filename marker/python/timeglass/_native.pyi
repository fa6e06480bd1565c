"""Type stubs of the native marker (``marker/src``)."""

import os
from collections.abc import Awaitable, Callable, Generator
from typing import Any, final

from typing_extensions import disjoint_base

__all__ = [
    "BoundCall",
    "BoundTimed",
    "RequestScope",
    "SendWrapper",
    "TimeGlassMiddleware",
    "TimedMethod",
    "_read_events",
    "bind",
    "bind_task",
    "call_end",
    "configure_capture",
    "current_request",
    "query_begin",
    "query_end",
    "start",
    "stats",
]

@disjoint_base
class TimeGlassMiddleware:
    @property
    def app(self) -> Any: ...
    def __new__(cls, app: Any, *_args: Any, **_options: Any) -> TimeGlassMiddleware: ...
    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[Any]: ...

@final
class RequestScope:
    @property
    def request_id(self) -> int: ...
    @property
    def cr_frame(self) -> Any: ...
    @property
    def cr_await(self) -> Any: ...
    @property
    def cr_code(self) -> Any: ...
    @property
    def cr_running(self) -> Any: ...
    def __await__(self) -> Generator[Any, Any, Any]: ...
    def __iter__(self) -> RequestScope: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any: ...
    def close(self) -> Any: ...

@final
class SendWrapper:
    def __call__(self, message: Any, /) -> Any: ...

@final
class TimedMethod:
    @property
    def original(self) -> Callable[..., Any]: ...
    def __new__(
        cls,
        original: Callable[..., Any],
        driver: str,
        rows_from_result: bool,
        suppress: Any = None,
    ) -> TimedMethod: ...
    def __get__(self, obj: Any, owner: Any = None) -> Any: ...
    def __call__(self, target: Any, *args: Any, **kwargs: Any) -> Any: ...

@final
class BoundTimed:
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

@final
class BoundCall:
    @property
    def func(self) -> Callable[..., Any]: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

def current_request() -> int: ...
def bind(rid: int, func: Callable[..., Any]) -> BoundCall: ...
def bind_task(rid: int, coro: Any) -> RequestScope: ...
def stats() -> dict[str, Any]: ...
def start() -> bool: ...
def _read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]: ...
def configure_capture(hidden: list[str], library: list[str], params: bool) -> None: ...
def query_begin() -> int: ...
def query_end(
    start_ns: int,
    driver: str,
    sql: object,
    params: object = None,
    rows: object = None,
    error: BaseException | None = None,
    outer: object = None,
) -> None: ...
def call_end(
    start_ns: int,
    library: str,
    method: str,
    url: object,
    status: object = None,
    error: BaseException | None = None,
    outer: object = None,
) -> None: ...
