"""PEP 517 backend for `pip install .` at the repository root.

One wheel carries both halves of TimeGlass: the `timeglass` Python package
with its PyO3 extension (built by maturin) and the `timeglass` command (the
Rust CLI, built here with cargo and handed to maturin as a wheel script, so
it is installed into the environment's `bin/`). Everything else is maturin's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import maturin
from maturin import (  # noqa: F401  (re-exported hooks)
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)

ROOT = Path(__file__).resolve().parent.parent
# `[tool.maturin] data`: its `scripts/` go to the environment's `bin/`.
SCRIPTS = ROOT / "target" / "wheel-data" / "scripts"


def _data_dir() -> None:
    """maturin refuses to run, even for metadata, if the data directory is missing."""
    SCRIPTS.mkdir(parents=True, exist_ok=True)


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    _data_dir()
    return str(maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings))


def _build_cli() -> None:
    subprocess.run(["cargo", "build", "--release", "-p", "timeglass-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    _data_dir()
    shutil.copy2(target / "release" / "timeglass", SCRIPTS / "timeglass")


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _build_cli()
    return str(maturin.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    _data_dir()
    return str(maturin.build_sdist(sdist_directory, config_settings))
