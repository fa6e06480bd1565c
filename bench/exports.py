"""Export costs, for `make bench` (issue 13).

Runs the render crate's `export_cost` example (release build): one request of
10,000 samples (each at its time, in another stack than the one before, so its
timeline closes and opens frames at every sample) exported in every profile
format, store read included, against < 50 ms each; and a 100,000-request table
written as CSV and Parquet, store read included, against >= 200,000 rows/s.
Each figure is the median of the rounds, with `pass` or `FAIL` against its
target. Exits non-zero when a target is missed.

Only this part of `make bench`:
`python -m bench.exports [--samples N] [--requests N] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from fixtures import harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.exports", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--samples", type=int, default=10_000, help="samples of the request")
    parser.add_argument("--requests", type=int, default=100_000, help="rows of the table")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per format (median)")
    args = parser.parse_args([] if argv is None else argv)
    build = ["cargo", "build", "--quiet", "--release", "-p", "timeglass-render"]
    subprocess.run([*build, "--example", "export_cost"], cwd=harness.REPO_ROOT, check=True)
    example = harness.REPO_ROOT / "target" / "release" / "examples" / "export_cost"
    command = [str(example), "--samples", str(args.samples), "--requests", str(args.requests)]
    return subprocess.run([*command, "--rounds", str(args.rounds)], check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
