"""Shared fixtures: a private runtime directory for the whole session and ring readers.

The marker creates its ring file once per process, so the runtime directory is set before
the first middleware exists; behaviour that depends on process-wide settings (disabled,
unwritable directory, injection) is tested in subprocesses.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from timeglass import _env

RUNTIME_DIR = Path(tempfile.mkdtemp(prefix="timeglass-test-"))
os.environ[_env.RUNTIME_DIR] = str(RUNTIME_DIR)
os.environ.pop(_env.ENABLED, None)

from timeglass import _native  # noqa: E402

Events = list[dict[str, Any]]


def read_all_events() -> Events:
    path = _native.stats()["ring_path"]
    assert path is not None, "the marker has no ring file"
    return _native._read_events(path)


def read_events() -> Events:
    """Start and end events (context events are left out: see `contexts_of`; so are
    garbage collections, which come when the interpreter decides)."""
    return [e for e in read_all_events() if e["kind"] not in ("context", "gc", "alloc")]


def contexts_of(rid: int) -> Events:
    """Request `rid`'s context events: the request phase (1), the endpoint call (3, FastAPI
    only), then the response's (2)."""
    return [e for e in read_all_events() if e["kind"] == "context" and e["request_id"] == rid]


def events_of(rid: int) -> Events:
    return [e for e in read_events() if e.get("request_id") == rid]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client_for() -> Callable[[Any], httpx.AsyncClient]:
    def make(app: Any) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    return make
