"""What each supported driver needs patched for ``_on_driver_import`` to time its statements
or calls.

Drivers built in C (``sqlite3``, ``psycopg2``) cannot be patched in place: their ``connect``
hands out subclasses of the connection class the app asked for, whose cursors are timed
subclasses of the cursor class it asked for (``isinstance`` still holds). The others get their
statement methods wrapped; SQLAlchemy is followed through its own event hooks, and the driver
under it then records nothing twice. Sync statement methods are wrapped in
``_native.TimedMethod`` (timed in Rust, no Python frame added); async ones in Python.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any

from timeglass import _native
from timeglass._guard import never_raise
from timeglass._patching import is_patched, mark_patched
from timeglass._wrappers import (
    IN_ORM,
    Driver,
    Extract,
    begin,
    call_end,
    end,
    record,
    rows_or_unknown,
    timed_async,
    wrap,
)

# --- how statements, parameters and rows are found in each method's arguments ----------------


def _sql_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``execute(sql, params)``-shaped methods, whatever the parameter names."""
    values = list(args) + list(kwargs.values())
    return (values[0] if values else ""), (values[1] if len(values) > 1 else None)


def _sql_star_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """asyncpg's ``fetch(query, *args)``."""
    return (args[0] if args else kwargs.get("query", "")), (args[1:] or None)


def _rowcount(target: Any, result: Any) -> Any:
    return target.rowcount


def _result_rowcount(target: Any, result: Any) -> Any:
    return result.rowcount


def _length(target: Any, result: Any) -> Any:
    return len(result)


def _one_or_none(target: Any, result: Any) -> Any:
    return 0 if result is None else 1


def _unknown(target: Any, result: Any) -> Any:
    return -1


def _status_count(target: Any, result: Any) -> Any:
    """asyncpg's command status: ``INSERT 0 5`` affected 5 rows."""
    last = str(result).rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


# --- sqlite3 --------------------------------------------------------------------------------

_sqlite_classes: dict[type, type] = {}


def _patch_sqlite3(module: Any) -> None:
    dbapi2: Any = importlib.import_module("sqlite3.dbapi2")

    original = module.connect

    @functools.wraps(original)
    def connect(*args: Any, **kwargs: Any) -> Any:
        with never_raise:
            if len(args) > 5:
                args = (*args[:5], _sqlite_connection(args[5]), *args[6:])
            else:
                kwargs["factory"] = _sqlite_connection(kwargs.get("factory", dbapi2.Connection))
        return original(*args, **kwargs)

    mark_patched(connect)
    module.connect = connect
    dbapi2.connect = connect


def _subclass(base: type, namespace: dict[str, Any]) -> type:
    """A subclass that still reads as ``base`` in reprs and error messages."""
    cls = type(base.__name__, (base,), namespace)
    cls.__qualname__ = base.__qualname__
    cls.__module__ = base.__module__
    mark_patched(cls)
    return cls


def _derived(
    base: Any, required: type, cache: dict[type, type], namespace: Callable[[Any], dict[str, Any]]
) -> Any:
    """The subclass of ``base`` with ``namespace(base)``, made once per class; ``base`` itself
    when it is not a ``required`` class or is already one of ours."""
    if not isinstance(base, type) or not issubclass(base, required) or is_patched(base):
        return base
    cls = cache.get(base)
    if cls is None:
        cls = cache.setdefault(base, _subclass(base, namespace(base)))
    return cls


def _timed_methods(
    base: Any, driver: str, rows_from_result: bool, names: tuple[str, ...]
) -> dict[str, Any]:
    return {
        name: _native.TimedMethod(getattr(base, name), driver, rows_from_result, IN_ORM)
        for name in names
    }


_SQLITE_STATEMENTS = ("execute", "executemany", "executescript")


