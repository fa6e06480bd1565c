"""Stack-walk cost: py-spy's walker against TimeGlass's cached one, per Python.

Runs the sampler crate's `walk_cost` example, which starts one process per
interpreter spinning under a 40-frame stack (a Uvicorn request's depth) and
interleaves rounds of walks with each walker on each interpreter (only the
one being measured runs; the others are stopped); prints per interpreter the
median cost of a walk with each walker, the spread of the rounds and their
ratio, against the target of at most a quarter of py-spy's cost.

The interpreters: `TIMEGLASS_PYTHONS` (colon-separated paths) when set, else
every CPython 3.10-3.13 that pyenv has, else this interpreter.

It runs twice: on a stack of plain calls, and on one of coroutines awaiting
each other (a request's await chain), whose frames live in the coroutine
objects rather than in the thread's data-stack chunk.

Only this part of `make bench`:
`python -m bench.walk [--rounds N] [--depth N] [--shape calls|coroutines|both]`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from fixtures import harness

VERSIONS = ("3.10", "3.11", "3.12", "3.13")


def interpreters() -> list[str]:
    """One interpreter per minor version, 3.10-3.13."""
    configured = os.environ.get("TIMEGLASS_PYTHONS")
    if configured:
        return [p for p in configured.split(":") if p]
    found: dict[str, str] = {}
    root = pyenv_root()
    if root is not None:
        for entry in sorted((root / "versions").glob("3.1*")):
            minor = re.fullmatch(r"(3\.1[0-3])\.\d+", entry.name)
            python = entry / "bin" / "python3"
            if minor and python.exists():
                found.setdefault(minor.group(1), str(python))
    return [found[v] for v in VERSIONS if v in found] or [sys.executable]


def pyenv_root() -> Path | None:
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    env = os.environ.get("PYENV_ROOT")
    return Path(env) if env else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.walk", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--depth", type=int, default=40, help="frames on the stack (default 40)")
    parser.add_argument(
        "--shape",
        choices=("calls", "coroutines", "both"),
        default="both",
        help="a stack of plain calls, of coroutines, or both (default)",
    )
    args = parser.parse_args([] if argv is None else argv)
    subprocess.run(
        [
            "cargo",
            "build",
            "--quiet",
            "--release",
            "-p",
            "timeglass-sampler",
            "--example",
            "walk_cost",
        ],
        cwd=harness.REPO_ROOT,
        check=True,
    )
    example = harness.REPO_ROOT / "target" / "release" / "examples" / "walk_cost"
    command = [str(example), "--rounds", str(args.rounds), "--depth", str(args.depth)]
    shapes: dict[str, list[list[str]]] = {
        "calls": [[]],
        "coroutines": [["--coroutines"]],
        "both": [[], ["--coroutines"]],
    }
    status = 0
    for shape in shapes[args.shape]:
        status |= subprocess.run([*command, *shape, *interpreters()], check=False).returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
