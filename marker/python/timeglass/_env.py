"""Every environment variable the Python side of TimeGlass reads, defined once.

Mirrors ``wire/src/env.rs``; ``tests/test_env.py`` keeps the two in step.
"""

from typing import Final

#: Directory where markers create their ``<pid>.ring`` files.
RUNTIME_DIR: Final = "TIMEGLASS_RUNTIME_DIR"
#: Path of the SQLite store (read by the CLI, not by the marker).
DB: Final = "TIMEGLASS_DB"
#: ``1``: the injected ``sitecustomize`` wraps every Starlette/FastAPI app.
AUTO: Final = "TIMEGLASS_AUTO"
#: ``0``: the marker passes every request through untouched.
ENABLED: Final = "TIMEGLASS_ENABLED"
#: Where the ``timeglass`` Python package lives, if not next to the binary.
PYTHON_PACKAGE: Final = "TIMEGLASS_PYTHON_PACKAGE"
#: ``0``: no request headers, query strings or bodies are captured.
CONTEXT: Final = "TIMEGLASS_CONTEXT"
#: ``0``: SQL statements and outgoing HTTP calls are not captured.
CAPTURE: Final = "TIMEGLASS_CAPTURE"
#: ``1`` (``timeglass run --memory``): allocations are sampled per request.
MEMORY: Final = "TIMEGLASS_MEMORY"
#: ``1``: every garbage collection is timed exactly from inside the app (``gc.callbacks``).
GC_CALLBACKS: Final = "TIMEGLASS_GC_CALLBACKS"
#: ``0`` (``timeglass run --no-sql-params``): statements are captured without parameters.
SQL_PARAMS: Final = "TIMEGLASS_SQL_PARAMS"
#: ``0``: the middleware starts no recorder of its own (``timeglass run`` or ``attach`` record).
RECORD: Final = "TIMEGLASS_RECORD"
#: The dashboard's address in ``request.scope["timeglass"].url`` (default ``http://127.0.0.1:7477``).
UI_URL: Final = "TIMEGLASS_UI_URL"