def _sqlite_connection(base: Any) -> Any:
    import sqlite3

    def namespace(base: Any) -> dict[str, Any]:
        def cursor(self: Any, factory: Any = sqlite3.Cursor, *args: Any, **kwargs: Any) -> Any:
            return base.cursor(self, _sqlite_cursor(factory), *args, **kwargs)

        # From 3.11 the C `Connection.execute` makes a plain cursor of its own: time it
        # here. Before, it calls `self.cursor()` and that cursor's `execute` by name, so
        # the cursor's timing covers it and timing it here too would count it twice.
        if sys.version_info < (3, 11):
            return {"cursor": cursor}
        return {"cursor": cursor, **_timed_methods(base, "sqlite3", True, _SQLITE_STATEMENTS)}

    return _derived(base, sqlite3.Connection, _sqlite_classes, namespace)


def _sqlite_cursor(base: Any) -> Any:
    import sqlite3

    def namespace(base: Any) -> dict[str, Any]:
        return _timed_methods(base, "sqlite3", True, _SQLITE_STATEMENTS)

    return _derived(base, sqlite3.Cursor, _sqlite_classes, namespace)


# --- aiosqlite ------------------------------------------------------------------------------


def _patch_aiosqlite(module: Any) -> None:
    # Its statements run on its own thread, which runs no request: the sqlite3 patch sees
    # nothing there, and these time them from the awaiting task instead.
    from aiosqlite.context import contextmanager

    def on_connection(name: str, rows: Callable[[Any, Any], Any]) -> None:
        # These return an awaitable that is also an `async with` context manager: time the
        # coroutine inside and wrap it the same way again.
        def make(method: Any) -> Any:
            inner = getattr(method, "__wrapped__", None)
            if inner is None:
                raise AttributeError(f"aiosqlite.Connection.{name} is not what it used to be")
            return contextmanager(timed_async(inner, "aiosqlite", _sql_params, rows))

        wrap(module.Connection, name, make)

    for name in ("execute", "executemany", "executescript"):
        on_connection(name, _result_rowcount)
        wrap(module.Cursor, name, lambda m: timed_async(m, "aiosqlite", _sql_params, _rowcount))
    on_connection("execute_fetchall", _length)
    on_connection("execute_insert", _unknown)


# --- asyncpg --------------------------------------------------------------------------------


def _patch_asyncpg(module: Any) -> None:
    connection = importlib.import_module("asyncpg.connection")
    cursor = importlib.import_module("asyncpg.cursor")
    prepared_stmt = importlib.import_module("asyncpg.prepared_stmt")

    def on(cls: type, name: str, extract: Extract, rows: Callable[[Any, Any], Any]) -> None:
        wrap(cls, name, lambda m: timed_async(m, "asyncpg", extract, rows))

    conn = connection.Connection
    on(conn, "execute", _sql_star_args, _status_count)
    on(conn, "executemany", _sql_params, _unknown)
    on(conn, "fetch", _sql_star_args, _length)
    on(conn, "fetchrow", _sql_star_args, _one_or_none)
    on(conn, "fetchval", _sql_star_args, _unknown)
    on(conn, "fetchmany", _sql_params, _length)

    stmt = prepared_stmt.PreparedStatement
    # Bound to their statement: the query text is on `self`, the parameters are the arguments.
    for name, rows in (("fetch", _length), ("fetchrow", _one_or_none), ("fetchval", _unknown)):
        _on_prepared(stmt, name, lambda a, k: a or None, rows)
    _on_prepared(stmt, "fetchmany", lambda a, k: a[0] if a else k.get("args"), _length)
    _on_prepared(stmt, "executemany", lambda a, k: a[0] if a else k.get("args"), _unknown)

    # Cursors reach the server when they bind and each time they fetch a batch.
    base = cursor.BaseCursor
    _on_prepared(base, "_bind_exec", lambda a, k: None, _length, query="_query", args="_args")
    _on_prepared(base, "_exec", lambda a, k: None, _length, query="_query", args="_args")
    _on_prepared(base, "_bind", lambda a, k: None, _unknown, query="_query", args="_args")


