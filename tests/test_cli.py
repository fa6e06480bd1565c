"""The CLI's own surface: version, help, and errors a user can act on."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Recording
from tests.context import TestContext, assert_clean_error


def test_version(ctx: TestContext) -> None:
    result = ctx.cli_ok("--version")
    assert re.fullmatch(r"timeglass \d+\.\d+\.\d+\S*\n?", result.stdout), result.describe()


def test_help_lists_the_commands(ctx: TestContext) -> None:
    result = ctx.cli_ok("--help")
    for command in ("run", "requests", "export"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), result.describe()


def test_run_without_a_command(ctx: TestContext) -> None:
    result = ctx.cli("run", "--db", str(ctx.db))
    assert_clean_error(result, "error")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, "expected a one-line error\n" + result.describe()


def test_run_a_command_that_does_not_exist(ctx: TestContext) -> None:
    result = ctx.cli("run", "--db", str(ctx.db), "--", "no-such-cmd-xyz")
    assert_clean_error(result, "no-such-cmd-xyz")
    assert not result.left_running


def test_run_a_python_that_exits_at_once(ctx: TestContext) -> None:
    script = "import sys; sys.exit(3)"
    result = ctx.cli("run", "--db", str(ctx.db), "--", str(ctx.python), "-c", script, timeout=30)
    assert_clean_error(result)
    assert not result.left_running


@pytest.mark.slow
def test_run_something_that_is_not_python(ctx: TestContext) -> None:
    result = ctx.cli("run", "--db", str(ctx.db), "--", "sleep", "30", timeout=25)
    assert_clean_error(result, "python")
    assert result.seconds < 20, f"took {result.seconds:.1f} s to give up"
    assert not result.left_running, "`sleep 30` was left running"


def test_requests_refuses_a_file_that_is_not_a_store(ctx: TestContext) -> None:
    folder = ctx.tmp / "notes"
    folder.mkdir()
    notes = folder / "notes.txt"
    content = b"these are my notes, not a TimeGlass store\n" * 50
    notes.write_bytes(content)
    result = ctx.cli("requests", "--db", str(notes))
    assert_clean_error(result)
    assert notes.read_bytes() == content, "the file was modified"
    assert [p.name for p in folder.iterdir()] == ["notes.txt"], "files appeared beside it"


@pytest.mark.e2e
def test_export_an_unknown_request(recording: Recording) -> None:
    db = str(recording.ctx.db)
    result = recording.ctx.cli("export", "--db", db, "--request", "999999", "--format", "folded")
    assert_clean_error(result, "999999")
