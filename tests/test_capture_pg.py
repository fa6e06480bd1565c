"""PostgreSQL drivers and SQLAlchemy, captured from a real app under `timeglass run`.

PostgreSQL 16 comes from the PyPI package `pgserver`: one server for the module, its data in a
temporary directory. Run as root, pgserver runs the server as a `pgserver` system user it
creates (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pgserver.postgres_server import get_server

from tests.context import TestContext

pytestmark = [pytest.mark.e2e, pytest.mark.core]

APP = "fixtures.capture_app:app"
PATHS = (
    "/pg/asyncpg",
    "/pg/psycopg",
    "/pg/psycopg-async",
    "/pg/psycopg2",
    "/sqlalchemy/sync",
    "/sqlalchemy/async-sqlite",
    "/sqlalchemy/async-pg",
)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@dataclass(frozen=True)
class Run:
    ctx: TestContext
    answers: dict[str, dict[str, Any]]
    ids: dict[str, int]

    def queries(self, path: str) -> list[dict[str, Any]]:
        queries: list[dict[str, Any]] = self.ctx.show(self.ids[path])["queries"]
        return queries


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, postgres: str) -> Run:
    ctx = TestContext(tmp_path_factory.mktemp("capture-pg"))
    env = {"CAPTURE_SQLITE": str(ctx.tmp / "app.db"), "CAPTURE_PG": postgres}
    answers = {}
    with ctx.run_app(app=APP, env=env) as app:
        for path in PATHS:
            response = app.request("GET", path)
            assert response.status_code == 200, (path, response.text)
            answers[path] = response.json()
    return Run(ctx, answers, {r["path"]: r["id"] for r in ctx.requests()})


def sqls(queries: list[dict[str, Any]]) -> list[str]:
    return [q["sql"] for q in queries]


def test_asyncpg_connections_pools_prepared_statements_and_cursors(run: Run) -> None:
    answer = run.answers["/pg/asyncpg"]
    assert answer == {
        "rows": 2,
        "row": "rope",
        "value": 2,
        "status": "UPDATE 2",
        "prepared": "toy",
        "streamed": [1, 2],
        "pooled": 42,
        "raised": "DivisionByZeroError",
    }
    queries = run.queries("/pg/asyncpg")
    assert {q["driver"] for q in queries} == {"asyncpg"}
    by_sql = {q["sql"]: q for q in queries}
    assert by_sql["INSERT INTO toys VALUES ($1, $2)"]["params"] == "[(1, 'ball'), (2, 'rope')]"
    assert by_sql["SELECT id, name FROM toys WHERE id >= $1 ORDER BY id"]["rows"] == 2
    assert by_sql["SELECT id, name FROM toys WHERE id >= $1 ORDER BY id"]["params"] == "(1,)"
    assert by_sql["UPDATE toys SET name = $1 WHERE id > $2"]["rows"] == 2
    assert by_sql["SELECT name FROM toys WHERE id = $1"]["params"] in ("(2,)", "(1,)")
    prepared = [q for q in queries if q["sql"] == "SELECT name FROM toys WHERE id = $1"]
    assert sorted(q["params"] for q in prepared) == ["(1,)", "(2,)"]
    assert by_sql["SELECT id FROM toys ORDER BY id"]["rows"] == 2
    assert by_sql["SELECT $1::int + 1"]["params"] == "(41,)"
    assert by_sql["SELECT 1 / 0"]["error"].startswith("DivisionByZeroError"), by_sql
    assert by_sql["SELECT pg_sleep(0.03)"]["duration_ms"] >= 25
    # Up to 3.11 comprehensions are frames of their own (from 3.12 they are inlined, PEP
    # 709); 3.10 frames have no qualified names; the pool resets a released connection from
    # a child task of the request, whose stack has none of the app's frames.
    callers = {q["caller"][0]["name"] for q in queries}
    assert callers <= {
        "asyncpg_everything",
        "asyncpg_everything.<locals>.<listcomp>",
        "<listcomp>",
        "Connection.reset",
        "reset",
    }, callers
    streamed = [f["name"] for f in by_sql["SELECT id FROM toys ORDER BY id"]["caller"]]
    assert "asyncpg_everything" in streamed[:2], streamed


def test_psycopg_sync_and_async(run: Run) -> None:
    assert run.answers["/pg/psycopg"] == {"titles": ["b", "c"], "count": 3}
    queries = run.queries("/pg/psycopg")
    assert {q["driver"] for q in queries} == {"psycopg"}
    assert sqls(queries) == [
        "DROP TABLE IF EXISTS books",
        "CREATE TABLE books (id int PRIMARY KEY, title text)",
        "INSERT INTO books VALUES (%s, %s)",
        "SELECT title FROM books WHERE id > %(id)s",
        'SELECT count(*) FROM "books"',
        "SELECT pg_sleep(0.03)",
    ]
    assert queries[3]["params"] == "{'id': 1}"
    assert queries[3]["rows"] == 2
    assert queries[3]["caller"][0]["name"] == "psycopg_everything"
    assert run.answers["/pg/psycopg-async"] == {"answer": 42}
    queries = run.queries("/pg/psycopg-async")
    assert sqls(queries) == ["SELECT %s::int * 2", "SELECT pg_sleep(0.03)"]
    assert queries[0]["caller"][0]["name"] == "psycopg_async_everything"


def test_psycopg2_with_a_cursor_factory_of_the_apps(run: Run) -> None:
    assert run.answers["/pg/psycopg2"] == {
        "greeting": "hello",
        "raised": "UndefinedTable",
        "real_dict": True,
    }
    queries = run.queries("/pg/psycopg2")
    assert sqls(queries) == [
        "SELECT %s AS greeting",
        "SELECT pg_sleep(0.03)",
        "SELECT * FROM no_such_pg_table",
    ]
    assert {q["driver"] for q in queries} == {"psycopg2"}
    assert queries[0]["params"] == "('hello',)"
    assert queries[2]["error"].startswith("UndefinedTable"), queries[2]


def test_sqlalchemy_sync_engine_records_each_statement_once(run: Run) -> None:
    assert run.answers["/sqlalchemy/sync"]["names"] == [f"item {i}" for i in range(5)]
    queries = run.queries("/sqlalchemy/sync")
    statements = [q for q in queries if "items" in q["sql"] or "RECURSIVE" in q["sql"]]
    assert len(statements) == 6, queries
    assert {q["driver"] for q in statements} == {"sqlalchemy+pysqlite"}
    assert [q["params"] for q in statements[:5]] == [f"({i},)" for i in range(5)]
    # The list comprehension's own frame (up to 3.11; plain `<listcomp>` on 3.10), then the
    # endpoint.
    first = [f["name"] for f in statements[0]["caller"]]
    assert any(name.startswith("orm_sync_queries") for name in first[:2]), first
    row = next(r for r in run.ctx.requests() if r["path"] == "/sqlalchemy/sync")
    assert row["n_plus_one"] is True
    assert row["repeated"]["count"] == 5


@pytest.mark.parametrize(
    ("path", "driver"),
    [
        ("/sqlalchemy/async-sqlite", "sqlalchemy+aiosqlite"),
        ("/sqlalchemy/async-pg", "sqlalchemy+asyncpg"),
    ],
)
def test_sqlalchemy_async_engines_find_the_awaiting_line(run: Run, path: str, driver: str) -> None:
    answer = run.answers[path]
    assert answer["value"] == 2
    assert answer["raised"] in ("OperationalError", "ProgrammingError"), answer
    queries = [q for q in run.queries(path) if q["driver"] == driver]
    mine = [q for q in queries if "1" in q["sql"] or "missing_orm_table" in q["sql"]]
    assert [q["sql"].split()[-1] for q in mine[-2:]] == ["1", "missing_orm_table"], queries
    assert mine[-1]["error"] is not None
    # The statement ran in SQLAlchemy's greenlet; its caller is the coroutine that awaited it.
    names = [f["name"] for f in mine[-2]["caller"]]
    assert "orm_async_queries" in names, mine[-2]["caller"]


def test_nothing_is_recorded_twice(run: Run) -> None:
    """A statement SQLAlchemy runs is recorded by its hook, not again by the driver below it
    (statements the dialect runs itself, outside the hooks, are the driver's to record)."""
    for path in PATHS:
        queries = run.queries(path)
        for q in queries:
            start, end = q["start_ms"], q["start_ms"] + q["duration_ms"]
            twins = [
                other
                for other in queries
                if other is not q
                and other["sql"] == q["sql"]
                and other["params"] == q["params"]
                and start <= other["start_ms"] <= end
            ]
            assert not twins, (path, q, twins)
