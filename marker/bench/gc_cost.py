"""Cost of TimeGlass's `gc.callbacks` entry per garbage collection, in-process.

Times N young-generation collections (`gc.collect(0)` over an almost empty
generation, so the collection itself is short and the callback's share
shows) with `_native.gc_callback` in `gc.callbacks` and without it, inside
a request (the thread's slot holds one: each collection publishes a ring
event) and outside one (a slot read only). Prints microseconds per
collection for each and the callback's cost: the difference, median of
rounds, against the target of at most 0.5 µs. CPython's own part of a
callback (building the phase string and the info dict, calling the
function) is in the difference too: it is paid only because a callback is
installed.

With `--only on|off|cheapest` it runs one configuration alone and prints
only its time: for instruction counts under `valgrind --tool=callgrind`
(`bench/callgrind.py` runs it so). `cheapest` puts the cheapest C callable
there is, `operator.is_`, in `gc.callbacks` instead: what any callback costs
CPython. `--outside` runs it outside a request.

    python marker/bench/gc_cost.py [--collections N] [--rounds R]
                                   [--only on|off|cheapest] [--outside]
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import statistics
import tempfile
import time

os.environ.setdefault("TIMEGLASS_RUNTIME_DIR", tempfile.mkdtemp(prefix="timeglass-bench-"))

from timeglass import _native

REQUEST_ID = 1


def collections(n: int) -> float:
    collect = gc.collect
    t0 = time.perf_counter()
    for _ in range(n):
        collect(0)
    return time.perf_counter() - t0


def timed(n: int, installed: bool, in_request: bool, callback: object = None) -> float:
    callback = callback or _native.gc_callback
    for other in (_native.gc_callback, operator.is_):
        if other is not callback and other in gc.callbacks:
            gc.callbacks.remove(other)
    present = callback in gc.callbacks
    if installed and not present:
        gc.callbacks.append(callback)
    if not installed and present:
        gc.callbacks.remove(callback)
    if in_request:
        seconds: float = _native.bind(REQUEST_ID, lambda: collections(n))()
        return seconds
    return collections(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=("on", "off", "cheapest"))
    parser.add_argument("--outside", action="store_true", help="with --only: outside a request")
    args = parser.parse_args()
    assert _native.start(), "the marker could not create its ring"
    if args.only:
        callback = operator.is_ if args.only == "cheapest" else None
        installed = args.only != "off"
        seconds = timed(args.collections, installed, not args.outside, callback)
        print(f"{args.only}: {seconds / args.collections * 1e6:.3f} µs per collection")
        return
    for in_request in (True, False):
        on: list[float] = []
        off: list[float] = []
        for _ in range(args.rounds):
            off.append(timed(args.collections, False, in_request) / args.collections * 1e6)
            on.append(timed(args.collections, True, in_request) / args.collections * 1e6)
        where = "inside a request " if in_request else "outside a request"
        cost = statistics.median(a - b for a, b in zip(on, off, strict=True))
        print(
            f"{where}: {statistics.median(off):.3f} µs per collection without the callback,"
            f" {statistics.median(on):.3f} µs with it: {cost:.3f} µs per collection"
            " (target ≤ 0.5 µs)"
        )
    if _native.gc_callback not in gc.callbacks:
        gc.callbacks.append(_native.gc_callback)


if __name__ == "__main__":
    main()
