"""Allocation sampling's install, each case in a fresh interpreter: it is on
only when asked for, refuses politely when another wrapper is there, and the
app keeps running, across a fork too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from timeglass import _env

PROBE = """
import os, sys
from timeglass import _native
print(_native.memory_sampling())
data = [bytearray(1000) for _ in range(5000)]
pid = os.fork()
if pid == 0:
    more = [bytearray(1000) for _ in range(5000)]
    os._exit(0 if len(more) == 5000 else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), len(data))
"""


def run(tmp_path: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TIMEGLASS_")}
    full.pop("PYTHONMALLOC", None)
    full.update({_env.RUNTIME_DIR: str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(PROBE)],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_off_unless_asked_for(tmp_path: Path) -> None:
    p = run(tmp_path, {})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "0", "5000"]
    assert p.stderr == ""


def test_on_when_asked_for_and_a_forked_child_allocates_fine(tmp_path: Path) -> None:
    p = run(tmp_path, {_env.MEMORY: "1"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "0", "5000"]
    assert p.stderr == ""


def test_another_wrapper_is_said_once_and_the_app_carries_on(tmp_path: Path) -> None:
    for flags, env in ((("-X", "tracemalloc"), {}), ((), {"PYTHONMALLOC": "debug"})):
        p = run(tmp_path, {_env.MEMORY: "1", **env}, *flags)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["False", "0", "5000"], (flags, env, p.stdout)
        lines = p.stderr.splitlines()
        assert len(lines) == 1, p.stderr
        assert lines[0].startswith("timeglass: memory: another allocator wrapper"), p.stderr
