"""Bounded growth: `timeglass prune`, `timeglass clear` and the retention settings of
`run`, over real recordings; the freed space goes back to the file system."""

from __future__ import annotations

import sqlite3

from fixtures import harness
from tests.context import TestContext, assert_clean_error
from tests.faults import integrity


def record(ctx: TestContext, requests: int = 20) -> None:
    with ctx.run_app() as app:
        for i in range(requests):
            assert app.request("GET", "/items", params={"limit": 50 + i}).status_code == 200


def age_session(ctx: TestContext, session: int, days: int) -> None:
    with sqlite3.connect(ctx.db) as conn:
        conn.execute(
            "UPDATE sessions SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) "
            "WHERE id = ?",
            (f"-{days} days", session),
        )


def test_prune_by_session_and_age_then_clear(ctx: TestContext) -> None:
    for _ in range(3):
        record(ctx)
    ids = sorted(s["id"] for s in ctx.sessions())
    assert len(ids) == 3

    done = ctx.cli_ok("prune", "--db", str(ctx.db), "--session", str(ids[0]))
    assert "deleted 1 sessions (20 requests)" in done.stderr, done.describe()
    assert sorted(s["id"] for s in ctx.sessions()) == ids[1:]

    age_session(ctx, ids[1], days=10)
    done = ctx.cli_ok("prune", "--db", str(ctx.db), "--older-than", "7d")
    assert "deleted 1 sessions" in done.stderr, done.describe()
    assert [s["id"] for s in ctx.sessions()] == [ids[2]]
    assert {r["session_id"] for r in ctx.requests()} == {ids[2]}

    done = ctx.cli_ok("clear", "--db", str(ctx.db))
    assert "deleted 1 sessions (20 requests)" in done.stderr, done.describe()
    assert ctx.sessions() == []
    assert integrity(ctx.db) == "ok"


def test_space_is_given_back(ctx: TestContext) -> None:
    record(ctx, requests=200)
    before = ctx.db.stat().st_size
    ctx.cli_ok("clear", "--db", str(ctx.db))
    after = ctx.db.stat().st_size
    # Every page the deleted rows held went back to the file system: none is left
    # free inside the file (what remains is the schema and the interned frames).
    with sqlite3.connect(ctx.db) as conn:
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        (page,) = conn.execute("PRAGMA page_size").fetchone()
    assert free == 0
    assert before - after >= 30 * page, (before, after)


def test_bad_prune_arguments_get_one_line(ctx: TestContext) -> None:
    record(ctx, requests=1)
    for args, mention in [
        ([], "say what to prune"),
        (["--older-than", "7"], "not an age"),
        (["--older-than", "7d", "--session", "1"], "not both"),
        (["--session", "99"], "no session 99"),
    ]:
        result = ctx.cli("prune", "--db", str(ctx.db), *args)
        assert result.returncode == 2, result.describe()
        assert_clean_error(result, mention)
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, result.describe()
    assert len(ctx.sessions()) == 1


def test_run_applies_keep_days_and_the_request_cap(ctx: TestContext) -> None:
    record(ctx, requests=5)
    record(ctx, requests=5)
    first, second = sorted(s["id"] for s in ctx.sessions())
    age_session(ctx, first, days=30)
    with ctx.run_app("--keep-days", "7") as app:
        app.request("GET", "/health")
    assert "deleted 1 old sessions (5 requests)" in app.process.stderr()
    assert first not in {s["id"] for s in ctx.sessions()}

    # A cap in timeglass.toml of the directory `run` starts in.
    (ctx.tmp / "timeglass.toml").write_text("[retention]\nmax_requests = 3\n")
    port = harness.free_port()
    argv = harness.uvicorn_argv(port, "--app-dir", str(harness.REPO_ROOT), python=ctx.python)
    with ctx.run_command(argv, port, cwd=ctx.tmp) as app:
        app.request("GET", "/health")
    left = {s["id"] for s in ctx.sessions()}
    assert second not in left, left
    assert integrity(ctx.db) == "ok"


def test_a_bad_retention_setting_is_one_line(ctx: TestContext) -> None:
    (ctx.tmp / "timeglass.toml").write_text("[retention]\nkeep_dayz = 3\n")
    result = ctx.cli("run", "--db", str(ctx.db), "--", "true")
    assert result.returncode == 2, result.describe()
    assert_clean_error(result, "unknown retention setting `keep_dayz`")