def _on_prepared(
    cls: type,
    name: str,
    params: Callable[[tuple[Any, ...], dict[str, Any]], Any],
    rows: Callable[[Any, Any], Any],
    query: str = "_query",
    args: str | None = None,
) -> None:
    """Like ``timed_async``, for methods whose statement text lives on ``self``."""

    def make(original: Callable[..., Any]) -> Any:
        if is_patched(original):
            return original

        @functools.wraps(original)
        async def method(self: Any, *a: Any, **k: Any) -> Any:
            start = begin()
            if not start or IN_ORM.get():
                return await original(self, *a, **k)

            def extract(a: tuple[Any, ...], k: dict[str, Any]) -> tuple[Any, Any]:
                values = getattr(self, args) if args else params(a, k)
                return getattr(self, query), (values or None)

            try:
                result = await original(self, *a, **k)
            except BaseException as exc:
                record(start, "asyncpg", extract, a, k, -1, exc)
                raise
            record(start, "asyncpg", extract, a, k, rows_or_unknown(rows, self, result), None)
            return result

        mark_patched(method)
        return method

    wrap(cls, name, make)


# --- psycopg (3) and psycopg2 ---------------------------------------------------------------


def _query_text(cursor: Any, query: Any) -> Any:
    """A ``psycopg.sql.Composable`` as the SQL it stands for."""
    if isinstance(query, (str, bytes)):
        return query
    try:
        return query.as_string(cursor)
    except Exception:  # noqa: BLE001 - any failure: show the text as Python does
        return str(query)


def _pg_extract(cursor: Any) -> Extract:
    def extract(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        sql, params = _sql_params(args, kwargs)
        return _query_text(cursor, sql), params

    return extract


def _patch_psycopg(module: Any) -> None:
    for name in ("execute", "executemany"):
        wrap(module.Cursor, name, lambda m: _native.TimedMethod(m, "psycopg", False, IN_ORM))
        wrap(
            module.AsyncCursor,
            name,
            lambda m: timed_async(m, "psycopg", _sql_params, _rowcount, extract_for=_pg_extract),
        )


_pg2_classes: dict[type, type] = {}


def _patch_psycopg2(module: Any) -> None:
    original = module.connect

    @functools.wraps(original)
    def connect(
        dsn: Any = None, connection_factory: Any = None, cursor_factory: Any = None, **kwargs: Any
    ) -> Any:
        factory = connection_factory
        with never_raise:
            factory = _pg2_connection(connection_factory or module.extensions.connection)
        return original(dsn, connection_factory=factory, cursor_factory=cursor_factory, **kwargs)

    mark_patched(connect)
    module.connect = connect


def _pg2_connection(base: Any) -> Any:
    ext: Any = importlib.import_module("psycopg2.extensions")

    def namespace(base: Any) -> dict[str, Any]:
        def cursor(self: Any, *args: Any, **kwargs: Any) -> Any:
            if len(args) > 1:
                args = (
                    args[0],
                    _pg2_cursor(args[1] or self.cursor_factory or ext.cursor),
                    *args[2:],
                )
            else:
                asked = kwargs.get("cursor_factory") or self.cursor_factory or ext.cursor
                kwargs["cursor_factory"] = _pg2_cursor(asked)
            return base.cursor(self, *args, **kwargs)

        return {"cursor": cursor}

    return _derived(base, ext.connection, _pg2_classes, namespace)


def _pg2_cursor(base: Any) -> Any:
    ext: Any = importlib.import_module("psycopg2.extensions")

    def namespace(base: Any) -> dict[str, Any]:
        return _timed_methods(base, "psycopg2", False, ("execute", "executemany"))

    return _derived(base, ext.cursor, _pg2_classes, namespace)


# --- SQLAlchemy -----------------------------------------------------------------------------

_SA_START = "_timeglass_start"


def _patch_sqlalchemy(module: Any) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "before_cursor_execute", _sa_before)
    event.listen(Engine, "after_cursor_execute", _sa_after)
    event.listen(Engine, "handle_error", _sa_error)


def _sa_before(
    conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: Any
) -> None:
    with never_raise:
        start = begin()
        if start:
            conn.info[_SA_START] = start
            IN_ORM.set(True)


