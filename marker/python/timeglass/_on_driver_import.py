"""Run when a database driver or HTTP client is imported: captures each request's SQL and calls.

:func:`install` patches every supported driver that is imported now and, through the marker's
import hook (``_patching``), every one imported later. Under ``timeglass run`` it runs at
interpreter start-up; with the explicit middleware line, on the first request. The patches
(``_drivers.py``) call ``_native.query_begin()`` before a statement, which costs one slot read
and answers 0 outside a request, and ``_native.query_end(...)``/``_native.call_end(...)`` after
it, which time it, capture the calling stack and publish it. A patch never raises into the app
and never changes what a driver returns or raises. ``TIMEGLASS_CAPTURE=0`` leaves every driver
untouched.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
import threading
import types
from collections.abc import Sequence

from timeglass import _drivers, _env, _native
from timeglass._guard import never_raise
from timeglass._patching import after_import, is_patched, mark_patched
from timeglass._wrappers import Driver

_lock = threading.Lock()
_installed = False
_warned: set[str] = set()


def install() -> None:
    """Patches the drivers now imported and hooks the import of the others. Idempotent."""
    global _installed
    with _lock:
        if _installed or os.environ.get(_env.CAPTURE) == "0":
            return
        _installed = True
    try:
        params = os.environ.get(_env.SQL_PARAMS) != "0"
        _native.configure_capture(_hidden_prefixes(), params)
    except Exception as exc:  # noqa: BLE001 - capture is off, the app runs as before
        warn("capture", f"SQL and HTTP capture is off: {exc!r}")
        return
    for driver in _drivers.DRIVERS:
        after_import(driver.module, functools.partial(patch, driver))


def patch(driver: Driver, module: types.ModuleType) -> None:
    """Applies one driver's patch once, or says in one line why it cannot."""
    if is_patched(module):
        return
    try:
        mark_patched(module)
        version = str(getattr(module, "__version__", "") or "")
        if driver.versions is not None and not _known(version, *driver.versions):
            low, high = driver.versions
            known = f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
            warn(
                driver.module,
                f"{driver.module} {version or '(no version)'} is not a version TimeGlass "
                f"knows ({known}); its statements are not captured, the app runs as before",
            )
            return
        driver.patch(module)
    except Exception as exc:  # noqa: BLE001 - the driver is left as it was
        warn(driver.module, f"cannot capture {driver.module}: {exc!r}; the app runs as before")


def warn(key: str, message: str) -> None:
    """One ``timeglass: warning: ...`` line on stderr per key, never an exception."""
    if key in _warned:
        return
    _warned.add(key)
    with never_raise:
        print(f"timeglass: warning: {message}", file=sys.stderr, flush=True)


def _known(version: str, low: tuple[int, int], high: tuple[int, int]) -> bool:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return False
    found = (int(match.group(1)), int(match.group(2)))
    return low <= found < high


def _with_sep(paths: Sequence[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        for variant in (p, os.path.realpath(p)):
            prefix = variant.rstrip(os.sep) + os.sep
            if variant and prefix not in out:
                out.append(prefix)
    return out


def _hidden_prefixes() -> list[str]:
    """Our own wrappers, and SQLAlchemy's event dispatch that calls our hooks."""
    hidden = [os.path.dirname(os.path.abspath(__file__))]
    try:
        spec = importlib.util.find_spec("sqlalchemy")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        hidden.append(os.path.join(location, "event"))
    return _with_sep(hidden)
