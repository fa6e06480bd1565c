"""`timeglass/_env.py` mirrors `wire/src/env.rs`."""

from __future__ import annotations

import re
from pathlib import Path

from timeglass import _env

ENV_RS = Path(__file__).resolve().parents[2] / "wire" / "src" / "env.rs"
SITECUSTOMIZE = Path(_env.__file__).parent / "_bootstrap" / "sitecustomize.py"


def test_python_names_match_rust() -> None:
    rust = dict(re.findall(r'pub const (\w+): &str = "(\w+)";', ENV_RS.read_text()))
    python = {k: v for k, v in vars(_env).items() if k.isupper()}
    assert rust
    assert python == rust


def test_sitecustomize_uses_the_auto_name() -> None:
    # It cannot import the package before knowing it should.
    assert f'"{_env.AUTO}"' in SITECUSTOMIZE.read_text()
