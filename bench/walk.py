"""Stack-walk cost: py-spy's walker against TimeGlass's cached one.

Runs the sampler crate's `walk_cost` example, which starts a Python process
spinning under a 40-frame stack (a Uvicorn request's depth) and alternates
rounds of walks between the two walkers on it; prints the median cost of a
walk with each and their ratio.
"""

from __future__ import annotations

import subprocess
import sys

from fixtures import harness


def main() -> int:
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
    return subprocess.run([str(example), sys.executable], check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
