"""The marker classes files as the renderers do: one table, two tests.

``fixtures/data/library_frames.tsv`` is also read by ``render/tests/library_frames.rs``. Here each
file is created under a temporary directory (packages get an ``__init__.py``, so the marker's
short name is computed from a real tree) and a code object compiled from it is classed by the
same code that names the frames of a query's stack.
"""

from __future__ import annotations

from pathlib import Path

from timeglass import _native

TABLE = Path(__file__).resolve().parents[2] / "fixtures" / "data" / "library_frames.tsv"


def rows() -> list[tuple[str, str, bool]]:
    out = []
    for line in TABLE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        filename, short, kind = line.split("\t")
        assert kind in ("library", "app"), line
        out.append((filename, short, kind == "library"))
    return out


def place(root: Path, filename: str, short: str) -> str:
    """The file on disk under ``root``, its packages marked; pseudo-files stay as they are."""
    if filename.startswith("<"):
        return filename
    path = root / filename.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("def f():\n    pass\n")
    package = path.parent
    for _ in Path(short).parts[:-1]:
        (package / "__init__.py").write_text("")
        package = package.parent
    return str(path)


def test_the_marker_classes_files_as_the_shared_table_says(tmp_path: Path) -> None:
    table = rows()
    assert len(table) >= 15
    for filename, short, library in table:
        placed = place(tmp_path, filename, short)
        code = compile("def f():\n    pass\n", placed, "exec")
        got_short, got_library = _native._classify_code(code)
        assert got_short == short, (filename, got_short)
        assert got_library == library, (filename, got_library)
