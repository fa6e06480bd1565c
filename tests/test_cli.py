"""The CLI's own surface: version, help, and errors a user can act on."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time

import httpx
import pytest

from fixtures import harness
from tests.conftest import Recording
from tests.context import TestContext, assert_clean_error


def test_version(ctx: TestContext) -> None:
    result = ctx.cli_ok("--version")
    assert re.fullmatch(r"timeglass \d+\.\d+\.\d+\S*\n?", result.stdout), result.describe()


def test_help_lists_the_commands(ctx: TestContext) -> None:
    result = ctx.cli_ok("--help")
    for command in ("run", "requests", "export"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), result.describe()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_opens_with_what_timeglass_is_for(ctx: TestContext, flag: str) -> None:
    first = ctx.cli_ok(flag).stdout.splitlines()[0]
    assert first == (
        "Per-request flame graphs for FastAPI apps: record, browse, judge and compare."
    ), first


def test_run_without_a_command(ctx: TestContext) -> None:
    result = ctx.cli("run", "--db", str(ctx.db))
    assert_clean_error(result, "error")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, "expected a one-line error\n" + result.describe()


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["nosuchcommand"], ["nosuchcommand"]),
        (["requests", "--no-such-flag"], ["--no-such-flag"]),
        (["requests", "--status", "9xx"], ["--status", "9xx"]),
        (["requests", "--min-ms", "-5"], ["--min-ms", "-5"]),
        (["requests", "--min-ms", "soon"], ["--min-ms", "soon"]),
        (["requests", "--sort", "sideways"], ["--sort", "sideways"]),
        (["export", "--format", "nope", "--request", "1"], ["nope"]),
        (["show"], ["<ID>"]),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    ctx: TestContext, args: list[str], mentions: list[str]
) -> None:
    result = ctx.cli(*args)
    assert result.returncode == 2, result.describe()
    assert_clean_error(result, *mentions)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("timeglass: error: "), result.describe()


@pytest.mark.parametrize("value", ["0", "-5", "abc", "99999999999999999999999"])
def test_a_bad_loop_block_threshold_is_refused_before_anything_starts(
    ctx: TestContext, value: str
) -> None:
    marker = ctx.tmp / "started"
    result = ctx.cli(
        "run", "--db", str(ctx.db), f"--loop-block-ms={value}", "--", "touch", str(marker)
    )
    assert result.returncode == 2, result.describe()
    assert_clean_error(result, "--loop-block-ms", value)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("timeglass: error: "), result.describe()
    assert not marker.exists(), "the command ran"
    assert not ctx.db.exists(), "a store was created"


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


def test_ui_stops_on_ctrl_c_even_with_sigint_ignored_and_a_live_list_open(
    recording: Recording,
) -> None:
    """A script's background job inherits SIGINT as ignored; Ctrl-C (or the harness's SIGINT)
    must stop `timeglass ui` anyway, without waiting for the list's live stream to end."""
    port = harness.free_port()
    argv = [str(harness.timeglass_bin()), "ui", "--db", str(recording.ctx.db), "--port", str(port)]
    ui = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                stream = httpx.stream(
                    "GET", f"http://127.0.0.1:{port}/api/v1/requests/stream?after=0", timeout=10
                )
                response = stream.__enter__()
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=5) == 0
        assert ui.stderr is not None
        assert ui.stderr.read() == b""
        stream.__exit__(None, None, None)
    finally:
        if ui.poll() is None:
            ui.kill()


@pytest.mark.e2e
def test_export_an_unknown_request(recording: Recording) -> None:
    db = str(recording.ctx.db)
    result = recording.ctx.cli("export", "--db", db, "--request", "999999", "--format", "folded")
    assert_clean_error(result, "999999")


@pytest.mark.e2e
def test_requests_and_show_carry_cpu_time_and_the_breakdown(recording: Recording) -> None:
    ctx = recording.ctx
    table = ctx.cli_ok("requests", "--db", str(ctx.db)).stdout
    header = table.splitlines()[0].split()
    assert header[header.index("DURATION") + 1] == "CPU", table
    assert header[-1] == "LOOP", table
    shown = ctx.show(recording.require("/cpu")[0]["id"])
    assert set(shown["breakdown"]) == {
        f"{c}_ms"
        for c in ("python", "native", "gc", "blocked", "gil_wait", "sql", "http", "await", "queued")
    }, shown["breakdown"]
    assert all(isinstance(v, (int, float)) for v in shown["breakdown"].values()), shown
    assert isinstance(shown["cpu_ms"], (int, float)), shown
    assert "loop_block" in shown


@pytest.mark.e2e
def test_show_prints_a_known_breakdown_and_loop_block(recording: Recording) -> None:
    # A copy of the recorded store, one request's breakdown set to known values.
    db = recording.ctx.tmp / "known.db"
    source = sqlite3.connect(recording.ctx.db)
    target = sqlite3.connect(db)
    source.backup(target)
    source.close()
    (first, second) = [r["id"] for r in recording.require("/health")[:2]]
    target.execute(
        "UPDATE requests SET start_ns = 0, end_ns = 100000000, response_end_ns = 100000000,"
        " duration_us = 100000, python_us = 30000, native_us = 0, blocked_us = 0,"
        " gil_wait_us = 0, sql_wait_us = 50000, http_wait_us = 0, await_us = 0,"
        " queued_us = 20000, cpu_us = 31000, loop_blocked_us = 25000,"
        " loop_block_start_ns = 1000000, loop_block_line = 'app.py:31 in handler',"
        " loop_block_delayed = (SELECT json_array(marker_id) FROM requests WHERE id = ?)"
        " WHERE id = ?",
        (second, first),
    )
    target.commit()
    target.close()
    text = recording.ctx.cli_ok("show", "--db", str(db), str(first)).stdout
    lines = text.splitlines()
    assert "CPU 31.0 ms (31% of its 100.0 ms); its 100.0 ms response time went to:" in lines, text
    assert re.search(r"^  Python \(CPU\) +30\.0 ms +30%$", text, re.M), text
    assert re.search(r"^  awaiting SQL +50\.0 ms +50%$", text, re.M), text
    assert re.search(r"^  queued \(loop busy, no worker\) +20\.0 ms +20%$", text, re.M), text
    assert not re.search(r"^  (native|blocked|awaiting HTTP)", text, re.M), text
    assert (
        f"Blocked the event loop for 25.0 ms at app.py:31 in handler; delayed 1 request ({second})"
        in lines
    ), text
    table = recording.ctx.cli_ok("requests", "--db", str(db)).stdout
    row = next(line for line in table.splitlines() if line.split()[0] == str(first))
    assert "31.0 ms" in row, table
    assert row.endswith("blocked 25.0 ms"), table
