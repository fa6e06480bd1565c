"""What the driver patches of ``_drivers.py`` are made of: the timing
calls into ``_native``, and the wrappers that record a statement without changing what the
wrapped method returns or raises.
"""

from __future__ import annotations

import contextvars
import functools
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from timeglass import _native
from timeglass._guard import never_raise
from timeglass._patching import is_patched, mark_patched

begin = _native.query_begin
end = _native.query_end
call_end = _native.call_end

#: True while SQLAlchemy times a statement: the driver below it must not record it again.
#: A context variable, so concurrent requests on one loop do not see each other's.
IN_ORM: contextvars.ContextVar[bool] = contextvars.ContextVar("timeglass_in_orm", default=False)

Extract = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, Any]]
Rows = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Driver:
    """A library whose statements or calls are captured once it is imported."""

    module: str
    #: Versions the patch knows, ``(low, high)``: low <= (major, minor) < high. None: any.
    versions: tuple[tuple[int, int], tuple[int, int]] | None
    patch: Callable[[types.ModuleType], None]


def record(
    start: int,
    driver: str,
    extract: Extract,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    rows: Any,
    error: BaseException | None,
) -> None:
    with never_raise:
        sql, params = extract(args, kwargs)
        end(start, driver, sql, params, rows, error)


def rows_or_unknown(rows: Rows, target: Any, result: Any) -> Any:
    try:
        return rows(target, result)
    except Exception:  # noqa: BLE001 - a count that cannot be read is unknown, never an error
        return -1


def timed_async(
    original: Callable[..., Any],
    driver: str,
    extract: Extract,
    rows: Rows,
    *,
    extract_for: Callable[[Any], Extract] | None = None,
) -> Any:
    """An ``async`` statement method that records itself when it runs under a request.

    ``extract_for(self)``, when given, makes the extract from the object the method is
    called on (a statement that only that object can render), instead of ``extract``.
    """
    if is_patched(original):
        return original

    @functools.wraps(original)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = begin()
        if not start or IN_ORM.get():
            return await original(self, *args, **kwargs)
        how = extract if extract_for is None else extract_for(self)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            record(start, driver, how, args, kwargs, -1, exc)
            raise
        record(start, driver, how, args, kwargs, rows_or_unknown(rows, self, result), None)
        return result

    mark_patched(method)
    return method


def wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Any]) -> None:
    """Replaces ``cls.name`` (defined on ``cls`` itself) with ``make(original)``."""
    original = cls.__dict__.get(name)
    if original is None:
        raise AttributeError(f"{cls.__qualname__}.{name} is missing")
    setattr(cls, name, make(original))