def _sa_after(
    conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: Any
) -> None:
    with never_raise:
        start = conn.info.pop(_SA_START, 0)
        if start:
            IN_ORM.set(False)
            rows = rows_or_unknown(_rowcount, cursor, None)
            end(start, _sa_driver(conn), statement, parameters, rows, None, _greenlet_outer())


def _sa_error(context: Any) -> None:
    with never_raise:
        conn = context.connection
        start = conn.info.pop(_SA_START, 0) if conn is not None else 0
        if start:
            IN_ORM.set(False)
            error = context.original_exception
            driver = _sa_driver(conn)
            end(start, driver, context.statement, context.parameters, -1, error, _greenlet_outer())


def _sa_driver(conn: Any) -> str:
    try:
        return f"sqlalchemy+{conn.dialect.driver}"
    except Exception:  # noqa: BLE001 - any dialect without a driver name
        return "sqlalchemy"


def _greenlet_outer() -> Any:
    """The awaiting coroutine's frame, when SQLAlchemy's async greenlet runs the statement.

    That greenlet's stack starts afresh; the code that awaited it is in its parent's.
    """
    greenlet = sys.modules.get("greenlet")
    if greenlet is None:
        return None
    current = greenlet.getcurrent()
    if not getattr(current, "__sqlalchemy_greenlet_provider__", False):
        return None
    parent = current.parent
    return parent.gr_frame if parent is not None else None


# --- HTTP clients ---------------------------------------------------------------------------


def _timed_send(original: Callable[..., Any], library: str, nested: threading.local | None) -> Any:
    """``send(request, ...)``: one outgoing call. ``nested`` skips sends made inside a send."""

    @functools.wraps(original)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        start = begin()
        if not start or (nested is not None and getattr(nested, "depth", False)):
            return original(self, request, *args, **kwargs)
        if nested is not None:
            nested.depth = True
        try:
            response = original(self, request, *args, **kwargs)
        except BaseException as exc:
            _call(start, library, request, None, exc)
            raise
        finally:
            if nested is not None:
                nested.depth = False
        _call(start, library, request, response, None)
        return response

    mark_patched(send)
    return send


def _timed_send_async(original: Callable[..., Any], library: str) -> Any:
    @functools.wraps(original)
    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        start = begin()
        if not start:
            return await original(self, request, *args, **kwargs)
        try:
            response = await original(self, request, *args, **kwargs)
        except BaseException as exc:
            _call(start, library, request, None, exc)
            raise
        _call(start, library, request, response, None)
        return response

    mark_patched(send)
    return send


def _call(
    start: int, library: str, request: Any, response: Any, error: BaseException | None
) -> None:
    with never_raise:
        status = getattr(response, "status_code", 0) if response is not None else 0
        call_end(start, library, request.method, str(request.url), status, error)


def _patch_httpx(module: Any) -> None:
    wrap(module.Client, "send", lambda m: _timed_send(m, "httpx", None))
    wrap(module.AsyncClient, "send", lambda m: _timed_send_async(m, "httpx"))


def _patch_requests(module: Any) -> None:
    # `Session.send` calls itself for each redirect: time the outermost call only.
    from requests import sessions

    wrap(sessions.Session, "send", lambda m: _timed_send(m, "requests", threading.local()))


DRIVERS = (
    Driver("sqlite3", None, _patch_sqlite3),
    Driver("aiosqlite", ((0, 17), (1, 0)), _patch_aiosqlite),
    Driver("asyncpg", ((0, 27), (1, 0)), _patch_asyncpg),
    Driver("psycopg", ((3, 1), (4, 0)), _patch_psycopg),
    Driver("psycopg2", ((2, 8), (3, 0)), _patch_psycopg2),
    Driver("sqlalchemy", ((2, 0), (3, 0)), _patch_sqlalchemy),
    Driver("httpx", ((0, 20), (1, 0)), _patch_httpx),
    Driver("requests", ((2, 20), (3, 0)), _patch_requests),
)
