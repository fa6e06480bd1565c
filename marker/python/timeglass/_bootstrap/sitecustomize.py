"""TimeGlass bootstrap, put on ``PYTHONPATH`` by ``timeglass run``.

Runs any ``sitecustomize`` it shadows, then (only when ``TIMEGLASS_AUTO=1``) makes every
Starlette/FastAPI app record its requests. It never raises: at most one ``timeglass: ...``
line goes to stderr. The variable name mirrors ``timeglass._env.AUTO`` (this file must not
import the package unless asked to).
"""

import contextlib
import os
import sys


def _chain_shadowed_sitecustomize() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.realpath(os.path.dirname(__file__))
    path = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _install_auto() -> None:
    if os.environ.get("TIMEGLASS_AUTO") == "1":
        from timeglass import _at_startup

        _at_startup.install()


def _main() -> None:
    problems = []
    for step, what in (
        (_chain_shadowed_sitecustomize, "the shadowed sitecustomize failed"),
        (_install_auto, "automatic instrumentation is off"),
    ):
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - start-up never fails because of us
            problems.append(f"{what}: {exc!r}")
    if problems:
        with contextlib.suppress(BaseException):
            print("timeglass: " + "; ".join(problems), file=sys.stderr)


_main()
