"""Memory per request (issue 12), against apps whose memory is known by
construction (`fixtures.memory_app`).

RSS: the recorder reads the app's resident memory from outside at 200 Hz
while requests are in flight; a request that holds a 64 MiB buffer for
60 ms has a peak at least 56 MiB above its start, and a small request
alone sees its process's RSS move by a few MiB at most.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fixtures import attribution

pytestmark = [pytest.mark.e2e, pytest.mark.core]

APP = "fixtures.memory_app:app"
MIB = 1 << 20


@dataclass
class Recording:
    recorded: attribution.Recorded
    rows: dict[str, dict[str, Any]]

    def shown(self, path: str) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(
            self.recorded.cli("show", str(self.rows[path]["id"]), "--json")
        )
        return shown


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    tmp: Path = tmp_path_factory.mktemp("memory")
    with attribution.recording(tmp, app=APP) as (client, recorded):
        assert client.get("/health").status_code == 200
        for i in range(3):
            assert client.get(f"/small/warm{i}").status_code == 200
        for i in range(3):
            response = client.get(f"/hold/h{i}", params={"mb": 64, "ms": 60})
            assert response.json()["held_bytes"] == 64 * MIB
            assert client.get(f"/small/s{i}").status_code == 200
    rows = {str(row["path"]): row for row in recorded.rows()}
    yield Recording(recorded, rows)


def test_a_request_holding_64_mib_peaks_64_mib_above_its_start(memory: Recording) -> None:
    for i in range(3):
        m = memory.shown(f"/hold/h{i}")["memory"]
        assert m["rss_start_bytes"] and m["rss_end_bytes"] and m["rss_peak_bytes"], m
        rise = m["rss_peak_bytes"] - m["rss_start_bytes"]
        assert rise >= 56 * MIB, m
        # Freed before the end: the buffer was one mmap, returned at once.
        assert m["rss_end_bytes"] - m["rss_start_bytes"] < 16 * MIB, m


def test_a_small_request_barely_moves_rss(memory: Recording) -> None:
    for i in range(3):
        m = memory.shown(f"/small/s{i}")["memory"]
        assert m["rss_peak_bytes"], m
        assert m["rss_peak_bytes"] - m["rss_start_bytes"] < 8 * MIB, m
        assert m["rss_peak_bytes"] >= max(m["rss_start_bytes"], m["rss_end_bytes"]), m


def test_show_and_the_list_carry_the_figures(memory: Recording) -> None:
    row = memory.rows["/hold/h0"]
    assert row["memory"]["rss_peak_bytes"] >= 56 * MIB, row
    text = memory.recorded.cli("show", str(row["id"]))
    assert "Memory: process RSS " in text and ", peak " in text, text
