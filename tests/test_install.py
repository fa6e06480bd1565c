"""`pip install .` gives the `timeglass` command and module, and that command
records an app that lives in another virtualenv (the `pipx install` case)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.context import TestContext

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("pip-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(REPO)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def test_pip_install_gives_the_command_and_the_module(installed: Path) -> None:
    version = subprocess.run(
        [str(installed / "bin" / "timeglass"), "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("timeglass "), version.stdout
    imported = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "from timeglass import TimeGlassMiddleware"],
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr


def test_the_installed_command_records_an_app_in_another_venv(
    installed: Path, tmp_path: Path
) -> None:
    # The app's own venv has FastAPI and uvicorn but no timeglass package:
    # `run` must bring the marker along by itself, installing nothing there.
    app_venv = tmp_path / "app-venv"
    subprocess.run([sys.executable, "-m", "venv", str(app_venv)], check=True)
    pins = [
        line
        for line in (REPO / "requirements-dev.txt").read_text().splitlines()
        if line.startswith(("fastapi==", "uvicorn=="))
    ]
    subprocess.run([str(app_venv / "bin" / "pip"), "install", "--quiet", *pins], check=True)
    no_marker = subprocess.run([str(app_venv / "bin" / "python"), "-c", "import timeglass"])
    assert no_marker.returncode != 0

    ctx = TestContext(tmp_path)
    ctx.bin = installed / "bin" / "timeglass"
    ctx.python = app_venv / "bin" / "python"
    with ctx.run_app() as app:
        assert app.request("GET", "/items/1").status_code == 200
    rows = ctx.requests()
    assert [(r["method"], r["route"], r["status"]) for r in rows] == [
        ("GET", "/items/{item_id}", 200)
    ]
    assert not list(app_venv.glob("lib/python*/site-packages/timeglass*")), "installed into the app"
