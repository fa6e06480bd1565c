"""Suspends coroutines and generators in known places for the await-chain
test, prints what Python itself says about them as one JSON line, then
blocks the event loop so that nothing moves while the test reads them."""

import asyncio
import ctypes
import json
import sys
import time


async def inner():
    await asyncio.sleep(3600)


async def outer():
    await inner()


async def waiter(event):
    await event.wait()


async def resumable(future):
    await future


def gen_inner():
    yield 1


def gen_outer():
    yield from gen_inner()


def name(code):
    # 3.10 has no co_qualname; py-spy (and the walker) show co_name there.
    return getattr(code, "co_qualname", code.co_name)


def chain(obj):
    frames = []
    while True:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            break
        frames.append([name(frame.f_code), frame.f_lineno])
        awaited = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
        if awaited is None:
            return {"frames": frames, "awaits": None}
        if not hasattr(awaited, "cr_frame") and not hasattr(awaited, "gi_frame"):
            kind = type(awaited)
            return {"frames": frames, "awaits": f"{kind.__module__}.{kind.__name__}"}
        obj = awaited
    return {"frames": frames, "awaits": None}


def future_state_offset(loop):
    """Where `fut_state` is in a C future, found by comparing the memory of a
    pending (0), a cancelled (1) and a finished (2) one."""

    def ints(future):
        size = type(future).__basicsize__ // 4
        return list((ctypes.c_int32 * size).from_address(id(future)))

    pending, cancelled, finished = (loop.create_future() for _ in range(3))
    cancelled.cancel()
    finished.set_result(None)
    states = zip(ints(pending), ints(cancelled), ints(finished), strict=True)
    return [4 * i for i, s in enumerate(states) if s == (0, 1, 2)]


async def main():
    event = asyncio.Event()
    sleeping = asyncio.ensure_future(outer())
    waiting = asyncio.ensure_future(waiter(event))
    future = asyncio.get_running_loop().create_future()
    ready = asyncio.ensure_future(resumable(future))
    generator = gen_outer()
    next(generator)
    await asyncio.sleep(0.05)
    # Done, but the task cannot resume: the loop is blocked below.
    future.set_result(1)
    me = asyncio.current_task().get_coro()
    report = {}
    for key, coro in [
        ("sleeping", sleeping.get_coro()),
        ("waiting", waiting.get_coro()),
        ("ready", ready.get_coro()),
        ("generator", generator),
    ]:
        report[key] = {"id": id(coro), **chain(coro)}
    report["future_state"] = future_state_offset(asyncio.get_running_loop())
    report["running"] = {"id": id(me), "line": sys._getframe().f_lineno + 2}
    print(json.dumps(report), flush=True)
    time.sleep(3600)


asyncio.run(main())
